"""jaxnas building blocks: Linen modules that compose other layers.

The blocks are ordinary Linen modules, usable without any search. As operators of a
`jn.Operation` they receive their children already built by `jn.nn.build`, which names every
module after its path in the space. The masked build (`_masked_build.py`) interprets the same
blocks itself, with `flatten_layers` and `check_same_shapes` from here, so that width masks
flow through them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnas.nn._calling import BuildError, call_layer

class Sequential(nn.Module):
    """Applies `layers` one after another; nested sequences are flattened in order.

    Nesting is what a recursive grammar resolves to (`((a, b), c)`), so it is accepted.
    """

    layers: Sequence[Any] = ()

    def __call__(self, x, train: bool = False):
        for layer in flatten_layers(self.layers):
            x = call_layer(layer, x, train)
        return x


def flatten_layers(layers: Any) -> list:
    """The layers of a (possibly nested) sequence, in order."""
    if isinstance(layers, (list, tuple)):
        return [leaf for item in layers for leaf in flatten_layers(item)]
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
        check_same_shapes(self.name, type(self).__name__, ("input", x), ("body", y))
        return x + y


class Add(nn.Module):
    """Applies every branch to the input and sums the results (shapes must agree)."""

    branches: Sequence[Callable] = ()

    def __call__(self, x, train: bool = False):
        outs = [call_layer(branch, x, train) for branch in self.branches]
        check_same_shapes(self.name, type(self).__name__, *_labelled(self.branches, outs))
        return sum(outs[1:], outs[0])


class Concat(nn.Module):
    """Applies every branch to the input and concatenates along `axis`."""

    branches: Sequence[Callable] = ()
    axis: int = -1

    def __call__(self, x, train: bool = False):
        outs = [call_layer(branch, x, train) for branch in self.branches]
        check_concat_shapes(self.name, self.axis, *_labelled(self.branches, outs))
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
            check_cell_reads(self.name, node, (left, right), len(states))
            a = call_layer(op_left, states[left], train)
            b = call_layer(op_right, states[right], train)
            check_same_shapes(self.name, type(self).__name__, (f"node {node} left", a),
                              (f"node {node} right", b))
            states.append(a + b)
            used.update((left, right))
        loose = [s for i, s in enumerate(states[2:], start=2) if i not in used]
        return jnp.concatenate(loose, axis=-1)


def _labelled(branches: Sequence[Any], outs: Sequence[Any]) -> list[tuple[str, Any]]:
    return [(getattr(branch, "name", None) or f"branch {i}", y)
            for i, (branch, y) in enumerate(zip(branches, outs))]


def check_same_shapes(path: str, kind: str, *named: tuple[str, Any]) -> None:
    """Raises a `BuildError` naming `path` unless the named outputs share one shape."""
    if len({y.shape for _, y in named}) > 1:
        listed = ", ".join(f"{name}: {y.shape}" for name, y in named)
        raise BuildError(f"{path}: {kind} needs equal shapes; got {listed}.")


def check_cell_reads(path: str, node: int, indices: Sequence[int], num_states: int) -> None:
    """Raises a `BuildError` naming `path` if Cell node `node` reads a state not made yet."""
    for index in indices:
        if not 0 <= index < num_states:
            raise BuildError(f"{path}: node {node} reads state {index}; only states "
                             f"0..{num_states - 1} exist before it.")


def check_concat_shapes(path: str, axis: int, *named: tuple[str, Any]) -> None:
    """Raises a `BuildError` naming `path` unless the named outputs agree before `axis`."""
    if len({y.shape[: axis % y.ndim] for _, y in named}) > 1:
        shapes = ", ".join(f"{name}: {y.shape}" for name, y in named)
        raise BuildError(f"{path}: Concat needs equal shapes before axis {axis}; got {shapes}.")
