"""jaxnas building blocks: Linen modules that compose other layers, and Hypernets' space sugar.

The blocks are ordinary Linen modules, usable without any search. As operators of a
`jn.Operation` they receive their children already built by `jn.nn.build`, which names every
module after its path in the space.

The sugar functions (`Choice`, `Optional`, `Permutation`, `Repeat`) return space parameters:
they describe choices, and `jn.compile` samples them like any `Categorical`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.errors import FlaxError

from jaxnas.space import Categorical, Operation

# ------------------------------------------------------------------------- calling


class BuildError(TypeError):
    """An operation that cannot become a layer, or layers that do not connect.

    The message names the path of the operation in the space and the shapes involved.
    """


def call_layer(layer: Callable, x: Any, train: bool) -> Any:
    """Calls a built layer, passing the train/eval switch the way the layer expects it.

    Linen layers spell it differently: `deterministic` (Dropout), `use_running_average`
    (BatchNorm), or `train` (jaxnas blocks). A switch already fixed on the layer's fields
    is left alone (Linen refuses to receive it twice). An error is reported by the path of
    the innermost layer that raised it, with its input shape.
    """
    try:
        return _call(layer, x, train)
    except BuildError:
        raise
    except (TypeError, ValueError, FlaxError) as error:
        name = getattr(layer, "name", None) or type(layer).__name__
        kind = type(layer).__name__ if isinstance(layer, nn.Module) else getattr(
            getattr(layer, "fn", layer), "__name__", repr(layer))
        raise BuildError(f"{name}: cannot apply {kind} to an input of shape "
                         f"{getattr(x, 'shape', None)}: {error}") from error


def _call(layer: Callable, x: Any, train: bool) -> Any:
    if not isinstance(layer, nn.Module):
        return layer(x)
    names = _call_parameters(type(layer))
    if "train" in names:
        return layer(x, train=train)
    for name in ("deterministic", "use_running_average"):
        if name in names and getattr(layer, name, None) is None:
            return layer(x, **{name: not train})
    return layer(x)


_SIGNATURES: dict[type, frozenset] = {}


def _call_parameters(kind: type) -> frozenset:
    if kind not in _SIGNATURES:
        _SIGNATURES[kind] = frozenset(inspect.signature(kind.__call__).parameters)
    return _SIGNATURES[kind]


# -------------------------------------------------------------------------- blocks


class Sequential(nn.Module):
    """Applies `layers` one after another; nested sequences are flattened in order.

    Nesting is what a recursive grammar resolves to (`((a, b), c)`), so it is accepted.
    """

    layers: Sequence[Any] = ()

    def __call__(self, x, train: bool = False):
        for layer in _flatten(self.layers):
            x = call_layer(layer, x, train)
        return x


def _flatten(layers: Any) -> list:
    if isinstance(layers, (list, tuple)):
        return [leaf for item in layers for leaf in _flatten(item)]
    return [layers]


class Identity(nn.Module):
    """Returns its input (an `Optional` left out, a skip connection)."""

    def __call__(self, x):
        return x


class Residual(nn.Module):
    """`x + body(x)`; the body must keep the shape."""

    body: Callable

    def __call__(self, x, train: bool = False):
        y = call_layer(self.body, x, train)
        _same_shapes(self, ("input", x), ("body", y))
        return x + y


class Add(nn.Module):
    """Applies every branch to the input and sums the results (shapes must agree)."""

    branches: Sequence[Callable] = ()

    def __call__(self, x, train: bool = False):
        outs = [call_layer(b, x, train) for b in self.branches]
        _same_shapes(self, *((_label(b, i), y) for i, (b, y) in enumerate(zip(self.branches, outs))))
        return sum(outs[1:], outs[0])


class Concat(nn.Module):
    """Applies every branch to the input and concatenates along `axis`."""

    branches: Sequence[Callable] = ()
    axis: int = -1

    def __call__(self, x, train: bool = False):
        outs = [call_layer(b, x, train) for b in self.branches]
        leading = {y.shape[: self.axis % y.ndim] for y in outs}
        if len(leading) > 1:
            shapes = ", ".join(f"{_label(b, i)}: {y.shape}" for i, (b, y)
                               in enumerate(zip(self.branches, outs)))
            raise BuildError(f"{self.name}: Concat needs equal shapes before axis "
                             f"{self.axis}; got {shapes}.")
        return jnp.concatenate(outs, axis=self.axis)


class Flatten(nn.Module):
    """Flattens every axis after the batch axis."""

    def __call__(self, x):
        return x.reshape(x.shape[0], -1)


class _Pool(nn.Module):
    """Pooling over the spatial axes of an NHWC (or NWC) input; `reduce` picks max or mean."""

    window: int = 2
    strides: int | None = None
    padding: str = "VALID"
    reduce = staticmethod(nn.max_pool)

    def __call__(self, x):
        dims = x.ndim - 2
        return self.reduce(x, (self.window,) * dims, (self.strides or self.window,) * dims,
                           self.padding)


class MaxPool(_Pool):
    """Max pooling over the spatial axes of an NHWC (or NWC) input."""


class AvgPool(_Pool):
    """Average pooling over the spatial axes of an NHWC (or NWC) input."""

    reduce = staticmethod(nn.avg_pool)


class GlobalAvgPool(nn.Module):
    """Averages over every spatial axis: `(N, ..., C) -> (N, C)`."""

    def __call__(self, x):
        return x.mean(axis=tuple(range(1, x.ndim - 1)))


class Cell(nn.Module):
    """An ENAS micro cell: nodes that each add two operations applied to chosen inputs.

    The cell starts from its inputs (one array, used twice, or a pair `(previous,
    current)`). Node `i` applies `ops[i][0]` to state `inputs[i][0]` and `ops[i][1]` to
    state `inputs[i][1]` and adds the results; its output becomes state `2 + i`. The nodes
    no other node reads (the loose ends) are concatenated along the channel axis.

    Attributes:
        inputs: `((left, right), ...)`, state indices; node `i` may read states `< 2 + i`.
        ops: `((left_op, right_op), ...)`, built layers, one pair per node.
    """

    inputs: Sequence[Sequence[int]] = ()
    ops: Sequence[Sequence[Callable]] = ()

    def __call__(self, x, train: bool = False):
        states = list(x) if isinstance(x, (tuple, list)) else [x, x]
        if len(states) != 2:
            raise BuildError(f"{self.name}: a Cell takes one input or a pair, got {len(states)}.")
        if len(self.inputs) != len(self.ops) or not self.inputs:
            raise BuildError(f"{self.name}: a Cell needs one (left, right) input pair and one op "
                             f"pair per node; got {len(self.inputs)} and {len(self.ops)}.")
        used = set()
        for node, ((left, right), (op_left, op_right)) in enumerate(zip(self.inputs, self.ops)):
            for index in (left, right):
                if not 0 <= index < len(states):
                    raise BuildError(f"{self.name}: node {node} reads state {index}; only "
                                     f"states 0..{len(states) - 1} exist before it.")
            a = call_layer(op_left, states[left], train)
            b = call_layer(op_right, states[right], train)
            _same_shapes(self, (f"node {node} left", a), (f"node {node} right", b))
            states.append(a + b)
            used.update((left, right))
        loose = [s for i, s in enumerate(states[2:], start=2) if i not in used]
        return jnp.concatenate(loose, axis=-1)


def _label(layer: Any, index: int) -> str:
    return getattr(layer, "name", None) or f"branch {index}"


def _same_shapes(block: nn.Module, *named: tuple[str, Any]) -> None:
    shapes = {y.shape for _, y in named}
    if len(shapes) > 1:
        listed = ", ".join(f"{name}: {y.shape}" for name, y in named)
        raise BuildError(f"{block.name}: {type(block).__name__} needs equal shapes; got {listed}.")


# -------------------------------------------------------------------- space sugar


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


def InputChoice(n_inputs: int, *, prior: int | None = None,  # noqa: N802
                prior_confidence: str = "medium") -> Categorical:
    """The index of one of `n_inputs` inputs (Hypernets' `InputChoice` of one input)."""
    if not isinstance(n_inputs, int) or n_inputs < 1:
        raise ValueError(f"InputChoice(n_inputs={n_inputs!r}): must be a positive integer.")
    return Categorical(tuple(range(n_inputs)), prior=prior, prior_confidence=prior_confidence,
                       static=True)


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
