"""jaxnas: neural architecture search and hyperparameter optimisation as pure JAX functions.

Every public name is defined in a subpackage (`_HOMES` says which) and loaded on first use
(PEP 562), so that `import jaxnas.space` loads the space layer alone, without flax. Using any
public name loads `jaxnas.nn` first, which registers its blocks with the space layer: with
`import jaxnas as jn`, `jn.Operation("Sequentail")` fails where it is written.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what readers and static tools see; at run time `__getattr__` loads them
    from jaxnas import constraints
    from jaxnas import metrics
    from jaxnas import nn
    from jaxnas import optimizers
    from jaxnas import problems
    from jaxnas import train
    from jaxnas.run import Incumbent
    from jaxnas.run import RunResult
    from jaxnas.run import Simulation
    from jaxnas.run import StorageError
    from jaxnas.run import export_csv
    from jaxnas.run import import_trials
    from jaxnas.run import load_config
    from jaxnas.run import load_results
    from jaxnas.run import load_space
    from jaxnas.run import report
    from jaxnas.run import run
    from jaxnas.run import simulate
    from jaxnas.space import Bool
    from jaxnas.space import ByName
    from jaxnas.space import Categorical
    from jaxnas.space import Config
    from jaxnas.space import Constant
    from jaxnas.space import Dynamic
    from jaxnas.space import Fidelity
    from jaxnas.space import FidelityInfo
    from jaxnas.space import Float
    from jaxnas.space import FloatFidelity
    from jaxnas.space import Integer
    from jaxnas.space import IntegerFidelity
    from jaxnas.space import Operation
    from jaxnas.space import Resampled
    from jaxnas.space import SearchSpace
    from jaxnas.space import Space
    from jaxnas.space import SpaceError
    from jaxnas.train import SupervisedTask
    from jaxnas.train import Task
    from jaxnas.space import compile  # noqa: A004

__version__ = "0.1.0"

from jaxnas._devices import cpu_devices  # noqa: E402

cpu_devices()  # one CPU device per core, if JAX has not started yet (see jaxnas._devices)

# Public name -> the module that defines it (a subpackage stands for itself).
_HOMES = {
    "Bool": "jaxnas.space",
    "ByName": "jaxnas.space",
    "Categorical": "jaxnas.space",
    "compile": "jaxnas.space",
    "Config": "jaxnas.space",
    "Constant": "jaxnas.space",
    "constraints": "jaxnas.constraints",
    "Dynamic": "jaxnas.space",
    "export_csv": "jaxnas.run",
    "import_trials": "jaxnas.run",
    "Fidelity": "jaxnas.space",
    "FidelityInfo": "jaxnas.space",
    "Float": "jaxnas.space",
    "FloatFidelity": "jaxnas.space",
    "Incumbent": "jaxnas.run",
    "Integer": "jaxnas.space",
    "IntegerFidelity": "jaxnas.space",
    "load_config": "jaxnas.run",
    "load_results": "jaxnas.run",
    "load_space": "jaxnas.run",
    "report": "jaxnas.run",
    "metrics": "jaxnas.metrics",
    "nn": "jaxnas.nn",
    "Operation": "jaxnas.space",
    "optimizers": "jaxnas.optimizers",
    "problems": "jaxnas.problems",
    "Resampled": "jaxnas.space",
    "run": "jaxnas.run",
    "RunResult": "jaxnas.run",
    "SearchSpace": "jaxnas.space",
    "simulate": "jaxnas.run",
    "Simulation": "jaxnas.run",
    "Space": "jaxnas.space",
    "SpaceError": "jaxnas.space",
    "StorageError": "jaxnas.run",
    "SupervisedTask": "jaxnas.train",
    "Task": "jaxnas.train",
    "train": "jaxnas.train",
}

__all__ = [
    "Bool",
    "ByName",
    "Categorical",
    "Config",
    "Constant",
    "Dynamic",
    "Fidelity",
    "FidelityInfo",
    "Float",
    "Incumbent",
    "FloatFidelity",
    "Integer",
    "IntegerFidelity",
    "Operation",
    "Resampled",
    "RunResult",
    "SearchSpace",
    "Simulation",
    "Space",
    "SpaceError",
    "StorageError",
    "SupervisedTask",
    "Task",
    "compile",
    "constraints",
    "cpu_devices",
    "export_csv",
    "import_trials",
    "load_config",
    "load_results",
    "load_space",
    "metrics",
    "nn",
    "optimizers",
    "problems",
    "report",
    "run",
    "simulate",
    "train",
]


def _load(name: str) -> Any:
    """The public `name`, imported from its home after `jaxnas.nn` (which fills the space
    layer's registry of blocks)."""
    importlib.import_module("jaxnas.nn")
    home = importlib.import_module(_HOMES[name])
    return home if _HOMES[name] == f"jaxnas.{name}" and name != "run" else getattr(home, name)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'jaxnas' has no attribute {name!r}")
    value = _load(name)
    if name != "run":
        globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`jaxnas.run` is always the function `jn.run`.

    The runner's package is `jaxnas/run/`, and importing a submodule sets it as an attribute
    of its parent package; this property keeps the name `run` for the function.
    """

    @property
    def run(self) -> Any:
        return _load("run")

    @run.setter
    def run(self, value: Any) -> None:
        del value  # the `jaxnas.run` package, set by the import system: `jn.run` stays


sys.modules[__name__].__class__ = _Package
