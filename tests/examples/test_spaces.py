"""Every example space of the seed systems: 64 configurations sampled, built, initialised and
run with the expected output shape.

All 64 are resolved and built. Every distinct architecture among them (configs with equal
static decisions share one; traced values cannot change shapes) goes through `init` and
`apply` under `jax.eval_shape`: the same Python code and Linen shape inference, with every
parameter and output shape checked, but no XLA compile per architecture (eager init costs
about 2 s per new architecture on CPU). The first configuration of each space also runs for
real, with an `rbg` key (threefry draws of conv kernels compile slowly on CPU), and must give
finite outputs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from examples.spaces import hannah, hypernets, neps, neural_dsl

CASES = [(module.__name__.rsplit(".", 1)[-1], name, make, shape)
         for module in (neps, hypernets, hannah, neural_dsl)
         for name, (make, shape) in module.SPACES.items()]
N_CONFIGS = 64


@pytest.mark.slow
@pytest.mark.parametrize("system, name, make, input_shape", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_example_space_builds_and_runs(system, name, make, input_shape):
    spec = jn.compile(make())
    # Jitted: one program each, not op-by-op dispatch under vmap (or of an init's draws).
    configs = jax.jit(jax.vmap(spec.sample))(jax.random.split(jax.random.key(0), N_CONFIGS))
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    architectures = set()
    for i in range(N_CONFIGS):
        config = jax.tree.map(lambda v: v[i], configs)
        module = jn.nn.build(spec.resolve(config, build=False)["model"])
        if spec.bucket(config) in architectures:
            continue
        architectures.add(spec.bucket(config))
        out, variables = jax.eval_shape(module.init_with_output, jax.random.key(i), x)
        assert out.shape == (input_shape[0], 2 if name == "dnn_space" else 10), (i, out.shape)
        if i == 0:
            real = jax.jit(module.init)(jax.random.key(0, impl="rbg"), jnp.ones(input_shape))
            assert jax.tree.map(jnp.shape, real) == jax.tree.map(lambda s: s.shape, variables)
            outputs = jax.jit(module.apply)(real, jnp.ones(input_shape))
            assert np.all(np.isfinite(np.asarray(outputs)))
    assert len(architectures) > 1 or len(spec.static_paths) == 0, "the space never varied"

    # Masked: configs that differ only in widths share a bucket, and its one module runs
    # every member (shapes only: masked training is tested in tests/nn/test_masked_build.py).
    masked = spec.buckets(configs, masked=True)
    assert len(set(masked)) <= len(architectures)
    if spec.width_paths:
        assert len(set(masked)) < len(architectures)
        first = jax.tree.map(lambda v: v[0], configs)
        module = spec.resolve(first, masked=True)["model"]
        for i in [j for j in range(N_CONFIGS) if masked[j] == masked[0]][:4]:
            config = jax.tree.map(lambda v: v[i], configs)
            out, _ = jax.eval_shape(lambda c, x: module.init_with_output(
                jax.random.key(0), x, config=c), config, x)
            assert out.shape[0] == input_shape[0]


def test_shared_and_fresh_conv_relu_blocks_differ_as_hannah_describes():
    shared = jn.compile(hannah.conv_relu_space(shared=True))
    fresh = jn.compile(hannah.conv_relu_space(shared=False))
    assert len(shared.paths) == 3 and len(fresh.paths) == 6
    config = shared.sample(jax.random.key(0))
    blocks = shared.resolve(config, build=False)["model"].args[:2]
    assert blocks[0].args[0].kwargs == blocks[1].args[0].kwargs  # same sampled values
    module = jn.nn.build(shared.resolve(config, build=False)["model"])
    params = jax.eval_shape(module.init, jax.random.key(0), jnp.ones((1, 16, 16, 3)))["params"]
    assert {"model.args[0].args[0]", "model.args[1].args[0]"} <= set(params)  # own weights


def test_hand_counted_parameters_of_the_neural_dsl_network():
    spec = jn.compile(neural_dsl.mnist_space())
    module = jn.nn.build(spec.resolve(spec.sample(jax.random.key(0)), build=False)["model"])
    conv = 3 * 3 * 1 * 32 + 32
    dense = 14 * 14 * 32 * 128 + 128  # a SAME conv keeps 28x28; the 2x2 pool halves it
    head = 128 * 10 + 10
    assert jn.nn.summary(module, (1, 28, 28, 1))["params"] == conv + dense + head
    assert math.isclose(spec.parameters()["learning_rate"].upper, 1e-2)
