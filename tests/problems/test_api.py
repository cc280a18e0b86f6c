"""The problem API under jit and vmap, with jaxnas configs, and its errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import problems

BATCH = 64


@pytest.mark.parametrize("make", [
    lambda: problems.mf_hartmann(6, "terrible"),
    lambda: problems.mf_branin(noise=1.0),
    lambda: problems.mf_mixed(noise=1.0),
], ids=["hartmann6", "branin", "mixed"])
def test_evaluate_vmaps_over_configs_fidelities_and_keys(make):
    chex.clear_trace_counter()
    p = make()
    spec = jn.compile(p.space(prior="medium"))
    configs = jax.jit(jax.vmap(spec.sample))(jax.random.split(jax.random.key(0), BATCH))
    fidelities = jnp.linspace(1, 100, BATCH).round()
    keys = jax.random.split(jax.random.key(1), BATCH)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def batch(configs, fidelities, keys):
        return jax.vmap(p.evaluate)(configs, fidelities, keys)

    losses = batch(configs, fidelities, keys)
    assert losses.shape == (BATCH,) and losses.dtype == jnp.float32
    assert np.all(np.isfinite(losses))
    # Same arguments, same losses; a second batch does not retrace.
    np.testing.assert_array_equal(losses, batch(configs, fidelities, keys))
    batch(configs, fidelities, jax.random.split(jax.random.key(2), BATCH))
    # Batched and one-at-a-time evaluation agree.
    first = jax.tree.map(lambda leaf: leaf[3], configs)
    assert float(jax.jit(p.evaluate)(first, fidelities[3], keys[3])) == pytest.approx(
        float(losses[3]), rel=1e-6, abs=1e-6)


def test_evaluate_takes_plain_mappings_and_ignores_other_entries():
    p = problems.mf_hartmann(3)
    config = {**p.argmin, "z": 100, "unused": "value"}
    assert float(p.evaluate(config, 100, jax.random.key(0))) == pytest.approx(p.optimum)


def test_noise_depends_on_the_key_alone():
    p = problems.mf_hartmann(3, "terrible")
    evaluate = jax.jit(p.evaluate)
    a = float(evaluate(p.argmin, 1, jax.random.key(0)))
    assert a == float(evaluate(p.argmin, 1, jax.random.key(0)))
    assert a != float(evaluate(p.argmin, 1, jax.random.key(1)))


def test_problem_is_hashable_and_usable_as_static_argument():
    p = problems.mf_hartmann(3)
    assert p == problems.mf_hartmann(3) and hash(p) == hash(problems.mf_hartmann(3))
    assert p != problems.mf_hartmann(3, "bad")

    @jax.jit
    def loss_of(x):
        return p.evaluate(dict(zip(p.names, x)), 100, jax.random.key(0))

    assert float(loss_of(jnp.asarray(tuple(p.argmin.values())))) == pytest.approx(p.optimum)


def test_regret_and_cost_jit():
    p = problems.mf_branin()
    losses = jnp.asarray([p.optimum, p.regret_reference])
    np.testing.assert_allclose(jax.jit(p.regret)(losses), [0.0, 1.0], atol=1e-6)
    assert float(jax.jit(p.cost)(p.argmin, 100)) == pytest.approx(1.0)


@pytest.mark.parametrize("make, words", [
    (lambda: problems.mf_hartmann(dim=4), ["dim=4", "(3, 6)"]),
    (lambda: problems.mf_hartmann(preset="awful"),
     ["preset='awful'", "default", "good", "moderate", "bad", "terrible"]),
    (lambda: problems.mf_hartmann(3, noise=-1.0), ["noise=-1.0", ">= 0"]),
    (lambda: problems.mf_branin(bias=float("nan")), ["bias=nan", ">= 0"]),
    (lambda: problems.mf_hartmann(3).space(prior="great"),
     ["prior='great'", "None", "good", "medium", "at25", "bad"]),
    (lambda: problems.mf_branin().space(prior="good", confidence="total"),
     ["confidence='total'", "low", "medium", "high"]),
])
def test_bad_arguments_raise_clear_errors(make, words):
    with pytest.raises(ValueError) as error:
        make()
    for word in words:
        assert word in str(error.value)
