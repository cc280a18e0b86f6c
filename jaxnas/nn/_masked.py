"""Width-masked layers: one compiled program for configurations that differ only in widths.

DESIGN.md, principle 4: widths are static (they fix array shapes), so configurations that
differ only in widths would each compile their own program. A masked layer is built at the
bucket's *maximum* width and takes the active width as a traced integer; the columns past it
are held at exactly zero. Configurations of different widths then share one program and are
trained by one vmapped call, as weight-sharing supernets slice one weight tensor to many
widths (Yu et al., "Slimmable Neural Networks", ICLR 2019, Sec. 3).

Masked training equals exact-width training up to float rounding, step for step and not
merely in distribution. The rule:

* **Initialise at the full shape, slice, scale the fan-in.** The kernel is drawn by
  `kernel_init` at the full shape `(*receptive_field, max_in, max_features)`. The exact-width
  layer with `in_width` active inputs and `width` outputs is *defined* as that draw sliced to
  `[..., :in_width, :width]` and multiplied by `sqrt(max_in / in_width)`. Linen's default
  init (`lecun_normal`, as every `variance_scaling(mode="fan_in")` init: lecun_*, he_*) draws
  i.i.d. entries with standard deviation proportional to `1 / sqrt(fan_in)`; slicing keeps
  entries i.i.d., and the factor moves the standard deviation (and the truncation bound) from
  `fan_in = r * max_in` to `fan_in = r * in_width`, `r` the receptive-field size. So the
  sliced, scaled kernel has exactly the distribution of an ordinary `nn.Dense(width)` /
  `nn.Conv(width)` kernel on `in_width` inputs; `exact_width_init` is that rule as an
  ordinary Linen initializer, so the exact-width reference is a plain `nn.Dense`/`nn.Conv`.
  For inits that also depend on the fan-out (`glorot_*`, `variance_scaling` with
  `mode="fan_avg"` or `"fan_out"`) the masked and exact-width layers still agree with each
  other, but neither has the distribution of that init at the exact width.
* **Scale at init, not at apply time.** The scaled kernel is what is stored, so the masked
  parameters restricted to the active block *are* the exact-width parameters. Scaling in the
  forward pass instead (`y = x @ (s * kernel)`) would give the same outputs at init, but the
  stored kernel's gradient would be `s` times the exact kernel's and every change of it would
  move the effective kernel `s` times as far: SGD would step `s**2` times as far as on the
  exact layer (Adam `s` times), and training would part from the exact-width run.
* **Inactive entries are zero and get zero gradients.** Entries of the kernel and bias
  outside the active block are initialised to zero. The inputs past `in_width` and the
  outputs past `width` are replaced by zeros with `jnp.where` (which also stops NaN or inf in
  padded inputs), so those entries get exactly zero gradient. With any optimiser whose update
  is zero for a zero parameter with a zero gradient (SGD, momentum, Adam, AdamW's decoupled
  weight decay), they stay zero through training, and the active block follows exactly the
  trajectory of the exact-width layer.

Masked and exact-width outputs then differ only by the summation order inside the matrix
product or convolution (the padded terms add exact zeros), i.e. by float rounding. The
initial parameters are equal bit for bit when both inits run eagerly, or both under `jit`;
an eager and a compiled init may differ in the last bit, as XLA may fuse an init's own
scaling into its random draw (seen with `normal(stddev)`).

The widths passed at `init` decide the scale and the zero pattern of the parameters; pass the
same widths at `apply` (they are the configuration's values). Traced widths are not
range-checked: a width above the maximum activates everything, a width of zero gives zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding
from flax.linen.linear import default_kernel_init as _linen_kernel_init

from jaxnas._tracing import branching
from jaxnas.nn import _tiers
from jaxnas.nn._convolution import convolution

Initializer = nn.initializers.Initializer
Width = int | jax.Array  # a Python int or a traced int32 scalar

# Linen's own defaults, so that a masked layer and the nn.Dense/nn.Conv it stands for agree
# unless the user overrides both.
default_kernel_init = _linen_kernel_init  # lecun_normal
default_bias_init = nn.initializers.zeros_init()


# ---------------------------------------------------------------------------- the init rule


def _fan_in_scale(full_in: int, active_in: Width) -> jax.Array:
    """`sqrt(full_in / active_in)` in float32; one function for the masked and exact paths.

    Both paths must multiply by bit-identical factors for the exact-width parameters to equal
    the sliced masked parameters exactly, so neither computes the factor on its own.
    `active_in` is a count, or a boolean mask whose `True` entries are counted.
    """
    if jnp.ndim(active_in) == 1:
        active_in = jnp.sum(jnp.asarray(active_in, jnp.int32))
    ratio = jnp.asarray(full_in, jnp.float32) / jnp.asarray(active_in, jnp.float32)
    return jnp.sqrt(ratio)  # () float32


def active_mask(size: int, width: Width) -> jax.Array:
    """(size,) bool: True for the first `width` entries, or `width` itself if it is a mask.

    Shared with the masked build, which carries these masks between layers.
    """
    if jnp.ndim(width) == 1:
        return jnp.asarray(width, bool)
    return jnp.arange(size, dtype=jnp.int32) < jnp.asarray(width, jnp.int32)


def _masked_kernel_init(kernel_init: Initializer) -> Callable[..., jax.Array]:
    """The full-shape kernel init of a masked layer: draw, scale the fan-in, zero the rest."""

    def init(key, shape, dtype, in_width, width):
        kernel = kernel_init(key, shape, dtype)  # (*receptive_field, max_in, max_features)
        scale = _fan_in_scale(shape[-2], in_width).astype(dtype)
        rows, columns = active_mask(shape[-2], in_width), active_mask(shape[-1], width)
        active = rows[:, None] & columns[None, :]
        return jnp.where(active, kernel * scale, jnp.zeros((), dtype))

    return init


def _masked_bias_init(bias_init: Initializer) -> Callable[..., jax.Array]:
    """The full-shape bias init of a masked layer: draw, zero the inactive entries."""

    def init(key, shape, dtype, width):
        bias = bias_init(key, shape, dtype)  # (max_features,)
        return jnp.where(active_mask(shape[-1], width), bias, jnp.zeros((), dtype))

    return init


def exact_width_init(init: Initializer, full_shape: Sequence[int]) -> Initializer:
    """The init of an exact-width layer under the masked layers' rule, as a Linen initializer.

    `nn.Dense(width, kernel_init=exact_width_init(kernel_init, (max_in, max_features)))` on
    `in_width` inputs draws, for the same PRNG key, exactly the active block of a
    `MaskedDense(max_features, kernel_init=kernel_init)` called with `in_width` and `width`.
    The draw is made at `full_shape` and sliced to the requested shape; for a kernel (two or
    more axes) it is multiplied by `sqrt(full_shape[-2] / shape[-2])`, which makes a
    `fan_in` variance-scaling draw (Linen's default) distributed as that init at the sliced
    fan-in (see the module docstring). A bias (one axis) is only sliced.

    Args:
      init: the initializer of the masked layer (e.g. `nn.initializers.lecun_normal()`).
      full_shape: the masked layer's parameter shape: `(max_in, max_features)` for a dense
        kernel, `(*kernel_size, max_in, max_features)` for a conv kernel, `(max_features,)`
        for a bias.

    Returns:
      An initializer `(key, shape, dtype) -> array` for the exact-width layer. It raises
      `ValueError` if `shape` does not fit inside `full_shape`, or if a kernel's receptive
      field differs from the full one (only the feature axes may shrink).

    Example:
      >>> layer = nn.Dense(8, kernel_init=exact_width_init(nn.initializers.lecun_normal(),
      ...                                                  (64, 32)))
      >>> params = layer.init(jax.random.key(0), jnp.ones((1, 5), jnp.float32))
    """
    full_shape = tuple(int(n) for n in full_shape)

    def sliced_init(key, shape, dtype=jnp.float32):
        shape = tuple(int(n) for n in shape)
        if len(shape) != len(full_shape) or any(
            not 1 <= n <= full for n, full in zip(shape, full_shape)
        ):
            raise ValueError(f"exact_width_init: shape {shape} does not fit inside the full "
                             f"shape {full_shape}.")
        if shape[:-2] != full_shape[:-2]:
            raise ValueError(f"exact_width_init: only the feature axes may be sliced; shape "
                             f"{shape} has another receptive field than {full_shape}.")
        full = init(key, full_shape, dtype)
        value = full[tuple(slice(0, n) for n in shape)]
        if len(shape) >= 2:
            value = value * _fan_in_scale(full_shape[-2], shape[-2]).astype(dtype)
        return value

    return sliced_init


def exact_params_from_masked(
    layer_params: Mapping[str, jax.Array], *, in_width: int | Any, width: int | Any
) -> dict[str, jax.Array]:
    """Slices one masked layer's parameters to those of its exact-width `nn.Dense`/`nn.Conv`.

    The scale is already in the stored kernel (the rule scales at init), so this is a pure
    slice. It is the inverse of zero-padding, the map between a masked population member and
    the exact-width network it trains (e.g. to export an incumbent).

    Args:
      layer_params: `{"kernel": (*receptive_field, max_in, max_features), "bias":
        (max_features,)}` of one `MaskedDense` or `MaskedConv` (bias optional).
      in_width: the active number of input features, a concrete int, or a boolean mask of
        the active ones (a numpy array; the rows are gathered in order).
      width: the active number of output features, a concrete int, or a boolean mask.

    Returns:
      `{"kernel": (*receptive_field, in_width, width), "bias": (width,)}`, the parameters of
      `nn.Dense(width)` / `nn.Conv(width, ...)` on `in_width` inputs.
    """
    rows, columns = _selector(in_width), _selector(width)
    kernel = layer_params["kernel"]
    exact = {"kernel": jnp.take(jnp.take(kernel, rows, axis=-2), columns, axis=-1)}
    if "bias" in layer_params:
        exact["bias"] = jnp.take(layer_params["bias"], columns, axis=-1)
    return exact


def _selector(width: Any) -> Any:
    """Concrete indices of the active entries: a prefix length or a boolean mask."""
    if np.ndim(width) == 1:
        return np.flatnonzero(np.asarray(width, bool))
    return np.arange(int(width))


# ---------------------------------------------------------------------------- the layers


def _check_width(name: str, width: Any, maximum: int, *, mask_ok: bool = False) -> jax.Array:
    """Checks a width that is known at trace time; returns it as an int32 scalar.

    With `mask_ok`, a `(maximum,)` boolean mask of the active entries is accepted as well
    (an input width whose active features are not a prefix: after `Concat` or `Flatten`).
    """
    if mask_ok and jnp.ndim(width) == 1:
        if jnp.shape(width) != (maximum,) or jnp.result_type(width) != jnp.bool_:
            raise ValueError(f"{name} as a mask must be a ({maximum},) boolean array, got "
                             f"{jnp.result_type(width)}{list(jnp.shape(width))}.")
        return jnp.asarray(width)
    if jnp.ndim(width) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(width)}; vmap the "
                         f"layer over a population of widths instead.")
    if isinstance(width, int) and not 1 <= width <= maximum:
        raise ValueError(f"{name}={width} must lie in 1..{maximum}.")
    return jnp.asarray(width, jnp.int32)


def _masked_parameters(layer: nn.Module, inputs: jax.Array, width: Width,
                       in_width: Width | None, receptive_field: tuple[int, ...]) -> tuple:
    """The shared part of a masked layer's call: checks, parameters, inactive inputs zeroed.

    Returns:
      `(inputs, kernel, bias, width)`, promoted to the computation dtype; `kernel` has shape
      `(*receptive_field, max_in, max_features)`, `bias` is None without one.
    """
    max_in = inputs.shape[-1]
    width = _check_width("width", width, layer.max_features)
    in_width = _check_width("in_width", max_in if in_width is None else in_width, max_in,
                            mask_ok=True)
    kernel = _parameter(layer, "kernel", _masked_kernel_init(layer.kernel_init),
                        receptive_field + (max_in, layer.max_features), in_width, width)
    bias = (_parameter(layer, "bias", _masked_bias_init(layer.bias_init),
                       (layer.max_features,), width) if layer.use_bias else None)
    inputs = jnp.where(active_mask(max_in, in_width), inputs, jnp.zeros((), inputs.dtype))
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=layer.dtype)
    return inputs, kernel, bias, width


def _parameter(layer: nn.Module, name: str, init: Callable[..., jax.Array],
               shape: tuple[int, ...], *widths: Any) -> jax.Array:
    """`layer.param(name, init, shape, layer.param_dtype, *widths)`, except that an existing
    parameter is read as it is and its shape checked against `shape`.

    Linen's `param` checks an existing parameter's shape by tracing the initializer
    (`jax.eval_shape`) at every call; a training program applies a masked model a dozen
    times (steps, validation, the narrow model, ...), and those traces were a sixth of
    tracing the quickstart's training program. The shape is known here without them."""
    if not layer.has_variable("params", name):
        return layer.param(name, init, shape, layer.param_dtype, *widths)
    value = nn.meta.unbox(layer.get_variable("params", name))
    if np.shape(value) != tuple(shape):
        raise flax.errors.ScopeParamShapeError(name, layer.scope.path_text, np.shape(value),
                                               tuple(shape))
    return value


def _counts(layer: nn.Module, width: Any, in_width: Any) -> tuple | None:
    """`(in_count, out_count)` for a tiered product (`_tiers`), None where the layer should
    multiply at its full shape: outside `unbatched_widths`, and at init (run once, and
    nine branches fewer to trace). A count is None where the width is all of the axis,
    known when tracing (no input width, or the maximum itself)."""
    if not branching() or layer.is_initializing():
        return None
    max_features = layer.max_features
    static = lambda w, full: w is None or (isinstance(w, int) and w >= full)  # noqa: E731
    out_count = None if static(width, max_features) else _tiers.active_count(width)
    in_count = None if in_width is None else _tiers.active_count(in_width)
    return in_count, out_count


def _masked_output(layer: nn.Module, y: jax.Array, bias: jax.Array | None,
                   width: jax.Array) -> jax.Array:
    """Adds the bias and zeroes the output features past `width`."""
    if bias is not None:
        y = y + bias
    return jnp.where(active_mask(layer.max_features, width), y, jnp.zeros((), y.dtype))


class MaskedDense(nn.Module):
    """`nn.Dense` at `max_features` outputs, of which the first `width` are active.

    Called as `layer(x, width, in_width)`. The output has shape `(..., max_features)` with
    columns `>= width` exactly zero. Input features `>= in_width` are ignored (treated as
    zero), so a masked layer can follow another one. See the module docstring for the init
    rule that makes the active block equal to `nn.Dense(width)` on `in_width` inputs with
    `kernel_init=exact_width_init(kernel_init, (max_in, max_features))`.

    Example:
      >>> layer = MaskedDense(64)
      >>> x = jnp.ones((4, 16), jnp.float32)
      >>> widths = jnp.array([8, 33, 64], jnp.int32)
      >>> keys = jax.random.split(jax.random.key(0), 3)
      >>> params = jax.vmap(lambda k, w: layer.init(k, x, w))(keys, widths)
      >>> y = jax.vmap(lambda p, w: layer.apply(p, x, w))(params, widths)  # (3, 4, 64)

    Attributes:
      max_features: the largest width, the number of output columns.
      use_bias: whether to add a bias.
      dtype: the dtype of the computation (default: inferred from inputs and parameters).
      param_dtype: the dtype of the parameters.
      precision: the precision of the matrix product (see `jax.lax.Precision`).
      kernel_init: the full-shape kernel initializer (Linen's default, `lecun_normal`).
      bias_init: the full-shape bias initializer.
    """

    max_features: int
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = default_bias_init

    @nn.compact
    def __call__(self, inputs: jax.Array, width: Width,
                 in_width: Width | None = None) -> jax.Array:
        """Applies the layer to the active features.

        Args:
          inputs: `(..., max_in)`; features past `in_width` are ignored.
          width: the active number of output features, an int or a traced int32 scalar.
          in_width: the active number of input features (default: all `max_in`), or a
            `(max_in,)` boolean mask of the active ones.

        Returns:
          `(..., max_features)`, zero in the columns `>= width`.

        Raises:
          ValueError: a width that is not a scalar, or a Python int out of its range.
        """
        counts = _counts(self, width, in_width)
        inputs, kernel, bias, width = _masked_parameters(self, inputs, width, in_width, ())
        y = _tiers.tiered_product(inputs, kernel, *(counts or (None, None)),
                                  precision=self.precision)  # no counts: the full product
        return _masked_output(self, y, bias, width)


class MaskedConv(nn.Module):
    """`nn.Conv` at `max_features` output channels, of which the first `width` are active.

    The channel-axis counterpart of `MaskedDense`, channels last (NHWC for 2-D). The active
    block equals `nn.Conv(width, kernel_size, ...)` on `in_width` input channels with
    `kernel_init=exact_width_init(kernel_init, (*kernel_size, max_in, max_features))`: the
    scale `sqrt(max_in / in_width)` is the fan-in ratio, as the receptive field is shared.

    Attributes:
      max_features: the largest number of output channels.
      kernel_size: an int or a tuple of ints, one per spatial axis.
      strides: an int or a tuple of ints (default: 1).
      padding: `"SAME"`, `"VALID"`, an int, or a sequence of ints or `(low, high)` pairs,
        as in `nn.Conv`. Linen's `"CIRCULAR"`, `"REFLECT"` and `"CAUSAL"` are not supported.
      kernel_dilation: an int or a tuple of ints (default: 1).
      use_bias: whether to add a bias.
      dtype: the dtype of the computation (default: inferred from inputs and parameters).
      param_dtype: the dtype of the parameters.
      precision: the precision of the convolution (see `jax.lax.Precision`).
      kernel_init: the full-shape kernel initializer (Linen's default, `lecun_normal`).
      bias_init: the full-shape bias initializer.
    """

    max_features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    kernel_dilation: int | Sequence[int] = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = default_bias_init

    @nn.compact
    def __call__(self, inputs: jax.Array, width: Width,
                 in_width: Width | None = None) -> jax.Array:
        """Convolves the active input channels into `max_features` channels.

        Args:
          inputs: `(*batch, *spatial, max_in)`, channels last; one batch axis at least.
          width: the active number of output channels, an int or a traced int32 scalar.
          in_width: the active number of input channels (default: all `max_in`), or a
            `(max_in,)` boolean mask of the active ones.

        Returns:
          `(*batch, *spatial_out, max_features)`, zero in the channels `>= width`.

        Raises:
          ValueError: an unsupported padding, inputs without a batch axis, or a width that
            is not a scalar or is a Python int out of its range.
        """
        kernel_size = ((self.kernel_size,) if isinstance(self.kernel_size, int)
                       else tuple(self.kernel_size))
        rank = len(kernel_size)

        def per_axis(value):
            return (value,) * rank if isinstance(value, int) else tuple(value)

        padding = canonicalize_padding(self.padding, rank)
        if isinstance(padding, str) and padding not in ("SAME", "VALID"):
            raise ValueError(f"MaskedConv: padding={padding!r} is not supported; use 'SAME', "
                             f"'VALID' or explicit (low, high) pairs.")
        if inputs.ndim < rank + 2:
            raise ValueError(f"MaskedConv: inputs of shape {inputs.shape} need a batch axis, "
                             f"{rank} spatial axes and a channel axis.")
        # lax wants one batch axis; fold any others into it, as nn.Conv does.
        batch_shape = inputs.shape[:inputs.ndim - rank - 1]
        inputs = jnp.reshape(inputs, (-1,) + inputs.shape[len(batch_shape):])

        counts = _counts(self, width, in_width)
        inputs, kernel, bias, width = _masked_parameters(self, inputs, width, in_width,
                                                         kernel_size)
        y = convolution(inputs, kernel, per_axis(self.strides), padding,
                        per_axis(self.kernel_dilation), self.precision, counts)
        y = _masked_output(self, y, bias, width)
        return jnp.reshape(y, batch_shape + y.shape[1:])


# The one table of width-maskable operators: what a masked build replaces each with. Its keys
# are handed to the space layer (`jaxnas.space.register_maskable`) when `jaxnas.nn` is imported.
MASKED_LAYERS: dict[type, type] = {nn.Dense: MaskedDense, nn.Conv: MaskedConv}
