"""`jn.run`'s budgets: the wall-clock budget, and which budget a run reports when several are set.

The evaluate functions sleep a known time per trial, so the wall-clock test needs no
assumption about how fast this machine is: its budget is measured from a first run.
"""

import time

import pytest

import jaxnas as jn

SECONDS_PER_TRIAL = 0.1
BATCH = 2
SPACE = {"x": jn.Float(0.0, 1.0)}
OPTIMIZER = dict(optimizer="random_search", optimizer_kwargs={"batch_size": BATCH})


def sleepy(x, epochs=None):
    del epochs  # the fidelity, when the space has one
    time.sleep(SECONDS_PER_TRIAL)
    return (x - 0.3) ** 2


def test_max_seconds_stops_the_run_between_batches(tmp_path):
    # A first run of one batch measures the start-up (compiling the optimiser) plus one
    # batch on this machine, now; the second run's budget leaves room for a few batches.
    started = time.monotonic()
    jn.run(sleepy, SPACE, root_directory=tmp_path / "warm", max_evaluations=BATCH, **OPTIMIZER)
    max_seconds = (time.monotonic() - started) + 5 * BATCH * SECONDS_PER_TRIAL
    # An evaluation budget that would take four times as long:
    max_evaluations = int(4 * max_seconds / SECONDS_PER_TRIAL)

    started = time.monotonic()
    result = jn.run(sleepy, SPACE, root_directory=tmp_path / "timed", max_seconds=max_seconds,
                    max_evaluations=max_evaluations, **OPTIMIZER)
    elapsed = time.monotonic() - started

    assert result.stopped_by == "max_seconds"
    finished = [t for t in result.trials if t["status"] == "success"]
    assert len(finished) >= BATCH  # at least one batch ran
    assert len(result.trials) < max_evaluations / 2  # stopped well before the other budget
    assert elapsed >= max_seconds  # not before the time was up
    # Checked between batches: no batch was asked for after the time was up. (The run's
    # clock starts before its first batch is asked for, and after `started`.)
    created = [t["created"] for t in result.trials]
    assert max(created) < min(created) + max_seconds


def costly(x, epochs):
    del epochs
    return {"loss": (x - 0.3) ** 2, "cost": 1.5}


@pytest.mark.parametrize("evaluate, budgets, reached", [
    (sleepy, dict(max_evaluations=4, max_seconds=600.0), "max_evaluations"),
    # A trial's cost is 1.5 (reported) and its fidelity 3 (the maximum, random search).
    (costly, dict(max_cost=3.0, max_evaluations=100), "max_cost"),
    (costly, dict(max_fidelity_spent=6.0, max_cost=1e9), "max_fidelity_spent"),
])
def test_the_first_budget_reached_ends_the_run(tmp_path, evaluate, budgets, reached):
    result = jn.run(evaluate, {**SPACE, "epochs": jn.IntegerFidelity(1, 3)},
                    root_directory=tmp_path, **budgets, **OPTIMIZER)
    assert result.stopped_by == reached
    assert all(t["status"] == "success" for t in result.trials)
    # One batch of two trials reaches each budget; it is the last.
    spent = {"max_evaluations": len(result.trials),
             "max_cost": sum(t["cost"] for t in result.trials),
             "max_fidelity_spent": sum(t["fidelity"] for t in result.trials)}
    assert spent[reached] == pytest.approx(budgets[reached])
