"""`jn.run(constraints=...)`: predicates on the config and constraints on the built model,
checked before training; infeasible trials are recorded, never trained, never counted."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxnas as jn


def space():
    return {"x": jn.Float(0.0, 1.0), "n": jn.Integer(1, 8)}


def below_half(config):
    return config["x"] < 0.5


def test_the_optimisers_sample_only_feasible_configurations(tmp_path):
    """A named optimiser draws within the constraints (rejection inside sampling and
    mutation): PriorBand's uniform, prior and incumbent draws all satisfy it."""
    def objective(config, fidelity, key):
        del key
        return (config["x"] - 0.4) ** 2 + 1.0 / fidelity

    prior_space = {"x": jn.Float(0.0, 1.0, prior=0.6), "n": jn.Integer(1, 8),
                   "epochs": jn.IntegerFidelity(1, 9)}
    result = jn.run(objective, prior_space, root_directory=tmp_path, max_evaluations=80,
                    optimizer="priorband", constraints=[below_half], progress=False)
    assert len(result.trials) == 80
    assert all(t["status"] == "success" and t["config"]["x"] < 0.5 for t in result.trials)


def test_a_predicate_refuses_configurations_before_they_are_evaluated(tmp_path):
    """An optimiser built by the user on the unconstrained space proposes anything: the
    run refuses what breaks the constraint before evaluating it."""
    seen = []

    def objective(**config):
        seen.append(config["x"])
        return (config["x"] - 0.4) ** 2

    optimizer = jn.optimizers.random_search(jn.compile(space()), batch_size=10,
                                            max_trials=128)
    result = jn.run(objective, space(), root_directory=tmp_path, max_evaluations=20,
                    optimizer=optimizer, constraints=[below_half], progress=False)
    infeasible = [t for t in result.trials if t["status"] == "infeasible"]
    trained = [t for t in result.trials if t["status"] == "success"]
    assert infeasible and len(trained) >= 20  # infeasible trials are not evaluations
    assert all(t["config"]["x"] >= 0.5 for t in infeasible)
    assert all(t["config"]["x"] < 0.5 for t in trained)
    assert len(seen) == len(trained) and max(seen) < 0.5  # never called on infeasible
    assert all(t["error"] == "infeasible: constraint below_half is False" and t["cost"] == 0
               and t["feasible"] is False for t in infeasible)
    assert result.incumbent.values["x"] < 0.5
    assert f"{len(infeasible)} infeasible" in result.summary()


def _tiny_share(config):
    return config["x"] < 0.001


def test_a_constraint_almost_nothing_satisfies_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"almost no configuration satisfies the "
                                         r"constraints: 0\.\d+% of 2048 uniform samples do "
                                         r"\(each alone: _tiny_share"):
        jn.run(lambda **c: c["x"], space(), root_directory=tmp_path, max_evaluations=4,
               constraints=[_tiny_share], progress=False)


def test_a_predicate_with_a_pure_function_and_a_model_based_optimiser(tmp_path):
    """TPE's proposals (decoded from its density, not drawn by `sample`) are made
    feasible before they are asked: no trial is refused."""
    def objective(config, fidelity, key):
        del fidelity, key
        return (config["x"] - 0.45) ** 2

    result = jn.run(objective, space(), root_directory=tmp_path, max_evaluations=60,
                    optimizer="tpe", constraints=[below_half], progress=False)
    assert len(result.trials) == 60
    assert all(t["status"] == "success" and t["config"]["x"] < 0.5 for t in result.trials)
    assert abs(result.incumbent.values["x"] - 0.45) < 0.05


def _mlp_space():
    width = jn.Integer(4, 64, log=True)
    return {"model": jn.Operation(jn.nn.Sequential, args=(
        jn.Operation(nn.Dense, args=(width,)), jn.Operation(nn.relu),
        jn.Operation(nn.Dense, args=(3,)))),
        "learning_rate": jn.Float(1e-3, 1e-1, log=True),
        "epochs": jn.IntegerFidelity(1, 3)}


def _task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)
    return jn.SupervisedTask((x[:64], y[:64]), (x[64:], y[64:]), batch_size=32)


def _params(width: int) -> int:
    return 8 * width + width + width * 3 + 3


def test_max_params_refuses_big_models_and_params_is_an_objective(tmp_path):
    limit = _params(24)
    result = jn.run(_task(), _mlp_space(), root_directory=tmp_path, max_evaluations=24,
                    optimizer="nsga2", optimizer_kwargs={"population_size": 8},
                    objectives={"loss": "minimize", "params": "minimize"},
                    constraints=[jn.constraints.max_params(limit)], progress=False)
    spec = jn.compile(_mlp_space())
    width_path = next(p for p in spec.paths if p.endswith("args[0]"))
    infeasible = [t for t in result.trials if t["status"] == "infeasible"]
    trained = [t for t in result.trials if t["status"] == "success"]
    assert len(trained) == 24 and infeasible
    for t in infeasible:
        assert t["extra"]["params"] == _params(t["config"][width_path]) > limit
        assert t["error"].startswith(f"infeasible: max_params ({t['extra']['params']:g} > ")
    for t in trained:
        assert t["objectives"]["params"] == _params(t["config"][width_path]) <= limit
    front = result.pareto_front
    assert front and all(t["objectives"]["params"] <= limit for t in front)


def test_flops_and_a_function_of_the_summary(tmp_path):
    def ratio(summary):
        return summary["flops"] / summary["params"]

    result = jn.run(_task(), _mlp_space(), root_directory=tmp_path, max_evaluations=8,
                    optimizer="random_search", optimizer_kwargs={"batch_size": 8},
                    constraints=[jn.constraints.max_flops(1e9),
                                 jn.constraints.architecture(ratio, 100.0)], progress=False)
    for t in result.trials:
        assert t["status"] == "success"
        # Measured for the constraints, reported beside the loss.
        assert t["extra"]["flops"] > t["extra"]["params"] > 0


def test_constraints_are_part_of_the_run(tmp_path):
    kwargs = dict(optimizer="random_search", max_evaluations=4, progress=False,
                  optimizer_kwargs={"batch_size": 4})
    jn.run(lambda **c: c["x"], space(), root_directory=tmp_path, constraints=[below_half],
           **kwargs)
    with pytest.raises(ValueError, match=r"constraints was \['predicate below_half'\], now"):
        jn.run(lambda **c: c["x"], space(), root_directory=tmp_path, **kwargs)


def _not_jittable(config):
    return float(config["x"]) < 0.5


def _not_boolean(config):
    return config["x"]


@pytest.mark.parametrize("constraints, error, match", [
    ([_not_jittable], ValueError, r"constraint _not_jittable must be a pure, jittable "
                                  r"function of the config"),
    ([_not_boolean], ValueError, r"constraint _not_boolean must return one boolean"),
    (["x < 0.5"], TypeError, r"constraint 'x < 0.5' is neither a predicate"),
    ([jn.constraints.max_params(10)], ValueError,
     r"constraint 'max_params: params <= 10' is on the built model, but evaluate=.* "
     r"builds none"),
])
def test_bad_constraints_are_refused_naming_them(tmp_path, constraints, error, match):
    with pytest.raises(error, match=match):
        jn.run(lambda **c: c["x"], space(), root_directory=tmp_path, max_evaluations=4,
               constraints=constraints, progress=False)
    assert not (tmp_path / "trials.sqlite").exists()


@pytest.mark.parametrize("make, match", [
    (lambda: jn.constraints.max_params(-1), r"max_params\(-1\): the limit must be"),
    (lambda: jn.constraints.max_flops(float("nan")), r"max_flops\(nan\)"),
    (lambda: jn.constraints.architecture("params", 10), r"measure='params' must be a "
                                                         r"function"),
])
def test_bad_architecture_constraints(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_summary_flops_match_the_compiled_programs():
    """`jn.nn.summary` counts FLOPs on the lowered program, without compiling: the same
    count XLA's compiled cost analysis gives."""
    module = jn.nn.build(jn.Operation(jn.nn.Sequential, args=(
        jn.Operation(nn.Dense, args=(16,)), jn.Operation(nn.relu),
        jn.Operation(nn.Dense, args=(3,)))))
    info = jn.nn.summary(module, (1, 8))
    x = jax.ShapeDtypeStruct((1, 8), np.float32)
    variables = jax.eval_shape(lambda k, x: module.init(k, x, train=False),
                               jax.random.key(0), x)
    compiled = jax.jit(lambda v, x: module.apply(v, x, train=False)).lower(
        variables, x).compile().cost_analysis()
    compiled = compiled[0] if isinstance(compiled, (list, tuple)) else compiled
    assert info["flops"] == compiled["flops"] > 0
    assert info["params"] == _params(16) - 8 * 16 - 16 + 8 * 16 + 16  # the same formula


def test_grid_search_keeps_only_feasible_points(tmp_path):
    result = jn.run(lambda **c: c["x"], {"x": jn.Float(0.0, 1.0), "c": jn.Categorical((1, 2))},
                    root_directory=tmp_path, max_evaluations=50, optimizer="grid_search",
                    optimizer_kwargs={"points_per_float": 5}, constraints=[below_half],
                    progress=False)
    assert result.stopped_by == "the optimiser has nothing more to propose"
    assert sorted((t["config"]["x"], t["config"]["c"]) for t in result.trials) == [
        (x, c) for x in (0.0, 0.25) for c in (0, 1)]


def test_nsga2_children_satisfy_the_predicates(tmp_path):
    """Crossovers are not drawn by `sample`: NSGA-II repairs the ones that break a
    predicate (a feasible local move, else a feasible draw)."""
    def objectives(config, fidelity, key):
        del fidelity, key
        return {"a": config["x"], "b": 1.0 - config["x"] + 0.1 * config["n"]}

    result = jn.run(objectives, space(), root_directory=tmp_path, max_evaluations=60,
                    objectives={"a": "minimize", "b": "minimize"},
                    optimizer_kwargs={"population_size": 20}, constraints=[below_half],
                    progress=False)
    assert len(result.trials) == 60
    assert all(t["status"] == "success" and t["config"]["x"] < 0.5 for t in result.trials)


def test_the_predicates_are_traced_once_whatever_the_batch_sizes(tmp_path):
    """Batches of 10 and a last one of 5 share one padded program: the predicate is traced
    twice when the run is defined (its check, the feasible share) and once for the run."""
    traces = []

    def traced_below_half(config):
        traces.append(1)  # runs only while tracing
        return config["x"] < 0.5

    optimizer = jn.optimizers.random_search(jn.compile(space()), batch_size=10,
                                            max_trials=128)
    result = jn.run(lambda **c: c["x"], space(), root_directory=tmp_path, max_evaluations=25,
                    optimizer=optimizer, constraints=[traced_below_half], progress=False)
    assert sorted({len([t for t in result.trials if t["step"] == s])
                   for s in {t["step"] for t in result.trials}}) != [10]  # sizes differ
    assert len(traces) == 3
