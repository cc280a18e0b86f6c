"""`jaxnas.compile`: a space definition checked, normalised and compiled to a `SearchSpace`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxnas.space._expand import SpaceError
from jaxnas.space._parameters import Parameter
from jaxnas.space._search_space import SearchSpace
from jaxnas.space._space import Space

DEFAULT_MAX_DEPTH = 5
DEFAULT_MAX_SLOTS = 10_000


def compile(space: Any, *, max_depth: int = DEFAULT_MAX_DEPTH,  # noqa: A001 - public name
            max_slots: int = DEFAULT_MAX_SLOTS, max_nodes: int | None = None) -> SearchSpace:
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
        max_nodes: A node budget for recursive rules instead of unrolling them: each
            recursive rule (an entry that refers to itself through `ByName(...)
            .resample()`) gets `max_nodes` instances of its decisions (paths `rule#k`),
            and a derivation uses as many as it needs, in breadth-first order, up to
            `max_nodes` over all rules. Decisions grow linearly with the budget, not
            exponentially with depth, so deep grammars (NePS's) compile in seconds. A
            derivation that needs more instances has probability zero: sampling and
            the optimisers' repairs never propose it (`SearchSpace.feasible`), so pick a
            budget that most derivations fit. None (the default): unroll to
            `max_depth`.

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
    limits = [("max_depth", max_depth), ("max_slots", max_slots)]
    if max_nodes is not None:
        limits.append(("max_nodes", max_nodes))
    for name, value in limits:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpaceError(f"compile: {name}={value!r} must be an integer >= 1.")
    if isinstance(space, type) and issubclass(space, Space):
        space = space()
    elif callable(space) and not isinstance(space, (Mapping, Parameter)):
        space = space()
    return SearchSpace.from_source(space, max_depth=max_depth, max_slots=max_slots,
                                   max_nodes=max_nodes)
