"""Tree-structured Parzen estimator (TPE), multivariate, as Optuna's `TPESampler` builds it.

Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011; Falkner et
al., "BOHB", ICML 2018 (the multivariate kernel density); Watanabe, "Tree-Structured Parzen
Estimator: Understanding Its Algorithm Components", 2023 (Optuna's defaults, Table 1).

The successful trials are split by loss into the best `gamma(n) = min(ceil(0.1 n), 25)`
("below") and the rest ("above"); each group is a Parzen estimator, a weighted mixture of
one product kernel per trial plus a prior kernel. Candidates are drawn from the below
mixture `l` and the one with the largest `log l(x) - log g(x)` is proposed. Following
Optuna (`optuna/samplers/_tpe/parzen_estimator.py`, `sampler.py`, v3-v4) with
`multivariate=True`:

* numbers are modelled in their unit encoding (`SearchSpace.to_unit`: the log scale for
  `log=True`, an integer's bins half a unit past its bounds, as Optuna's internal
  representation), each trial's kernel a normal truncated to [0, 1] with Scott's bandwidth
  `0.2 n^(-1 / (d + 4))` clipped to `[1 / min(100, n + 2), 1]`; an integer's probability is
  the kernel's mass over its bin;
* a categorical kernel puts `prior_weight / (n + 1)` on every choice plus 1 on the trial's
  own, normalised;
* the prior kernel is Optuna's (a normal centred on the range with sigma its width, uniform
  over choices), with weight `prior_weight`; the trials' weights ramp up with recency once a
  group holds more than 25 (`default_weights`);
* `n_startup_trials` random trials come first, `n_ei_candidates` candidates per proposal.

Where jaxnas differs, and why:

* The user's prior is a pseudo-observation among the good trials: with `use_prior` and a
  space with priors, the prior kernel of `l` is the space's prior (`SearchSpace.log_prior`,
  `sample_prior`) instead of Optuna's uninformative one; `g` keeps the uninformative one.
  The random start then samples from the prior.
* Conditional slots (Optuna's `group=True`): every slot is always present, and a kernel
  models only the slots its own trial used. A slot its trial did not use takes the
  uninformative prior kernel, and a candidate's density counts only the slots the candidate
  uses. Every trial thus informs every slot it has, with one model for the whole space,
  where `group=True` splits the space into subspaces fitted apart.
* Bandwidth: `d` is the number of slots the kernel's trial uses (Optuna: the group's size).
* Failed trials join the above group (Optuna ignores them): a region that fails is one to
  leave. Pending trials join it too, Optuna's `constant_liar`, so that parallel workers
  and the rows of one batch spread out; each row of a batch draws its own candidates.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Source, Status, Trials
from jaxnas.optimizers._random_search import _single_fidelity
from jaxnas.space import Categorical, Config, Integer, SearchSpace

# Optuna's constants: `default_gamma`'s cap and share, `default_weights`' flat tail, Scott's
# rule magnitude, the magic clip's cap.
_GAMMA_SHARE, _GAMMA_CAP = 0.1, 25
_FLAT_WEIGHTS = 25
_SIGMA0 = 0.2
_MAGIC_CLIP_CAP = 100.0
# Optuna's uninformative prior kernel, in the unit encoding: centred, sigma the range.
_PRIOR_MEAN, _PRIOR_SIGMA = 0.5, 1.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def tpe(spec: SearchSpace, *, batch_size: int = 1, n_startup_trials: int = 10,
        n_ei_candidates: int = 24, prior_weight: float = 1.0, use_prior: bool = True,
        max_trials: int = 1024) -> Optimizer:
    """Multivariate TPE with Optuna's defaults; the space's prior as a pseudo-observation.

    Trials are evaluated at the space's maximum fidelity (NaN without one). See the module
    docstring for the model, where it follows Optuna and where it differs.

    Args:
        spec: A compiled search space.
        batch_size: Configurations per ask (each draws its own candidates; pending trials
            count as bad ones, Optuna's constant liar).
        n_startup_trials: Random configurations until this many trials succeeded (Optuna:
            10); from the prior with `use_prior` and a space with priors.
        n_ei_candidates: Candidates drawn from the good trials' density per proposal
            (Optuna: 24).
        prior_weight: The prior kernel's weight against one trial's (Optuna: 1.0).
        use_prior: Use the space's priors (the start, and the good trials' prior kernel).
        max_trials: Trials the state must hold; its capacity is this rounded up to a power
            of two (see `random_search`).

    Returns:
        An `Optimizer` whose state is a `RandomSearchState`.

    Raises:
        TypeError, ValueError: a bad argument; the message names it and its value.

    Example:
        >>> opt = tpe(spec)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))
    """
    owner = "tpe"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    n_startup_trials = _base.check_positive_int(owner, "n_startup_trials", n_startup_trials)
    n_ei_candidates = _base.check_positive_int(owner, "n_ei_candidates", n_ei_candidates)
    prior_weight = _base.check_positive_float(owner, "prior_weight", prior_weight)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    parameters = spec.parameters()
    kinds = _Kinds(spec)
    with_prior = use_prior and _base.has_priors(spec)
    start = spec.sample_prior if with_prior else spec.sample
    start_source = Source.PRIOR if with_prior else Source.UNIFORM

    def propose(trials: Trials, key: jax.Array) -> tuple[Config, jax.Array]:
        key_start, key_model = jax.random.split(key)
        random = _base.map_rows(start, jax.random.split(key_start, batch_size))
        modelled = _model_batch(spec, kinds, with_prior, trials, key_model,
                                batch_size, n_ei_candidates, prior_weight)
        n_success = jnp.sum(trials.status == Status.SUCCESS)
        warm = n_success >= n_startup_trials
        configs = jax.tree.map(lambda m, r: jnp.where(warm, m, r), modelled, random)
        sources = jnp.where(warm, Source.MODEL, start_source).astype(jnp.int32)
        return configs, jnp.full((batch_size,), sources)

    return _single_fidelity(spec, propose, batch_size, max_trials)


class _Kinds:
    """Static column indices of the float, integer and categorical slots (`paths` order)."""

    def __init__(self, spec: SearchSpace):
        parameters = spec.parameters()
        kind = np.array([2 if isinstance(parameters[p], Categorical) else
                         1 if isinstance(parameters[p], Integer) else 0 for p in spec.paths])
        self.floats, self.integers, self.categoricals = (np.flatnonzero(kind == k)
                                                         for k in range(3))
        self.is_categorical = kind == 2


class _Observations:
    """Configs in the unit encoding: values, used slots, categorical ranks."""

    def __init__(self, spec: SearchSpace, kinds: _Kinds, configs: Config):
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

    def rows(self, index: jax.Array) -> _Observations:
        """The observations of rows `index` only."""
        subset = object.__new__(_Observations)
        subset.kinds, subset.categorical = self.kinds, self.categorical
        for name in ("units", "active", "lower", "upper", "choices", "ranks"):
            setattr(subset, name, getattr(self, name)[index])
        return subset


def _model_batch(spec: SearchSpace, kinds: _Kinds, with_prior: bool,
                 trials: Trials, key: jax.Array, batch: int, n_candidates: int,
                 prior_weight: float) -> Config:
    """`batch` proposals, each the best of `n_candidates` draws from `l` by `l / g`."""
    observed = _Observations(spec, kinds, trials.configs)
    below, above = _split(trials)
    # The good group holds at most `_GAMMA_CAP` trials: its kernels are those rows alone
    # (in trial order, which its recency weights read).
    k = min(_GAMMA_CAP, below.shape[0])
    rows = jnp.sort(jax.lax.top_k(jnp.where(below, -trials.losses, -jnp.inf), k)[1])
    good = _Estimator(observed.rows(rows), below[rows], prior_weight)
    bad = _Estimator(observed, above, prior_weight)
    count = batch * n_candidates
    key_draw, key_prior = jax.random.split(key)
    candidates, from_prior = good.sample(spec, key_draw, count)
    if with_prior:  # the prior's own component draws from the space's prior
        prior = _base.map_rows(spec.sample_prior, jax.random.split(key_prior, count))
        candidates = jax.tree.map(lambda p, c: jnp.where(
            from_prior.reshape(-1, *([1] * (c.ndim - 1))), p, c), prior, candidates)
    x = _Observations(spec, kinds, candidates)
    prior_l = jax.vmap(spec.log_prior)(candidates) if with_prior else None
    score = good.log_density(x, prior_l) - bad.log_density(x, None)  # (count,)
    best = jnp.argmax(score.reshape(batch, n_candidates), axis=-1)
    rows = jnp.arange(batch) * n_candidates + best
    return jax.tree.map(lambda c: c[rows], candidates)


def _split(trials: Trials) -> tuple[jax.Array, jax.Array]:
    """`(below, above)` `(C,)` bool: the best `gamma(n)` of the `n` successes, and the
    rest of the told and pending trials (failures and pending ones count as bad)."""
    success = trials.status == Status.SUCCESS
    n = jnp.sum(success, dtype=jnp.int32)
    n_below = jnp.minimum(jnp.ceil(_GAMMA_SHARE * n).astype(jnp.int32), _GAMMA_CAP)
    order = jnp.argsort(jnp.where(success, trials.losses, jnp.inf), stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
    below = success & (rank < n_below)
    used = (trials.status != Status.EMPTY)
    return below, used & ~below


class _Estimator:
    """A Parzen estimator: one product kernel per member trial and a prior kernel.

    Attributes:
        log_weights: `(C + 1,)` the mixture's log weights (members by recency, then the
            prior); -inf for rows outside the group.
        sigmas: `(C,)` each member's bandwidth in the unit encoding.
    """

    def __init__(self, observed: _Observations, members: jax.Array, prior_weight: float):
        self.observed, self.members, self.prior_weight = observed, members, prior_weight
        n = jnp.sum(members, dtype=jnp.int32)
        self.n = n
        weights = jnp.where(members, _recency_weights(members), 0.0)
        mixture = jnp.concatenate([weights, jnp.asarray([prior_weight], jnp.float32)])
        self.log_weights = jnp.log(mixture / jnp.sum(mixture))
        dims = jnp.sum(observed.active, axis=-1).astype(jnp.float32)  # (C,)
        n_float = jnp.maximum(n, 1).astype(jnp.float32)
        scott = _SIGMA0 * n_float ** (-1.0 / (dims + 4.0))
        smallest = 1.0 / jnp.minimum(_MAGIC_CLIP_CAP, n.astype(jnp.float32) + 2.0)
        self.sigmas = jnp.clip(scott, smallest, 1.0)  # (C,)
        # A categorical kernel: `prior_weight / (n + 1)` on every choice, 1 more on its own.
        self.spread = prior_weight / (n.astype(jnp.float32) + 1.0)

    def _kernel(self):
        """Per member and slot: the mean and sigma of the numeric kernel (the prior's
        where the member does not use the slot), and whether the slot is its own."""
        own = self.observed.active  # (C, D)
        means = jnp.where(own, self.observed.units, _PRIOR_MEAN)
        sigmas = jnp.where(own, self.sigmas[:, None], _PRIOR_SIGMA)
        return means, sigmas, own

    def sample(self, spec: SearchSpace, key: jax.Array, count: int) -> tuple[Config, jax.Array]:
        """`count` draws from the mixture, and `(count,)` bool: which came from the prior
        component (drawn here from the uninformative prior)."""
        observed = self.observed
        capacity, dims = observed.units.shape
        key_pick, key_normal, key_uniform = jax.random.split(key, 3)
        u = jax.random.uniform(key_pick, (count,))
        component = _base.inverse_cdf(u, jnp.exp(self.log_weights))  # (count,) 0..C
        prior_drawn = component == capacity
        row = jnp.minimum(component, capacity - 1)
        means, sigmas, own = self._kernel()
        from_prior = prior_drawn[:, None]
        mean = jnp.where(from_prior, _PRIOR_MEAN, means[row])  # (count, D)
        sigma = jnp.where(from_prior, _PRIOR_SIGMA, sigmas[row])
        z = jax.random.truncated_normal(key_normal, -mean / sigma, (1.0 - mean) / sigma,
                                        (count, dims))
        numeric = jnp.clip(mean + sigma * z, 0.0, 1.0)
        # A categorical keeps its member's choice with probability 1 / total, else draws
        # uniformly: (spread + [own choice]) / total per choice, total = spread * n + 1.
        choices = observed.choices[0]  # (D,)
        uniform = jax.random.uniform(key_uniform, (count, 2, dims))
        kept = (own[row] & ~from_prior) & (
            uniform[:, 0] * (self.spread * choices + 1.0) < 1.0)
        drawn = jnp.minimum(jnp.floor(uniform[:, 1] * choices), choices - 1)
        rank = jnp.where(kept, observed.ranks[row], drawn.astype(jnp.int32))
        units = jnp.where(observed.categorical, (rank + 0.5) / choices, numeric)
        return jax.vmap(spec.from_unit)(units), prior_drawn

    def log_density(self, x: _Observations, prior_log_density: jax.Array | None) -> jax.Array:
        """`(count,)` log density of candidates `x` (their used slots only); the prior
        component is the uninformative prior, or `prior_log_density` when given.

        Costs `count * C * D` cheap operations: the truncation masses depend on the
        kernels only, and an integer's bin mass is taken on the integer columns alone.
        """
        means, sigmas, own = self._kernel()  # (C, D)
        kinds = self.observed.kinds
        per_slot = jnp.zeros((x.units.shape[0], *means.shape), jnp.float32)  # (count, C, D)
        normaliser = _log_mass(-means / sigmas, (1.0 - means) / sigmas) + jnp.log(sigmas)
        cols = kinds.floats
        if cols.size:
            z = (x.units[:, None, cols] - means[None, :, cols]) / sigmas[None, :, cols]
            per_slot = per_slot.at[..., cols].set(
                -0.5 * z * z - _LOG_SQRT_2PI - normaliser[None, :, cols])
        cols = kinds.integers
        if cols.size:
            lower = (x.lower[:, None, cols] - means[None, :, cols]) / sigmas[None, :, cols]
            upper = (x.upper[:, None, cols] - means[None, :, cols]) / sigmas[None, :, cols]
            per_slot = per_slot.at[..., cols].set(
                _log_mass(lower, upper) - normaliser[None, :, cols] + jnp.log(
                    sigmas[None, :, cols]))
        cols = kinds.categoricals
        if cols.size:
            same = x.ranks[:, None, cols] == self.observed.ranks[None, :, cols]
            choices = x.choices[:, None, cols]
            own_choice = jnp.log((self.spread + same) / (self.spread * choices + 1.0))
            per_slot = per_slot.at[..., cols].set(
                jnp.where(own[None, :, cols], own_choice, -jnp.log(choices)))
        members = jnp.sum(jnp.where(x.active[:, None], per_slot, 0.0), axis=-1)
        if prior_log_density is None:
            prior_log_density = _uninformative_log_density(x)
        components = jnp.concatenate([members, prior_log_density[:, None]], axis=-1)
        weighted = jnp.where(jnp.isfinite(self.log_weights)[None],
                             components + self.log_weights[None], -jnp.inf)  # empty rows
        return jax.nn.logsumexp(weighted, axis=-1)


def _uninformative_log_density(x: _Observations) -> jax.Array:
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


def _log_mass(a: jax.Array, b: jax.Array) -> jax.Array:
    """`log(Phi(b) - Phi(a))` for `a <= b`, accurate in either tail (reflected when the
    interval lies above zero, where `Phi` nears 1 and loses precision)."""
    flip = a > 0
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    diff = jnp.maximum(ndtr(hi) - ndtr(lo), 0.0)
    tiny = jnp.log1p(-jnp.exp(jnp.minimum(log_lo - log_hi, -1e-12))) + log_hi
    return jnp.where(diff > 1e-6, jnp.log(jnp.maximum(diff, 1e-38)), tiny)


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
