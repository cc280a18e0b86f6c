"""MF-Mixed: a synthetic function over a mixed, conditional space with a known optimum.

Single-fidelity optimisers are usually benchmarked on boxes of floats (Branin, Hartmann);
real HPO spaces also have integers, log scales, categoricals and parameters that exist only
under one choice. This function has all of them, and an optimum known in closed form:

    branch     Categorical over three sub-spaces (only the chosen one is active):
      "bowl"     lr in [1e-4, 1] (log), momentum in [0, 0.99]
      "lattice"  lr in [1e-5, 1e-1] (log), width in 8..1024 (integer, log)
      "branin"   x0 in [-5, 10], x1 in [0, 15]
    activation Categorical("relu", "tanh", "gelu", "swish")
    dropout    Float in [0, 0.8]
    depth      Integer in 1..8
    z          the fidelity, 1..100, as in the other problems

    f = OFFSET[branch] + g_branch + ACTIVATION_COST[a] + 2 (dropout - BEST_DROPOUT[a])^2
        + 0.02 (depth - 4)^2

    g_bowl    = ((log10 lr - (-1 - depth / 4)) / 2)^2 + 2 (momentum - 0.9)^2
    g_lattice = ((log10 lr + 3.5) / 2)^2 + ((log2 width - 7) / 3)^2
    g_branin  = (branin(x0, x1) - 0.397887) / 20

with OFFSET = (0.2, 0.1, 0). Every term is >= 0 and reaches 0, so the global minimum,
f = 0 (up to float32 rounding of Branin's constant), is the "branin" branch at any of
Branin's three minimisers with gelu, dropout 0.2 and depth 4. Two interactions make the
parts non-separable: the activation moves the best dropout, and the depth moves the best
learning rate of the "bowl" branch (the depth's own optimum is 4, whatever the branch). The
best branch is not the best on average: Branin is large over most of its box, so under
uniform sampling "branin" looks worst, and an optimiser that settles on "lattice" keeps a
regret of at least 0.1.

Fidelity follows the other problems (`_problem.py`): with `s = log(z) / log(100)`, the
Branin term takes Kandasamy et al.'s low-fidelity shifts scaled by `bias`, the bowl's best
learning rate moves up by `bias (1 - s) / 2` decades and the best dropouts down by
`bias (1 - s) / 10`, and half-normal noise of scale `noise (1 - s)` is added. At z = 100
the function is the one above.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.problems._branin import branin
from jaxnas.problems._problem import (
    AT25_SAMPLES,
    BAD_PRIOR_SAMPLES,
    FIDELITY_LOWER,
    FIDELITY_NAME,
    FIDELITY_UPPER,
    GOOD_PRIOR_STD,
    MEDIUM_PRIOR_STD,
    PRIOR_CONFIDENCES,
    PRIOR_NAMES,
    PRIOR_SEED,
    check_choice,
    check_scale,
    fidelity_scale,
)
from jaxnas.space import Categorical, Float, Integer, IntegerFidelity
from jaxnas.space import compile as compile_space

BRANCHES = ("bowl", "lattice", "branin")
ACTIVATIONS = ("relu", "tanh", "gelu", "swish")
# Config paths, as `jaxnas.compile` names the slots of `MixedProblem.space()`.
BRANCH = "branch"
BOWL_LR, BOWL_MOMENTUM = "branch.choices[0].lr", "branch.choices[0].momentum"
LATTICE_LR, LATTICE_WIDTH = "branch.choices[1].lr", "branch.choices[1].width"
BRANIN_X0, BRANIN_X1 = "branch.choices[2].x0", "branch.choices[2].x1"
ACTIVATION, DROPOUT, DEPTH = "activation", "dropout", "depth"
PATHS = (BRANCH, BOWL_LR, BOWL_MOMENTUM, LATTICE_LR, LATTICE_WIDTH, BRANIN_X0, BRANIN_X1,
         ACTIVATION, DROPOUT, DEPTH)

_OFFSET = (0.2, 0.1, 0.0)  # per branch
_ACTIVATION_COST = (0.05, 0.15, 0.0, 0.1)  # per activation
_BEST_DROPOUT = (0.3, 0.1, 0.2, 0.5)  # per activation
_BEST_DEPTH = 4
_BRANIN_OPTIMUM = 0.397887
_BRANIN_SCALE = 20.0
_BRANIN_MINIMIZERS = ((math.pi, 2.275), (-math.pi, 12.275), (9.42478, 2.475))


def _bowl_best_log_lr(depth: Any) -> Any:
    """The bowl branch's best log10 learning rate at full fidelity: -1.25 (depth 1) to -3."""
    return -1.0 - depth / 4.0


# The other branches' own optima, where a minimiser keeps their (inactive) values.
_INACTIVE_AT_BEST = {
    BOWL_LR: float(10.0 ** _bowl_best_log_lr(_BEST_DEPTH)), BOWL_MOMENTUM: 0.9,
    LATTICE_LR: float(10.0 ** -3.5), LATTICE_WIDTH: 128,
}


def _mixed(config: Mapping[str, Any], s: jax.Array, bias: float) -> jax.Array:
    """Noiseless MF-Mixed of one config at scaled fidelity s; float32 scalar."""
    def read(path: str) -> jax.Array:
        return jnp.asarray(config[path], jnp.float32)

    gap = bias * (1.0 - s)
    depth = read(DEPTH)
    bowl = (((jnp.log10(read(BOWL_LR)) - _bowl_best_log_lr(depth) - 0.5 * gap) / 2.0) ** 2
            + 2.0 * (read(BOWL_MOMENTUM) - 0.9) ** 2)
    lattice = (((jnp.log10(read(LATTICE_LR)) + 3.5) / 2.0) ** 2
               + ((jnp.log2(read(LATTICE_WIDTH)) - 7.0) / 3.0) ** 2)
    x = jnp.stack([read(BRANIN_X0), read(BRANIN_X1)])
    branin_term = (branin(x, s, bias) - _BRANIN_OPTIMUM) / _BRANIN_SCALE
    # Every branch is computed and one is picked: fixed shapes, vmappable. Inactive values
    # are in bounds (sampled), so the branches not picked are finite.
    branch = jnp.asarray(config[BRANCH], jnp.int32)
    branch_value = jnp.stack([bowl, lattice, branin_term])[branch]
    activation = jnp.asarray(config[ACTIVATION], jnp.int32)
    best_dropout = jnp.asarray(_BEST_DROPOUT, jnp.float32)[activation] - 0.1 * gap
    return (jnp.asarray(_OFFSET, jnp.float32)[branch] + branch_value
            + jnp.asarray(_ACTIVATION_COST, jnp.float32)[activation]
            + 2.0 * (read(DROPOUT) - best_dropout) ** 2
            + 0.02 * (depth - _BEST_DEPTH) ** 2)


def _space(prior: Mapping[str, Any] | None, confidence: str) -> dict[str, Any]:
    """The space, with every parameter's prior taken from `prior` (path -> value) if given."""
    def at(path: str) -> Any:
        return None if prior is None else prior[path]

    def option(kind: str, **parameters: Any) -> dict[str, Any]:
        return {"kind": kind, **parameters}

    common = {"prior_confidence": confidence}
    return {
        BRANCH: Categorical((
            option("bowl",
                   lr=Float(1e-4, 1.0, log=True, prior=at(BOWL_LR), **common),
                   momentum=Float(0.0, 0.99, prior=at(BOWL_MOMENTUM), **common)),
            option("lattice",
                   lr=Float(1e-5, 1e-1, log=True, prior=at(LATTICE_LR), **common),
                   width=Integer(8, 1024, log=True, prior=at(LATTICE_WIDTH), **common)),
            option("branin",
                   x0=Float(-5.0, 10.0, prior=at(BRANIN_X0), **common),
                   x1=Float(0.0, 15.0, prior=at(BRANIN_X1), **common)),
        ), prior=at(BRANCH), **common),
        ACTIVATION: Categorical(ACTIVATIONS, prior=at(ACTIVATION), **common),
        DROPOUT: Float(0.0, 0.8, prior=at(DROPOUT), **common),
        DEPTH: Integer(1, 8, prior=at(DEPTH), **common),
        FIDELITY_NAME: IntegerFidelity(FIDELITY_LOWER, FIDELITY_UPPER),
    }


def _minimizer(x0: float, x1: float) -> dict[str, Any]:
    return {BRANCH: BRANCHES.index("branin"), **_INACTIVE_AT_BEST, BRANIN_X0: x0,
            BRANIN_X1: x1, ACTIVATION: ACTIVATIONS.index("gelu"),
            DROPOUT: _BEST_DROPOUT[ACTIVATIONS.index("gelu")], DEPTH: _BEST_DEPTH}


def _full_fidelity(config: Mapping[str, Any]) -> jax.Array:
    return _mixed(config, jnp.float32(1.0), 0.0)


@functools.cache
def _full_fidelity_value(point: tuple[tuple[str, Any], ...]) -> float:
    """f(point) at z = 100, where bias and noise vanish (cached per point)."""
    return float(jax.jit(_full_fidelity)(dict(point)))


@functools.cache
def _prior_table() -> dict[str, dict[str, Any]]:
    """The four priors, drawn as `_problem.prior_table` draws them; deterministic, cached.

    In the unit encoding of the space (`SearchSpace.to_unit`), "good" and "medium" are the
    first minimiser with its numeric slots perturbed by normals of std 0.01 and 0.125,
    clipped to [0, 1] (categoricals keep the minimiser's choices: a perturbed index has no
    meaning); "at25" is the best and "bad" the worst of 25 and 10^6 uniform samples of the
    space, ranked by the noiseless full-fidelity value.
    """
    spec = compile_space(_space(None, "medium"))
    numeric = jnp.asarray([not isinstance(spec.parameters()[path], Categorical)
                           for path in spec.paths])
    centre = spec.to_unit(spec.config(_minimizer(*_BRANIN_MINIMIZERS[0])))

    def perturbed(key: jax.Array, std: float) -> Any:
        noise = std * jax.random.normal(key, centre.shape)
        return spec.from_unit(jnp.clip(jnp.where(numeric, centre + noise, centre), 0.0, 1.0))

    def extreme(key: jax.Array, n: int, pick: Any) -> Any:
        configs = jax.vmap(spec.sample)(jax.random.split(key, n))
        index = pick(jax.vmap(_full_fidelity)(configs))
        return jax.tree.map(lambda column: column[index], configs)

    @jax.jit
    def build(key: jax.Array) -> dict[str, Any]:
        good_key, medium_key, at25_key, bad_key = jax.random.split(key, 4)
        return {"good": perturbed(good_key, GOOD_PRIOR_STD),
                "medium": perturbed(medium_key, MEDIUM_PRIOR_STD),
                "at25": extreme(at25_key, AT25_SAMPLES, jnp.argmin),
                "bad": extreme(bad_key, BAD_PRIOR_SAMPLES, jnp.argmax)}

    table = build(jax.random.key(PRIOR_SEED))
    parameters = spec.parameters()

    def host(path: str, value: Any) -> Any:
        parameter = parameters[path]
        if isinstance(parameter, (Categorical, Integer)):
            return int(value)
        # Clip on the host: float32 rounding of a decoded bound may overshoot it.
        return float(np.clip(float(value), parameter.lower, parameter.upper))

    return {name: {path: host(path, table[name][path]) for path in PATHS}
            for name in PRIOR_NAMES}


@dataclasses.dataclass(frozen=True)
class MixedProblem:
    """MF-Mixed: the interface of `Problem` on a mixed, conditional space.

    Build one with `jaxnas.problems.mf_mixed`. Immutable and hashable; `evaluate`, `cost`
    and `regret` are pure and jittable, vmap them over configs, fidelities and keys.
    A config is a mapping `path -> value` (a jaxnas `Config` of `space()`, or a dict with
    every path in `names`); categoricals are indices. Values of inactive branches are
    ignored.

    Attributes:
        name: A readable name, e.g. "mf_mixed(bias=1.0, noise=0.0)".
        bias: Strength of the low-fidelity bias.
        noise: Scale of the half-normal noise at the lowest fidelity.
    """

    name: str
    bias: float
    noise: float

    @property
    def names(self) -> tuple[str, ...]:
        """Config paths of the decisions (the fidelity "z" excluded), in slot order."""
        return PATHS

    @property
    def fidelity_bounds(self) -> tuple[int, int]:
        """The fidelity range, (1, 100)."""
        return FIDELITY_LOWER, FIDELITY_UPPER

    def space(self, prior: str | None = None, confidence: str = "medium") -> dict[str, Any]:
        """The search space (see the module docstring) and the fidelity "z".

        Args:
            prior: None (no prior) or one of "good", "medium", "at25", "bad"; every
                parameter's `prior` is set to that prior's value (inactive branches too).
            confidence: The `prior_confidence` of every parameter.

        Returns:
            A dict for `jaxnas.compile`; its paths are `names` and "z".

        Raises:
            ValueError: an unknown prior or confidence.
        """
        check_choice(f"{self.name}.space", "prior", prior, (None, *PRIOR_NAMES))
        check_choice(f"{self.name}.space", "confidence", confidence, PRIOR_CONFIDENCES)
        return _space(None if prior is None else self.priors[prior], confidence)

    def evaluate(self, config: Mapping[str, Any], fidelity: Any, key: jax.Array) -> jax.Array:
        """The loss of one config at one fidelity: biased and noisy below z = 100.

        Args:
            config: A mapping with every path of `names` (other entries are ignored).
            fidelity: z in [1, 100] (clipped to it).
            key: A PRNG key for the noise.

        Returns:
            The loss, a float32 scalar.
        """
        s = fidelity_scale(fidelity)
        noise = self.noise * (1.0 - s) * jnp.abs(jax.random.normal(key, (), jnp.float32))
        return (_mixed(config, s, self.bias) + noise).astype(jnp.float32)

    def cost(self, config: Mapping[str, Any], fidelity: Any) -> jax.Array:
        """The cost of one evaluation, `0.05 + 0.95 (z / 100)^2` (as `Problem.cost`)."""
        del config  # the cost depends on the fidelity alone
        z = jnp.clip(jnp.asarray(fidelity, jnp.float32), FIDELITY_LOWER, FIDELITY_UPPER)
        return 0.05 + 0.95 * (z / FIDELITY_UPPER) ** 2

    def regret(self, loss: Any) -> jax.Array:
        """Normalised regret `(loss - optimum) / (regret_reference - optimum)` (float32)."""
        span = self.regret_reference - self.optimum
        return (jnp.asarray(loss, jnp.float32) - self.optimum) / span

    @property
    def minimizers(self) -> tuple[dict[str, Any], ...]:
        """The three global minimisers (one per Branin minimiser), each `{path: value}`."""
        return tuple(_minimizer(*x) for x in _BRANIN_MINIMIZERS)

    @property
    def argmin(self) -> dict[str, Any]:
        """A global minimiser, `{path: value}` (the first of `minimizers`)."""
        return self.minimizers[0]

    @property
    def optimum(self) -> float:
        """The noiseless full-fidelity global minimum, f(argmin) in float32 (about 0)."""
        return _full_fidelity_value(tuple(self.argmin.items()))

    @property
    def priors(self) -> dict[str, dict[str, Any]]:
        """The priors by name ("good", "medium", "at25", "bad"), each `{path: value}`."""
        return {name: dict(values) for name, values in _prior_table().items()}

    @property
    def regret_reference(self) -> float:
        """The upper reference of `regret`: the noiseless full-fidelity value of "bad"."""
        return _full_fidelity_value(tuple(_prior_table()["bad"].items()))

    def __repr__(self) -> str:
        return f"MixedProblem({self.name})"


def mf_mixed(*, bias: float = 1.0, noise: float = 0.0) -> MixedProblem:
    """MF-Mixed: a mixed (float, log, integer, categorical), conditional test function.

    See the module docstring for the function. Its global minimum is 0 (float32: within
    1e-6), at branch "branin" (index 2), Branin's minimisers, gelu (index 2), dropout 0.2
    and depth 4.

    Args:
        bias: Scale of the low-fidelity shifts (>= 0; 1 gives Kandasamy et al.'s for the
            Branin term).
        noise: Scale of the half-normal noise at the lowest fidelity (>= 0).

    Returns:
        The `MixedProblem`.

    Raises:
        ValueError: a negative bias or noise.

    Example:
        >>> p = mf_mixed()
        >>> spec = jaxnas.compile(p.space())
        >>> losses = jax.vmap(p.evaluate)(configs, fidelities, keys)
    """
    bias = check_scale("mf_mixed", "bias", bias)
    noise = check_scale("mf_mixed", "noise", noise)
    return MixedProblem(name=f"mf_mixed(bias={bias}, noise={noise})", bias=bias, noise=noise)
