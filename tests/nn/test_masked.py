"""Width masking: layers built at a bucket's maximum width equal plain exact-width Linen layers.

The references are ordinary `nn.Dense` / `nn.Conv` layers of the exact width, initialised on
their own (same PRNG key, `exact_width_init`), never built from the masked parameters; the
masked parameters are only sliced to compare them. Initial parameters are compared bit for
bit (both sides run eagerly; see the masked layers' module docstring in `jaxnas.nn`);
outputs, losses and trained parameters within 1e-6 (absolute): the masked and exact programs add the
same nonzero terms, the padded ones being exact zeros, but XLA may sum them in another order
for another shape (observed: at most 2e-7 after 20 steps).
"""

import functools
import re

import chex
import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flax.linen.linear import default_kernel_init

from jaxnas.nn import (
    MaskedConv,
    MaskedDense,
    exact_params_from_masked,
    exact_width_init,
)

IN_FEATURES = 5
HIDDEN_MAX = 64
OUT_FEATURES = 10
HIDDEN_WIDTHS = (8, 33, 64)
TOLERANCE = 1e-6
# A nonzero bias init, so that the tests also show the bias is sliced, not re-drawn.
BIAS_INIT = nn.initializers.normal(0.1)


def prng_key(seed):
    """A typed key of the "rbg" implementation, for speed only.

    With jax's default (partitionable) threefry, XLA on the CPU compiles a random draw in a
    time that grows steeply with its number of axes: ~1 s for a (5, 64) kernel, ~3 s once
    vmapped over keys, ~10 s for a 4-axis conv kernel; "rbg" compiles each in ~0.2 s. The
    masked layers never look at the key, so nothing compared here depends on the choice.
    "rbg" draws are not invariant under vmap over keys, so a population is initialised
    either with one key over traced widths (vmap) or member by member (a loop), never by
    vmapping over keys; the exact layers are then initialised with the same key.
    """
    return jax.random.key(seed, impl="rbg")


class MaskedMLP(nn.Module):
    """in -> MaskedDense(64) at `hidden_width` -> relu -> MaskedDense(10), all 10 active."""

    @nn.compact
    def __call__(self, x, hidden_width):
        # Names match ExactMLP's: Linen derives each parameter's key from its module path.
        h = MaskedDense(HIDDEN_MAX, bias_init=BIAS_INIT, name="hidden")(x, hidden_width)
        return MaskedDense(OUT_FEATURES, bias_init=BIAS_INIT, name="out")(
            nn.relu(h), OUT_FEATURES, in_width=hidden_width)


class ExactMLP(nn.Module):
    """The same MLP from plain `nn.Dense` layers at the exact hidden width."""

    hidden_width: int

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.hidden_width, name="hidden",
                     kernel_init=exact_width_init(default_kernel_init, (IN_FEATURES, HIDDEN_MAX)),
                     bias_init=exact_width_init(BIAS_INIT, (HIDDEN_MAX,)))(x)
        return nn.Dense(OUT_FEATURES, name="out",
                        kernel_init=exact_width_init(default_kernel_init,
                                                     (HIDDEN_MAX, OUT_FEATURES)),
                        bias_init=exact_width_init(BIAS_INIT, (OUT_FEATURES,)))(nn.relu(h))


def _exact_mlp_params(masked_params, hidden_width):
    """The ExactMLP parameters that one member of the masked population stands for."""
    layers = masked_params["params"]
    return {"params": {
        "hidden": exact_params_from_masked(layers["hidden"], in_width=IN_FEATURES,
                                           width=hidden_width),
        "out": exact_params_from_masked(layers["out"], in_width=hidden_width,
                                        width=OUT_FEATURES),
    }}


def _stack(trees):
    """A population from its members: every leaf gets a leading member axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _member(tree, index):
    """One member of a population of numpy arrays."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def _assert_trees_equal(actual, expected):
    chex.assert_trees_all_equal_structs(actual, expected)
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


def _assert_trees_close(actual, expected):
    chex.assert_trees_all_equal_structs(actual, expected)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=0, atol=TOLERANCE),
                 actual, expected)


def _regression_data():
    """(64, 5) inputs and a smooth (64, 10) target, from fixed keys."""
    x_key, w_key = jax.random.split(prng_key(42))
    x = jax.random.normal(x_key, (64, IN_FEATURES), jnp.float32)
    mixing = jax.random.normal(w_key, (IN_FEATURES, OUT_FEATURES), jnp.float32)
    return x, jnp.sin(x @ mixing)


# ---------------------------------------------------------------------------- dense


def test_masked_mlp_equals_exact_mlp_forward():
    x, _ = _regression_data()
    widths = jnp.array(HIDDEN_WIDTHS, jnp.int32)
    key = prng_key(0)
    model = MaskedMLP()
    # Members are initialised one by one (vmapped init: the conv test) and stacked.
    params = _stack([model.init(key, x, jnp.int32(width)) for width in HIDDEN_WIDTHS])
    # One program applies every width.
    outputs = jax.jit(jax.vmap(lambda p, w: model.apply(p, x, w)))(params, widths)
    params, outputs = jax.device_get((params, outputs))
    assert outputs.shape == (len(HIDDEN_WIDTHS), 64, OUT_FEATURES)

    for index, width in enumerate(HIDDEN_WIDTHS):
        exact = ExactMLP(width)
        exact_params = exact.init(key, x)
        # The exact layer's own init draws exactly the masked layer's active block.
        _assert_trees_equal(_exact_mlp_params(_member(params, index), width), exact_params)
        np.testing.assert_allclose(outputs[index], exact.apply(exact_params, x),
                                   rtol=0, atol=TOLERANCE)


def test_exact_width_init_has_the_linen_distribution_at_the_active_fan_in():
    # The sliced, scaled draw must be lecun_normal at fan_in = in_width, not at max_in.
    # lecun_normal is a normal truncated to +-2 standard deviations of the underlying normal,
    # rescaled to a standard deviation of exactly 1 / sqrt(fan_in).
    max_in, in_width, width = 256, 16, 1024
    init = exact_width_init(default_kernel_init, (max_in, width))
    kernel = np.asarray(jax.jit(init, static_argnums=(1, 2))(prng_key(3), (in_width, width),
                                                            jnp.float32))
    std = 1.0 / np.sqrt(in_width)
    # n = 16384 draws; the sample standard deviation of a normal has standard error
    # std / sqrt(2 n) (smaller for the light-tailed truncated normal): allow 5 of them.
    n = kernel.size
    assert abs(kernel.std() - std) < 5 * std / np.sqrt(2 * n)
    assert abs(kernel.mean()) < 5 * std / np.sqrt(n)
    assert np.abs(kernel).max() <= 2 * std / 0.87962566103423978 + 1e-6  # the truncation


def _sgd_step(apply_fn, optimizer, x, y):
    """One step of `optimizer` on the mean squared error of `apply_fn(params, x)`."""

    def step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((apply_fn(p, x) - y) ** 2))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _run(step, params, opt_state, steps, *args):
    """`steps` calls of a jitted step; returns the params and the (steps,) losses."""
    losses = []
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state, *args)
        losses.append(loss)
    return params, jnp.stack(losses, axis=-1)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.adam(1e-2)],
                         ids=["sgd", "adam"])
def test_masked_training_equals_exact_training(optimizer):
    x, y = _regression_data()
    model = MaskedMLP()
    steps = 20
    keys = jax.random.split(prng_key(7), len(HIDDEN_WIDTHS))
    # Each member has its own key, so members are initialised one by one (see prng_key) and
    # stacked into a population.
    params = _stack([model.init(k, x, jnp.int32(w)) for k, w in zip(keys, HIDDEN_WIDTHS)])

    def masked_step(params, opt_state, width):
        apply_fn = functools.partial(model.apply, hidden_width=width)
        return _sgd_step(apply_fn, optimizer, x, y)(params, opt_state)

    # One compiled step trains every width: the widths are traced values.
    chex.clear_trace_counter()  # the counter is per function, shared by the parametrizations
    step = jax.jit(jax.vmap(chex.assert_max_traces(masked_step, n=1)))
    widths = jnp.array(HIDDEN_WIDTHS, jnp.int32)
    opt_state = jax.vmap(optimizer.init)(params)
    trained, masked_losses = jax.device_get(_run(step, params, opt_state, steps, widths))
    # Other widths run the same program (assert_max_traces raises on a retrace); only the
    # absence of a retrace matters here, not the numbers.
    step(params, opt_state, jnp.array([1, 17, 40], jnp.int32))

    for index, width in enumerate(HIDDEN_WIDTHS):
        # An ordinary exact-width MLP, initialised and trained on its own.
        exact = ExactMLP(width)
        exact_params = exact.init(keys[index], x)
        exact_step = jax.jit(_sgd_step(exact.apply, optimizer, x, y))
        exact_trained, exact_losses = jax.device_get(
            _run(exact_step, exact_params, optimizer.init(exact_params), steps))

        np.testing.assert_allclose(masked_losses[index], exact_losses, rtol=0, atol=TOLERANCE)
        member = _member(trained, index)
        _assert_trees_close(_exact_mlp_params(member, width), exact_trained)
        # The padding never moved: zero at init, zero gradient, zero update.
        hidden, out = member["params"]["hidden"], member["params"]["out"]
        assert not np.any(hidden["kernel"][:, width:])
        assert not np.any(hidden["bias"][width:])
        assert not np.any(out["kernel"][width:, :])
    assert masked_losses[:, -1].max() < masked_losses[:, 0].min()  # it did learn


# ---------------------------------------------------------------------------- conv


@pytest.mark.parametrize("strides, padding", [(1, "SAME"), (2, "VALID"), (1, ((2, 0), (1, 1)))],
                         ids=["same", "valid-stride2", "explicit"])
def test_masked_conv_equals_exact_conv_forward(strides, padding):
    max_in, max_features, kernel_size = 6, 16, (3, 3)
    in_widths = (1, 4, 6)
    out_widths = (16, 5, 1)
    # Inputs are nonzero in every channel: the masked layer must ignore the inactive ones.
    x = jax.random.normal(prng_key(1), (2, 9, 9, max_in), jnp.float32)
    # One key for the population (see prng_key); the widths are traced through init and
    # apply.
    key = prng_key(2)
    layer = MaskedConv(max_features, kernel_size, strides=strides, padding=padding,
                       bias_init=BIAS_INIT)
    w = jnp.array(out_widths, jnp.int32)
    v = jnp.array(in_widths, jnp.int32)
    params = jax.vmap(lambda w, v: layer.init(key, x, w, v))(w, v)
    outputs = jax.jit(jax.vmap(lambda p, w, v: layer.apply(p, x, w, v)))(params, w, v)
    params, outputs = jax.device_get((params, outputs))

    for index, (in_width, width) in enumerate(zip(in_widths, out_widths)):
        exact = nn.Conv(width, kernel_size, strides=strides, padding=padding,
                        kernel_init=exact_width_init(default_kernel_init,
                                                     kernel_size + (max_in, max_features)),
                        bias_init=exact_width_init(BIAS_INIT, (max_features,)))
        exact_params = exact.init(key, x[..., :in_width])
        _assert_trees_equal(
            {"params": exact_params_from_masked(_member(params, index)["params"],
                                                in_width=in_width, width=width)},
            exact_params)
        expected = exact.apply(exact_params, x[..., :in_width])
        assert outputs.shape[1:-1] == expected.shape[:-1]
        np.testing.assert_allclose(outputs[index, ..., :width], expected,
                                   rtol=0, atol=TOLERANCE)
        assert not np.any(outputs[index, ..., width:])


@pytest.mark.parametrize("kernel_size, strides, dilation, padding", [
    ((5,), 1, 1, "SAME"), ((3,), 2, 2, "SAME"), ((4,), 3, 1, "VALID"),
    ((2, 3), (1, 2), (2, 1), ((1, 0), (2, 2)))], ids=["1d", "1d-dilated", "1d-even", "2d"])
def test_masked_conv_matches_linen_for_any_window_stride_and_dilation(
        kernel_size, strides, dilation, padding):
    # On a CPU the masked convolution is computed as shifted windows and one matrix
    # product (faster inside training loops); it must stay Linen's convolution.
    x = jax.random.normal(prng_key(3), (2, *(11,) * len(kernel_size), 5), jnp.float32)
    layer = MaskedConv(7, kernel_size, strides=strides, padding=padding,
                       kernel_dilation=dilation)
    params = layer.init(prng_key(4), x, 7)
    exact = nn.Conv(7, kernel_size, strides=strides, padding=padding,
                    kernel_dilation=dilation)
    expected = exact.apply(params, x)
    outputs = jax.jit(lambda p: layer.apply(p, x, 7))(params)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=TOLERANCE)


# ---------------------------------------------------------------------------- padding


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_padding_is_zero_and_gets_zero_gradients(kind):
    if kind == "dense":
        max_in, max_features, in_width, width = IN_FEATURES, HIDDEN_MAX, 3, 33
        layer = MaskedDense(max_features, bias_init=BIAS_INIT)
        shape = (4, max_in)
    else:
        max_in, max_features, in_width, width = 6, 16, 3, 5
        layer = MaskedConv(max_features, (3, 3), bias_init=BIAS_INIT)
        shape = (2, 5, 5, max_in)

    @jax.jit
    def run():
        x = jax.random.normal(prng_key(4), shape, jnp.float32)
        # Garbage, even inf and NaN, in the inactive input channels must not leak anywhere.
        x = x.at[..., in_width].set(jnp.inf).at[..., in_width + 1].set(jnp.nan)
        params = layer.init(prng_key(5), x, width, in_width)["params"]

        def loss_fn(p, inputs):
            # sigmoid(0) = 0.5 with slope 0.25: unmasked padding would receive gradient.
            return jnp.sum(jax.nn.sigmoid(layer.apply({"params": p}, inputs, width, in_width)))

        y = layer.apply({"params": params}, x, width, in_width)
        return y, params, jax.grad(loss_fn, argnums=(0, 1))(params, x)

    y, params, (param_grads, input_grads) = jax.device_get(run())
    assert y.shape[-1] == max_features
    assert np.all(np.isfinite(y)) and not np.any(y[..., width:])
    for tree in (params, param_grads):
        assert np.all(np.isfinite(tree["kernel"])) and np.all(np.isfinite(tree["bias"]))
        assert not np.any(tree["kernel"][..., in_width:, :])
        assert not np.any(tree["kernel"][..., width:])
        assert not np.any(tree["bias"][width:])
    assert np.all(np.isfinite(input_grads)) and not np.any(input_grads[..., in_width:])
    # The active block is live: it does receive gradient.
    assert np.all(param_grads["bias"][:width] != 0)


def test_widths_known_at_trace_time_are_checked():
    x = jnp.ones((2, 4), jnp.float32)
    with pytest.raises(ValueError, match="width=0"):
        MaskedDense(8).init(prng_key(0), x, 0)
    with pytest.raises(ValueError, match="in_width=5"):
        MaskedDense(8).init(prng_key(0), x, 8, in_width=5)
    with pytest.raises(ValueError, match="scalar"):
        MaskedDense(8).init(prng_key(0), x, jnp.array([1, 2], jnp.int32))
    with pytest.raises(ValueError, match="CIRCULAR"):
        MaskedConv(8, 3, padding="CIRCULAR").init(
            prng_key(0), jnp.ones((1, 4, 4, 2), jnp.float32), 8)


@pytest.mark.parametrize("name,shape", [("kernel", (IN_FEATURES, HIDDEN_MAX + 1)),
                                        ("bias", (HIDDEN_MAX - 1,))])
def test_a_parameter_of_another_shape_is_refused_with_linen_s_error(name, shape):
    """Applied to parameters of another shape than its maximum widths, a masked layer
    raises Linen's `ScopeParamShapeError`, naming the parameter and both shapes."""
    layer = MaskedDense(HIDDEN_MAX)
    x = jnp.ones((2, IN_FEATURES))
    params = layer.init(prng_key(0), x, width=8)["params"]
    params = {**params, name: jnp.zeros(shape)}
    with pytest.raises(flax.errors.ScopeParamShapeError,
                       match=rf'"{name}".*received has shape {re.escape(str(shape))}'):
        layer.apply({"params": params}, x, width=8)
