"""The public names (the contract in DESIGN.md) exist, are listed in `__all__`, and are what
they were: reshaping the package must not change its front door."""

import inspect

import pytest

import jaxnas as jn

# The names each namespace published before the package was reshaped (issue 12); new names
# may be added, none removed.
PUBLIC = {
    "jaxnas": (
        "Bool", "ByName", "Categorical", "Config", "Dynamic", "Fidelity", "FidelityInfo",
        "Float", "FloatFidelity", "Incumbent", "Integer", "IntegerFidelity", "Operation",
        "Resampled", "RunResult", "SearchSpace", "Space", "SpaceError", "StorageError",
        "SupervisedTask", "Task", "compile", "export_csv", "load_config", "load_results",
        "load_space", "nn", "optimizers", "problems", "run", "train"),
    "jaxnas.nn": (
        "Add", "AvgPool", "BuildError", "Built", "Cell", "Choice", "Concat", "Flatten",
        "GlobalAvgPool", "Identity", "InputChoice", "MaskedConv", "MaskedDense", "MaskedWidth",
        "MaxPool", "Optional", "Permutation", "Repeat", "Residual", "Sequential", "build",
        "cell_space", "exact_params", "exact_params_from_masked", "exact_width_init",
        "summary"),
    "jaxnas.optimizers": (
        "BracketState", "IncumbentSelection", "Optimizer", "Proposals", "RandomSearchState",
        "Source", "Status", "Trials", "check", "complex_random_search", "get", "hyperband",
        "incumbent_index", "priorband", "random_search", "successive_halving"),
    "jaxnas.problems": (
        "FIDELITY_LOWER", "FIDELITY_NAME", "FIDELITY_UPPER", "HARTMANN_DIMS",
        "HARTMANN_PRESETS", "PRIOR_CONFIDENCES", "PRIOR_NAMES", "Problem", "mf_branin",
        "mf_hartmann"),
    "jaxnas.train": (
        "BucketTask", "BucketTrainer", "SupervisedTask", "Task", "TrainState",
        "default_optimizer", "pad_to_power_of_two", "task_from_function"),
    "jaxnas.space": (
        "Bool", "ByName", "Categorical", "Config", "Dynamic", "Fidelity", "FidelityInfo",
        "Float", "FloatFidelity", "Integer", "IntegerFidelity", "MaskedWidth", "Operation",
        "Resampled", "SearchSpace", "Space", "SpaceError", "compile"),
}

NAMESPACES = {"jaxnas": jn, "jaxnas.nn": jn.nn, "jaxnas.optimizers": jn.optimizers,
              "jaxnas.problems": jn.problems, "jaxnas.train": jn.train,
              "jaxnas.space": __import__("jaxnas.space", fromlist=["_"])}


@pytest.mark.parametrize("namespace", sorted(PUBLIC))
def test_every_public_name_exists_and_is_listed(namespace):
    module = NAMESPACES[namespace]
    missing = [n for n in PUBLIC[namespace] if not hasattr(module, n)]
    unlisted = [n for n in PUBLIC[namespace] if n not in module.__all__]
    assert not missing, f"{namespace} lost {missing}"
    assert not unlisted, f"{namespace}.__all__ lacks {unlisted}"
    assert all(hasattr(module, n) for n in module.__all__)


def test_names_shared_between_namespaces_are_one_object():
    for name in PUBLIC["jaxnas.space"]:
        if name in PUBLIC["jaxnas"]:
            assert getattr(jn, name) is getattr(NAMESPACES["jaxnas.space"], name), name
    assert jn.nn.MaskedWidth is NAMESPACES["jaxnas.space"].MaskedWidth
    assert jn.SupervisedTask is jn.train.SupervisedTask
    assert jn.Task is jn.train.Task


def test_run_stays_the_function_after_the_runner_package_is_imported():
    """`jaxnas/run/` is the runner's package; importing it must not replace `jn.run`."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import jaxnas.run\nfrom jaxnas.run import summarise\nimport jaxnas as jn\n"
            "import inspect\nprint(inspect.isfunction(jn.run), inspect.isfunction(summarise))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(jn.__file__).parents[1]).stdout.split()
    assert out == ["True", "True"]


def test_run_is_the_function_and_subpackages_are_modules():
    assert inspect.isfunction(jn.run)
    assert list(inspect.signature(jn.run).parameters)[:2] == ["evaluate", "space"]
    for name in ("nn", "optimizers", "problems", "train"):
        assert inspect.ismodule(getattr(jn, name))
    for name in ("load_results", "load_config", "load_space", "export_csv", "compile"):
        assert callable(getattr(jn, name))
    assert issubclass(jn.SpaceError, ValueError)
    assert issubclass(jn.StorageError, RuntimeError)
