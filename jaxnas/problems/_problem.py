"""`Problem`: a pure multi-fidelity test function with a known optimum and fixed priors.

Every problem shares the conventions of the PriorBand benchmark suite (mfpbench's
MF-Hartmann, Mallik et al., NeurIPS 2023):

* the fidelity `z` is an integer in [1, 100]; it enters the function through
  `s = log(z) / log(100)` in [0, 1] (mfpbench `generators.py`, `log_z_scaled`), so the
  low-fidelity bias and noise fade on a log scale and vanish at `z = 100`;
* noise is half-normal, `|N(0, 1)| * noise * (1 - s)`: it only ever makes a loss worse,
  as in mfpbench (`np.abs(rng.normal(...))`);
* an evaluation costs `0.05 + 0.95 * (z / 100) ** 2` (mfpbench `_fidelity_cost`, the
  lambda(z) of Kandasamy et al. 2017, p. 18);
* the priors "good", "medium", "at25" and "bad" follow mfpbench's prior generator
  (`python -m mfpbench priors`): see `prior_table`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.space import Float, IntegerFidelity

FIDELITY_NAME = "z"
FIDELITY_LOWER = 1
FIDELITY_UPPER = 100

PRIOR_NAMES = ("good", "medium", "at25", "bad")
PRIOR_CONFIDENCES = ("low", "medium", "high")

# mfpbench's default seed for `python -m mfpbench priors`; every prior draw comes from it.
PRIOR_SEED = 133_077
# mfpbench's prior spec "name:index:std": good = best sample perturbed by std 0.01,
# medium = best sample perturbed by std 0.125, bad = the worst of `--nsamples` (1e6).
# For MF-Hartmann the best sample is replaced by the known optimum
# (`--use-hartmann-optimum`); we centre on the known minimiser for every problem.
# mfpbench's `util.perturb` multiplies the std by the range twice (std**2 * range), which
# leaves "good" on the optimum and "medium" within ~0.016 of it; we use the documented
# intent, a normal with std * range per dimension, clipped to the bounds.
GOOD_PRIOR_STD = 0.01
MEDIUM_PRIOR_STD = 0.125
AT25_SAMPLES = 25
BAD_PRIOR_SAMPLES = 1_000_000

# An objective: noiseless f(x, s, bias) for one point x (dim,) in the problem's domain,
# s in [0, 1] the scaled fidelity; at s = 1 it is the plain function whatever the bias.
Objective = Callable[[jax.Array, jax.Array, float], jax.Array]


def fidelity_scale(fidelity: Any) -> jax.Array:
    """Maps a fidelity in [1, 100] to `s = log(z) / log(100)` in [0, 1] (float32).

    Fidelities outside [1, 100] are clipped (a traced value cannot raise).
    """
    z = jnp.clip(jnp.asarray(fidelity, jnp.float32), FIDELITY_LOWER, FIDELITY_UPPER)
    # Written as 1 - log(100 / z) / log(100) so that s is exactly 1 at z = 100 whatever
    # XLA folds: bias and noise then vanish exactly, not up to an ulp of log(100).
    return 1.0 - jnp.log(FIDELITY_UPPER / z) / jnp.log(jnp.float32(FIDELITY_UPPER))


def check_choice(owner: str, name: str, value: Any, allowed: tuple) -> None:
    """Raises a ValueError naming owner, parameter, value and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{owner}: {name}={value!r} is not one of {allowed}.")


def check_scale(owner: str, name: str, value: Any) -> float:
    """Checks a bias or noise scale: a finite real number >= 0.

    Returns:
        The value as a float.

    Raises:
        ValueError: a negative, infinite or non-numeric value (names owner and value).
    """
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name}={value!r} must be a real number >= 0.") from None
    if isinstance(value, bool) or not np.isfinite(scale) or scale < 0:
        raise ValueError(f"{owner}: {name}={value!r} must be a finite real number >= 0.")
    return scale


@dataclasses.dataclass(frozen=True)
class Problem:
    """A multi-fidelity test function with a known optimum and priors of known quality.

    Build one with `jaxnas.problems.mf_hartmann` or `jaxnas.problems.mf_branin`. A
    problem is immutable and hashable: it may be closed over or passed as a static
    argument. `evaluate`, `cost`, `regret` and `to_unit` are pure and jittable; vmap them
    over configs, fidelities and keys.

    Attributes:
        name: A readable name, e.g. "mf_hartmann3(preset='default', bias=0.5, noise=0.1)".
        objective: The noiseless function f(x, s, bias) of one point and the scaled
            fidelity (see the module docstring).
        lower: Lower bound of each coordinate x0, x1, ...
        upper: Upper bound of each coordinate.
        minimizers: The known global minimisers (the first is `argmin`).
        bias: Strength of the low-fidelity bias passed to `objective`.
        noise: Scale of the half-normal noise at the lowest fidelity.
    """

    name: str
    objective: Objective
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    minimizers: tuple[tuple[float, ...], ...]
    bias: float
    noise: float

    # ------------------------------------------------------------------ structure

    @property
    def dim(self) -> int:
        """Number of coordinates."""
        return len(self.lower)

    @property
    def names(self) -> tuple[str, ...]:
        """Config paths of the coordinates: "x0", "x1", ..."""
        return tuple(f"x{i}" for i in range(self.dim))

    @property
    def fidelity_bounds(self) -> tuple[int, int]:
        """The fidelity range, (1, 100)."""
        return FIDELITY_LOWER, FIDELITY_UPPER

    def space(self, prior: str | None = None, confidence: str = "medium") -> dict[str, Any]:
        """The search space: one `Float` per coordinate and the fidelity "z".

        Args:
            prior: None (no prior) or one of "good", "medium", "at25", "bad"; each
                coordinate's `prior` is set to that prior's value.
            confidence: The `prior_confidence` of every coordinate: "low", "medium" or
                "high".

        Returns:
            `{"x0": Float(...), ..., "z": IntegerFidelity(1, 100)}`, for `jaxnas.compile`.

        Raises:
            ValueError: an unknown prior or confidence.
        """
        check_choice(f"{self.name}.space", "prior", prior, (None, *PRIOR_NAMES))
        check_choice(f"{self.name}.space", "confidence", confidence, PRIOR_CONFIDENCES)
        values = None if prior is None else self.priors[prior]
        entries: dict[str, Any] = {
            name: Float(lo, hi, prior=None if values is None else values[name],
                        prior_confidence=confidence)
            for name, lo, hi in zip(self.names, self.lower, self.upper)
        }
        entries[FIDELITY_NAME] = IntegerFidelity(FIDELITY_LOWER, FIDELITY_UPPER)
        return entries

    # ------------------------------------------------------------ pure functions

    def point(self, config: Mapping[str, Any]) -> jax.Array:
        """The coordinates of one config as a (dim,) float32 vector (in the domain)."""
        return jnp.stack([jnp.asarray(config[name], jnp.float32) for name in self.names])

    def to_unit(self, config: Mapping[str, Any]) -> jax.Array:
        """The coordinates of one config scaled to the unit cube, (dim,) float32."""
        lower = jnp.asarray(self.lower, jnp.float32)
        upper = jnp.asarray(self.upper, jnp.float32)
        return (self.point(config) - lower) / (upper - lower)

    def evaluate(self, config: Mapping[str, Any], fidelity: Any, key: jax.Array) -> jax.Array:
        """The loss of one config at one fidelity: biased and noisy below z = 100.

        Pure: the noise is drawn from `key` alone, so the same (config, fidelity, key)
        gives the same loss. Jit and vmap it over configs, fidelities and keys.

        Args:
            config: A mapping with the coordinates "x0", "x1", ... (e.g. a jaxnas
                `Config`; other entries are ignored).
            fidelity: z in [1, 100] (clipped to it).
            key: A PRNG key for the noise.

        Returns:
            The loss, a float32 scalar: `objective(x, s, bias) + |N(0,1)| noise (1 - s)`.
        """
        s = fidelity_scale(fidelity)
        clean = self.objective(self.point(config), s, self.bias)
        # Half-normal as in mfpbench: noise never flatters a configuration.
        noise = self.noise * (1.0 - s) * jnp.abs(jax.random.normal(key, (), jnp.float32))
        return (clean + noise).astype(jnp.float32)

    def cost(self, config: Mapping[str, Any], fidelity: Any) -> jax.Array:
        """The cost of one evaluation, `0.05 + 0.95 (z / 100)^2` (float32).

        Kandasamy et al. (2017), p. 18, as used by mfpbench. The cost does not depend on
        the configuration.
        """
        del config  # the cost depends on the fidelity alone
        z = jnp.clip(jnp.asarray(fidelity, jnp.float32), FIDELITY_LOWER, FIDELITY_UPPER)
        return 0.05 + 0.95 * (z / FIDELITY_UPPER) ** 2

    def regret(self, loss: Any) -> jax.Array:
        """Normalised regret `(loss - optimum) / (regret_reference - optimum)` (float32).

        0 at the global optimum and 1 at `regret_reference`, the value of the "bad" prior
        (the worst of 10^6 uniform samples), so noiseless full-fidelity losses lie in
        [0, 1] but for the rare point worse than all of those samples. Biased or noisy
        low-fidelity losses may fall outside.
        """
        span = self.regret_reference - self.optimum
        return (jnp.asarray(loss, jnp.float32) - self.optimum) / span

    # ------------------------------------------------------------ known values

    @property
    def argmin(self) -> dict[str, float]:
        """A global minimiser, `{"x0": ..., ...}` (the first of `minimizers`)."""
        return dict(zip(self.names, self.minimizers[0]))

    @property
    def optimum(self) -> float:
        """The noiseless full-fidelity global minimum, f(argmin) (computed in float32)."""
        return _full_fidelity_value(self.objective, self.minimizers[0])

    @property
    def priors(self) -> dict[str, dict[str, float]]:
        """The priors by name ("good", "medium", "at25", "bad"), each `{"x0": ..., ...}`."""
        table = prior_table(self.objective, self.lower, self.upper, self.minimizers[0])
        return {name: dict(zip(self.names, table[name])) for name in PRIOR_NAMES}

    @property
    def regret_reference(self) -> float:
        """The upper reference of `regret`: the noiseless full-fidelity value of "bad"."""
        bad = prior_table(self.objective, self.lower, self.upper, self.minimizers[0])["bad"]
        return _full_fidelity_value(self.objective, bad)

    def __repr__(self) -> str:
        return f"Problem({self.name})"


@functools.cache
def _full_fidelity_value(objective: Objective, point: tuple[float, ...]) -> float:
    """f(point) at z = 100, where bias and noise vanish (cached per point)."""
    return float(jax.jit(objective)(jnp.asarray(point, jnp.float32), jnp.float32(1.0), 0.0))


@functools.cache
def prior_table(objective: Objective, lower: tuple[float, ...], upper: tuple[float, ...],
                minimizer: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    """Builds the four priors of a problem; deterministic (fixed key), cached.

    Following mfpbench's prior generator (see the module constants): in the unit cube,
    "good" is the minimiser plus N(0, 0.01^2) per dimension, "medium" the minimiser plus
    N(0, 0.125^2), both clipped to [0, 1]; "at25" is the best and "bad" the worst of 25
    and 10^6 uniform samples, ranked by the noiseless full-fidelity value. The priors do
    not depend on bias or noise, which vanish at full fidelity.

    Args:
        objective: The problem's noiseless function.
        lower: Lower bounds of the domain.
        upper: Upper bounds of the domain.
        minimizer: The global minimiser the good and medium priors are centred on.

    Returns:
        name -> coordinates (Python floats in the domain).
    """
    low = jnp.asarray(lower, jnp.float32)
    span = jnp.asarray(upper, jnp.float32) - low
    dim = len(lower)

    def values(unit: jax.Array) -> jax.Array:  # (n, dim) in the unit cube -> (n,)
        return jax.vmap(lambda u: objective(low + u * span, jnp.float32(1.0), 0.0))(unit)

    def uniform(key: jax.Array, n: int) -> jax.Array:  # (n, dim) in the unit cube
        # Drawn flat and reshaped: XLA compiles a 1-D threefry draw several times faster.
        return jax.random.uniform(key, (n * dim,)).reshape(n, dim)

    @jax.jit
    def build(key: jax.Array) -> dict[str, jax.Array]:
        good_key, medium_key, at25_key, bad_key = jax.random.split(key, 4)
        centre = (jnp.asarray(minimizer, jnp.float32) - low) / span
        at25 = uniform(at25_key, AT25_SAMPLES)
        bad = uniform(bad_key, BAD_PRIOR_SAMPLES)
        unit = {
            "good": centre + GOOD_PRIOR_STD * jax.random.normal(good_key, (dim,)),
            "medium": centre + MEDIUM_PRIOR_STD * jax.random.normal(medium_key, (dim,)),
            "at25": at25[jnp.argmin(values(at25))],
            "bad": bad[jnp.argmax(values(bad))],
        }
        return {name: low + jnp.clip(u, 0.0, 1.0) * span for name, u in unit.items()}

    table = build(jax.random.key(PRIOR_SEED))
    # Clip again on the host: float32 rounding of low + 1 * span may overshoot a bound.
    return {
        name: tuple(float(np.clip(v, lo, hi)) for v, lo, hi in zip(np.asarray(point), lower, upper))
        for name, point in table.items()
    }
