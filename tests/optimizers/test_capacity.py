"""Asks that cost what the decision needs, not the capacity: the bounded looks give the
same trials as looking at the whole table, and the bounds are real."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers
from tests.optimizers._shared import space


def _drive(opt, steps: int, loss):
    """`steps` asks and tells of `opt` on the no-fidelity space; the final state."""
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for i in range(steps):
        state, proposals = ask(state, jax.random.key(i + 1))
        state = tell(state, proposals.trial_ids, loss(proposals.configs, proposals.trial_ids))
    return jax.device_get(state)


def _quadratic(configs, ids):
    del ids
    return jnp.square(configs["x"] - 0.3) + 0.1 * (configs["c"] == 1)


def test_tpe_reads_every_trial_until_the_run_holds_more_than_its_model_size():
    spec = space("no_fidelity")
    whole = _drive(optimizers.tpe(spec, max_trials=128, model_size=4096), 30, _quadratic)
    bounded = _drive(optimizers.tpe(spec, max_trials=128, model_size=32), 30, _quadratic)
    # 30 trials <= 32: the same trials (up to float rounding: sums over another length)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
                 bounded, whole)
    newest = _drive(optimizers.tpe(spec, max_trials=128, model_size=12), 30, _quadratic)
    # past 12 trials the model reads the newest 12 only: other proposals
    assert not np.array_equal(newest.trials.configs["x"], whole.trials.configs["x"])
    np.testing.assert_allclose(newest.trials.configs["x"][:12],
                               whole.trials.configs["x"][:12], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="model_size=0"):
        optimizers.tpe(spec, model_size=0)


def test_evolution_finds_its_population_behind_a_thousand_failures():
    """Trials 40 on fail: past trial 1,064 the newest 1,024 rows (where evolution looks
    first) hold no member, and the population is still the newest three successes (rows
    37-39), so every child of the last ask is a one-slot mutation of one of them."""
    spec = jn.compile({name: jn.Float(0.0, 1.0) for name in "abcd"})
    opt = optimizers.regularized_evolution(spec, population_size=3, sample_size=2,
                                           batch_size=128, max_trials=2048)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for i in range(15):  # 1,920 trials
        state, proposals = ask(state, jax.random.key(i + 1))
        losses = jnp.where(proposals.trial_ids >= 40, jnp.nan, proposals.configs["a"])
        state = tell(state, proposals.trial_ids, losses)
    floats = np.asarray(state.trials.configs.floats)
    members = floats[37:40]
    children = floats[1792:1920]  # the last ask's
    changed = (children[:, None, :] != members[None, :, :]).sum(axis=-1)  # (128, 3)
    assert np.all(changed.min(axis=1) == 1)


def _late_and_failing(opt, steps: int):
    """`steps` asks of a bracket optimiser on `mixed27`; trials with id % 7 == 3 are told
    three asks late and those with id % 11 == 5 fail. The final state, on the host."""
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state, late = opt.init(jax.random.key(0)), []
    for i in range(steps):
        state, proposals = ask(state, jax.random.key(i + 1))
        ids = proposals.trial_ids
        losses = jnp.where(ids % 11 == 5, jnp.nan,
                           jnp.square(proposals.configs["x"] - 0.7) + 0.1 / proposals.fidelities)
        now = (ids % 7 != 3)
        state = tell(state, jnp.where(now, ids, -1), losses)
        late.append((jnp.where(now, -1, ids), losses))
        if i >= 3:
            state = tell(state, *late[i - 3])
    return jax.device_get(state)


@pytest.mark.parametrize("name", ["hyperband", "priorband"])
def test_bracket_asks_are_the_same_whatever_the_capacity(name):
    """At capacity 1,024 an ask looks at every bracket instance and table row; at 4,096 at
    the live instances and the rows of the rung it promotes from: the same trials, with
    trials told late (brackets held open while others start) and failures."""
    spec = space("mixed27")
    small = _late_and_failing(optimizers.get(name, spec, max_trials=1024, batch_size=5), 60)
    large = _late_and_failing(optimizers.get(name, spec, max_trials=4096, batch_size=5), 60)
    count = int(small.trials.count)
    assert count == int(large.trials.count) > 200
    # The two capacities compile to different programs, whose float rounding may differ
    # in the last bits of a sampled value (seen: 1 in 444 values, 1.2e-6 apart).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[:count], b[:count], rtol=1e-5),
                 small.trials._replace(count=None), large.trials._replace(count=None))
    sources = np.asarray(small.trials.sources[:count])
    assert np.sum(sources == jn.optimizers.Source.PROMOTION) > 30


def test_asha_asks_are_the_same_whatever_the_capacity():
    """At capacity 1,024 ASHA's ask reads the whole table; at 4,096 its first 1,024 rows,
    which hold every trial: the same trials, with late results and failures. (Past 1,024
    trials it reads 2,048 rows, and so on: `test_asha` checks such asks against a
    reference.)"""
    spec = space("mixed27")
    small = _late_and_failing(optimizers.asha(spec, max_trials=1024, batch_size=5), 60)
    large = _late_and_failing(optimizers.asha(spec, max_trials=4096, batch_size=5), 60)
    count = int(small.trials.count)
    assert count == int(large.trials.count) == 300
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[:count], b[:count], rtol=1e-5),
                 small.trials._replace(count=None), large.trials._replace(count=None))
    sources = np.asarray(small.trials.sources[:count])
    assert np.sum(sources == jn.optimizers.Source.PROMOTION) > 30


def test_a_bracket_held_open_is_served_behind_a_thousand_newer_ones():
    """Bracket instance 0 waits for one trial while 1,100 newer instances run to the end
    (more than an ask looks at first, and more rows than it reads for a promotion): once
    told, the next ask promotes instance 0's best trial, as the oldest cycle goes first."""
    spec = jn.compile({"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, 9)})
    # es-rate 1: each instance is 3 trials at fidelity 3, then the best 1 at 9
    opt = optimizers.successive_halving(spec, early_stopping_rate=1, max_trials=8192)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state, proposals = ask(opt.init(jax.random.key(0)), jax.random.key(0))
    np.testing.assert_array_equal(proposals.trial_ids, [0, 1, 2])
    first = proposals.configs["x"]
    state = tell(state, jnp.asarray([0, 1, -1]), jnp.asarray([0.5, 0.2, 0.0]))
    for i in range(1, 2201):  # 1,100 instances of two asks each: base rung, promotion
        state, proposals = ask(state, jax.random.key(i))
        state = tell(state, proposals.trial_ids, jnp.abs(proposals.configs["x"] - 0.5))
    assert int(state.started) == 1101 and int(state.trials.count) == 4403
    state = tell(state, jnp.asarray([2, -1, -1]), jnp.asarray([0.9, 0.0, 0.0]))
    state, proposals = ask(state, jax.random.key(9999))
    assert np.asarray(proposals.valid).tolist() == [True, False, False]
    assert int(proposals.parent_ids[0]) == 1  # loss 0.2, the best of 0.5, 0.2, 0.9
    assert float(proposals.fidelities[0]) == 9.0
    assert float(proposals.configs["x"][0]) == float(first[1])


def _best_rows(losses, succeeded, k):
    """The table's best k successful rows by loss, then row; -1 past them."""
    rows = np.flatnonzero(succeeded)
    rows = rows[np.lexsort((rows, losses[rows]))][:k]
    return np.concatenate([rows, np.full(k - rows.size, -1)])


def test_the_summaries_tell_keeps_are_what_the_table_says():
    """PriorBand's per-rung leaders, success counts and spent fidelity, and complex random
    search's best rows, kept up to date by tell (with late results, failures, ids told
    twice in one batch and ids told again later), equal what the whole table gives."""
    state = _late_and_failing(optimizers.get("priorband", space("mixed27"), max_trials=4096,
                                             batch_size=5), 60)
    trials = state.trials
    success = np.asarray(trials.status) == jn.optimizers.Status.SUCCESS
    told = success | (np.asarray(trials.status) == jn.optimizers.Status.FAILED)
    rungs, losses = np.asarray(trials.rungs), np.asarray(trials.losses)
    for rung in range(4):
        np.testing.assert_array_equal(state.leaders[rung],
                                      _best_rows(losses, success & (rungs == rung), 256))
    np.testing.assert_array_equal(state.rung_successes,
                                  np.bincount(rungs[success], minlength=4))
    parents = np.asarray(trials.parent_ids)
    fidelities = np.asarray(trials.fidelities)
    added = fidelities - np.where(parents >= 0, fidelities[np.maximum(parents, 0)], 0.0)
    assert float(state.spent) == pytest.approx(float(added[told].sum()), rel=1e-6)

    opt = optimizers.complex_random_search(space("no_fidelity"), batch_size=8, n_top=5,
                                           max_trials=2048)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for i in range(20):
        state, proposals = ask(state, jax.random.key(i + 1))
        ids = proposals.trial_ids
        # ties, negative losses and -0.0 (equal to 0.0)
        losses = jnp.where(ids % 5 == 1, jnp.nan, jnp.round(proposals.configs["x"], 1) - 0.5)
        losses = jnp.where(ids % 9 == 4, -0.0, losses)
        # ids told twice in a batch (the second loss differs) and once more a step later
        state = tell(state, jnp.concatenate([ids, ids[:3]]),
                     jnp.concatenate([losses, losses[:3] - 1.0]))
        state = tell(state, ids, losses - 2.0)
    trials = jax.device_get(state.trials)
    success = np.asarray(trials.status) == jn.optimizers.Status.SUCCESS
    np.testing.assert_array_equal(state.best, _best_rows(np.asarray(trials.losses), success, 5))


def test_kept_best_rows_tie_minus_zero_with_zero():
    """-0.0 and 0.0 are equal losses, so the earlier trial goes first, as in a top-k of the
    table (XLA folds `x + 0.0` to `x`, which once left -0.0 ahead)."""
    opt = optimizers.complex_random_search(space("no_fidelity"), batch_size=4, n_top=3,
                                           max_trials=16)
    state, proposals = jax.jit(opt.ask)(opt.init(jax.random.key(0)), jax.random.key(1))
    state = jax.jit(opt.tell)(state, proposals.trial_ids,
                              jnp.asarray([1.0, 0.0, -0.0, 0.0]))
    np.testing.assert_array_equal(state.best, [1, 2, 3])
