"""Bias and noise shrink with fidelity; statistical checks on fixed seeds.

Each check evaluates N configs drawn uniformly (fixed key) at the rungs of a z in 1..100,
eta = 3 bracket. The noise is half-normal, |e| * noise * (1 - s) with e ~ N(0, 1): its mean
is noise (1 - s) sqrt(2 / pi) and its standard deviation noise (1 - s) sqrt(1 - 2 / pi).
Means are allowed 5 standard errors (sigma / sqrt(N)); a standard deviation is allowed 5
standard errors of the sample standard deviation, sqrt((m4 - sigma^4) / (4 sigma^2 N))
with m4 the fourth central moment (delta method), estimated from the sample.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import problems
from tests.problems import _reference as ref

N = 4_000
FIDELITIES = (1, 3, 11, 33, 100)
HALF_NORMAL_MEAN = math.sqrt(2 / math.pi)
HALF_NORMAL_STD = math.sqrt(1 - 2 / math.pi)


def _uniform_configs(p, key):
    unit = jax.random.uniform(key, (N * p.dim,)).reshape(N, p.dim)  # 1-D: compiles faster
    x = jnp.asarray(p.lower) + unit * (jnp.asarray(p.upper) - jnp.asarray(p.lower))
    return {name: x[:, i] for i, name in enumerate(p.names)}


@functools.cache
def _batched_evaluate(p):
    """One jitted batch evaluation per problem (problems are hashable): no retracing."""
    return jax.jit(jax.vmap(p.evaluate, in_axes=(0, None, 0)))


def _losses(p, configs, z, key):
    keys = jax.random.split(key, N)
    return np.asarray(_batched_evaluate(p)(configs, jnp.float32(z), keys), np.float64)


@pytest.mark.parametrize("make, noise_scale", [
    (lambda noise: problems.mf_hartmann(3, noise=noise), 2.0),
    (lambda noise: problems.mf_hartmann(6, bias=0.0, noise=noise), 5.0),
    (lambda noise: problems.mf_branin(bias=0.0, noise=noise), 1.0),
], ids=["hartmann3", "hartmann6", "branin"])
def test_noise_is_half_normal_and_shrinks(make, noise_scale):
    p, noiseless = make(noise_scale), make(0.0)
    configs = _uniform_configs(p, jax.random.key(0))
    previous_mean = math.inf
    for i, z in enumerate(FIDELITIES):
        key = jax.random.key(100 + i)
        noise = _losses(p, configs, z, key) - _losses(noiseless, configs, z, key)
        scale = p.noise * (1 - ref.scaled_fidelity(z))
        assert noise.min() >= -1e-5  # half-normal: never flatters (float32 rounding aside)
        mean_tolerance = 5 * scale * HALF_NORMAL_STD / math.sqrt(N) + 1e-5
        assert abs(noise.mean() - scale * HALF_NORMAL_MEAN) <= mean_tolerance
        fourth_moment = np.mean((noise - noise.mean()) ** 4)
        std_error = math.sqrt(max(fourth_moment - noise.var() ** 2, 0.0)
                              / (4 * noise.var() * N)) if z < 100 else 0.0
        std_tolerance = 5 * std_error + 1e-5
        assert abs(noise.std(ddof=1) - scale * HALF_NORMAL_STD) <= std_tolerance
        assert noise.mean() < previous_mean or z == 100
        previous_mean = noise.mean()
    assert np.all(noise == 0.0)  # z = 100: no noise at all


@pytest.mark.parametrize("preset", ["default", "terrible"])  # the gap is linear in bias
@pytest.mark.parametrize("dim", [3, 6])
def test_hartmann_bias_flattens_and_vanishes(dim, preset):
    """Noiseless gap to the full-fidelity value: bias (1 - s) sum_i exp(...) >= 0, exactly."""
    p = problems.mf_hartmann(dim, preset, noise=0.0)
    configs = _uniform_configs(p, jax.random.key(1))
    full = _losses(p, configs, 100, jax.random.key(2))
    terms = ref.hartmann_terms(np.stack([configs[n] for n in p.names], axis=-1), dim)
    previous_gap = math.inf
    for z in FIDELITIES:
        gap = _losses(p, configs, z, jax.random.key(2)) - full
        expected = p.bias * (1 - ref.scaled_fidelity(z)) * terms.sum(axis=-1)
        np.testing.assert_allclose(gap, expected, atol=5e-5)
        assert np.all(gap >= -5e-5)  # low fidelity flattens: losses rise towards 0
        assert gap.mean() < previous_gap or z == 100
        previous_gap = gap.mean()
    assert np.all(gap == 0.0)


@pytest.mark.parametrize("preset", sorted(problems.HARTMANN_PRESETS))
def test_presets_error_shrinks_with_fidelity(preset):
    """Bias and noise together: the mean absolute error to the full-fidelity value falls."""
    p = problems.mf_hartmann(6, preset)
    configs = _uniform_configs(p, jax.random.key(3))
    full = _losses(p, configs, 100, jax.random.key(4))
    errors = [np.abs(_losses(p, configs, z, jax.random.key(5 + i)) - full)
              for i, z in enumerate(FIDELITIES)]
    for lower, higher in zip(errors, errors[1:]):
        # The error at z is (1 - s) times a nonnegative draw; adjacent rungs differ by
        # far more than 5 standard errors of the difference of their means.
        standard_error = math.sqrt(lower.var() / N + higher.var() / N)
        assert lower.mean() - higher.mean() > 5 * standard_error
    assert errors[-1].max() == 0.0


def test_presets_are_mfpbench_values():
    assert problems.HARTMANN_PRESETS == {
        "default": (0.5, 0.1), "good": (2.5, 2.0), "moderate": (3.0, 3.0),
        "bad": (3.5, 4.0), "terrible": (4.0, 5.0),
    }
    p = problems.mf_hartmann(3, "terrible")
    assert (p.bias, p.noise) == (4.0, 5.0)
    assert problems.mf_hartmann(3, "terrible", bias=1.0).bias == 1.0
