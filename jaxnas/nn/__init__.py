"""Architectures: Linen modules from operation trees, building blocks and space sugar.

Importing this package hands the space layer what it needs from this one (`_register`):
the blocks by name, the width-maskable operators and the module builder.
"""

from jaxnas.nn import _build, _masked
from jaxnas.nn._blocks import Add
from jaxnas.nn._blocks import AvgPool
from jaxnas.nn._blocks import Cell
from jaxnas.nn._blocks import Concat
from jaxnas.nn._blocks import Flatten
from jaxnas.nn._blocks import GlobalAvgPool
from jaxnas.nn._blocks import Identity
from jaxnas.nn._blocks import MaxPool
from jaxnas.nn._blocks import Residual
from jaxnas.nn._blocks import Sequential
from jaxnas.nn._build import Built
from jaxnas.nn._build import build
from jaxnas.nn._build import summary
from jaxnas.nn._calling import BuildError
from jaxnas.nn._masked import MaskedConv
from jaxnas.nn._masked import MaskedDense
from jaxnas.nn._masked import exact_params_from_masked
from jaxnas.nn._masked import exact_width_init
from jaxnas.nn._masked_build import exact_params
from jaxnas.nn._sugar import Choice
from jaxnas.nn._sugar import InputChoice
from jaxnas.nn._sugar import Optional
from jaxnas.nn._sugar import Permutation
from jaxnas.nn._sugar import Repeat
from jaxnas.nn._sugar import cell_space
from jaxnas.space import MaskedDepth, MaskedWidth
from jaxnas.space import register_block
from jaxnas.space import register_builder
from jaxnas.space import register_maskable

__all__ = [
    "Add",
    "AvgPool",
    "BuildError",
    "Built",
    "Cell",
    "Choice",
    "Concat",
    "Flatten",
    "GlobalAvgPool",
    "Identity",
    "InputChoice",
    "MaskedConv",
    "MaskedDense",
    "MaskedDepth",
    "MaskedWidth",
    "MaxPool",
    "Optional",
    "Permutation",
    "Repeat",
    "Residual",
    "Sequential",
    "build",
    "cell_space",
    "exact_params",
    "exact_params_from_masked",
    "exact_width_init",
    "summary",
]


def _register() -> None:
    """Hands the space layer its blocks by name, the maskable operators and the builder."""
    for name in __all__:
        value = globals()[name]
        if _build.is_module_class(value) and value is not Built:
            register_block(name, value)
    for operator in _masked.MASKED_LAYERS:
        register_maskable(operator)
    register_builder(is_module=_build.is_module_class, build=build)


_register()
