"""Convolution as shifted slices and one matrix product, for XLA's CPU backend.

Inside a loop (`lax.scan`, `while_loop`: every training program), XLA's CPU backend runs a
convolution several times slower than outside one: a 1-D convolution of the MNIST-1D CNN
(100 x 20 x 32 -> 32 channels, kernel 5) takes 0.9 ms a step, forward and backward, in a
plain program and 8.4 ms inside a scan. The same convolution written as the kernel's
shifted windows of the input, stacked and multiplied by the reshaped kernel in one
`dot_general`, takes 0.4 ms inside the scan (and 1.0 ms outside). So on a CPU the masked
convolutions use that form; elsewhere (cuDNN and friends) they call `lax.conv_general_dilated`.
The two agree up to the order of summation (float rounding).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxnas.nn._tiers import tiered_product


def convolution(inputs: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Any,
                dilation: Sequence[int], precision: Any = None,
                counts: tuple | None = None) -> jax.Array:
    """A channels-last convolution (`(N, *spatial, C) * (*window, C, O) -> (N, *out, O)`).

    Args:
        inputs: `(N, *spatial, C)`.
        kernel: `(*window, C, O)`.
        strides: one per spatial axis.
        padding: `"SAME"`, `"VALID"` or `(low, high)` pairs, one per spatial axis.
        dilation: the kernel's dilation, one per spatial axis.
        precision: passed to the matrix product or convolution.
        counts: `(in_count, out_count)`, the active input and output channels (traced
            scalars, or None: all): the product then runs at their tiers
            (`_tiers.tiered_product`; CPU form only). None: at the full shape.

    Returns:
        The convolution, as `lax.conv_general_dilated` with channels-last dimension numbers
        computes it (up to float rounding).
    """
    window = kernel.shape[:-2]
    if isinstance(padding, str):
        dilated = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
        padding = lax.padtype_to_pads(inputs.shape[1:-1], dilated, strides, padding)
    padding = [tuple(p) for p in padding]
    if jax.default_backend() != "cpu" or any(low < 0 or high < 0 for low, high in padding):
        return _lax_convolution(inputs, kernel, strides, padding, dilation, precision)
    padded = jnp.pad(inputs, [(0, 0), *padding, (0, 0)])
    spatial = padded.shape[1:-1]
    out = [(size - (k - 1) * d - 1) // s + 1
           for size, k, d, s in zip(spatial, window, dilation, strides)]
    windows = []
    for offsets in itertools.product(*(range(k) for k in window)):
        start = [0, *(o * d for o, d in zip(offsets, dilation)), 0]
        limit = [padded.shape[0], *(b + (n - 1) * s + 1 for b, n, s in
                                    zip(start[1:-1], out, strides)), padded.shape[-1]]
        windows.append(lax.slice(padded, start, limit, [1, *strides, 1]))
    patches = jnp.stack(windows, axis=-2)  # (N, *out, window positions, C)
    if counts is not None:
        stacked = jnp.reshape(kernel, (math.prod(window), *kernel.shape[-2:]))
        return tiered_product(patches, stacked, *counts, precision=precision)
    flat_kernel = jnp.reshape(kernel, (math.prod(window) * kernel.shape[-2], kernel.shape[-1]))
    return lax.dot_general(jnp.reshape(patches, (*patches.shape[:-2], -1)), flat_kernel,
                           (((patches.ndim - 2,), (0,)), ((), ())), precision=precision)


def _lax_convolution(inputs, kernel, strides, padding, dilation, precision) -> jax.Array:
    ndim = inputs.ndim
    lhs_spec = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs_spec = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
    numbers = lax.ConvDimensionNumbers(lhs_spec, rhs_spec, lhs_spec)
    return lax.conv_general_dilated(inputs, kernel, window_strides=tuple(strides),
                                    padding=padding, rhs_dilation=tuple(dilation),
                                    dimension_numbers=numbers, precision=precision)
