"""Every pure SearchSpace method under jit and vmap: no retracing, stable dtypes, determinism."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn


class Layer:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _flat():
    return {
        "lr": jn.Float(1e-5, 1e-1, log=True, prior=1e-3),
        "wd": jn.Float(0.0, 0.1),
        "depth": jn.Integer(1, 8, prior=3, prior_confidence="high"),
        "width": jn.Integer(16, 512, log=True),
        "opt": jn.Categorical(("adam", "sgd", "lamb"), prior=0),
        "epochs": jn.IntegerFidelity(1, 27),
    }


def _hierarchical():
    kernel = jn.Integer(1, 7)
    conv = jn.Operation(Layer, kwargs={"k": kernel.resample(), "features": jn.Categorical((16, 32))})
    act = jn.Categorical((jn.Operation(Layer), jn.Operation(jnp.tanh)))
    return {
        "block": jn.Categorical((
            (jn.ByName("block").resample(), jn.ByName("block").resample()),
            (conv.resample(), act.resample()),
        )),
        "model": jn.Operation(Layer, args=(jn.ByName("block").resample(), conv.resample())),
        "lr": jn.Float(1e-4, 1e-1, log=True, prior=1e-2),
    }


SPACES = {"flat": _flat, "hierarchical": _hierarchical}


@pytest.fixture(params=sorted(SPACES), scope="module")
def spec(request):
    return jn.compile(SPACES[request.param](), max_depth=3)


@pytest.fixture(autouse=True)
def _fresh_trace_counter():
    chex.clear_trace_counter()  # counts are per function name, across parametrizations


def _dtypes(config):
    return {p: v.dtype for p, v in config.items()}


def test_sample_and_sample_prior_jit_vmap_no_retrace(spec):
    for method in (spec.sample, spec.sample_prior):
        traced = jax.jit(jax.vmap(chex.assert_max_traces(method, n=1)))
        keys = jax.random.split(jax.random.key(0), 16)
        first = traced(keys)
        second = traced(jax.random.split(jax.random.key(1), 16))  # new values, no new trace
        assert set(first) == set(spec.paths)
        assert all(v.shape == (16,) for v in first.values())
        assert _dtypes(first) == _dtypes(second)
        again = traced(keys)
        chex.assert_trees_all_equal(first, again)  # same key, same configs
        single = method(keys[3])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[3], first), single, rtol=1e-6)


def test_dtypes(spec):
    config = spec.sample(jax.random.key(0))
    for path, param in spec.parameters().items():
        expected = jnp.float32 if isinstance(param, jn.Float) else jnp.int32
        assert config[path].dtype == expected and config[path].shape == ()


def test_log_prior_to_unit_from_unit_active_under_jit_and_vmap(spec):
    configs = jax.vmap(spec.sample_prior)(jax.random.split(jax.random.key(2), 32))
    log_prior = jax.jit(jax.vmap(chex.assert_max_traces(spec.log_prior, n=1)))
    values = log_prior(configs)
    assert values.shape == (32,) and values.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(values)))
    log_prior(jax.vmap(spec.sample)(jax.random.split(jax.random.key(3), 32)))

    to_unit = jax.jit(jax.vmap(spec.to_unit))
    u = to_unit(configs)
    assert u.shape == (32, len(spec.paths)) and u.dtype == jnp.float32
    assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    back = jax.jit(jax.vmap(spec.from_unit))(u)
    for path in spec.paths:
        np.testing.assert_allclose(np.asarray(back[path]), np.asarray(configs[path]), rtol=2e-5)

    active = jax.jit(jax.vmap(spec.active))(configs)
    assert set(active) == set(spec.paths)
    assert all(v.dtype == jnp.bool_ and v.shape == (32,) for v in active.values())


def test_mutate_under_jit_and_vmap_with_traced_rate(spec):
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(4), 8))
    mutate = jax.jit(jax.vmap(chex.assert_max_traces(spec.mutate, n=1), in_axes=(0, 0, None, None)))
    keys = jax.random.split(jax.random.key(5), 8)
    out = mutate(keys, configs, 0.5, 0.25)
    out2 = mutate(keys, configs, 0.7, 0.1)  # rate and std are traced: no retrace
    assert _dtypes(out) == _dtypes(configs) == _dtypes(out2)
    chex.assert_trees_all_equal(out, mutate(keys, configs, 0.5, 0.25))
    unchanged = mutate(keys, configs, 0.0, 0.25)
    chex.assert_trees_all_equal(unchanged, configs)


def test_lax_scan_keeps_structure(spec):
    def step(config, key):
        new = spec.mutate(key, config, 0.5, 0.25)
        return new, spec.log_prior(new)

    init = spec.sample(jax.random.key(6))
    final, trace = jax.lax.scan(step, init, jax.random.split(jax.random.key(7), 10))
    assert jax.tree.structure(final) == jax.tree.structure(init)
    assert _dtypes(final) == _dtypes(init)
    assert trace.shape == (10,)


def test_spec_is_a_valid_static_argument(spec):
    @jax.jit
    def draw(key):
        return spec.sample(key)

    draw_static = jax.jit(lambda space, key: space.sample(key), static_argnums=0)
    key = jax.random.key(9)
    chex.assert_trees_all_equal(draw(key), draw_static(spec, key))


def test_resolve_every_sample(spec):
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(8), 64))
    for i in range(64):
        resolved = spec.resolve(jax.tree.map(lambda x: x[i], configs))
        assert "lr" in resolved
