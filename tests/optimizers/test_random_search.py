"""`complex_random_search`'s mutations and crossovers: how often, from what, and how labelled.

Every test builds a table whose best configurations are known (one ask, then chosen losses)
and looks at one large second ask. Floats are packed bit for bit, so a value kept from a
parent equals it exactly, while a re-sampled value never equals an earlier one.
"""

import functools

import jax
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers

Source = optimizers.Source
BATCH = 512
N_TOP = 5
# Four floats, an integer and a categorical: d = 6 slots, so a mutation changes 1 to
# d // 2 = 3 of them and keeps at least 3.
SPACE = {
    "a": jn.Float(0.0, 1.0),
    "b": jn.Float(0.0, 1.0, prior=0.2),
    "c": jn.Float(-5.0, 5.0),
    "d": jn.Float(1e-3, 1.0, log=True),
    "n": jn.Integer(1, 10),
    "k": jn.Categorical(("x", "y", "z")),
}
MAX_CHANGED = len(SPACE) // 2
FLOATS = ("a", "b", "c", "d")
# NePS's pool per configuration: 5 uniform, 5 prior, 20 mutations per top configuration,
# 6 crossovers (with two top configurations or more).
POOL = {Source.UNIFORM: 5.0, Source.PRIOR: 5.0, Source.MUTATION: 20.0, Source.CROSSOVER: 6.0}


@functools.cache
def _optimizer():
    """`(optimizer, jit(ask), jit(tell))`, compiled once for the module."""
    opt = optimizers.complex_random_search(jn.compile(SPACE), batch_size=BATCH, n_top=N_TOP,
                                           max_trials=2 * BATCH)
    return opt, jax.jit(opt.ask), jax.jit(opt.tell)


def _values(configs, rows=slice(None)) -> np.ndarray:
    """`(n, d)` float64 values of `configs` by path, in `SPACE` order."""
    return np.stack([np.asarray(configs[path], np.float64)[rows] for path in SPACE], axis=1)


def _second_ask(losses: np.ndarray, seed: int = 0):
    """Asks once, tells `losses` (one per trial of the first batch), asks again.

    Returns:
        The first batch's values `(BATCH, d)`, the second's, its sources read back from
        `state.trials.sources`, and the state after the second ask.
    """
    opt, ask, tell = _optimizer()
    state, first = ask(opt.init(jax.random.key(seed)), jax.random.key(seed + 1))
    state = tell(state, first.trial_ids, np.asarray(losses, np.float32))
    state, second = ask(state, jax.random.key(seed + 2))
    assert np.all(np.asarray(second.valid))
    ids = np.asarray(second.trial_ids)
    trials = jax.device_get(state.trials)
    # The table holds exactly what was proposed.
    np.testing.assert_array_equal(_values(trials.configs, ids), _values(second.configs))
    np.testing.assert_array_equal(np.asarray(second.parent_ids), -1)
    return _values(first.configs), _values(second.configs), trials.sources[ids], state


def _losses(n_failed: int, n_success: int | None = None) -> np.ndarray:
    """Losses of the first batch: trials `0..n_failed-1` fail (NaN or inf, and they would
    be the best), the next `n_success` succeed with increasing losses, the rest fail."""
    losses = np.full(BATCH, np.nan, np.float32)
    losses[1:n_failed:2] = np.inf
    n_success = BATCH - n_failed if n_success is None else n_success
    losses[n_failed:n_failed + n_success] = np.arange(n_success, dtype=np.float32)
    return losses


def test_sources_follow_the_pool_weights():
    """With five or more successes, draws follow the mixture 5 : 5 : 20 * 5 : 6."""
    _, _, sources, _ = _second_ask(_losses(n_failed=20))
    weights = {**POOL, Source.MUTATION: POOL[Source.MUTATION] * N_TOP}
    total = sum(weights.values())
    assert set(sources.tolist()) == set(weights)
    for source, weight in weights.items():
        p = weight / total
        expected, sd = BATCH * p, np.sqrt(BATCH * p * (1 - p))
        count = int(np.sum(sources == source))
        assert abs(count - expected) < 4 * sd, (source.name, count, expected)


@pytest.mark.parametrize("n_success, allowed", [
    (0, {Source.UNIFORM, Source.PRIOR}),  # only failures: nothing to mutate or cross
    (1, {Source.UNIFORM, Source.PRIOR, Source.MUTATION}),  # one parent: no crossover
])
def test_no_mutation_or_crossover_without_enough_successful_parents(n_success, allowed):
    # The failed trials come first and would be the best if failures counted.
    _, _, sources, _ = _second_ask(_losses(n_failed=100, n_success=n_success))
    assert set(sources.tolist()) == allowed


def test_mutants_change_a_few_values_of_one_of_the_best_configs():
    first, second, sources, _ = _second_ask(_losses(n_failed=20))
    top = first[20:20 + N_TOP]  # the successful trials with the lowest losses
    mutants = second[sources == Source.MUTATION]
    assert len(mutants) > BATCH // 2
    # Slots each mutant shares with each top config, (n_mutants, N_TOP).
    kept = np.sum(mutants[:, None, :] == top[None, :, :], axis=-1)
    assert np.all(kept.max(axis=1) >= len(SPACE) - MAX_CHANGED), kept.max(axis=1)
    # Its floats come from one parent only (a new float value is never an old one).
    float_columns = [list(SPACE).index(path) for path in FLOATS]
    kept_floats = np.sum(mutants[:, None, float_columns] == top[None, :, float_columns], -1)
    assert np.all(np.sum(kept_floats > 0, axis=1) == 1)
    # Every top config is mutated, and most mutants change something (an integer or a
    # categorical re-sampled at random may keep its value).
    parents = np.argmax(kept, axis=1)
    assert set(parents.tolist()) == set(range(N_TOP))
    assert np.mean(kept.max(axis=1) < len(SPACE)) > 0.9
    # Half the mutations re-sample around the old value (sigma 0.25 in the unit cube), so
    # changed floats lie nearer their parent's value than uniform draws would: from a
    # value c, a uniform draw lies (c^2 + (1 - c)^2) / 2 away on average.
    centre = _unit(top[parents][:, float_columns])
    distance = np.abs(_unit(mutants[:, float_columns]) - centre)
    changed = distance != 0
    uniform_mean = np.mean((centre[changed] ** 2 + (1 - centre[changed]) ** 2) / 2)
    standard_error = np.std(distance[changed]) / np.sqrt(changed.sum())
    assert np.mean(distance[changed]) < uniform_mean - 4 * standard_error


def _unit(floats: np.ndarray) -> np.ndarray:
    """The four float columns in the unit cube (`d` on its log scale)."""
    lower = np.array([0.0, 0.0, -5.0, np.log(1e-3)])
    upper = np.array([1.0, 1.0, 5.0, 0.0])
    floats = floats.copy()
    floats[:, 3] = np.log(floats[:, 3])
    return (floats - lower) / (upper - lower)


def test_crossover_children_take_each_value_from_one_of_two_best_configs():
    first, second, sources, _ = _second_ask(_losses(n_failed=20))
    top = first[20:20 + N_TOP]
    children = second[sources == Source.CROSSOVER]
    assert len(children) >= 5
    for child in children:
        from_parent = child[None, :] == top  # (N_TOP, d)
        pairs = [(i, j) for i in range(N_TOP) for j in range(i + 1, N_TOP)
                 if np.all(from_parent[i] | from_parent[j])]
        assert pairs, child


def test_uniform_and_prior_draws_are_new_configurations():
    first, second, sources, state = _second_ask(_losses(n_failed=20))
    fresh = second[np.isin(sources, [Source.UNIFORM, Source.PRIOR])]
    float_columns = [list(SPACE).index(path) for path in FLOATS]
    assert not np.isin(fresh[:, float_columns], first[:, float_columns]).any()
    # The first batch had nothing to mutate: uniform and prior draws only.
    trials = jax.device_get(state.trials)
    assert set(trials.sources[:BATCH].tolist()) == {Source.UNIFORM, Source.PRIOR}
