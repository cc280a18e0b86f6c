"""Priors of known quality: deterministic, in bounds, ordered, and wired into the space."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import problems

PROBLEMS = {
    "hartmann3": lambda: problems.mf_hartmann(3),
    "hartmann6": lambda: problems.mf_hartmann(6),
    "branin": lambda: problems.mf_branin(),
}


@pytest.fixture(params=sorted(PROBLEMS), scope="module")
def problem(request):
    return PROBLEMS[request.param]()


def _distance_to_optimum(p, config):
    """Unit-cube distance to the nearest global minimiser."""
    u = np.asarray(p.to_unit(config))
    return min(np.linalg.norm(u - np.asarray(p.to_unit(dict(zip(p.names, m)))))
               for m in p.minimizers)


def _regret(p, config):
    return float(p.regret(p.evaluate(config, 100, jax.random.key(0))))


def test_priors_are_named_and_in_bounds(problem):
    assert tuple(problem.priors) == problems.PRIOR_NAMES
    for values in problem.priors.values():
        assert tuple(values) == problem.names
        for name, lo, hi in zip(problem.names, problem.lower, problem.upper):
            assert lo <= values[name] <= hi
            assert isinstance(values[name], float)


def test_good_beats_bad_in_distance_and_value(problem):
    priors = problem.priors
    good, bad = priors["good"], priors["bad"]
    assert _distance_to_optimum(problem, good) < _distance_to_optimum(problem, bad)
    assert _regret(problem, good) < _regret(problem, bad)
    # "good" is the optimum perturbed by 1% of the range per dimension.
    assert _distance_to_optimum(problem, good) < 0.05
    assert _regret(problem, good) < 0.05
    # "bad" is the worst of 10^6 uniform samples: it defines regret 1.
    assert _regret(problem, bad) == pytest.approx(1.0, rel=1e-5)
    # "medium" and "at25" lie between (they are random draws, but not that unlucky).
    for name in ("medium", "at25"):
        assert _regret(problem, good) < _regret(problem, priors[name]) < _regret(problem, bad)


def test_priors_do_not_depend_on_bias_or_noise():
    first = problems.mf_hartmann(3).priors
    # Presets change bias and noise, which vanish at full fidelity: the same priors.
    assert problems.mf_hartmann(3, "terrible").priors == first
    assert problems.mf_hartmann(3, bias=0.0, noise=0.0).priors == first


# Prints every problem's priors as JSON (floats round-trip exactly through repr).
_PRINT_PRIORS = """
import json
from jaxnas import problems
print(json.dumps({label: getattr(problems, name)(*args).priors
                  for label, (name, args) in %r.items()}))
"""


@pytest.mark.slow  # two fresh interpreters draw 10^6 samples per problem
def test_priors_are_the_same_constants_in_every_process():
    """Priors computed in two fresh interpreters (different hash seeds) equal these.

    Within one process the priors are cached, so comparing them with themselves cannot
    see a seed that changes from process to process (a hash, a time, a pid).
    """
    constructors = {"hartmann3": ("mf_hartmann", (3,)), "hartmann6": ("mf_hartmann", (6,)),
                    "branin": ("mf_branin", ())}
    here = {label: getattr(problems, name)(*args).priors
            for label, (name, args) in constructors.items()}
    package_root = str(Path(jn.__file__).resolve().parents[1])
    children = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
        children.append(subprocess.Popen([sys.executable, "-c", _PRINT_PRIORS % (constructors,)],
                                         env=env, stdout=subprocess.PIPE, text=True))
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        assert json.loads(out) == here


def test_at25_is_best_of_25_and_bad_is_worst_of_many(problem):
    """at25 and bad rank uniform samples: compare them with a fresh uniform set."""
    key = jax.random.key(7)
    unit = np.asarray(jax.random.uniform(key, (10_000 * problem.dim,))).reshape(-1, problem.dim)
    lower, upper = np.asarray(problem.lower), np.asarray(problem.upper)
    x = lower + unit * (upper - lower)
    configs = {name: x[:, i] for i, name in enumerate(problem.names)}
    losses = np.asarray(jax.jit(jax.vmap(problem.evaluate, in_axes=(0, None, None)))(
        configs, 100, jax.random.key(0)))
    # A fresh sample is worse than the worst of 10^6 with probability 10^-6: all 10^4
    # stay below it with probability 99%.
    assert losses.max() <= problem.regret_reference + 1e-6
    at25 = float(problem.evaluate(problem.priors["at25"], 100, jax.random.key(0)))
    # The best of 25 uniform samples beats the median uniform sample.
    assert at25 < np.median(losses)


@pytest.mark.parametrize("prior", problems.PRIOR_NAMES)
@pytest.mark.parametrize("confidence", problems.PRIOR_CONFIDENCES)
def test_space_carries_the_prior(prior, confidence):
    p = problems.mf_hartmann(6)
    space = p.space(prior=prior, confidence=confidence)
    assert tuple(space) == (*p.names, "z")
    for name in p.names:
        assert isinstance(space[name], jn.Float)
        assert (space[name].lower, space[name].upper) == (0.0, 1.0)
        assert space[name].prior == p.priors[prior][name]
        assert space[name].prior_confidence == confidence
    assert isinstance(space["z"], jn.IntegerFidelity)
    assert (space["z"].lower, space["z"].upper) == (1, 100)


def test_space_without_prior_compiles(problem):
    spec = jn.compile(problem.space())
    assert spec.paths == problem.names
    assert (spec.fidelity.path, spec.fidelity.lower, spec.fidelity.upper) == ("z", 1, 100)
    assert all(param.prior is None for param in spec.parameters().values())


def test_prior_samples_concentrate_on_the_good_prior():
    """sample_prior of the compiled space lands closer to the optimum than uniform does."""
    p = problems.mf_hartmann(3)
    spec = jn.compile(p.space(prior="good", confidence="high"))
    keys = jax.random.split(jax.random.key(0), 2_000)
    from_prior = jax.jit(jax.vmap(spec.sample_prior))(keys)
    uniform = jax.jit(jax.vmap(spec.sample))(keys)
    losses = jax.jit(jax.vmap(p.evaluate, in_axes=(0, None, None)))
    assert np.median(losses(from_prior, 100, keys[0])) < np.median(losses(uniform, 100, keys[0]))
