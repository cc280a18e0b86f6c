"""ASHA: each ask's promotions are Algorithm 2's (a numpy reference, with results told late,
failures, ties and a table past its first 1,024 rows), promotions while trials are pending,
no trial promoted twice, failures never promoted, rung sizes near 1 / eta, the rank mode of
`multi_objective`, a `jn.run` with a plain callable, argument checks and determinism."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers
from jaxnas.optimizers import Source, Status
from tests.optimizers._shared import space

FIDELITIES_27 = (1.0, 3.0, 9.0, 27.0)  # rungs of fidelity 1..27 with eta 3


def _reference_promotions(trials, promoted, eta: int, batch: int) -> list[int]:
    """Algorithm 2's `get_job`, one row at a time on the host: from the highest rung below
    the top down, the first trial of the top `n_k // eta` successful ones of rung `k` (by
    loss, then trial id) that is neither promoted nor taken by an earlier row."""
    status, rungs = np.asarray(trials.status), np.asarray(trials.rungs)
    losses = np.asarray(trials.losses)
    promoted, parents = np.asarray(promoted).copy(), []
    for _ in range(batch):
        for rung in range(len(FIDELITIES_27) - 2, -1, -1):
            rows = np.flatnonzero((status == Status.SUCCESS) & (rungs == rung))
            top = rows[np.lexsort((rows, losses[rows]))][: len(rows) // eta]  # -0.0 == 0.0
            waiting = top[~promoted[top]]
            if waiting.size:
                parents.append(int(waiting[0]))
                promoted[waiting[0]] = True
                break
        else:
            break  # nothing to promote: the remaining rows are new samples
    return parents


def test_each_ask_promotes_what_algorithm_2_promotes():
    """1,200 trials in asks of 8 (past the 1,024 rows an ask reads first, so the whole
    table is read at the end), every seventh told three asks late, every eleventh failing,
    losses with ties (ties go to the earlier trial) and -0.0 beside 0.0."""
    opt = optimizers.asha(space("plain27"), batch_size=8, max_trials=2048)
    ask, tell = jax.jit(chex.assert_max_traces(opt.ask, n=1)), jax.jit(opt.tell)
    state, late, pending_at_promotion = opt.init(jax.random.key(0)), [], []
    for step in range(150):
        before = jax.device_get(state)
        state, proposals = ask(state, jax.random.key(step))
        got = jax.device_get(proposals)
        expected = _reference_promotions(before.trials, before.promoted, 3, 8)
        n = len(expected)
        np.testing.assert_array_equal(got.parent_ids[:n], expected)
        assert np.all(got.parent_ids[n:] == -1) and np.all(got.valid)
        # A promotion keeps the config and goes one rung up; a new sample starts at rung 0.
        np.testing.assert_array_equal(got.configs["x"][:n], before.trials.configs["x"][expected])
        np.testing.assert_array_equal(
            got.fidelities[:n], np.take(FIDELITIES_27, before.trials.rungs[expected] + 1))
        np.testing.assert_array_equal(got.fidelities[n:], 1.0)
        sources = jax.device_get(state.trials.sources)[got.trial_ids]
        assert np.all(sources[:n] == Source.PROMOTION) and np.all(sources[n:] == Source.UNIFORM)
        if n:
            pending_at_promotion.append(int(np.sum(before.trials.status == Status.PENDING)))
        ids = proposals.trial_ids
        losses = jnp.round(proposals.configs["x"], 1) + 0.1 / proposals.fidelities
        losses = jnp.where(ids % 11 == 5, jnp.nan, losses)
        losses = jnp.where(ids % 13 == 0, -0.0, jnp.where(ids % 13 == 1, 0.0, losses))
        now = ids % 7 != 3
        state = tell(state, jnp.where(now, ids, -1), losses)
        late.append((jnp.where(now, -1, ids), losses))
        if step >= 3:
            state = tell(state, *late[step - 3])
    trials = jax.device_get(state.trials)
    parents = trials.parent_ids[trials.parent_ids >= 0]
    assert int(trials.count) == 1200 and len(parents) > 300
    assert len(set(parents.tolist())) == len(parents)  # no trial promoted twice
    assert np.all(trials.status[parents] == Status.SUCCESS)  # failures never promoted
    assert np.all(np.asarray(state.promoted)[parents])
    assert min(pending_at_promotion) > 0  # promotions never waited for pending trials
    optimizers.check(state)


@functools.cache
def _asker(batch_size: int):
    opt = optimizers.asha(space("plain27"), batch_size=batch_size, max_trials=64)
    return opt, jax.jit(opt.ask), jax.jit(opt.tell)


def _tell(tell, state, ids, losses):
    return tell(state, jnp.asarray(ids, jnp.int32), jnp.asarray(losses, jnp.float32))


def test_promotes_the_top_third_of_a_rung_while_others_are_pending():
    opt, ask, tell = _asker(9)
    state, first = ask(opt.init(jax.random.key(0)), jax.random.key(1))
    np.testing.assert_array_equal(first.trial_ids, np.arange(9))
    # Three results, six trials still pending: n = 3, so the best (trial 1) goes up.
    state = _tell(tell, state, [0, 1, 2], [0.5, 0.2, 0.9])
    state, second = ask(state, jax.random.key(2))
    np.testing.assert_array_equal(second.parent_ids, [1] + [-1] * 8)
    np.testing.assert_array_equal(second.fidelities, [3.0] + [1.0] * 8)
    assert float(second.configs["x"][0]) == float(first.configs["x"][1])
    # Three more results and a failure: n = 6 (the failure does not count), the top two
    # are trials 3 and 1, and 1 is promoted already.
    state = _tell(tell, state, [3, 4, 5, 6], [0.1, 0.8, 0.7, jnp.nan])
    state, third = ask(state, jax.random.key(3))
    np.testing.assert_array_equal(third.parent_ids, [3] + [-1] * 8)
    # Nothing new told: nothing more to promote, whatever is pending.
    state, fourth = ask(state, jax.random.key(4))
    assert np.all(np.asarray(fourth.parent_ids) == -1)
    np.testing.assert_array_equal(fourth.fidelities, [1.0] * 9)


def test_one_ask_promotes_several_trials_once_each_and_never_a_failure():
    """Nine results, the six best of them failures: n = 3 successes, so one promotion, not
    three. Then the rows of one ask take every promotable trial, each once, the highest
    rung first and the best first within a rung."""
    opt, ask, tell = _asker(9)
    state, _ = ask(opt.init(jax.random.key(0)), jax.random.key(1))
    losses = [jnp.nan, -jnp.inf, jnp.nan, jnp.inf, jnp.nan, jnp.inf, 3.0, 2.0, 1.0]
    state = _tell(tell, state, np.arange(9), losses)
    state, second = ask(state, jax.random.key(2))
    np.testing.assert_array_equal(second.parent_ids, [8] + [-1] * 8)  # trial 9, at rung 1
    # Trial 9 (rung 1) and trials 10-17 (rung 0): rung 0 holds 11 successes, so its top
    # three (10, 14, 12) go up, in that order; 8 is no longer among them.
    state = _tell(tell, state, np.arange(9, 18),
                  [9.0, 0.5, 8.0, 0.7, 7.0, 0.6, 6.0, 5.0, 4.0])
    state, third = ask(state, jax.random.key(3))
    np.testing.assert_array_equal(third.parent_ids, [10, 14, 12] + [-1] * 6)
    np.testing.assert_array_equal(third.trial_ids[:3], [18, 19, 20])
    # Rung 1 reaches four results (its best, trial 20, goes to rung 2) and rung 0 twelve
    # (its new best, trial 21, joins its top four): the higher rung's row comes first.
    state = _tell(tell, state, [18, 19, 20, 21], [0.3, 0.2, 0.1, 0.05])
    state, fourth = ask(state, jax.random.key(4))
    np.testing.assert_array_equal(fourth.parent_ids, [20, 21] + [-1] * 7)
    np.testing.assert_array_equal(fourth.fidelities, [9.0, 3.0] + [1.0] * 7)
    # Nothing new told: nothing to promote, though trials are pending.
    state, fifth = ask(state, jax.random.key(5))
    assert np.all(np.asarray(fifth.parent_ids) == -1)
    parents = np.asarray(jax.device_get(state.trials.parent_ids))
    assert sorted(parents[parents >= 0].tolist()) == [8, 10, 12, 14, 20, 21]


@functools.cache
def _search(eta: int, upper: int, asks: int):
    """A jitted `key -> final state`: `asks` asks of ASHA (batch eta) on fidelity
    1..upper, every result told at once, loss `(x - 0.7)**2 + 0.1 / fidelity`."""
    spec = jn.compile({"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, upper)})
    opt = optimizers.asha(spec, eta=eta, max_trials=asks * eta)

    def step(state, key):
        state, proposals = opt.ask(state, key)
        losses = jnp.square(proposals.configs["x"] - 0.7) + 0.1 / proposals.fidelities
        return opt.tell(state, proposals.trial_ids, losses), None

    def run(key):
        init_key, steps_key = jax.random.split(key)
        state, _ = jax.lax.scan(step, opt.init(init_key), jax.random.split(steps_key, asks))
        return state

    return jax.jit(run)


@pytest.mark.parametrize("eta, upper, n_rungs", [(3, 27, 4), (2, 8, 4)])
def test_rung_sizes_approach_one_over_eta(eta, upper, n_rungs):
    """1,200 trials. Every trial in the top `1 / eta` of its rung is promoted, so rung k + 1
    holds at least `n_k // eta` trials (less the promotions of the last results, at most
    one ask's); it holds more by the trials promoted while in the top and pushed out of it
    by later, better ones. For the lowest rung's iid draws that excess is the wander of
    the empirical `1 / eta`-quantile, of the order of `sqrt(n p (1 - p)) < sqrt(n) / 2`
    ranks, so the ratio lies within `1 / sqrt(n_k)` of `1 / eta`; the same bound is
    asked of the higher rungs, whose arrivals are the promotions."""
    state = jax.device_get(_search(eta, upper, 1200 // eta)(jax.random.key(0)))
    rungs = state.trials.rungs[: int(state.trials.count)]
    sizes = np.bincount(rungs)
    assert len(sizes) == n_rungs and sizes.sum() == 1200
    for k in range(len(sizes) - 1):
        assert sizes[k + 1] >= sizes[k] // eta - eta, (k, sizes)
        assert abs(sizes[k + 1] / sizes[k] - 1 / eta) <= 1 / np.sqrt(sizes[k]), (k, sizes)


def test_same_seed_same_trajectory():
    search = _search(3, 27, 400)
    first, second = search(jax.random.key(5)), search(jax.random.key(5))
    chex.assert_trees_all_equal(first, second)
    other = search(jax.random.key(6))
    assert not np.array_equal(first.trials.configs["x"], other.trials.configs["x"])


def test_rank_mode_promotes_a_rung_s_first_front():
    """MO-ASHA (Schmucker et al., 2021) through `multi_objective`: of nine results, three
    form the front; n = 9, so the top three by non-dominated rank go up, whatever the first
    objective alone says."""
    opt = optimizers.get("asha", space("plain27"), n_objectives=2, batch_size=9)
    assert optimizers.takes_objective_vectors(opt)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state, first = ask(opt.init(jax.random.key(0)), jax.random.key(1))
    values = np.array([[0.0, 9.0], [10.0, 0.0], [4.0, 4.0]]
                      + [[5.0 + i, 5.0 + i] for i in range(6)], np.float32)
    state = tell(state, first.trial_ids, values[::-1].copy())  # the front: 6, 7, 8
    state, second = ask(state, jax.random.key(2))
    parents = np.asarray(second.parent_ids)
    assert sorted(parents[:3].tolist()) == [6, 7, 8] and np.all(parents[3:] == -1)


def test_a_run_with_a_plain_callable(tmp_path):
    calls = []

    def objective(x, epochs):
        calls.append(epochs)
        return (x - 0.7) ** 2 + 1.0 / epochs

    space_ = {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 9)}
    result = jn.run(objective, space_, optimizer="asha", root_directory=tmp_path,
                    max_evaluations=15, progress=False)
    assert result.stopped_by == "max_evaluations" and len(result.trials) == 15 == len(calls)
    stored = {t["trial_id"]: t for t in jn.load_results(tmp_path)}
    promoted = [t for t in stored.values() if t["parent_id"] >= 0]
    assert promoted and set(calls) <= {1, 3, 9}
    for trial in promoted:
        parent = stored[trial["parent_id"]]
        assert trial["fidelity"] == 3 * parent["fidelity"]
        assert trial["config"] == parent["config"]
    assert result.incumbent.loss == min(t["loss"] for t in stored.values()
                                        if t["fidelity"] == result.incumbent.fidelity)


@pytest.mark.parametrize("kwargs, match", [
    (dict(eta=1), r"asha: eta=1 must be an integer >= 2"),
    (dict(eta=2.5), r"asha: eta=2\.5 must be an integer >= 2"),
    (dict(eta=30), r"asha: the fidelity range \[1, 27\] is too narrow for eta=30"),
    (dict(early_stopping_rate=3), r"asha: early_stopping_rate=3 must be an integer in \[0, 2\]"),
    (dict(early_stopping_rate=-1), r"asha: early_stopping_rate=-1 must be an integer"),
    (dict(batch_size=0), r"asha: batch_size=0 must be an integer >= 1"),
    (dict(max_trials=0), r"asha: max_trials=0 must be an integer >= 1"),
])
def test_bad_arguments_raise_naming_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.get("asha", space("plain27"), **kwargs)


def test_bad_types_and_spaces_are_refused():
    with pytest.raises(TypeError, match=r"asha: use_prior='yes' must be True or False"):
        optimizers.asha(space("plain27"), use_prior="yes")
    with pytest.raises(TypeError, match=r"asha: spec must be a compiled SearchSpace"):
        optimizers.asha({"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, 9)})
    with pytest.raises(ValueError, match=r"asha: the space has no fidelity"):
        optimizers.asha(space("no_fidelity"))


def test_early_stopping_rate_starts_new_configurations_higher():
    opt = optimizers.asha(space("plain27"), early_stopping_rate=1, batch_size=3)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state, first = ask(opt.init(jax.random.key(0)), jax.random.key(1))
    np.testing.assert_array_equal(first.fidelities, [3.0, 3.0, 3.0])
    state = tell(state, first.trial_ids, jnp.asarray([0.3, 0.1, 0.2]))
    _, second = ask(state, jax.random.key(2))
    np.testing.assert_array_equal(second.parent_ids, [1, -1, -1])
    np.testing.assert_array_equal(second.fidelities, [9.0, 3.0, 3.0])
