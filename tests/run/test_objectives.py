"""`jn.run(objectives=...)`: maximisation, several objectives with nsga2, bounds on outcomes,
what is stored and read back, and the errors for bad objectives."""

import csv
import json
import math
import sqlite3

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn

TWO = {"error": "minimize", "size": "minimize"}


def space():
    return {"x": jn.Float(0.0, 1.0), "y": jn.Float(0.0, 1.0),
            "act": jn.Categorical(("relu", "tanh"))}


def two_objectives(config, fidelity, key):
    """A pure function with a known trade-off (ZDT1's front: error = 1 - sqrt(size) at
    y = 0), a latency metric and a note."""
    del fidelity, key
    size = config["x"]
    g = 1.0 + config["y"]
    return {"error": g * (1.0 - jnp.sqrt(size / g)), "size": size,
            "latency": 10.0 * config["y"], "note": size * 2.0}


def _points(trials, names=("error", "size")):
    return np.asarray([[t["objectives"][n] for n in names] for t in trials])


def _brute_front(trials, names=("error", "size")):
    """Ids of the successful, feasible trials no other such trial dominates."""
    done = [t for t in trials if t["status"] == "success" and t["feasible"] is not False]
    points = _points(done, names)
    return {t["trial_id"] for t, p in zip(done, points)
            if not any(np.all(q <= p) and np.any(q < p) for q in points)}


def test_maximise_one_objective(tmp_path):
    def accuracy(**config):
        return {"accuracy": 1.0 - (config["x"] - 0.3) ** 2, "seconds_per_epoch": 1.5}

    result = jn.run(accuracy, space(), root_directory=tmp_path, max_evaluations=32,
                    optimizer="random_search", objectives={"accuracy": "maximize"},
                    progress=False)
    accuracies = [t["objectives"]["accuracy"] for t in result.trials]
    best = result.incumbent
    assert best.objectives["accuracy"] == max(accuracies)
    assert best.loss == -max(accuracies)  # what the optimiser minimised
    assert best.metrics == {"seconds_per_epoch": 1.5}
    assert all(t["loss"] == -t["objectives"]["accuracy"] for t in result.trials)
    assert result.objectives == {"accuracy": "maximize"}
    assert "accuracy 0.9" in result.summary()


def test_maximise_with_a_model_based_optimiser_finds_the_maximum(tmp_path):
    """TPE told -accuracy ends near the maximum, not the minimum (at x = 0.3, 1.0)."""
    def accuracy(config, fidelity, key):
        del fidelity, key
        return {"accuracy": 1.0 - (config["x"] - 0.3) ** 2}

    result = jn.run(accuracy, {"x": jn.Float(0.0, 1.0)}, root_directory=tmp_path,
                    max_evaluations=40, optimizer="tpe", objectives={"accuracy": "maximize"},
                    progress=False)
    assert abs(result.incumbent.values["x"] - 0.3) < 0.1


def test_several_objectives_with_nsga2_and_the_pareto_front(tmp_path):
    result = jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=120,
                    objectives=TWO, optimizer_kwargs={"population_size": 20},
                    progress=False)
    assert result.incumbent is None  # several objectives: see the front
    front = result.pareto_front
    assert {t["trial_id"] for t in front} == _brute_front(result.trials)
    assert all(t["loss"] != t["loss"] for t in result.trials)  # NaN: no single loss
    stored = jn.load_results(tmp_path)
    assert [t["objectives"] for t in stored] == [t["objectives"] for t in result.trials]
    assert set(stored[0]["objectives"]) == {"error", "size"}
    assert stored[0]["extra"]["latency"] == pytest.approx(
        10.0 * stored[0]["config"]["y"], rel=1e-5)  # not an objective: another metric
    summary = result.summary()
    assert "optimizer nsga2" in summary and f"Pareto front at the highest fidelity: " \
        f"{len(front)} trials (error minimize, size minimize)" in summary


def test_nsga2_improves_the_front_over_its_first_generation(tmp_path):
    result = jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=200,
                    objectives=TWO, optimizer="nsga2",
                    optimizer_kwargs={"population_size": 20}, progress=False)
    points = _points(result.trials)
    first = jn.metrics.hypervolume(points[:20], [1.1, 2.1])
    last = jn.metrics.hypervolume(points, [1.1, 2.1])
    assert last > first * 1.05


def test_a_vector_from_a_pure_function_names_objectives_in_order(tmp_path):
    def vector(config, fidelity, key):
        del fidelity, key
        return jnp.stack([config["x"], 1.0 - config["x"]])

    result = jn.run(vector, space(), root_directory=tmp_path, max_evaluations=20,
                    objectives={"a": "minimize", "b": "maximize"}, optimizer="random_search",
                    optimizer_kwargs={"batch_size": 10}, progress=False)
    for t in result.trials:
        assert t["objectives"]["a"] == pytest.approx(t["config"]["x"])
        assert t["objectives"]["b"] == pytest.approx(1.0 - t["config"]["x"])
    # a minimised and b = 1 - a maximised agree: the front is the one smallest x.
    smallest = min(result.trials, key=lambda t: t["config"]["x"])
    assert [t["trial_id"] for t in result.pareto_front] == [smallest["trial_id"]]


def test_a_missing_objective_fails_the_trial_and_names_it(tmp_path):
    def sometimes(**config):
        if config["x"] < 0.5:
            return {"error": config["x"]}  # no "size"
        return {"error": config["x"], "size": config["y"]}

    result = jn.run(sometimes, space(), root_directory=tmp_path, max_evaluations=20,
                    objectives=TWO, optimizer="random_search", progress=False)
    failed = [t for t in result.trials if t["status"] == "failed"]
    assert failed and all(t["config"]["x"] < 0.5 for t in failed)
    assert all("returned no 'size'" in t["error"] for t in failed)
    assert all(t["status"] == "success" for t in result.trials if t["config"]["x"] >= 0.5)


def test_a_bound_on_an_outcome_makes_trials_infeasible(tmp_path):
    objectives = {**TWO, "latency": ("<=", 5.0)}
    result = jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=160,
                    objectives=objectives, optimizer_kwargs={"population_size": 20},
                    progress=False)
    for t in result.trials:
        assert t["status"] == "success"
        assert t["feasible"] == (t["objectives"]["latency"] <= 5.0)
    front = result.pareto_front
    assert front and all(t["feasible"] for t in front)
    assert {t["trial_id"] for t in front} == _brute_front(result.trials)
    # Constrained domination: after the uniform first generation, the children are mostly
    # feasible (a uniform sample is half infeasible).
    later = [t["feasible"] for t in result.trials[60:]]
    assert np.mean(later) > 0.8


def test_a_bound_with_one_objective_keeps_the_incumbent_feasible(tmp_path):
    def objective(config, fidelity, key):
        del fidelity, key
        return {"loss": config["x"], "memory": 1.0 - config["x"]}

    result = jn.run(objective, space(), root_directory=tmp_path, max_evaluations=40,
                    optimizer="random_search", objectives={"loss": "minimize",
                                                           "memory": ("<=", 0.6)},
                    progress=False)
    feasible = [t for t in result.trials if t["feasible"]]
    assert result.incumbent.loss == min(t["loss"] for t in feasible)
    assert result.incumbent.loss >= 0.4 - 1e-6
    assert any(not t["feasible"] and t["loss"] < result.incumbent.loss for t in result.trials)


def test_objectives_are_read_back_as_csv_and_frames(tmp_path):
    jn.run(two_objectives, space(), root_directory=tmp_path / "run", max_evaluations=20,
           objectives={**TWO, "latency": ("<=", 5.0)}, optimizer="random_search",
           progress=False)
    trials = jn.load_results(tmp_path / "run")
    path = jn.export_csv(tmp_path / "run", tmp_path / "table.csv")
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    for row, trial in zip(rows, trials):
        for name in ("error", "size", "latency"):
            assert float(row[f"objective.{name}"]) == trial["objectives"][name]
        assert row["feasible"] == str(trial["feasible"])
    frame = jn.load_results(tmp_path / "run", as_frame=True)
    assert list(frame["objective.size"]) == [t["objectives"]["size"] for t in trials]


@pytest.mark.parametrize("optimizer, options, first", [
    ("nsga2", {"population_size": 10, "max_trials": 128}, 30),
    ("hyperband", {"max_trials": 128}, 12),  # after whole asks: 9 at rung 0, 3 promoted
])
def test_a_resumed_run_equals_one_that_ran_through(tmp_path, optimizer, options, first):
    kwargs = dict(objectives=TWO, optimizer=optimizer, optimizer_kwargs=options, seed=3,
                  progress=False)
    fidelity_space = {**space(), "epochs": jn.IntegerFidelity(1, 9)}
    whole = jn.run(two_objectives, fidelity_space, root_directory=tmp_path / "whole",
                   max_evaluations=60, **kwargs)
    jn.run(two_objectives, fidelity_space, root_directory=tmp_path / "parts",
           max_evaluations=first, checkpoint_every=1, **kwargs)
    parts = jn.run(two_objectives, fidelity_space, root_directory=tmp_path / "parts",
                   max_evaluations=60, **kwargs)
    keys = ("trial_id", "config", "objectives", "status")
    assert [[t[k] for k in keys] for t in parts.trials] == \
        [[t[k] for k in keys] for t in whole.trials]


def test_a_run_from_before_objectives_reads_back_and_continues(tmp_path):
    """A version-1 database (no objectives or feasible columns) is read (objectives {},
    feasible None) and continued (the columns are added)."""
    kwargs = dict(optimizer="random_search", progress=False,
                  optimizer_kwargs={"batch_size": 5, "max_trials": 64})
    quadratic = lambda config, fidelity, key: (config["x"] - 0.3) ** 2  # noqa: E731
    jn.run(quadratic, space(), root_directory=tmp_path, max_evaluations=10, **kwargs)
    with sqlite3.connect(tmp_path / "trials.sqlite") as db:
        db.execute("ALTER TABLE trials DROP COLUMN objectives")
        db.execute("ALTER TABLE trials DROP COLUMN feasible")
        db.execute("PRAGMA user_version=1")
        meta = json.loads(db.execute("SELECT value FROM meta WHERE key = 'run'").fetchone()[0])
        del meta["objectives"]  # a run described before objectives existed
        db.execute("UPDATE meta SET value = ? WHERE key = 'run'", (json.dumps(meta),))
    old = jn.load_results(tmp_path)
    assert len(old) == 10 and all(t["objectives"] == {} and t["feasible"] is None
                                  for t in old)
    result = jn.run(quadratic, space(), root_directory=tmp_path, max_evaluations=20,
                    **kwargs)
    assert len(result.trials) == 20 and result.incumbent is not None
    assert all(t["objectives"] == {"loss": t["loss"]} for t in result.trials[10:])


def test_auto_picks_nsga2_for_several_objectives(tmp_path):
    result = jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=10,
                    objectives=TWO, optimizer_kwargs={"population_size": 10},
                    progress=False)
    assert "optimizer nsga2" in result.summary()


@pytest.mark.parametrize("objectives, error, match", [
    ({"loss": "minimise"}, ValueError, r"objectives\['loss'\]='minimise' is not a "
                                       r"direction; use 'minimize' or 'maximize'"),
    ([("loss", "minimize"), ("loss", "maximize")], ValueError,
     r"objectives names 'loss' twice"),
    ({"loss": "minimize", "latency": ("<", 5.0)}, ValueError,
     r"objectives\['latency'\]=\('<', 5\.0\) is neither a direction"),
    ({"loss": "minimize", "latency": ("<=", math.inf)}, ValueError,
     r"objectives\['latency'\]=\('<=', inf\)"),
    ({"latency": ("<=", 5.0)}, ValueError, r"has no objective to optimise, only bounds"),
    ({"cost": "minimize"}, ValueError, r"objectives names 'cost', which the run reads"),
    ("loss", TypeError, r"objectives='loss' must map each objective's name"),
    ({"": "minimize"}, TypeError, r"objectives has the name ''"),
])
def test_bad_objectives_are_refused_naming_them(tmp_path, objectives, error, match):
    with pytest.raises(error, match=match):
        jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=5,
               objectives=objectives, progress=False)
    assert not (tmp_path / "trials.sqlite").exists()


@pytest.mark.parametrize("optimizer", ["regularized_evolution", "complex_random_search"])
def test_a_single_objective_optimiser_refuses_several(tmp_path, optimizer):
    with pytest.raises(ValueError, match=rf"optimizer='{optimizer}' optimises one objective, "
                                         r"but objectives names 2 \(error, size\)\. Use one "
                                         r"that takes several: nsga2, successive_halving, "):
        jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=5,
               objectives=TWO, optimizer=optimizer, progress=False)


# (The modes themselves, ParEGO and fronts: tests/optimizers/test_multi_objective.py.)
@pytest.mark.parametrize("optimizer, mode", [("priorband", None), ("hyperband", "parego")])
def test_single_objective_optimisers_take_several_through_a_mode(tmp_path, optimizer, mode):
    """Multi-fidelity optimisers promote by fronts (or a random scalarisation), BO is
    ParEGO, TPE splits by fronts: each runs a two-objective search to its budget and
    its front is the brute-force one."""
    def objective(config, fidelity, key):
        out = two_objectives(config, fidelity, key)
        return {**out, "error": out["error"] + 1.0 / fidelity}

    fidelity_space = {**space(), "epochs": jn.IntegerFidelity(1, 9)}
    kwargs = {} if mode is None else {"multi_objective": mode}
    result = jn.run(objective, fidelity_space, root_directory=tmp_path, max_evaluations=40,
                    objectives=TWO, optimizer=optimizer, optimizer_kwargs=kwargs,
                    progress=False)
    assert len(result.trials) == 40 and all(t["status"] == "success" for t in result.trials)
    top = max(t["fidelity"] for t in result.trials)
    at_top = [t for t in result.trials if t["fidelity"] == top]
    assert {t["trial_id"] for t in result.pareto_front} == _brute_front(at_top)


def test_n_objectives_must_match(tmp_path):
    with pytest.raises(ValueError, match=r"optimizer_kwargs n_objectives=3, but objectives "
                                         r"names 2"):
        jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=5,
               objectives=TWO, optimizer="nsga2", optimizer_kwargs={"n_objectives": 3},
               progress=False)


def test_other_objectives_are_another_run(tmp_path):
    jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=10,
           objectives=TWO, optimizer="random_search", progress=False)
    with pytest.raises(ValueError, match=r"objectives was \{'error': 'minimize', 'size': "
                                         r"'minimize'\}, now"):
        jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=10,
               objectives={"error": "minimize", "size": "maximize"},
               optimizer="random_search", progress=False)


@pytest.mark.parametrize("objectives, match", [
    ({**TWO, "memory": ("<=", 5.0)}, r"objectives name 'memory', which the evaluation never "
                                     r"returns \(it returns error, latency, note, size\)"),
    ({"accuracy": "maximize"}, r"objectives name 'accuracy', which the evaluation never"),
])
def test_an_objective_the_evaluation_never_returns_is_refused(tmp_path, objectives, match):
    with pytest.raises(ValueError, match=match):
        jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=5,
               objectives=objectives, optimizer="random_search", progress=False)
    assert not (tmp_path / "trials.sqlite").exists()


def test_a_vector_of_the_wrong_length_is_refused(tmp_path):
    def three(config, fidelity, key):
        del fidelity, key
        return jnp.stack([config["x"], config["y"], config["x"]])

    with pytest.raises(ValueError, match=r"objectives name 2 \(error, size\), but the "
                                         r"evaluation returns 3 value\(s\)"):
        jn.run(three, space(), root_directory=tmp_path, max_evaluations=5, objectives=TWO,
               optimizer="random_search", progress=False)


def test_a_supervised_task_checks_its_objectives(tmp_path):
    x = np.zeros((8, 3), np.float32)
    y = np.zeros((8,), np.int32)
    task = jn.SupervisedTask((x, y), (x, y), batch_size=4)
    model_space = {"model": jn.Operation(nn.Dense, args=(jn.Integer(2, 4),))}
    with pytest.raises(ValueError, match=r"objectives name 'latency', which the evaluation"):
        jn.run(task, model_space, root_directory=tmp_path, max_evaluations=2,
               objectives={"loss": "minimize", "latency": "minimize"}, progress=False)
    # params is measured by the run itself: allowed.
    jn.run(task, model_space, root_directory=tmp_path / "ok", max_evaluations=2,
           objectives={"loss": "minimize", "params": "minimize"}, progress=False,
           optimizer="random_search", optimizer_kwargs={"batch_size": 2})


def test_a_budget_below_the_population_size_runs(tmp_path):
    """max_evaluations 10 with a population of 20: the state gets room for the first
    generation (the budget then cuts it at 10)."""
    result = jn.run(two_objectives, space(), root_directory=tmp_path, max_evaluations=10,
                    objectives=TWO, optimizer_kwargs={"population_size": 20}, progress=False)
    assert len(result.trials) == 10
