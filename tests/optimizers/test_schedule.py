"""Bracket schedules, driven through ask/tell, against the published Hyperband tables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers
from tests.optimizers._shared import drive, jitted, rungs_served, toy_loss

# HpBandSter (HyperBand.get_next_iteration) and NePS 0.17 (calculate_hb_bracket_layouts),
# fidelity 1..81, eta 3: n = floor(5 / (s + 1)) * 3**s. (configs, fidelity) per rung of
# brackets s = 4, ..., 0. The default.
HPBANDSTER_81 = [
    [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
    [(27, 3), (9, 9), (3, 27), (1, 81)],
    [(9, 9), (3, 27), (1, 81)],
    [(6, 27), (2, 81)],
    [(5, 81)],
]
# The same for 1..27 (s_max = 3): n = floor(4 / (s + 1)) * 3**s.
HPBANDSTER_27 = [
    [(27, 1), (9, 3), (3, 9), (1, 27)],
    [(9, 3), (3, 9), (1, 27)],
    [(6, 9), (2, 27)],
    [(4, 27)],
]
# Li et al. (JMLR 2018), Algorithm 1 and Table 1, fidelity 1..81, eta 3:
# n = ceil(5 / (s + 1) * 3**s); bracket_sizes="paper".
PAPER_81 = [
    [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
    [(34, 3), (11, 9), (3, 27), (1, 81)],
    [(15, 9), (5, 27), (1, 81)],
    [(8, 27), (2, 81)],
    [(5, 81)],
]
# The same construction for 1..27 (s_max = 3): n = ceil(4 / (s + 1) * 3**s).
PAPER_27 = [
    [(27, 1), (9, 3), (3, 9), (1, 27)],
    [(12, 3), (4, 9), (1, 27)],
    [(6, 9), (2, 27)],
    [(4, 27)],
]


def _brackets(history) -> list[list[tuple[int, float]]]:
    """Splits the served rungs into brackets: a bracket starts with new samples (unless
    the ask before served new samples at the same fidelity: a rung in several batches)."""
    brackets, previous = [], None
    for proposals, served in zip(history, rungs_served(history)):
        valid = np.asarray(proposals.valid)
        is_new = np.all(np.asarray(proposals.parent_ids)[valid] == -1)
        if is_new and previous != ("new", served[1]):
            brackets.append([])
        brackets[-1].append(served)
        previous = ("new" if is_new else "promoted", served[1])
    return brackets


@pytest.mark.parametrize("name", ["hyperband", "priorband"])
@pytest.mark.parametrize("bracket_sizes, table", [("hpbandster", HPBANDSTER_81),
                                                  ("paper", PAPER_81)])
def test_hyperband_brackets_match_published_table(name, bracket_sizes, table):
    opt, ask, tell = jitted(name, "plain81", bracket_sizes=bracket_sizes, max_trials=512)
    steps = sum(len(bracket) for bracket in table) + len(table[0])  # a cycle, a bracket
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), steps)
    assert _brackets(history) == table + table[:1]  # then the next cycle starts over
    optimizers.check(state)


def test_default_bracket_sizes_are_hpbandsters():
    opt, ask, tell = jitted("hyperband", "plain27", max_trials=128)
    steps = sum(len(bracket) for bracket in HPBANDSTER_27)
    _, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), steps)
    assert _brackets(history) == HPBANDSTER_27


def test_hyperband_in_batches_of_10_matches_published_table():
    opt, ask, tell = jitted("hyperband", "plain27", bracket_sizes="paper", batch_size=10,
                            max_trials=128)
    # 27@1 comes in batches of 10, 10 and 7; 12@3 in 10 and 2; every other rung is smaller.
    steps = sum(len(bracket) for bracket in PAPER_27) + 3  # 2 + 1 extra batches
    _, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), steps)
    assert rungs_served(history)[:4] == [(10, 1), (10, 1), (7, 1), (9, 3)]
    merged = []
    for bracket in _brackets(history):  # a bracket's batches at one fidelity form a rung
        rungs = {}
        for n, fidelity in bracket:
            rungs[fidelity] = rungs.get(fidelity, 0) + n
        merged.append([(n, fidelity) for fidelity, n in rungs.items()])
    assert merged == PAPER_27
    ids = np.concatenate([np.asarray(p.trial_ids)[np.asarray(p.valid)] for p in history])
    assert len(ids) == len(set(ids)) == sum(n for bracket in PAPER_27 for n, _ in bracket)


def test_successive_halving_repeats_the_largest_bracket():
    opt, ask, tell = jitted("successive_halving", "plain81", max_trials=512)
    _, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 10)
    assert _brackets(history) == [HPBANDSTER_81[0], HPBANDSTER_81[0]]


@pytest.mark.parametrize("bracket_sizes, table", [("hpbandster", HPBANDSTER_81),
                                                  ("paper", PAPER_81)])
def test_successive_halving_early_stopping_rate_starts_higher(bracket_sizes, table):
    opt, ask, tell = jitted("successive_halving", "plain81", early_stopping_rate=1,
                            bracket_sizes=bracket_sizes)
    _, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 4)
    assert _brackets(history) == [table[1]]


def test_promotions_keep_the_config_and_take_the_best_of_the_rung():
    opt, ask, tell = jitted("hyperband", "plain81", max_trials=512)
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 5)
    trials = jax.device_get(state.trials)
    for lower, upper in zip(history[:-1], history[1:]):
        parents = np.asarray(upper.parent_ids)[np.asarray(upper.valid)]
        ids = np.asarray(lower.trial_ids)[np.asarray(lower.valid)]
        # The promoted are exactly the best floor(n / eta) of the rung below.
        best = ids[np.argsort(trials.losses[ids], kind="stable")[: len(ids) // 3]]
        assert sorted(parents) == sorted(best)
        children = np.asarray(upper.trial_ids)[np.asarray(upper.valid)]
        np.testing.assert_array_equal(trials.configs.floats[children],
                                      trials.configs.floats[parents])
        assert np.all(trials.rungs[children] == trials.rungs[parents] + 1)
        assert not set(children) & set(ids)  # a promotion is a new trial


def test_float_rungs_are_counted_exactly():
    # 0.1 * 3**4 is 8.100000000000001 in floating point, still 5 rungs. (Integer rungs are
    # rounded down, as NePS does: 1..100 gives 1, 3, 11, 33, 100; see test_quality.)
    rungs = [0.1, 0.3, 0.9, 2.7, 8.1]
    spec = jn.compile({"x": jn.Float(0.0, 1.0), "z": jn.FloatFidelity(0.1, 8.1)})
    opt = optimizers.hyperband(spec, max_trials=256)
    # Without results, each ask starts the next bracket: one per base rung, lowest first.
    ask = jax.jit(opt.ask)
    state, served = opt.init(jax.random.key(0)), []
    for key in jax.random.split(jax.random.key(1), len(rungs)):
        state, proposals = ask(state, key)
        served.append(float(proposals.fidelities[0]))
    np.testing.assert_allclose(served, rungs, rtol=1e-6)


def test_pending_trials_start_new_brackets_and_promotions_resume_after_results():
    opt, ask, tell = jitted("hyperband", "plain81", max_trials=512)
    state = opt.init(jax.random.key(0))
    asked = []
    for key in jax.random.split(jax.random.key(1), 6):  # nothing told: NePS starts brackets
        state, proposals = ask(state, key)
        asked.append(jax.device_get(proposals))
    assert rungs_served(asked) == [(81, 1), (27, 3), (9, 9), (6, 27), (5, 81), (81, 1)]
    # Results for the first bracket's base rung only (fewer than asked): it promotes next,
    # before any new sample (oldest cycle first, promotions first).
    first = asked[0]
    state = tell(state, first.trial_ids, toy_loss(first.configs, first.fidelities))
    state, proposals = ask(state, jax.random.key(2))
    assert rungs_served([proposals]) == [(27, 3)]
    assert set(np.asarray(proposals.parent_ids)[np.asarray(proposals.valid)]) <= set(
        np.asarray(first.trial_ids))


def test_failed_trials_are_never_promoted():
    opt, ask, tell = jitted("hyperband", "plain81", max_trials=512)
    state, proposals = ask(opt.init(jax.random.key(0)), jax.random.key(1))
    losses = toy_loss(proposals.configs, proposals.fidelities)
    # 75 of 81 fail (NaN, +inf and -inf): only the 6 successes can move up, fewer than 27.
    failed = jnp.arange(81) % 27 < 25
    bad = jnp.where(jnp.arange(81) % 3 == 0, jnp.nan, jnp.where(jnp.arange(81) % 3 == 1,
                                                                jnp.inf, -jnp.inf))
    losses = jnp.where(failed, bad, losses)
    state = tell(state, proposals.trial_ids, losses)
    state, promoted = ask(state, jax.random.key(2))
    parents = np.asarray(promoted.parent_ids)[np.asarray(promoted.valid)]
    assert sorted(parents) == sorted(np.flatnonzero(~np.asarray(failed)))
    status = np.asarray(state.trials.status)[:81]
    assert np.all((status == optimizers.Status.FAILED) == np.asarray(failed))
