"""Space sugar: Hypernets-style functions that describe architectural choices.

`Choice`, `Optional`, `Permutation`, `InputChoice` and `Repeat` return space parameters
(`Categorical`s over operations or indices) and `cell_space` an `Operation`: they describe
choices, and `jn.compile` samples them like any `Categorical`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from jaxnas.nn._blocks import Cell, Identity, Sequential
from jaxnas.space import Categorical, Operation


def Choice(*options: Any, prior: int | None = None,  # noqa: N802 - Hypernets' name
           prior_confidence: str = "medium") -> Categorical:
    """One of several operations (Hypernets' `Or`, HANNAH's `ChoiceOp`)."""
    return Categorical(options, prior=prior, prior_confidence=prior_confidence, static=True)


def Optional(operation: Any, *, prior: bool | None = None,  # noqa: N802
             prior_confidence: str = "medium") -> Categorical:
    """`operation` or nothing (an `Identity`); `prior=True` favours keeping it."""
    return Categorical(
        (Operation(Identity), operation),
        prior=None if prior is None else int(prior),
        prior_confidence=prior_confidence,
        static=True,
    )


def Permutation(*operations: Any, prior: Sequence[int] | None = None,  # noqa: N802
                prior_confidence: str = "medium") -> Categorical:
    """The operations applied in a searched order (Hypernets' `Permutation`).

    Args:
        *operations: The operations to order; they are shared across orders.
        prior: A preferred order, as a permutation of `range(len(operations))`.
    """
    orders = list(itertools.permutations(range(len(operations))))
    choices = tuple(Operation(Sequential, args=(tuple(operations[i] for i in order),))
                    for order in orders)
    index = None if prior is None else orders.index(tuple(prior))
    return Categorical(choices, prior=index, prior_confidence=prior_confidence, static=True)


# The most subsets an `InputChoice` enumerates: its categorical's table holds one entry each.
MAX_INPUT_SUBSETS = 4096


def InputChoice(n_inputs: int, *, num_chosen: int = 1,  # noqa: N802
                prior: int | Sequence[int] | None = None,
                prior_confidence: str = "medium") -> Categorical:
    """Which of `n_inputs` inputs to read (Hypernets' `InputChoice`).

    Args:
        n_inputs: The inputs to choose from, indexed `0 .. n_inputs - 1`.
        num_chosen: How many distinct inputs one choice reads. 1 (the default): the
            choice is an input's index. More: the choice is a sorted tuple of `num_chosen`
            distinct indices, one of the `C(n_inputs, num_chosen)` subsets, all equally
            likely without a prior (e.g. a `Cell` node's `(left, right)` pair of distinct
            inputs).
        prior: The preferred input (an index), or with `num_chosen > 1` the preferred
            inputs (any order).
        prior_confidence: As for `Categorical`.

    Raises:
        ValueError: `n_inputs` or `num_chosen` is not a positive integer, `num_chosen`
            exceeds `n_inputs` or makes more than 4,096 subsets, or a prior is not
            `num_chosen` distinct inputs in range.
    """
    owner = f"InputChoice(n_inputs={n_inputs!r}, num_chosen={num_chosen!r})"
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
        raise ValueError(f"{owner}: n_inputs must be a positive integer.")
    if (isinstance(num_chosen, bool) or not isinstance(num_chosen, int)
            or not 1 <= num_chosen <= n_inputs):
        raise ValueError(f"{owner}: num_chosen must be an integer from 1 to n_inputs.")
    if num_chosen == 1:
        return Categorical(tuple(range(n_inputs)), prior=prior,
                           prior_confidence=prior_confidence, static=True)
    if math.comb(n_inputs, num_chosen) > MAX_INPUT_SUBSETS:
        raise ValueError(f"{owner}: {math.comb(n_inputs, num_chosen):,} subsets, more than "
                         f"{MAX_INPUT_SUBSETS:,}; choose fewer inputs, or one input per "
                         f"decision (several InputChoice(n_inputs)).")
    subsets = tuple(itertools.combinations(range(n_inputs), num_chosen))
    index = None
    if prior is not None:
        chosen = tuple(sorted(prior)) if isinstance(prior, (tuple, list)) else None
        if chosen not in subsets:
            raise ValueError(f"{owner}: prior={prior!r} must be {num_chosen} distinct inputs "
                             f"from 0 to {n_inputs - 1}.")
        index = subsets.index(chosen)
    return Categorical(subsets, prior=index, prior_confidence=prior_confidence, static=True)


def cell_space(num_nodes: int, operations: Sequence[Any]) -> Operation:
    """An ENAS micro-cell search space: every node picks two inputs and two operations.

    Args:
        num_nodes: Nodes in the cell (ENAS uses 4 or 5).
        operations: Candidate operations. Every node side chooses among fresh copies
            (`.resample()`), so two sides that pick the same operation do not share weights.

    Returns:
        An `Operation(Cell, ...)` whose inputs are `InputChoice`s and whose ops are choices.
    """
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"cell_space(num_nodes={num_nodes!r}): must be a positive integer.")
    op_choice = Choice(*(op.resample() for op in operations))
    inputs = tuple((InputChoice(2 + i), InputChoice(2 + i)) for i in range(num_nodes))
    ops = tuple((op_choice.resample(), op_choice.resample()) for _ in range(num_nodes))
    return Operation(Cell, kwargs={"inputs": inputs, "ops": ops})


def Repeat(make: Callable[[int], Any], counts: Sequence[int], *,  # noqa: N802
           prior: int | None = None, prior_confidence: str = "medium") -> Categorical:
    """A searched number of blocks, `make(0), make(1), ...` in sequence (Hypernets' `Repeat`).

    The `max(counts)` blocks are made once; a count `n` uses the first `n` of them, so a
    block's decisions are shared by every count that includes it (dynamic depth).

    Args:
        make: Returns the block for step `i`; return fresh parameters (or `.resample()`
            copies) for independently sampled blocks.
        counts: The numbers of blocks to choose from.
        prior: The index in `counts` believed to be good.
    """
    counts = tuple(counts)
    if not counts or any(not isinstance(n, int) or n < 1 for n in counts):
        raise ValueError(f"Repeat(counts={counts!r}): counts must be positive integers.")
    blocks = [make(i) for i in range(max(counts))]
    choices = tuple(Operation(Sequential, args=(tuple(blocks[:n]),)) for n in counts)
    return Categorical(choices, prior=prior, prior_confidence=prior_confidence, static=True)
