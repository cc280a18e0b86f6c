"""The prior and the sampling numerics: truncated normals and categorical draws.

Priors (PriorBand, Mallik et al. 2023, Sec. 5 and App. E): a numeric prior is a normal
truncated to the unit interval, centred on the prior's encoding, with sigma 0.5 / 0.25 /
0.125 for low / medium / high confidence; a categorical prior weighs its choice 2 / 4 / 6
against 1 for every other feasible choice. Densities are taken with respect to the unit
encoding (Lebesgue measure for floats, counting measure for integers, stepped values and
categoricals: a discrete value's probability is the exact mass of its bin); parameters
without a prior contribute their uniform density.

The same shape centred on another configuration (every slot, with or without a prior, a
truncated normal of its `prior_confidence` sigma around that configuration's unit value; a
categorical's centre choice weighted against the others) is PriorBand's density around the
incumbent (Sec. 5.2), as NePS's `Prior.from_parameters(center_values=...)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr, ndtri

from jaxnas.space._encoding import CategoricalEncoding, NumericEncoding
from jaxnas.space._ir import Slot

PRIOR_SIGMA = {"low": 0.5, "medium": 0.25, "high": 0.125}
PRIOR_WEIGHT = {"low": 2.0, "medium": 4.0, "high": 6.0}


def categorical_draw(u: jax.Array, logits: jax.Array) -> jax.Array:
    """Inverse-CDF draw per row of `logits` from uniforms `u` (one per row).

    One uniform per decision keeps every method to a single `jax.random` call, which
    compiles far faster on CPU than one threefry call per distribution.
    """
    if logits.shape[0] == 0:
        return jnp.zeros((0,), jnp.int32)
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    last = logits.shape[-1] - 1 - jnp.argmax(jnp.isfinite(logits)[:, ::-1], axis=-1)
    # `<=` skips zero-probability choices even for u == 0.
    idx = jnp.sum(cdf <= u[:, None] * cdf[:, -1:], axis=-1)
    return jnp.minimum(idx, last).astype(jnp.int32)  # guards rounding at the top end


def truncated_normal_unit(u: jax.Array, mean: jax.Array, sigma: jax.Array) -> jax.Array:
    """N(mean, sigma) truncated to [0, 1], by inverse CDF of uniforms `u`, elementwise.

    `mean` lies in [0, 1], so the interval always contains the mode and the CDF difference
    never vanishes; the inverse is accurate for the sigmas used here (>= 1e-3).
    """
    if mean.shape[0] == 0:
        return mean
    # Reflect so that the mode sits in the upper half: the long tail then maps to p near
    # 0, where float32 resolves probabilities finely (it does not near p = 1).
    flip = mean < 0.5
    m = jnp.where(flip, 1.0 - mean, mean)
    lower, upper = ndtr(-m / sigma), ndtr((1.0 - m) / sigma)
    p = jnp.clip(lower + u * (upper - lower), 1e-30, 1.0 - 1e-7)
    x = jnp.clip(m + sigma * ndtri(p), 0.0, 1.0)
    return jnp.where(flip, 1.0 - x, x)


def log_normal_mass(a: jax.Array, b: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails.

    Phi(b) - Phi(a) cancels to 0 in float32 once both lie far in the upper tail, so an
    interval above zero is mirrored below it, where log_ndtr resolves tiny masses.
    """
    upper = a > 0
    lo, hi = jnp.where(upper, -b, a), jnp.where(upper, -a, b)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    return log_hi + jnp.log1p(-jnp.exp(jnp.minimum(log_lo - log_hi, -1e-7)))


def _numeric_log_density(encoding: NumericEncoding, x: jax.Array, mean: jax.Array,
                         sigma: jax.Array, shaped: np.ndarray) -> jax.Array:
    """Per-column log density of values `x` under truncated normals in the unit encoding.

    Continuous floats: the density; discrete columns (integers, steps): the log mass of
    the value's bin. Columns where `shaped` is False are uniform instead (density 1; a
    discrete value's bin width).
    """
    truncation = ndtr((1.0 - mean) / sigma) - ndtr(-mean / sigma)
    u = encoding.to_unit(x)
    log_pdf = (-0.5 * jnp.square((u - mean) / sigma) - 0.5 * math.log(2 * math.pi)
               - jnp.log(sigma) - jnp.log(truncation))
    log_pdf = jnp.where(shaped, log_pdf, 0.0)
    a, b = encoding.bin_edges(x)
    log_mass = jnp.where(
        shaped, log_normal_mass((a - mean) / sigma, (b - mean) / sigma) - jnp.log(truncation),
        jnp.log(jnp.maximum(b - a, 1e-30)))
    return jnp.where(encoding.is_discrete, log_mass, log_pdf)


def _categorical_log_density(logits: jax.Array, indices: jax.Array) -> jax.Array:
    """Per-row log probability of `indices` under unnormalised `logits`."""
    if logits.shape[0] == 0:
        return jnp.zeros((0,), jnp.float32)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_p, indices[:, None], axis=-1)[:, 0]


class Prior:
    """The prior of every slot, and the same shape centred on another configuration.

    Attributes:
        numeric_mean, numeric_sigma: `(n_numeric,)` float32, the prior's truncated normal
            in the unit encoding (0.5 and 1 where a slot has no prior).
        has_prior: `(n_numeric,)` bool.
        categorical_logits: `(n_categorical, max_choices)` float32, log prior weights
            (-inf for infeasible choices).
    """

    def __init__(self, numeric_slots: Sequence[Slot], categorical_slots: Sequence[Slot],
                 numeric: NumericEncoding, categorical: CategoricalEncoding):
        self.numeric, self.categorical = numeric, categorical
        n = len(numeric_slots)
        mean, sigma, has_prior = np.full(n, 0.5), np.ones(n), np.zeros(n, bool)
        for column, s in enumerate(numeric_slots):
            if s.param.prior is not None:
                has_prior[column] = True
                mean[column] = numeric.unit_value(column, s.param.prior)
                sigma[column] = PRIOR_SIGMA[s.param.prior_confidence]
        self.has_prior = has_prior
        self.numeric_mean = mean.astype(np.float32)
        self.numeric_sigma = sigma.astype(np.float32)
        # The centred shape gives every slot its confidence, prior or not.
        self.confidence_sigma = np.array(
            [PRIOR_SIGMA[s.param.prior_confidence] for s in numeric_slots], np.float32)
        confidence_log_weight = np.log(np.array(
            [PRIOR_WEIGHT[s.param.prior_confidence] for s in categorical_slots], np.float64))
        self.confidence_log_weight = confidence_log_weight.astype(np.float32)
        log_weight = np.zeros(categorical.feasible.shape)
        for column, s in enumerate(categorical_slots):
            if s.param.prior is not None:
                log_weight[column, s.param.prior] = confidence_log_weight[column]
        self.categorical_logits = np.where(categorical.feasible, log_weight,
                                           -np.inf).astype(np.float32)

    def sample_unit(self, u: jax.Array) -> jax.Array:
        """Numeric unit values drawn from the prior, from uniforms `u` `(n_numeric,)`."""
        drawn = truncated_normal_unit(u, self.numeric_mean, self.numeric_sigma)
        return jnp.where(self.has_prior, drawn, u)

    def log_density(self, numeric: jax.Array,
                    indices: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-column log prior of working vectors: `(n_numeric,)`, `(n_categorical,)`."""
        log_numeric = _numeric_log_density(self.numeric, numeric, self.numeric_mean,
                                           self.numeric_sigma, self.has_prior)
        return log_numeric, _categorical_log_density(self.categorical_logits, indices)

    def centred_log_density(self, numeric: jax.Array, indices: jax.Array,
                            centre_numeric: jax.Array,
                            centre_indices: jax.Array) -> tuple[jax.Array, jax.Array]:
        """As `log_density`, for the prior's shape centred on the centre's values."""
        mean = self.numeric.to_unit(centre_numeric)
        log_numeric = _numeric_log_density(self.numeric, numeric, mean, self.confidence_sigma,
                                           np.ones(mean.shape, bool))
        if not len(self.confidence_log_weight):
            return log_numeric, jnp.zeros((0,), jnp.float32)
        is_centre = jax.nn.one_hot(centre_indices, self.categorical.max_choices, dtype=bool)
        logits = jnp.where(is_centre, self.confidence_log_weight[:, None], 0.0)
        logits = jnp.where(self.categorical.feasible, logits, -jnp.inf)
        return log_numeric, _categorical_log_density(logits, indices)
