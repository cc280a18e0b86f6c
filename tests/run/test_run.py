"""`jn.run` end to end with the three evaluate forms, budgets, failures and the trial table."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import run
from jaxnas import load_results


def space():
    return {"x": jn.Float(-2.0, 2.0, prior=0.5), "y": jn.Float(-2.0, 2.0, prior=-0.5),
            "epochs": jn.IntegerFidelity(1, 27)}


def quadratic(config, fidelity, key):
    """A pure, vmappable objective whose noise shrinks with the fidelity."""
    del key
    clean = (config["x"] - 0.5) ** 2 + (config["y"] + 0.5) ** 2
    return clean + 1.0 / fidelity


def test_pure_function_with_priorband(tmp_path):
    result = run(quadratic, space(), root_directory=tmp_path, max_evaluations=60, seed=1)
    assert result.stopped_by == "max_evaluations" and len(result.trials) == 60
    stored = load_results(tmp_path)
    assert [t["trial_id"] for t in stored] == [t["trial_id"] for t in result.trials]
    best = result.incumbent
    assert best.fidelity == 27.0
    top = [t["loss"] for t in stored if t["fidelity"] == 27.0]
    assert best.loss == min(top)
    assert best.config["x"] == pytest.approx(best.values["x"])
    # Promotions name their parent, which was evaluated at a lower fidelity.
    by_id = {t["trial_id"]: t for t in stored}
    promoted = [t for t in stored if t["parent_id"] >= 0]
    assert promoted and all(by_id[t["parent_id"]]["fidelity"] < t["fidelity"]
                            for t in promoted)


def test_same_seed_same_run(tmp_path):
    a = run(quadratic, space(), root_directory=tmp_path / "a", max_evaluations=30, seed=3)
    b = run(quadratic, space(), root_directory=tmp_path / "b", max_evaluations=30, seed=3)
    assert [(t["config"], t["loss"]) for t in a.trials] == \
        [(t["config"], t["loss"]) for t in b.trials]


def test_fidelity_budget_counts_only_what_a_continuation_adds(tmp_path):
    result = run(quadratic, space(), root_directory=tmp_path, max_fidelity_spent=200,
                 optimizer="hyperband")
    assert result.stopped_by == "max_fidelity_spent"
    fidelity = {t["trial_id"]: t["fidelity"] for t in result.trials}
    spent = sum(t["fidelity"] - fidelity.get(t["parent_id"], 0.0) for t in result.trials)
    assert 200 <= spent < 200 + 27 * 81  # the last batch may overshoot


def test_plain_callable_failures_are_recorded_and_the_run_goes_on(tmp_path):
    calls = []

    def objective(x, y, epochs):
        calls.append(epochs)
        if x > 1.0:
            raise RuntimeError("diverged")
        if x < -1.0:
            return {"loss": float("nan")}
        return {"loss": (x - 0.5) ** 2 + y ** 2, "cost": 2.0, "accuracy": 0.5}

    result = run(objective, space(), root_directory=tmp_path, optimizer="random_search",
                 max_evaluations=40, seed=0)
    stored = load_results(tmp_path)
    assert len(stored) == 40 == len(calls)
    failed = [t for t in stored if t["status"] == "failed"]
    assert failed and all(math.isnan(t["loss"]) for t in failed)
    assert any("RuntimeError: diverged" in (t["error"] or "") for t in failed)
    assert any(t["error"] == "non-finite loss" for t in failed)
    ok = [t for t in stored if t["status"] == "success"]
    assert all(t["cost"] == 2.0 and t["extra"] == {"accuracy": 0.5} for t in ok)
    assert result.incumbent.loss == min(t["loss"] for t in ok)


def test_cost_budget(tmp_path):
    def objective(config, fidelity, key):
        del key
        return {"loss": config["x"] ** 2, "cost": jnp.asarray(fidelity) / 27.0}

    result = run(objective, space(), root_directory=tmp_path, max_cost=5.0)
    assert result.stopped_by == "max_cost"
    assert sum(t["cost"] for t in result.trials) >= 5.0


def test_bad_runs_are_refused_at_the_start(tmp_path):
    with pytest.raises(ValueError, match="needs a budget"):
        run(quadratic, space(), root_directory=tmp_path)
    with pytest.raises(ValueError, match="max_seconds=-1"):
        run(quadratic, space(), root_directory=tmp_path, max_seconds=-1)
    with pytest.raises(ValueError, match="unknown optimizer 'bohb'"):
        run(quadratic, space(), root_directory=tmp_path, max_evaluations=5, optimizer="bohb")
    run(quadratic, space(), root_directory=tmp_path, max_evaluations=3)
    # The same run again continues it: its budget is spent, so nothing more runs.
    again = run(quadratic, space(), root_directory=tmp_path, max_evaluations=3)
    assert again.stopped_by == "max_evaluations" and len(again.trials) == 3


def test_supervised_task_reports_curves_that_extend_the_parents(tmp_path):
    # The stored curves and epochs agree with each trial's fidelity, and a promoted trial's
    # curve starts with its parent's. (That it continues rather than retrains with the same
    # keys is shown by the next test, which counts the calls to train.)
    import flax.linen as nn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = jn.Operation(jn.nn.Sequential, args=([
        jn.Operation(nn.Dense, args=(jn.Integer(2, 8),)), jn.Operation(nn.relu),
        jn.Operation(nn.Dense, args=(2,))],))
    task_space = {"model": model, "learning_rate": jn.Float(1e-3, 1e-1, log=True),
                  "epochs": jn.IntegerFidelity(1, 9)}
    task = jn.SupervisedTask((x[:64], y[:64]), (x[64:], y[64:]), batch_size=32)
    result = run(task, task_space, root_directory=tmp_path, optimizer="successive_halving",
                 max_evaluations=13)
    by_id = {t["trial_id"]: t for t in result.trials}
    assert sorted(t["fidelity"] for t in result.trials) == [1.0] * 9 + [3.0] * 3 + [9.0]
    for trial in result.trials:
        curve = trial["extra"]["val_curve"]
        assert trial["extra"]["epochs"] == trial["fidelity"]
        assert trial["loss"] == pytest.approx(curve[int(trial["fidelity"]) - 1])
        if trial["parent_id"] >= 0:  # the first epochs are the parent's, not retrained
            parent = by_id[trial["parent_id"]]
            n = int(parent["fidelity"])
            assert curve[:n] == parent["extra"]["val_curve"][:n]


def test_a_model_that_cannot_be_built_fails_its_trials_and_the_run_goes_on(tmp_path):
    import flax.linen as nn

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)

    def hidden_layer(width):
        if width > 4:
            raise ValueError(f"no layer of width {width} on this device")
        return nn.Dense(width)

    hidden = jn.Dynamic(hidden_layer, width=jn.Categorical((4, 8)))
    space = {"model": jn.Operation(jn.nn.Sequential, args=([hidden, jn.Operation(nn.Dense,
                                                                                 args=(2,))],)),
             "learning_rate": jn.Float(1e-3, 1e-1, log=True), "epochs": jn.IntegerFidelity(1, 2)}
    task = jn.SupervisedTask((x[:48], y[:48]), (x[48:], y[48:]), batch_size=16)
    result = run(task, space, root_directory=tmp_path, optimizer="random_search",
                 max_evaluations=8)
    by_choice = {0: set(), 1: set()}
    for trial in result.trials:
        by_choice[trial["config"]["model.args[0][0].width"]].add(trial["status"])
    assert by_choice[0] == {"success"} and by_choice[1] == {"failed"}
    assert all("width 8" in t["error"] for t in result.trials if t["status"] == "failed")


def test_a_promoted_trial_trains_on_from_its_parent_not_from_scratch(tmp_path):
    # The state counts the calls to train and the fidelity trained: a promotion continues
    # its parent's state, so it has one call more and trains only the difference.
    def init(key, config):
        del key, config
        return {"calls": jnp.zeros((), jnp.int32), "trained": jnp.zeros(()),
                "at": jnp.zeros(())}

    def train(state, config, fidelity):
        del config
        return {"calls": state["calls"] + 1,
                "trained": state["trained"] + (fidelity - state["at"]), "at": fidelity}

    def evaluate(state, config):
        return {"loss": config["x"] ** 2 + 1.0 / state["at"], "calls": state["calls"],
                "trained": state["trained"]}

    result = run(jn.Task(init, train, evaluate), space(), root_directory=tmp_path,
                 optimizer="successive_halving", max_evaluations=40)  # 27 + 9 + 3 + 1
    rung = {1.0: 1, 3.0: 2, 9.0: 3, 27.0: 4}
    assert any(t["parent_id"] >= 0 for t in result.trials)
    for trial in result.trials:
        assert trial["extra"]["calls"] == rung[trial["fidelity"]]
        assert trial["extra"]["trained"] == trial["fidelity"]


def test_a_neps_style_callable_continues_from_its_parent_s_folder(tmp_path):
    """A plain callable that names NePS's folder arguments saves a checkpoint in its
    trial's folder; a promotion gets its parent's folder and trains only the epochs it
    adds (the checkpoint says how far the parent got)."""
    import json

    seen = {}

    def train(x, epochs, pipeline_directory, previous_pipeline_directory=None):
        done, weight = 0, 0.0
        if previous_pipeline_directory is not None:
            saved = json.loads((previous_pipeline_directory / "checkpoint.json").read_text())
            done, weight = saved["epochs"], saved["weight"]
        for _ in range(done, epochs):  # one "epoch" of training each
            weight += x
        (pipeline_directory / "checkpoint.json").write_text(
            json.dumps({"epochs": epochs, "weight": weight}))
        seen[pipeline_directory.name] = (previous_pipeline_directory, done, epochs)
        return (weight / epochs - 0.3) ** 2

    space = {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 9)}
    run(train, space, root_directory=tmp_path, optimizer="hyperband", max_fidelity_spent=60,
        seed=0)
    trials = {t["trial_id"]: t for t in load_results(tmp_path)}
    promoted = [t for t in trials.values() if t["parent_id"] >= 0]
    assert promoted and len(seen) == len(trials)
    for t in trials.values():
        previous, done, epochs = seen[f"trial_{t['trial_id']}"]
        assert epochs == t["fidelity"]
        if t["parent_id"] < 0:
            assert previous is None and done == 0
        else:  # continued: the parent's folder, from the parent's fidelity
            assert previous == tmp_path / "trial_folders" / f"trial_{t['parent_id']}"
            assert done == trials[t["parent_id"]]["fidelity"] < epochs
        # The same weight as training from scratch to the trial's epochs.
        assert t["loss"] == pytest.approx((t["config"]["x"] - 0.3) ** 2, rel=1e-5, abs=1e-9)


def test_a_space_entry_named_like_a_folder_argument_is_refused(tmp_path):
    def train(pipeline_directory, **config):
        return 0.0

    with pytest.raises(ValueError, match="entry named 'pipeline_directory'"):
        run(train, {"pipeline_directory": jn.Float(0.0, 1.0)}, root_directory=tmp_path,
            max_evaluations=2)
    assert not (tmp_path / "trials.sqlite").exists()


def test_the_progress_bar_shows_budget_trials_failures_and_the_best(tmp_path, capsys):
    """`progress=True`: rich's bar on stderr; off a terminal its last state is printed."""
    def objective(x, epochs):
        if x > 0.9:
            raise RuntimeError("diverged")
        return (x - 0.3) ** 2 + 1.0 / epochs

    run(objective, {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 9)},
        root_directory=tmp_path, optimizer="hyperband", max_fidelity_spent=100, seed=0,
        progress=True)
    err = capsys.readouterr().err
    trials = load_results(tmp_path)
    failed = sum(t["status"] == "failed" for t in trials)
    best = min((t for t in trials if t["status"] == "success"), key=lambda t: t["loss"])
    assert "100% of the budget" in err and "ETA" in err
    assert f"{len(trials)} trials ({failed} failed)" in err
    assert f"best loss (any fidelity) {best['loss']:.6g} at fidelity {best['fidelity']:g}" in err
    run(objective, {"x": jn.Float(0.0, 1.0)}, root_directory=tmp_path / "quiet",
        optimizer="random_search", max_evaluations=3, progress=False)
    assert "of the budget" not in capsys.readouterr().err


def test_a_budget_smaller_than_a_model_s_batch_runs(tmp_path):
    """Bayesian optimisation ("auto" without a fidelity) with fewer evaluations than its
    batch: its model holds fewer rows than it seeds local candidates from."""
    result = run(lambda x: (x - 0.3) ** 2, {"x": jn.Float(0.0, 1.0)}, root_directory=tmp_path,
                 max_evaluations=2, progress=False)
    assert len(result.trials) == 2 and result.incumbent is not None
