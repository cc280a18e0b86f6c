"""Architectures: Linen modules from operation trees, building blocks and space sugar."""

from jaxnas.nn._blocks import Add
from jaxnas.nn._blocks import AvgPool
from jaxnas.nn._blocks import BuildError
from jaxnas.nn._blocks import Cell
from jaxnas.nn._blocks import Choice
from jaxnas.nn._blocks import Concat
from jaxnas.nn._blocks import Flatten
from jaxnas.nn._blocks import GlobalAvgPool
from jaxnas.nn._blocks import Identity
from jaxnas.nn._blocks import InputChoice
from jaxnas.nn._blocks import MaxPool
from jaxnas.nn._blocks import Optional
from jaxnas.nn._blocks import Permutation
from jaxnas.nn._blocks import Repeat
from jaxnas.nn._blocks import Residual
from jaxnas.nn._blocks import Sequential
from jaxnas.nn._blocks import cell_space
from jaxnas.nn._build import Built
from jaxnas.nn._masked import MaskedConv
from jaxnas.nn._masked import MaskedDense
from jaxnas.nn._masked import exact_params_from_masked
from jaxnas.nn._masked import exact_width_init
from jaxnas.nn._masked_build import exact_params
from jaxnas.space import MaskedWidth
from jaxnas.nn._build import build
from jaxnas.nn._build import summary
from jaxnas.space import register_block, register_builder, register_maskable

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
    """Hands the space layer what it needs from this one (see `jaxnas.space._registry`)."""
    import flax.linen as linen  # noqa: PLC0415

    def is_module(operator):
        return isinstance(operator, type) and issubclass(operator, linen.Module)

    for name in __all__:
        value = globals()[name]
        if is_module(value) and value is not Built:
            register_block(name, value)
    for operator in (linen.Dense, linen.Conv):
        register_maskable(operator)
    register_builder(is_module=is_module, build=build)


_register()
