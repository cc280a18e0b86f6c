"""The search-space language and its compiler."""

from collections.abc import Mapping

from jaxnas.space._compile import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SLOTS, SpaceError, expand
from jaxnas.space._parameters import (
    Bool,
    ByName,
    Categorical,
    Dynamic,
    Fidelity,
    Float,
    FloatFidelity,
    Integer,
    IntegerFidelity,
    Operation,
    Parameter,
    Resampled,
    Space,
)
from jaxnas.space._config import Config
from jaxnas.space._registry import register_block, register_builder, register_maskable
from jaxnas.space._search_space import FidelityInfo, MaskedWidth, SearchSpace


def compile(space, *, max_depth: int = DEFAULT_MAX_DEPTH,  # noqa: A001 - public name
            max_slots: int = DEFAULT_MAX_SLOTS) -> SearchSpace:
    """Compiles a space into a fixed-shape, hashable `SearchSpace`.

    Args:
        space: A pytree (dict, list, tuple, nested) of parameters, operations and
            constants; a `Space` instance or subclass; or a function of no arguments
            returning one.
        max_depth: How many times a rule may be resampled inside itself. Recursive
            grammars are unrolled to this depth; choices that cannot finish within it get
            probability zero.
        max_slots: The largest number of decisions the unrolled space may have. The
            limit keeps compile time and config size bounded; a space above it is an
            error that says what to lower.

    Returns:
        A `SearchSpace`.

    Raises:
        SpaceError (a ValueError): an unknown `ByName`, a value containing itself, a
            grammar that cannot terminate, a misplaced or repeated fidelity, or a space
            above `max_slots`. Each message names the path and the rule.

    Example:
        >>> spec = compile({"lr": Float(1e-4, 1e-1, log=True), "depth": Integer(1, 4)})
        >>> config = spec.sample(jax.random.key(0))
    """
    for name, value in (("max_depth", max_depth), ("max_slots", max_slots)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"compile: {name}={value!r} must be an integer >= 1.")
    if isinstance(space, type) and issubclass(space, Space):
        space = space()
    elif callable(space) and not isinstance(space, (Mapping, Parameter)):
        space = space()
    compiled = expand(space, max_depth=max_depth, max_slots=max_slots)
    spec = SearchSpace(compiled, max_depth=max_depth, max_slots=max_slots)
    object.__setattr__(spec, "_source", space)  # what pickle stores (`SearchSpace.__reduce__`)
    return spec


__all__ = [
    "Bool",
    "ByName",
    "Categorical",
    "Config",
    "Dynamic",
    "Fidelity",
    "FidelityInfo",
    "Float",
    "FloatFidelity",
    "Integer",
    "IntegerFidelity",
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
