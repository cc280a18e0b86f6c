"""Width tiers: a masked layer's matrix product at the active widths, rounded up to a tier.

A masked layer is built at its maximum width and zeroes what lies past the active one, so
every member of a bucket pays for the maximum (a 32-wide MLP layer of a 256-wide bucket
does 64x the work of its exact self). Where one member is trained at a time (the CPU
trainer, `members_at_once=1`), its widths are traced scalars but not batched, so a
`lax.switch` takes one branch: the product runs on the leading `tier` rows and columns
only, the smallest of `maximum/4`, `maximum/2`, `maximum` that holds the active ones, and
the result is zero-padded back to the maximum. Nine branches at most (three tiers for the
inputs, three for the outputs), forward and backward.

The result is the masked product's: the rows and columns it leaves out hold exact zeros
(the masked layers zero inactive inputs and outputs), so only the order of summation, float
rounding, can differ. Under `vmap` a `switch` on batched widths would run every branch, so
the tiers are used only inside `jaxnas._tracing.unbatched_widths()`, which the trainer
enters where it traces one member at a time; elsewhere the masked layers multiply at the
full shape.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def tiers(size: int) -> tuple[int, ...]:
    """The tiers of a feature axis of `size`: `size/4`, `size/2` and `size`, rounded up."""
    return tuple(sorted({-(-size // 4), -(-size // 2), size}))


def active_count(width: Any) -> jax.Array:
    """The number of leading features that hold every active one: the width itself, or
    for a boolean mask one past its last `True` entry."""
    if jnp.ndim(width) == 1:
        positions = jnp.arange(1, jnp.shape(width)[0] + 1, dtype=jnp.int32)
        return jnp.max(jnp.where(width, positions, 0))
    return jnp.asarray(width, jnp.int32)


def tiered_product(lhs: jax.Array, rhs: jax.Array, in_count: Any, out_count: Any,
                   precision: Any = None) -> jax.Array:
    """`lhs (..., *window, C) x rhs (*window, C, O) -> (..., O)`, contracting `window` and
    `C`, computed on the leading `tier(in_count)` channels and `tier(out_count)` outputs.

    Args:
        lhs: the inputs; channels past `in_count` must be zero.
        rhs: the kernel; a dense kernel has no window axes, a convolution's patches do.
        in_count: the active input channels (int32 scalar), or None: all of them.
        out_count: the active outputs (int32 scalar), or None: all of them.
        precision: passed to `lax.dot_general`.

    Returns:
        The product; outputs past the output tier are zero (the caller zeroes the rest).
    """
    channels, outputs = rhs.shape[-2], rhs.shape[-1]
    in_tiers = (channels,) if in_count is None else tiers(channels)
    out_tiers = (outputs,) if out_count is None else tiers(outputs)
    if len(in_tiers) * len(out_tiers) == 1:
        return _product(lhs, rhs, precision)
    index = (_tier_index(in_count, in_tiers) * len(out_tiers)
             + _tier_index(out_count, out_tiers))
    pairs = tuple((a, b) for a in in_tiers for b in out_tiers)
    return _tiered(pairs, precision, lhs, rhs, index)


def _tier_index(count: Any, tiers_: tuple[int, ...]) -> jax.Array:
    """The index of the smallest tier that holds `count` (0 for a single tier)."""
    count = jnp.asarray(0 if count is None else count, jnp.int32)
    return sum((count > t).astype(jnp.int32) for t in tiers_[:-1]) + jnp.zeros((), jnp.int32)


def _product(lhs: jax.Array, rhs: jax.Array, precision: Any) -> jax.Array:
    axes = rhs.ndim - 1  # the window axes and the channel axis
    return lax.dot_general(lhs, rhs, ((tuple(range(lhs.ndim - axes, lhs.ndim)),
                                       tuple(range(axes))), ((), ())), precision=precision)


def _pad(a: jax.Array, size: int, axis: int = -1) -> jax.Array:
    axis %= a.ndim
    if a.shape[axis] == size:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - a.shape[axis])
    return jnp.pad(a, widths)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _tiered(pairs, precision, lhs, rhs, index):
    return _tiered_forward(pairs, precision, lhs, rhs, index)[0]


def _tiered_forward(pairs, precision, lhs, rhs, index):
    outputs = rhs.shape[-1]

    def branch(a: int, b: int):
        return lambda lhs, rhs: _pad(
            _product(lhs[..., :a], rhs[..., :a, :b], precision), outputs)

    y = lax.switch(index, [branch(a, b) for a, b in pairs], lhs, rhs)
    return y, (lhs, rhs, index)  # residuals: the operands themselves, not per-branch slices


def _tiered_backward(pairs, precision, residuals, dy):
    lhs, rhs, index = residuals
    batch = lhs.ndim - (rhs.ndim - 1)  # the leading axes the kernel is shared over

    def branch(a: int, b: int):
        def grads(lhs, rhs, dy):
            d = dy[..., :b]
            # d lhs: dy x rhs^T over the outputs, (..., *window, a), padded to C.
            d_lhs = lax.dot_general(d, rhs[..., :a, :b], (((d.ndim - 1,), (rhs.ndim - 1,)),
                                                          ((), ())), precision=precision)
            # d rhs: lhs^T x dy over the batch axes, (*window, a, b), padded to (C, O).
            d_rhs = lax.dot_general(lhs[..., :a], d, ((tuple(range(batch)),
                                                       tuple(range(batch))), ((), ())),
                                    precision=precision)
            d_rhs = _pad(_pad(d_rhs, rhs.shape[-1]), rhs.shape[-2], axis=-2)
            return _pad(d_lhs, lhs.shape[-1]), d_rhs

        return grads

    d_lhs, d_rhs = lax.switch(index, [branch(a, b) for a, b in pairs], lhs, rhs, dy)
    return d_lhs, d_rhs, None


_tiered.defvjp(_tiered_forward, _tiered_backward)
