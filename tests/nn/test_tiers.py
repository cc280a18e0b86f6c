"""Width tiers: masked products at the active widths' tier equal the full-shape products."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas.nn._tiers import tiered_product, tiers, unbatched_widths
from jaxnas.train import BucketTrainer, SupervisedTask


def _zeroed(x, in_count):
    return jnp.where(jnp.arange(x.shape[-1]) < in_count, x, 0.0)


@pytest.mark.parametrize("window", [(), (3,)], ids=["dense", "conv-patches"])
def test_a_tiered_product_and_its_gradients_equal_the_full_ones(window):
    channels, outputs = 32, 24
    lhs = jax.random.normal(jax.random.key(0), (5, *window, channels))
    rhs = jax.random.normal(jax.random.key(1), (*window, channels, outputs))
    cotangent = jax.random.normal(jax.random.key(2), (5, outputs))
    axes = len(window) + 1

    def full(lhs, rhs, in_count, out_count):
        y = jax.lax.dot_general(lhs, rhs, ((tuple(range(1, 1 + axes)), tuple(range(axes))),
                                           ((), ())))
        return jnp.where(jnp.arange(outputs) < out_count, y, 0.0)

    def tiered(lhs, rhs, in_count, out_count):
        y = tiered_product(lhs, rhs, in_count, out_count)
        return jnp.where(jnp.arange(outputs) < out_count, y, 0.0)

    def loss(product):
        return jax.jit(jax.value_and_grad(
            lambda l, r, i, o: jnp.sum(product(_zeroed(l, i), r, i, o) * cotangent),
            argnums=(0, 1)))

    # one width in every tier of both axes (tiers of 32: 8, 16, 32; of 24: 6, 12, 24)
    assert tiers(channels) == (8, 16, 32) and tiers(outputs) == (6, 12, 24)
    for in_count in (3, 8, 9, 16, 17, 32):
        for out_count in (1, 6, 7, 12, 13, 24):
            value, grads = loss(tiered)(lhs, rhs, in_count, out_count)
            ref_value, ref_grads = loss(full)(lhs, rhs, in_count, out_count)
            np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
            for got, want in zip(grads, ref_grads):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_masked_layers_branch_only_inside_unbatched_widths():
    layer = jn.nn.MaskedDense(64)
    x = jnp.ones((4, 32))
    params = layer.init(jax.random.key(0), x, 8, 16)

    def program(width, in_width):
        return jax.jit(lambda p, w, i: layer.apply(p, x, w, i)).lower(
            params, width, in_width).as_text()

    assert "case" not in program(8, 16)  # outside: the full-shape product

    def tiered(p, w, i):
        with unbatched_widths():
            return layer.apply(p, x, w, i)

    text = jax.jit(tiered).lower(params, 8, 16).as_text()
    assert "case" in text  # inside: a switch over the width tiers
    with unbatched_widths():
        y = layer.apply(params, x, jnp.int32(8), jnp.int32(16))
    np.testing.assert_allclose(y, layer.apply(params, x, 8, 16), rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(y)[:, 8:] == 0)


def test_one_member_at_a_time_trains_in_tiers_what_all_at_once_trains_in_full():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = (x @ rng.normal(size=(6, 3))).argmax(1).astype(np.int32)
    width = jn.Integer(2, 64)
    space = {"model": jn.Operation(jn.nn.Sequential, args=([
        jn.Operation(nn.Dense, args=(width,)), jn.Operation(nn.relu),
        jn.Operation(nn.Dense, args=(jn.Integer(2, 64),)), jn.Operation(nn.relu),
        jn.Operation(nn.Dense, args=(3,))],)),
        "learning_rate": jn.Float(1e-3, 1e-1, log=True), "epochs": jn.IntegerFidelity(1, 4)}
    spec = jn.compile(space)
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(3), 6))
    paths = spec.width_paths
    widths = np.array([[3, 60], [16, 17], [40, 5], [64, 64], [9, 33], [2, 2]], np.int32)
    configs = spec.config({p: (widths[:, paths.index(p)] if p in paths else configs[p])
                           for p in spec.paths})  # widths in every tier of 64 (16, 32, 64)
    task = SupervisedTask((x[:96], y[:96]), (x[96:], y[96:]), batch_size=16)
    bucket = task.for_bucket(spec, jax.tree.map(lambda a: a[0], configs), masked=True)
    keys = jax.random.split(jax.random.key(4), 6)
    one_at_a_time, _ = BucketTrainer(bucket, members_at_once=1)(keys, configs, np.full(6, 4))
    all_at_once, _ = BucketTrainer(bucket, members_at_once="all")(keys, configs, np.full(6, 4))
    for got, want in zip(jax.tree.leaves(one_at_a_time.params),
                         jax.tree.leaves(all_at_once.params)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert np.all((np.asarray(got) == 0) == (np.asarray(want) == 0))  # padding stays 0
