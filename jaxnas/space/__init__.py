"""The search-space language and its compiler."""

from jaxnas.space._compile import compile  # noqa: A004 - the public name shadows the builtin
from jaxnas.space._config import Config
from jaxnas.space._expand import SpaceError
from jaxnas.space._feasible import CONSTRAINT_TRIES
from jaxnas.space._parameters import (
    Bool,
    ByName,
    Categorical,
    Constant,
    Dynamic,
    Fidelity,
    Float,
    FloatFidelity,
    Integer,
    IntegerFidelity,
    Operation,
    Resampled,
)
from jaxnas.space._registry import register_block, register_builder, register_maskable
from jaxnas.space._search_space import FidelityInfo, SearchSpace
from jaxnas.space._space import Space
from jaxnas.space._widths import MaskedDepth, MaskedWidth

__all__ = [
    "Bool",
    "CONSTRAINT_TRIES",
    "ByName",
    "Categorical",
    "Config",
    "Constant",
    "Dynamic",
    "Fidelity",
    "FidelityInfo",
    "Float",
    "FloatFidelity",
    "Integer",
    "IntegerFidelity",
    "MaskedDepth",
    "MaskedWidth",
    "Operation",
    "Resampled",
    "SearchSpace",
    "Space",
    "SpaceError",
    "compile",
    "register_block",
    "register_builder",
    "register_maskable",
]
