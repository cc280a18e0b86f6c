"""jaxnas: neural architecture search and hyperparameter optimisation as pure JAX functions."""

from jaxnas import nn
from jaxnas import optimizers
from jaxnas import problems
from jaxnas import train
from jaxnas.run import Incumbent
from jaxnas.run import RunResult
from jaxnas.run import StorageError
from jaxnas.run import export_csv
from jaxnas.run import load_config
from jaxnas.run import load_results
from jaxnas.run import load_space
from jaxnas.run import run
from jaxnas.space import Bool
from jaxnas.space import ByName
from jaxnas.space import Categorical
from jaxnas.space import Config
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
from jaxnas.space import compile  # noqa: A004 - the public name shadows the builtin on purpose

__version__ = "0.1.0"

__all__ = [
    "Bool",
    "ByName",
    "Categorical",
    "Config",
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
    "Space",
    "SpaceError",
    "StorageError",
    "SupervisedTask",
    "Task",
    "compile",
    "export_csv",
    "load_config",
    "load_results",
    "load_space",
    "nn",
    "optimizers",
    "problems",
    "run",
    "train",
]
