"""Asynchronous Hyperband and PriorBand: new configurations join Hyperband's brackets as
often as Hyperband starts them, each ask promotes what Algorithm 2 promotes within each
bracket (a numpy reference, with late results and failures), and asynchronous PriorBand
samples as PriorBand does: half uniform and half prior at the lowest rung before there is
evidence, around the incumbent after."""

import chex
import jax
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers
from jaxnas.optimizers import Source, Status
from tests.optimizers._shared import space


def _hyperband_starts(name: str = "mixed27") -> np.ndarray:
    """How many new configurations Hyperband's one cycle starts at each rung."""
    opt = optimizers.hyperband(space(name), max_trials=512)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for step in range(60):
        state, proposals = ask(state, jax.random.key(step))
        state = tell(state, proposals.trial_ids, proposals.fidelities * 0.0)
    trials = jax.device_get(state.trials)
    new = (trials.sources[: trials.count] != Source.PROMOTION)
    brackets = trials.brackets[: trials.count]
    cycle = brackets < (brackets.max() // 4) * 4  # whole cycles only (4 brackets each)
    return np.bincount(trials.rungs[: trials.count][new & cycle], minlength=4)


@pytest.mark.parametrize("name", ["async_hyperband", "async_priorband"])
def test_new_configurations_join_the_brackets_as_often_as_hyperband_starts_them(name):
    """4,000 new samples (no results, so nothing is promoted); each bracket's share is
    within five binomial standard errors of Hyperband's."""
    starts = _hyperband_starts()
    expected = starts / starts.sum()
    opt = optimizers.get(name, space("mixed27"), batch_size=40, max_trials=4096)
    ask = jax.jit(opt.ask)
    state = opt.init(jax.random.key(0))
    for step in range(100):
        state, _ = ask(state, jax.random.key(step))
    trials = jax.device_get(state.trials)
    n = int(trials.count)
    brackets, rungs = trials.brackets[:n], trials.rungs[:n]
    for b in range(4):  # bracket b starts its configurations at rung b
        assert np.all(rungs[brackets == b] == b)
    shares = np.bincount(brackets, minlength=4) / n
    tolerance = 5 * np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(shares - expected) <= tolerance), (shares, expected)


def _reference_promotions(trials, promoted, eta: int, batch: int) -> list[int]:
    """Algorithm 2's `get_job` within each bracket, a row at a time on the host: from the
    highest rung below the top down (brackets in order within a rung), the first of the top
    `n // eta` successful trials of that bracket's rung (by loss, then id) that is neither
    promoted nor taken by an earlier row."""
    status, rungs = np.asarray(trials.status), np.asarray(trials.rungs)
    brackets, losses = np.asarray(trials.brackets), np.asarray(trials.losses)
    promoted, parents = np.asarray(promoted).copy(), []
    for _ in range(batch):
        for rung in range(2, -1, -1):
            found = False
            for bracket in range(rung + 1):  # bracket b has rungs b..3
                rows = np.flatnonzero((status == Status.SUCCESS) & (rungs == rung)
                                      & (brackets == bracket))
                top = rows[np.lexsort((rows, losses[rows]))][: len(rows) // eta]
                waiting = top[~promoted[top]]
                if waiting.size:
                    parents.append(int(waiting[0]))
                    promoted[waiting[0]] = True
                    found = True
                    break
            if found:
                break
        else:
            break
    return parents


def test_each_ask_promotes_what_algorithm_2_promotes_within_each_bracket():
    """600 trials in asks of 6, every fifth told two asks late, every thirteenth failing."""
    opt = optimizers.async_hyperband(space("plain27"), batch_size=6, max_trials=1024)
    ask, tell = jax.jit(chex.assert_max_traces(opt.ask, n=1)), jax.jit(opt.tell)
    state, late, promotions = opt.init(jax.random.key(0)), [], 0
    for step in range(100):
        before = jax.device_get(state)
        state, proposals = ask(state, jax.random.key(step))
        got = jax.device_get(proposals)
        expected = _reference_promotions(before.trials, before.promoted, 3, 6)
        n = len(expected)
        promotions += n
        np.testing.assert_array_equal(got.parent_ids[:n], expected)
        assert np.all(got.parent_ids[n:] == -1)
        after = jax.device_get(state.trials)
        ids = got.trial_ids[:n]
        np.testing.assert_array_equal(after.brackets[ids], before.trials.brackets[expected])
        np.testing.assert_array_equal(after.rungs[ids], before.trials.rungs[expected] + 1)
        losses = (np.asarray(got.configs["x"]) - 0.6) ** 2 + 1.0 / np.asarray(got.fidelities)
        losses[got.trial_ids % 13 == 0] = np.nan
        now = got.trial_ids % 5 != 0
        state = tell(state, np.where(now, got.trial_ids, -1), losses)
        for trial_ids, values in late[:-1]:
            state = tell(state, trial_ids, values)
        late = late[-1:] + [(np.where(now, -1, got.trial_ids), losses)]
    assert promotions > 100


def test_async_priorband_samples_as_priorband_does():
    """Before any result reached the top rung: at the lowest rung, half uniform and half
    prior samples (PriorBand's 1 / (1 + eta**0)); once the top rung has results and a full
    bracket's fidelity is spent, samples around the incumbent, which sit near it."""
    spec = space("mixed27")
    opt = optimizers.async_priorband(spec, batch_size=40, max_trials=4096)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for step in range(30):  # no results: nothing promoted, no incumbent
        state, _ = ask(state, jax.random.key(step))
    trials = jax.device_get(state.trials)
    n = int(trials.count)
    base = trials.rungs[:n] == 0
    sources = trials.sources[:n][base]
    assert set(sources.tolist()) <= {Source.UNIFORM, Source.PRIOR}
    share = np.mean(sources == Source.UNIFORM)
    assert abs(share - 0.5) <= 5 * np.sqrt(0.25 / len(sources))
    # Results for everything, the best near x = 0.9 (the prior says 0.3).
    state = opt.init(jax.random.key(1))
    for step in range(60):
        state, proposals = ask(state, jax.random.key(100 + step))
        losses = (proposals.configs["x"] - 0.9) ** 2 + 0.01 / proposals.fidelities
        state = tell(state, proposals.trial_ids, losses)
    trials = jax.device_get(state.trials)
    n = int(trials.count)
    incumbent = trials.sources[:n] == Source.INCUMBENT
    assert incumbent.sum() >= 50
    prior = trials.sources[:n] == Source.PRIOR
    x = trials.configs["x"][:n]
    # Around the incumbent (x near 0.9), not around the prior's 0.3.
    assert np.median(np.abs(x[incumbent] - 0.9)) < np.median(np.abs(x[prior] - 0.9))


def test_bad_arguments_name_the_optimiser():
    with pytest.raises(ValueError, match=r"async_hyperband: eta=1 must be an integer >= 2"):
        optimizers.async_hyperband(space("plain27"), eta=1)
    with pytest.raises(ValueError, match=r"async_priorband: mutation_rate=2 must lie in"):
        optimizers.async_priorband(space("plain27"), mutation_rate=2)
    with pytest.raises(ValueError, match=r"async_hyperband: the space has no fidelity"):
        optimizers.async_hyperband(space("no_fidelity"))


def test_a_run_with_two_workers_worth_of_asks(tmp_path):
    """Through `jn.run`, a plain callable: promotions continue configurations of their
    bracket at the next rung."""
    def objective(x, epochs):
        return (x - 0.7) ** 2 + 1.0 / epochs

    space_ = {"x": jn.Float(0.0, 1.0, prior=0.5), "epochs": jn.IntegerFidelity(1, 9)}
    result = jn.run(objective, space_, optimizer="async_priorband", root_directory=tmp_path,
                    max_evaluations=30, progress=False, optimizer_kwargs={"batch_size": 2})
    stored = {t["trial_id"]: t for t in result.trials}
    promoted = [t for t in stored.values() if t["parent_id"] >= 0]
    assert len(stored) == 30 and promoted
    for trial in promoted:
        parent = stored[trial["parent_id"]]
        assert trial["fidelity"] == 3 * parent["fidelity"]
        assert trial["config"] == parent["config"]
