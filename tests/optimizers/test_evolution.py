"""`regularized_evolution`: the population's window, tournaments, one-slot mutations, quality.

Most tests read one large ask of children after a first ask whose results are chosen: a
child keeps every value of its parent but one, and floats are kept bit for bit while a
re-sampled float never equals an earlier one, so each child's parent can be found.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers, problems

Source = optimizers.Source
BATCH = 512
POPULATION = 8
SAMPLE = 3
# Floats on linear and log scales, an integer of three values (a re-sampled value often
# rounds back to the old one), a categorical, and a branch: seven slots, six active.
SPACE = {
    "a": jn.Float(0.0, 1.0),
    "b": jn.Float(1e-3, 1.0, log=True),
    "n": jn.Integer(1, 3),
    "k": jn.Categorical(("x", "y", "z")),
    "branch": jn.Categorical(({"u": jn.Float(0.0, 1.0)}, {"v": jn.Float(0.0, 1.0)})),
}
FLOATS = ("a", "b", "branch.choices[0].u", "branch.choices[1].v")


@functools.cache
def _optimizer():
    """`(spec, optimizer, jit(ask), jit(tell))`, compiled once for the module."""
    spec = jn.compile(SPACE)
    opt = optimizers.regularized_evolution(spec, population_size=POPULATION,
                                           sample_size=SAMPLE, batch_size=BATCH,
                                           max_trials=2 * BATCH)
    return spec, opt, jax.jit(opt.ask), jax.jit(opt.tell)


def _values(spec, configs) -> np.ndarray:
    """`(n, slots)` float64 values of a batch of configs, in `spec.paths` order."""
    return np.stack([np.asarray(configs[p], np.float64) for p in spec.paths], axis=1)


def _parents(spec, earlier: np.ndarray, children: np.ndarray) -> np.ndarray:
    """Each child's parent among `earlier` rows: the one sharing its float values (a child
    keeps all of them but at most one, and no two trials share a float value)."""
    floats = [spec.paths.index(p) for p in FLOATS]
    shared = np.sum(children[:, None, floats] == earlier[None, :, floats], axis=-1)
    assert np.all(np.sort(shared, axis=1)[:, -2] == 0), "a child resembles two trials"
    return np.argmax(shared, axis=1)


def test_first_population_is_sampled_and_later_trials_are_children():
    spec = jn.compile({"x": jn.Float(0.0, 1.0, prior=0.2), "z": jn.IntegerFidelity(1, 9)})
    opt = optimizers.regularized_evolution(spec, population_size=10, sample_size=2,
                                           batch_size=4, use_prior=True, max_trials=32)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for key in jax.random.split(jax.random.key(1), 5):
        state, proposals = ask(state, key)
        assert np.all(np.asarray(proposals.fidelities) == 9)  # the maximum fidelity
        state = tell(state, proposals.trial_ids, jnp.square(proposals.configs["x"] - 0.5))
    sources = np.asarray(state.trials.sources)[:20]
    np.testing.assert_array_equal(sources[:10], Source.PRIOR)  # the first population_size
    np.testing.assert_array_equal(sources[10:], Source.MUTATION)


def test_parents_are_tournament_winners_among_the_newest_successful_trials():
    """The parent of every child is the best of SAMPLE uniform draws (with replacement)
    from the POPULATION newest successful trials: older trials, however good, failed
    trials and pending trials are never parents.

    The first ask (BATCH trials) is told so that the POPULATION newest successful trials
    have known ranks; the trials after them failed or are pending, and every older trial
    has a better loss than any of them. Under the tournament, the member of rank r (1 =
    best) wins with probability ((P - r + 1) / P)^S - ((P - r) / P)^S; with BATCH children,
    each count lies within 4 binomial standard deviations of its expectation.
    """
    spec, opt, ask, tell = _optimizer()
    state, first = ask(opt.init(jax.random.key(0)), jax.random.key(1))
    losses = np.full(BATCH, -100.0, np.float32)  # the old trials: the best, but too old
    newest_failed, newest_pending = [BATCH - 1, BATCH - 3], [BATCH - 2, BATCH - 4]
    members = np.arange(BATCH - 4 - POPULATION, BATCH - 4)  # the newest successful trials
    ranks = np.random.default_rng(0).permutation(POPULATION) + 1
    losses[members] = ranks
    losses[newest_failed] = [np.nan, np.inf]
    told = np.asarray(first.trial_ids).copy()
    told[newest_pending] = -1
    state = tell(state, told, losses)
    state, second = ask(state, jax.random.key(2))
    assert np.all(np.asarray(second.valid))
    assert np.all(np.asarray(state.trials.sources)[BATCH:] == Source.MUTATION)

    parents = _parents(spec, _values(spec, first.configs), _values(spec, second.configs))
    assert set(parents.tolist()) <= set(members.tolist())
    rank = dict(zip(members.tolist(), ranks.tolist()))
    counts = np.bincount([rank[p] for p in parents], minlength=POPULATION + 1)[1:]
    r = np.arange(1, POPULATION + 1)
    p = ((POPULATION - r + 1) / POPULATION) ** SAMPLE - ((POPULATION - r) / POPULATION) ** SAMPLE
    tolerance = 4 * np.sqrt(BATCH * p * (1 - p))
    assert np.all(np.abs(counts - BATCH * p) <= tolerance), (counts, BATCH * p)


def test_a_child_differs_from_its_parent_in_one_active_slot_chosen_uniformly():
    spec, opt, ask, tell = _optimizer()
    state, first = ask(opt.init(jax.random.key(3)), jax.random.key(4))
    state = tell(state, first.trial_ids, jnp.arange(BATCH, dtype=jnp.float32))
    state, second = ask(state, jax.random.key(5))
    earlier, children = _values(spec, first.configs), _values(spec, second.configs)
    parents = earlier[_parents(spec, earlier, children)]
    changed = children != parents  # (BATCH, slots)
    assert np.all(changed.sum(axis=1) == 1), changed.sum(axis=1)
    active = np.asarray(jax.vmap(spec.active)(
        jax.tree.map(lambda c: c[_parents(spec, earlier, children)], first.configs)).array)
    assert np.all(active[changed])  # only a slot the parent uses changes
    # Each active slot is the changed one with probability 1 / (active slots): 1 / 6 here.
    p = active / active.sum(axis=1, keepdims=True)
    expected = p.sum(axis=0)
    tolerance = 4 * np.sqrt(np.sum(p * (1 - p), axis=0))
    assert np.all(np.abs(changed.sum(axis=0) - expected) <= tolerance + 1e-9), (
        changed.sum(axis=0), expected)


def test_children_explore_around_their_parent():
    """A changed float moves by a normal of sigma 0.25 in the unit cube, not uniformly."""
    spec, opt, ask, tell = _optimizer()
    state, first = ask(opt.init(jax.random.key(6)), jax.random.key(7))
    state = tell(state, first.trial_ids, jnp.arange(BATCH, dtype=jnp.float32))
    state, second = ask(state, jax.random.key(8))
    earlier, children = _values(spec, first.configs), _values(spec, second.configs)
    parents = earlier[_parents(spec, earlier, children)]
    column = spec.paths.index("a")  # on [0, 1]: values are unit values
    moved = children[:, column] != parents[:, column]
    distance = np.abs(children[moved, column] - parents[moved, column])
    centre = parents[moved, column]
    uniform_mean = np.mean((centre ** 2 + (1 - centre) ** 2) / 2)  # E|U - c| for U ~ U(0, 1)
    standard_error = np.std(distance) / np.sqrt(moved.sum())
    assert moved.sum() > 30
    assert np.mean(distance) < uniform_mean - 4 * standard_error


# ------------------------------------------------------------------------------ quality

PROBLEM = problems.mf_hartmann(dim=6, preset="default")
EVALUATIONS, QUALITY_BATCH = 300, 10
QUALITY_SEEDS = 10
# Under "no better than random search" evolution would win each seed with probability 1/2
# or less; winning 9 or more of 10 then has probability 11 / 1024 ~ 0.011.
MIN_WINS = 9


def _best_regrets(optimizer) -> np.ndarray:
    """Normalised regret of the best trial of a whole search on MF-Hartmann-6 at the
    maximum fidelity, per seed: one jitted `lax.scan` over asks, vmapped over seeds."""
    def step(state, key):
        ask_key, evaluate_key = jax.random.split(key)
        state, proposals = optimizer.ask(state, ask_key)
        keys = jax.random.split(evaluate_key, QUALITY_BATCH)
        losses = jax.vmap(PROBLEM.evaluate)(proposals.configs, proposals.fidelities, keys)
        return optimizer.tell(state, proposals.trial_ids, losses), None

    @jax.jit
    @jax.vmap
    def best(key):
        init_key, steps_key = jax.random.split(key)
        state, _ = jax.lax.scan(step, optimizer.init(init_key),
                                jax.random.split(steps_key, EVALUATIONS // QUALITY_BATCH))
        success = state.trials.status == optimizers.Status.SUCCESS
        return jnp.min(jnp.where(success, state.trials.losses, jnp.inf)), state.trials.count

    losses, counts = best(jax.random.split(jax.random.key(0), QUALITY_SEEDS))
    np.testing.assert_array_equal(counts, EVALUATIONS)
    return np.asarray(PROBLEM.regret(losses))


def test_beats_random_search_on_hartmann6():
    """With 300 evaluations, evolution (defaults: population 50, tournaments of 10) ends
    nearer the optimum than random search on at least 9 of 10 seeds (measured: all 10, mean
    regret about 0.04 against 0.29)."""
    spec = jn.compile(PROBLEM.space())
    kwargs = dict(batch_size=QUALITY_BATCH, max_trials=EVALUATIONS)
    evolution = _best_regrets(optimizers.regularized_evolution(spec, **kwargs))
    random = _best_regrets(optimizers.random_search(spec, **kwargs))
    assert np.sum(evolution < random) >= MIN_WINS, (evolution, random)
    assert evolution.mean() < random.mean()


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(population_size=0), ValueError, r"population_size=0 must be an integer >= 1"),
    (dict(sample_size=-1), ValueError, r"sample_size=-1 must be an integer >= 1"),
    (dict(population_size=2.5), ValueError, r"population_size=2\.5 must be an integer"),
    (dict(population_size=8, sample_size=9), ValueError,
     r"sample_size=9 must not exceed population_size=8"),
    (dict(population_size=300, max_trials=200), ValueError,
     r"population_size=300 exceeds max_trials=200"),
    (dict(batch_size=0), ValueError, r"batch_size=0 must be an integer >= 1"),
    (dict(max_trials=0), ValueError, r"max_trials=0 must be an integer >= 1"),
    (dict(use_prior="yes"), TypeError, r"use_prior='yes' must be True or False"),
])
def test_bad_arguments_raise_naming_the_parameter_and_value(kwargs, error, match):
    spec = jn.compile({"x": jn.Float(0.0, 1.0)})
    with pytest.raises(error, match=rf"regularized_evolution: {match}"):
        optimizers.regularized_evolution(spec, **kwargs)
