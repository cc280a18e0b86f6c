"""MF-Mixed: its optimum, a float64 reference, vmapping, conditional slots, priors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import problems
from tests.problems import _reference as ref

BATCH = 64
N_UNIFORM = 20_000  # uniform samples that must all lie above the optimum


def _reference_value(config, z, bias):
    """The module docstring's formula in float64 numpy, written out independently."""
    s = ref.scaled_fidelity(z)
    gap = bias * (1 - s)
    depth = float(config["depth"])
    branch, activation = int(config["branch"]), int(config["activation"])
    if branch == 0:
        value = 0.2 + ((math.log10(config["branch.choices[0].lr"]) + 1 + depth / 4
                        - 0.5 * gap) / 2) ** 2 + 2 * (config["branch.choices[0].momentum"]
                                                      - 0.9) ** 2
    elif branch == 1:
        value = 0.1 + ((math.log10(config["branch.choices[1].lr"]) + 3.5) / 2) ** 2 + (
            (math.log2(config["branch.choices[1].width"]) - 7) / 3) ** 2
    else:
        x = (config["branch.choices[2].x0"], config["branch.choices[2].x1"])
        value = (ref.mf_branin(x, z, bias) - ref.BRANIN_OPTIMUM) / 20
    best_dropout = (0.3, 0.1, 0.2, 0.5)[activation] - 0.1 * gap
    return (value + (0.05, 0.15, 0.0, 0.1)[activation]
            + 2 * (config["dropout"] - best_dropout) ** 2 + 0.02 * (depth - 4) ** 2)


def _host(config, i):
    return {path: np.asarray(config[path])[i].item() for path in config}


@pytest.fixture(scope="module")
def mixed():
    p = problems.mf_mixed(noise=1.0)
    spec = jn.compile(p.space())
    configs = jax.jit(jax.vmap(spec.sample))(jax.random.split(jax.random.key(0), BATCH))
    return p, spec, configs


def test_space_paths_are_the_problem_names(mixed):
    p, spec, _ = mixed
    assert spec.paths == p.names
    assert spec.fidelity.path == problems.FIDELITY_NAME


def test_every_minimizer_reaches_the_optimum_and_nothing_beats_it(mixed):
    p, spec, _ = mixed
    evaluate = jax.jit(p.evaluate)
    for minimizer in p.minimizers:
        assert float(evaluate(minimizer, 100, jax.random.key(0))) == pytest.approx(0.0,
                                                                                   abs=1e-6)
    assert p.optimum == pytest.approx(0.0, abs=1e-6)
    assert float(p.regret(p.optimum)) == 0.0
    resolved = spec.resolve(spec.config(p.argmin))
    assert resolved["branch"]["kind"] == "branin" and resolved["activation"] == "gelu"
    uniform = jax.vmap(spec.sample)(jax.random.split(jax.random.key(1), N_UNIFORM))
    values = jax.jit(jax.vmap(lambda c: p.evaluate(c, 100, jax.random.key(0))))(uniform)
    assert float(jnp.min(values)) > p.optimum


@pytest.mark.parametrize("z", [1, 10, 100])
def test_values_match_a_float64_reference(mixed, z):
    p, _, configs = mixed
    noiseless = problems.mf_mixed(bias=1.0)
    losses = jax.jit(jax.vmap(noiseless.evaluate, in_axes=(0, None, None)))(
        configs, z, jax.random.key(0))
    for i in range(BATCH):
        expected = _reference_value(_host(configs, i), z, 1.0)
        assert float(losses[i]) == pytest.approx(expected, rel=2e-5, abs=2e-5)


def test_inactive_branches_do_not_change_the_loss(mixed):
    p, spec, configs = mixed
    evaluate = jax.jit(jax.vmap(p.evaluate, in_axes=(0, None, None)))
    other = jax.vmap(spec.sample)(jax.random.split(jax.random.key(3), BATCH))
    active = np.asarray(jax.vmap(spec.active)(configs).array)
    # Each row keeps its active values and takes another sample's inactive ones.
    mixed_rows = spec.config({
        path: np.where(active[:, i], np.asarray(configs[path]), np.asarray(other[path]))
        for i, path in enumerate(spec.paths)})
    np.testing.assert_array_equal(evaluate(configs, 100, jax.random.key(0)),
                                  evaluate(mixed_rows, 100, jax.random.key(0)))


def test_priors_are_in_bounds_and_ordered(mixed):
    p, spec, _ = mixed
    priors = p.priors
    assert tuple(priors) == problems.PRIOR_NAMES
    parameters = spec.parameters()
    regret = {}
    for name, values in priors.items():
        assert tuple(values) == p.names
        for path, value in values.items():
            parameter = parameters[path]
            if isinstance(parameter, jn.Categorical):
                assert 0 <= value < len(parameter.choices)
            else:
                assert parameter.lower <= value <= parameter.upper
        jn.compile(p.space(prior=name))  # every prior is a valid prior of its parameter
        regret[name] = float(p.regret(p.evaluate(values, 100, jax.random.key(0))))
    assert regret["good"] < 0.01
    assert regret["bad"] == pytest.approx(1.0, rel=1e-5)
    for name in ("medium", "at25"):
        assert regret["good"] < regret[name] < regret["bad"]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="noise=-1"):
        problems.mf_mixed(noise=-1.0)
    with pytest.raises(ValueError, match="prior='great'"):
        problems.mf_mixed().space(prior="great")
