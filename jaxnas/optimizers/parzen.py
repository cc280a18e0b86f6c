"""Parzen estimators of configurations in the unit encoding: the model of `tpe` (public,
for use on its own and for checking against Optuna's).

`Observations` reads configs through the space's public encoding; `ParzenEstimator` is one
group's mixture of product kernels and a prior kernel (`log_density`, `sample`); `split`
divides a trial table into the good and the bad group. The rules, and where they follow
Optuna 5's `_ParzenEstimator` and where they differ, are in `jaxnas/optimizers/_tpe.py`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Status, Trials
from jaxnas.space import Categorical, Config, Integer, SearchSpace

# Optuna's constants: `default_gamma`'s cap and share, `default_weights`' flat tail, the
# magic clip's cap.
GAMMA_SHARE, GAMMA_CAP = 0.1, 25
_FLAT_WEIGHTS = 25
_MAGIC_CLIP_CAP = 100.0
# Optuna's uninformative prior kernel, in the unit encoding: centred, sigma the range.
_PRIOR_MEAN, _PRIOR_SIGMA = 0.5, 1.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class SlotKinds:
    """Static column indices of the float, integer and categorical slots (`paths` order)."""

    def __init__(self, spec: SearchSpace):
        parameters = spec.parameters()
        self._set(np.array([2 if isinstance(parameters[p], Categorical) else
                            1 if isinstance(parameters[p], Integer) else 0
                            for p in spec.paths], int))

    @classmethod
    def of(cls, kind: np.ndarray) -> SlotKinds:
        """Kinds given as an array: 0 float, 1 integer, 2 categorical per column."""
        kinds = object.__new__(cls)
        kinds._set(np.asarray(kind, int))
        return kinds

    def _set(self, kind: np.ndarray) -> None:
        self.kind = kind
        self.floats, self.integers, self.categoricals = (np.flatnonzero(kind == k)
                                                         for k in range(3))
        self.is_categorical = kind == 2

    def columns(self, cols: np.ndarray) -> SlotKinds:
        """The kinds of slots `cols` alone, numbered from 0 in that order."""
        return SlotKinds.of(self.kind[np.asarray(cols)])


class Observations:
    """Configs in the unit encoding: values, used slots, categorical ranks."""

    def __init__(self, spec: SearchSpace, kinds: SlotKinds, configs: Config):
        categorical = kinds.is_categorical
        self.kinds = kinds
        self.units = jax.vmap(spec.to_unit)(configs)  # (C, D) float32
        self.active = jax.vmap(lambda c: spec.active(c).array)(configs)  # (C, D) bool
        lower, upper = jax.vmap(spec.unit_intervals)(configs)
        self.lower, self.upper = lower, upper  # (C, D): a float's point, else its bin
        # Choices per slot (1 for numbers) and each categorical's rank among them.
        self.choices = jnp.where(categorical, jnp.round(1.0 / jnp.maximum(upper - lower,
                                                                          1e-6)), 1.0)
        self.ranks = jnp.round(lower * self.choices).astype(jnp.int32)  # (C, D)
        self.categorical = jnp.asarray(categorical)  # (D,)

    def rows(self, index: jax.Array) -> Observations:
        """The observations of rows `index` only."""
        subset = object.__new__(Observations)
        subset.kinds, subset.categorical = self.kinds, self.categorical
        for name in ("units", "active", "lower", "upper", "choices", "ranks"):
            setattr(subset, name, getattr(self, name)[index])
        return subset

    def columns(self, cols: np.ndarray, *, used: bool | jax.Array | None = None
                ) -> Observations:
        """The observations of slots `cols` (static indices) alone, as if the space had
        only those: an estimator of them models, samples and scores those slots only, at a
        cost that does not grow with the rest of the space. `used`: None keeps each row's
        own use of the slots; True counts every row as using them all (candidates for a
        group of slots); a `(C,)` bool array counts only those rows as using them (the
        trials that use a group)."""
        cols = np.asarray(cols)
        return self.gathered(cols, np.ones(cols.shape, bool), self.kinds.columns(cols),
                             used=used)

    def gathered(self, cols: jax.Array, valid: jax.Array, kinds: SlotKinds, *,
                 used: bool | jax.Array | None = None) -> Observations:
        """`columns` for slots that may be traced (`cols`, `(G,)`, e.g. under a `vmap`
        over groups of slots) laid out with static kinds (`kinds`, one per position);
        positions where `valid` is False are padding, which no row uses."""
        subset = object.__new__(Observations)
        subset.kinds = kinds
        subset.categorical = jnp.asarray(kinds.is_categorical)
        for name in ("units", "active", "lower", "upper", "choices", "ranks"):
            setattr(subset, name, jnp.take(getattr(self, name), cols, axis=1))
        if used is True:
            subset.active = jnp.broadcast_to(valid, subset.active.shape)
        elif used is None:
            subset.active = subset.active & valid
        else:
            subset.active = subset.active & jnp.asarray(used)[:, None] & valid
        return subset


def uniforms_per_draw(dims: int) -> int:
    """How many uniforms `ParzenEstimator.units_from` reads for one draw of `dims` slots:
    the mixture component, then per slot a normal, a keep-or-redraw and a choice."""
    return 1 + 3 * dims


def split(trials: Trials, eligible: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """`(below, above)` `(C,)` bool: the best `gamma(n)` of the `n` successes, and the
    rest of the told and pending trials (failures and pending ones count as bad); only
    `eligible` trials (default: all) take part."""
    eligible = jnp.ones_like(trials.losses, bool) if eligible is None else eligible
    success = eligible & (trials.status == Status.SUCCESS)
    n = jnp.sum(success, dtype=jnp.int32)
    n_below = jnp.minimum(jnp.ceil(GAMMA_SHARE * n).astype(jnp.int32), GAMMA_CAP)
    below = _lowest(trials.losses, success, n_below, GAMMA_CAP)
    used = eligible & (trials.status != Status.EMPTY)
    return below, used & ~below


def best_rows(losses: jax.Array, candidates: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The (at most) `k` `candidates` rows of lowest loss, equal losses in row order.

    Args:
        losses: `(C,)` float losses.
        candidates: `(C,)` bool, the rows that may be chosen.
        k: how many to choose (static).

    Returns:
        `(k,)` int32 row indices in ascending order, and `(k,)` bool: whether each is a
        chosen row (with fewer than `k` candidates the rest are row 0, marked False).
    """
    k = min(k, losses.shape[0])
    chosen = _lowest(losses, candidates, k, k)
    rows = jnp.nonzero(chosen, size=k, fill_value=0)[0].astype(jnp.int32)
    return rows, jnp.arange(k) < jnp.sum(chosen, dtype=jnp.int32)


def _lowest(losses: jax.Array, candidates: jax.Array, count: Any, cap: int) -> jax.Array:
    """`(C,)` bool: the `count` (traced, at most `cap`) `candidates` of lowest loss,
    equal losses in row order (`+ 0.0`: -0.0 ties with 0.0): those below the `count`-th
    smallest loss, then the first rows at it. That loss comes from a top-k of `cap`, not
    a sort of the table (on a CPU, XLA sorts a few hundred values in tens of
    microseconds, its top-k in a few); a top-k's own order of equal values is not the
    rows' on every backend."""
    key = jnp.where(candidates, losses + 0.0, jnp.inf)
    k = min(cap, key.shape[0])
    smallest = -jax.lax.top_k(-key, k)[0]  # ascending
    threshold = smallest[jnp.clip(count - 1, 0, k - 1)]
    under = candidates & (key < threshold)
    at = candidates & (key == threshold)
    room = count - jnp.sum(under, dtype=jnp.int32)
    return (count > 0) & (under | (at & (jnp.cumsum(at) <= room)))


class ParzenEstimator:
    """A Parzen estimator: one product kernel per member trial and a prior kernel.

    Attributes:
        log_weights: `(C + 1,)` the mixture's log weights (members by recency, then the
            prior); -inf for rows outside the group.
        sigmas: `(C, D)` each member's bandwidth per slot in the unit encoding.
    """

    def __init__(self, observed: Observations, members: jax.Array, prior_weight: float):
        self.observed = observed
        n = jnp.sum(members, dtype=jnp.int32)
        weights = jnp.where(members, _recency_weights(members), 0.0)
        mixture = jnp.concatenate([weights, jnp.asarray([prior_weight], jnp.float32)])
        self.log_weights = jnp.log(mixture / jnp.sum(mixture))
        self.sigmas = _neighbour_bandwidths(observed.units, observed.active, members)
        # A categorical kernel: `prior_weight / (n + 1)` on every choice, 1 more on its own.
        self.spread = prior_weight / (n.astype(jnp.float32) + 1.0)

    def _kernel(self):
        """Per member and slot: the mean and sigma of the numeric kernel (the prior's
        where the member does not use the slot), and whether the slot is its own."""
        own = self.observed.active  # (C, D)
        means = jnp.where(own, self.observed.units, _PRIOR_MEAN)
        sigmas = jnp.where(own, self.sigmas, _PRIOR_SIGMA)
        return means, sigmas, own

    def sample(self, spec: SearchSpace, key: jax.Array, count: int) -> tuple[Config, jax.Array]:
        """`count` draws from the mixture, and `(count,)` bool: which came from the prior
        component (drawn here from the uninformative prior)."""
        # One draw of every uniform the sample needs: on a CPU each separate draw is a
        # loop of its own in the program (tens of microseconds), whatever its size.
        dims = self.observed.units.shape[1]
        units, prior_drawn = self.units_from(
            jax.random.uniform(key, (count, uniforms_per_draw(dims))))
        return jax.vmap(spec.from_unit)(units), prior_drawn

    def units_from(self, draws: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`sample`'s draws in the unit encoding of the observed slots, `(count, D)`, and
        which came from the prior component, made from `(count, uniforms_per_draw(D))`
        uniforms in [0, 1)."""
        observed = self.observed
        capacity, dims = observed.units.shape
        component = _base.inverse_cdf(draws[:, 0], jnp.exp(self.log_weights))  # 0..C
        prior_drawn = component == capacity
        row = jnp.minimum(component, capacity - 1)
        means, sigmas, own = self._kernel()
        from_prior = prior_drawn[:, None]
        mean = jnp.where(from_prior, _PRIOR_MEAN, means[row])  # (count, D)
        sigma = jnp.where(from_prior, _PRIOR_SIGMA, sigmas[row])
        z = _truncated_normal(draws[:, 1:1 + dims], -mean / sigma, (1.0 - mean) / sigma)
        numeric = jnp.clip(mean + sigma * z, 0.0, 1.0)
        # A categorical keeps its member's choice with probability 1 / total, else draws
        # uniformly: (spread + [own choice]) / total per choice, total = spread * n + 1.
        choices = observed.choices[0]  # (D,)
        keep, pick = draws[:, 1 + dims:1 + 2 * dims], draws[:, 1 + 2 * dims:]
        kept = (own[row] & ~from_prior) & (keep * (self.spread * choices + 1.0) < 1.0)
        drawn = jnp.minimum(jnp.floor(pick * choices), choices - 1)
        rank = jnp.where(kept, observed.ranks[row], drawn.astype(jnp.int32))
        units = jnp.where(observed.categorical, (rank + 0.5) / choices, numeric)
        return units, prior_drawn

    def log_density(self, x: Observations, prior_log_density: jax.Array | None) -> jax.Array:
        """`(count,)` log density of candidates `x` (their used slots only); the prior
        component is the uninformative prior, or `prior_log_density` when given.

        Costs `count * C * D` cheap operations: the truncation masses depend on the
        kernels only, and an integer's bin mass is taken on the integer columns alone.
        """
        means, sigmas, own = self._kernel()  # (C, D)
        kinds = self.observed.kinds
        normaliser = _log_unit_mass(means, sigmas) + jnp.log(sigmas)
        parts = []  # (columns, (count, C, len(columns))) of each kind present
        cols = kinds.floats
        if cols.size:
            z = (x.units[:, None, cols] - means[None, :, cols]) / sigmas[None, :, cols]
            parts.append((cols, -0.5 * z * z - _LOG_SQRT_2PI - normaliser[None, :, cols]))
        cols = kinds.integers
        if cols.size:
            lower = (x.lower[:, None, cols] - means[None, :, cols]) / sigmas[None, :, cols]
            upper = (x.upper[:, None, cols] - means[None, :, cols]) / sigmas[None, :, cols]
            parts.append((cols, _log_mass(lower, upper) - normaliser[None, :, cols]
                          + jnp.log(sigmas[None, :, cols])))
        cols = kinds.categoricals
        if cols.size:
            same = x.ranks[:, None, cols] == self.observed.ranks[None, :, cols]
            choices = x.choices[:, None, cols]
            own_choice = jnp.log((self.spread + same) / (self.spread * choices + 1.0))
            parts.append((cols, jnp.where(own[None, :, cols], own_choice, -jnp.log(choices))))
        # Each kind's terms summed over its own slots: assembled into one (count, C, D)
        # array first, every element of XLA's fused loop evaluated every kind's formula
        # (an integer's bin mass is the costly one).
        members = functools.reduce(jnp.add, [
            jnp.sum(jnp.where(x.active[:, None, cols], values, 0.0), axis=-1)
            for cols, values in parts])
        if prior_log_density is None:
            prior_log_density = _uninformative_log_density(x)
        components = jnp.concatenate([members, prior_log_density[:, None]], axis=-1)
        weighted = jnp.where(jnp.isfinite(self.log_weights)[None],
                             components + self.log_weights[None], -jnp.inf)  # empty rows
        return jax.nn.logsumexp(weighted, axis=-1)


def _uninformative_log_density(x: Observations) -> jax.Array:
    """`(count,)` Optuna's prior kernel at candidates `x`, over their used slots."""
    numeric = _numeric_log_density(x.units, x.lower, x.upper, _PRIOR_MEAN, _PRIOR_SIGMA)
    per_slot = jnp.where(x.categorical, -jnp.log(x.choices), numeric)
    return jnp.sum(jnp.where(x.active, per_slot, 0.0), axis=-1)


def _numeric_log_density(units, lower, upper, mean, sigma) -> jax.Array:
    """Log density (a float: `lower == upper`) or log mass over `[lower, upper]` (an
    integer's bin) of N(mean, sigma) truncated to [0, 1]."""
    normaliser = _log_mass((0.0 - mean) / sigma, (1.0 - mean) / sigma)
    z = (units - mean) / sigma
    log_pdf = -0.5 * z * z - _LOG_SQRT_2PI - jnp.log(sigma)
    log_bin = _log_mass((lower - mean) / sigma, (upper - mean) / sigma)
    return jnp.where(upper > lower, log_bin, log_pdf) - normaliser


def _truncated_normal(u: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    """A standard normal truncated to `[lower, upper]` from uniforms `u` in [0, 1), by
    inverse CDF, as `jax.random.truncated_normal` computes it from its own uniforms."""
    sqrt2 = math.sqrt(2.0)
    a, b = jax.lax.erf(lower / sqrt2), jax.lax.erf(upper / sqrt2)
    z = sqrt2 * jax.lax.erf_inv(a + u * (b - a))
    return jnp.clip(z, jnp.nextafter(lower, jnp.inf), jnp.nextafter(upper, -jnp.inf))


def _log_unit_mass(mean: jax.Array, sigma: jax.Array) -> jax.Array:
    """`_log_mass(-mean / sigma, (1 - mean) / sigma)` for means in [0, 1], whose interval
    holds 0 and so a mass of at least 0.34 (sigma at most 1): `_log_mass`'s first case,
    without its tail formula (two `log_ndtr`s, most of a TPE ask's arithmetic on a CPU),
    which it would compute and then not use. The same values, bit for bit."""
    diff = jnp.maximum(ndtr((1.0 - mean) / sigma) - ndtr(-mean / sigma), 0.0)
    return jnp.log(jnp.maximum(diff, 1e-38))


def _log_mass(a: jax.Array, b: jax.Array) -> jax.Array:
    """`log(Phi(b) - Phi(a))` for `a <= b`, accurate in either tail (reflected when the
    interval lies above zero, where `Phi` nears 1 and loses precision)."""
    flip = a > 0
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    diff = jnp.maximum(ndtr(hi) - ndtr(lo), 0.0)
    tiny = jnp.log1p(-jnp.exp(jnp.minimum(log_lo - log_hi, -1e-12))) + log_hi
    return jnp.where(diff > 1e-6, jnp.log(jnp.maximum(diff, 1e-38)), tiny)


def _neighbour_bandwidths(units: jax.Array, active: jax.Array, members: jax.Array
                          ) -> jax.Array:
    """`(C, D)` Optuna's bandwidths: per slot, over the members that use it, the larger
    distance to a neighbouring value (0 and 1 are the outer neighbours, but the lowest and
    highest values take their inner neighbour's distance when there are two or more),
    clipped to `[1 / min(100, n + 2), 1]` for `n` such members. Equal values are in row
    order: the first of them has the value below as its left neighbour and the next equal
    one as its right, and so on. Rows that are not members get meaningless values.

    Computed without an argsort, which XLA runs several times slower on a CPU than a sort
    of integers: the members' values (non-negative floats, which order as their bit
    patterns do) are sorted as integers, each row finds its value's first position by a
    binary search, and the rows sharing a value find which of them comes first and last
    by a scatter.
    """
    capacity, dims = units.shape
    has = members[:, None] & active  # (C, D)
    n = jnp.sum(has, axis=0)  # (D,)
    values = jnp.where(has, units, 2.0) + 0.0  # members first; + 0.0: no -0.0 below 0.0
    bits = jax.lax.bitcast_convert_type(values, jnp.int32)
    ordered_bits = jnp.sort(bits, axis=0)
    ordered = jax.lax.bitcast_convert_type(ordered_bits, jnp.float32)
    lo = jax.vmap(lambda column, value: jnp.searchsorted(column, value, method="scan"),
                  in_axes=1, out_axes=1)(ordered_bits, bits)  # values below a row's
    rows = jnp.broadcast_to(jnp.arange(capacity)[:, None], (capacity, dims))
    cols = jnp.broadcast_to(jnp.arange(dims)[None], (capacity, dims))
    hi = lo + jnp.zeros_like(lo).at[lo, cols].add(1)[lo, cols]  # ... and equal to it
    first = jnp.full_like(rows, capacity).at[lo, cols].min(rows)[lo, cols] == rows
    last = jnp.full_like(rows, -1).at[lo, cols].max(rows)[lo, cols] == rows
    below = jnp.take_along_axis(ordered, jnp.maximum(lo - 1, 0), axis=0)
    above = jnp.take_along_axis(ordered, jnp.minimum(hi, capacity - 1), axis=0)
    left = jnp.where(first, jnp.where(lo == 0, 0.0, below), values)  # 0: the low end
    right = jnp.where(last, jnp.where(hi >= n, 1.0, above), values)
    sigma = jnp.maximum(values - left, right - values)
    several = n >= 2
    sigma = jnp.where((lo == 0) & first & several, right - values, sigma)
    sigma = jnp.where((hi >= n) & last & several, values - left, sigma)
    smallest = 1.0 / jnp.minimum(_MAGIC_CLIP_CAP, n.astype(jnp.float32) + 2.0)
    return jnp.clip(sigma, smallest, 1.0)


def _recency_weights(members: jax.Array) -> jax.Array:
    """Optuna's `default_weights` over a group in trial order: all 1 up to 25 members;
    beyond, a linear ramp from `1 / n` for the oldest to 1, the newest 25 at 1."""
    n = jnp.sum(members, dtype=jnp.int32)
    position = jnp.cumsum(members) - 1  # (C,) a member's rank by trial id
    ramp_length = n - _FLAT_WEIGHTS
    n_float = n.astype(jnp.float32)
    step = (1.0 - 1.0 / n_float) / jnp.maximum(ramp_length - 1, 1).astype(jnp.float32)
    ramp = 1.0 / n_float + position.astype(jnp.float32) * step
    return jnp.where((n < _FLAT_WEIGHTS) | (position >= ramp_length), 1.0, ramp)
