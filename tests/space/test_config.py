"""`Config`: a read-only mapping by path, packed into two arrays, usable as a pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn


@pytest.fixture(scope="module")
def spec():
    return jn.compile({"lr": jn.Float(1e-4, 1e-1, log=True), "depth": jn.Integer(1, 4),
                       "act": jn.Categorical(("relu", "tanh")), "wd": jn.Float(0.0, 0.1)})


def test_config_is_a_mapping_by_path(spec):
    config = spec.sample(jax.random.key(0))
    assert isinstance(config, jn.Config)
    assert list(config) == ["lr", "depth", "act", "wd"] and len(config) == 4
    assert "lr" in config and "nope" not in config
    assert config["lr"].dtype == jnp.float32 and config["depth"].dtype == jnp.int32
    assert config.floats.shape == (2,) and config.ints.shape == (2,)  # two packed leaves
    assert len(jax.tree.leaves(config)) == 2
    with pytest.raises(KeyError, match="no path 'nope'"):
        config["nope"]
    assert "'depth':" in repr(config)


def test_batches_index_like_dicts(spec):
    batch = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), 5))
    assert batch["lr"].shape == (5,)
    third = jax.tree.map(lambda x: x[2], batch)
    assert isinstance(third, jn.Config) and float(third["lr"]) == float(batch["lr"][2])


def test_replace_returns_a_new_config(spec):
    config = spec.sample(jax.random.key(0))
    before = {p: np.asarray(v).item() for p, v in config.items()}
    other = config.replace({"depth": 3, "lr": 0.01})
    assert int(other["depth"]) == 3 and float(other["lr"]) == pytest.approx(0.01)
    assert int(other["act"]) == before["act"]  # untouched paths are kept
    assert {p: np.asarray(v).item() for p, v in config.items()} == before  # original intact
    with pytest.raises(KeyError, match="no path 'x'"):
        config.replace({"x": 1})


def test_replace_agrees_eagerly_under_jit_and_on_a_batch(spec):
    """Concrete values are written on the host, traced ones in the program: both give the
    same config of device arrays, for one config and for a batch (a value a row)."""
    config = spec.sample(jax.random.key(2))
    eager = config.replace({"lr": 0.02, "depth": 2})
    traced = jax.jit(lambda c, lr, depth: c.replace({"lr": lr, "depth": depth}))(
        config, jnp.float32(0.02), jnp.int32(2))
    for a, b in ((eager.floats, traced.floats), (eager.ints, traced.ints)):
        assert isinstance(a, jax.Array) and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    batch = jax.vmap(spec.sample)(jax.random.split(jax.random.key(3), 4))
    moved = batch.replace({"depth": np.arange(1, 5), "wd": 0.05})
    np.testing.assert_array_equal(np.asarray(moved["depth"]), [1, 2, 3, 4])
    np.testing.assert_allclose(np.asarray(moved["wd"]), 0.05)
    np.testing.assert_array_equal(np.asarray(moved["act"]), np.asarray(batch["act"]))


def test_plain_dicts_are_accepted_everywhere(spec):
    config = spec.sample(jax.random.key(1))
    as_dict = {p: np.asarray(v) for p, v in config.items()}
    assert float(spec.log_prior(as_dict)) == float(spec.log_prior(config))
    np.testing.assert_array_equal(spec.to_unit(as_dict), spec.to_unit(config))
    assert spec.resolve(as_dict) == spec.resolve(config)
    assert spec.bucket(as_dict) == spec.bucket(config)


def test_active_is_a_mapping_of_booleans(spec):
    active = spec.active(spec.sample(jax.random.key(0)))
    assert dict(active.items()).keys() == set(spec.paths)
    assert all(bool(v) for v in active.values())


def test_values_reads_numbers_of_a_categorical_and_indices_of_others():
    spec = jn.compile({"lr": jn.Float(1e-3, 1e-1, log=True),
                       "rate": jn.Categorical([0.0, 0.25, 0.5]),
                       "act": jn.Categorical(["relu", "tanh"]), "n": jn.Integer(1, 4)})
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), 64))
    values = jax.jit(jax.vmap(spec.values))(configs)
    np.testing.assert_array_equal(values["rate"],
                                  np.array([0.0, 0.25, 0.5], np.float32)[configs["rate"]])
    np.testing.assert_array_equal(values["act"], configs["act"])
    np.testing.assert_array_equal(values["lr"], configs["lr"])
    np.testing.assert_array_equal(values["n"], configs["n"])
    assert values["rate"].dtype == jnp.float32 and values["act"].dtype == jnp.int32
