"""Known values: literature optima, a float64 numpy reference, the cost formula, regret."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnas import problems
from tests.problems import _reference as ref

# float32 evaluation of values of magnitude <= ~300 (Branin's range): a few ulps.
RTOL, ATOL = 2e-5, 2e-5

PROBLEMS = {
    "hartmann3": lambda **kw: problems.mf_hartmann(3, **kw),
    "hartmann6": lambda **kw: problems.mf_hartmann(6, **kw),
    "branin": lambda **kw: problems.mf_branin(**kw),
}
LITERATURE_OPTIMA = {"hartmann3": -3.86278, "hartmann6": -3.32237, "branin": 0.397887}


def _reference_value(name, x, z, bias):
    if name == "branin":
        return ref.mf_branin(x, z, bias)
    return ref.mf_hartmann(x, z, int(name[-1]), bias)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_optimum_matches_the_literature(name):
    p = PROBLEMS[name]()
    evaluate = jax.jit(p.evaluate)
    # At z = 100 bias and noise vanish: the key must not matter.
    losses = [float(evaluate(p.argmin, 100, jax.random.key(seed))) for seed in range(3)]
    assert losses[0] == losses[1] == losses[2]
    # Literature values are rounded to 6 significant digits.
    assert losses[0] == pytest.approx(LITERATURE_OPTIMA[name], abs=5e-6)
    assert p.optimum == pytest.approx(LITERATURE_OPTIMA[name], abs=5e-6)
    assert float(p.regret(p.optimum)) == 0.0


def test_every_branin_minimizer_reaches_the_optimum():
    p = problems.mf_branin()
    assert len(p.minimizers) == 3
    for minimizer in ref.BRANIN_MINIMIZERS:
        config = dict(zip(p.names, minimizer))
        loss = float(p.evaluate(config, 100, jax.random.key(0)))
        assert loss == pytest.approx(ref.BRANIN_OPTIMUM, abs=5e-6)


@pytest.mark.parametrize("dim", [3, 6])
def test_hartmann_argmin_is_mfpbench_optimum(dim):
    p = problems.mf_hartmann(dim)
    assert tuple(p.argmin.values()) == ref.HARTMANN[dim]["argmin"]
    assert p.names == tuple(f"x{i}" for i in range(dim))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@settings(max_examples=25)
@given(data=st.data())
def test_noiseless_values_match_the_numpy_reference(name, data):
    bias = data.draw(st.sampled_from([0.0, 4.0]), label="bias")
    p = PROBLEMS[name](bias=bias, noise=0.0)
    x = [data.draw(st.floats(lo, hi), label=n) for n, lo, hi in zip(p.names, p.lower, p.upper)]
    z = data.draw(st.integers(1, 100), label="z")
    loss = float(_jitted_evaluate(p)(dict(zip(p.names, x)), z, jax.random.key(0)))
    # x passes through float32 on the jaxnas side: evaluate the reference there too.
    x32 = np.asarray(x, np.float32).astype(float)
    expected = _reference_value(name, x32, z, bias)
    assert loss == pytest.approx(expected, rel=RTOL, abs=ATOL)


@functools.cache
def _jitted_evaluate(p):
    """One jitted evaluate per problem (problems are hashable), so examples do not retrace."""
    return jax.jit(p.evaluate)


@pytest.mark.parametrize("z", [1, 2, 33, 50, 99, 100])
def test_cost_is_mfpbench_formula(z):
    p = problems.mf_hartmann(6)
    expected = 0.05 + 0.95 * (z / 100) ** 2
    assert float(p.cost(p.argmin, z)) == pytest.approx(expected, rel=1e-6)
    # The cost does not depend on the configuration.
    assert float(p.cost(p.priors["bad"], z)) == float(p.cost(p.argmin, z))


def test_cost_vmaps_over_fidelities():
    p = problems.mf_branin()
    z = np.arange(1, 101, dtype=np.float32)
    costs = np.asarray(jax.vmap(p.cost, in_axes=(None, 0))(p.argmin, z))
    np.testing.assert_allclose(costs, 0.05 + 0.95 * (z / 100) ** 2, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_regret_is_zero_at_optimum_one_at_reference(name):
    p = PROBLEMS[name]()
    bad = float(p.evaluate(p.priors["bad"], 100, jax.random.key(0)))
    assert p.regret_reference == pytest.approx(bad, rel=1e-6, abs=1e-6)
    assert float(p.regret(p.regret_reference)) == pytest.approx(1.0, rel=1e-6)
    mid = 0.25 * p.optimum + 0.75 * p.regret_reference
    assert float(p.regret(mid)) == pytest.approx(0.75, rel=1e-5)
    # Vectorised: a batch of losses gives a batch of regrets.
    assert np.asarray(p.regret(np.array([p.optimum, p.regret_reference]))).shape == (2,)
