"""PriorBand (Mallik et al., NeurIPS 2023): Hyperband with an ensemble sampling policy.

New configurations of a bracket whose base rung is `r` come from (Sec. 5.1-5.2):

* the uniform distribution with probability `p_U = 1 / (1 + eta**r)` (Sec. 5.1);
* otherwise the prior, or, once there is evidence, the prior or the incumbent: the mass
  `1 - p_U` is split by how likely the best configurations are under the prior versus
  around the incumbent (Sec. 5.2, "ESP");
* incumbent sampling mutates each parameter with probability 0.5 by a normal of sigma
  0.25 in the unit cube, truncated to it; a mutated categorical changes its value.

Evidence, as NePS 0.17 intends it (`neps/optimizers/priorband.py`, `sample_config`): a
successful result at the top rung, fidelity worth one full successive-halving bracket spent
(promotions count only their extra fidelity), and a rung with at least `eta` successful
results. The best `K = n // eta` results of the highest such rung, weighted
`K, K - 1, ..., 1` by rank, score the prior (`spec.log_prior`) against a density of the same
shape centred on the incumbent (each parameter's own `prior_confidence`); the incumbent's
share is `score_inc / (score_inc + score_prior)`.

The incumbent is the lowest loss seen at any fidelity (`incumbent_selection="any_fidelity"`),
as in NePS 0.17 (`completed["perf"].idxmin()` over every rung) and in the implementation the
paper's experiments ran (NePS's `PriorBandBase.find_incumbent`, "the best performing
configuration seen so far", over every observed configuration whatever its rung). Where a
low-fidelity loss is an upper bound on the same configuration's full-fidelity loss (less
training, or MF-Hartmann's bias and half-normal noise), the configuration with the lowest
loss anywhere is at least that good at full fidelity. `"highest_fidelity"` (SMAC's
"highest_observed_budget") takes the lowest loss at the highest rung with a result instead,
and so ignores a configuration whose cheap evaluation beat every full-fidelity result,
which a bad prior makes common early on.

Where this differs from NePS 0.17's code:
* NePS writes its evidence checks as `x is False` on numpy booleans, which are never
  `False` objects, so only the fidelity check takes effect there; its rung check would ask
  for exactly `eta` results (`rung_counts == eta`) and its spent fidelity is
  `rung index * cost per rung` summed over results. Here all three checks apply, a rung
  needs at least `eta` results, and spent fidelity is the sum over told trials of what each
  one cost. Run one configuration at a time over fidelities 1..100 with eta 3 (the
  MF-Hartmann benchmark), both switch incumbent sampling on after the first bracket.
* NePS counts failed trials (loss None -> inf) as results; here only successful ones do.
* NePS draws one configuration per result; here a whole rung is drawn at once from the
  same policy (as NePS does with as many workers), unless `batch_size` asks for fewer.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Source, Status, Trials
from jaxnas.optimizers._brackets import Sampler, bracket_optimizer, full_schedule, plain_sampler
from jaxnas.optimizers._schedule import Schedule
from jaxnas.space import Categorical, Config, Integer, SearchSpace
from jaxnas.space._search_space import PRIOR_SIGMA, PRIOR_WEIGHT

INCUMBENT_SELECTIONS = ("any_fidelity", "highest_fidelity")


def priorband(spec: SearchSpace, *, eta: int = 3, incumbent: bool = True, prior: bool = True,
              mutation_rate: float = 0.5, mutation_std: float = 0.25,
              incumbent_selection: str = "any_fidelity", bracket_sizes: str = "hpbandster",
              batch_size: int | None = None, max_trials: int = 1024) -> Optimizer:
    """PriorBand: Hyperband whose new configurations mix uniform, prior and incumbent samples.

    Args:
        spec: A compiled search space with a fidelity; priors on its parameters (those
            without one are uniform under the prior).
        eta: The reduction factor of the Hyperband schedule (>= 2).
        incumbent: Sample around the incumbent once there is evidence (the ablation
            `incumbent=False` mixes only prior and uniform samples).
        prior: Use the prior at all; `prior=False` samples uniformly, which is Hyperband.
        mutation_rate: Probability that incumbent sampling perturbs each parameter.
        mutation_std: Sigma of that perturbation in the unit cube.
        incumbent_selection: `"any_fidelity"` (the lowest loss seen at any fidelity, as NePS
            and the paper's implementation choose it) or `"highest_fidelity"` (the lowest
            loss at the highest rung with a result); see the module docstring.
        bracket_sizes: `"hpbandster"` (HpBandSter's and NePS's bracket sizes) or `"paper"`
            (the Hyperband paper's); see `hyperband`.
        batch_size: Proposals per ask; defaults to the largest rung.
        max_trials: Trials the state must hold (see `successive_halving`).

    Returns:
        An `Optimizer` whose state is a `BracketState`; `state.trials.sources` records
        which distribution produced each trial.

    Raises:
        TypeError, ValueError: a bad argument; the message names it.

    Example:
        >>> opt = priorband(jn.compile(space), eta=3)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))

    Reference:
        N. Mallik, E. Bergman, C. Hvarfner, D. Stoll, M. Janowski, M. Lindauer, L. Nardi,
        F. Hutter. PriorBand: Practical Hyperparameter Optimization in the Age of Deep
        Learning. NeurIPS 2023.
    """
    owner = "priorband"
    schedule = full_schedule(owner, spec, eta, bracket_sizes)
    incumbent = _base.check_bool(owner, "incumbent", incumbent)
    prior = _base.check_bool(owner, "prior", prior)
    if incumbent_selection not in INCUMBENT_SELECTIONS:
        raise ValueError(f"{owner}: incumbent_selection={incumbent_selection!r} must be one of "
                         f"{', '.join(map(repr, INCUMBENT_SELECTIONS))} (which result's "
                         f"configuration incumbent sampling mutates).")
    if not 0.0 <= mutation_rate <= 1.0:
        raise ValueError(f"{owner}: mutation_rate={mutation_rate!r} must lie in [0, 1].")
    if not mutation_std > 0.0:
        raise ValueError(f"{owner}: mutation_std={mutation_std!r} must be > 0.")
    if not prior:
        sampler = plain_sampler(spec, use_prior=False)
    else:
        sampler = _ensemble_sampler(spec, schedule, incumbent, mutation_rate, mutation_std,
                                    incumbent_selection)
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials)


def _ensemble_sampler(spec: SearchSpace, schedule: Schedule, use_incumbent: bool,
                      mutation_rate: float, mutation_std: float,
                      incumbent_selection: str) -> Sampler:
    density = _IncumbentDensity(spec)
    eta = schedule.eta
    # Evidence needs one full bracket's fidelity: the largest bracket, starting at rung 0.
    bracket_cost = schedule.bracket_cost(schedule.base_rungs.index(0))
    top_rung = schedule.n_rungs - 1

    def sampler(trials: Trials, key: jax.Array, base_rung: jax.Array,
                batch: int) -> tuple[Config, jax.Array]:
        p_uniform = 1.0 / (1.0 + jnp.float32(eta) ** base_rung.astype(jnp.float32))  # Sec. 5.1
        key_draws, key_rows = jax.random.split(key)
        # One table of uniforms picks the distribution and makes the uniform samples (fewer
        # PRNG call sites compile faster on CPU); a row uses only the option it picks.
        draws = jax.random.uniform(key_draws, (batch, 1 + len(spec.paths)))
        uniform = jax.vmap(spec.from_unit)(draws[:, 1:])  # uniform in the unit encoding
        key_prior, key_incumbent = jax.random.split(key_rows, (2, batch))
        priors = _base.map_rows(spec.sample_prior, key_prior)
        if use_incumbent:
            share, best = _incumbent_share(spec, density, trials, eta, top_rung, bracket_cost,
                                           incumbent_selection)
            p_incumbent = (1.0 - p_uniform) * share
            mutants = _base.map_rows(
                lambda k: spec.mutate(k, best, mutation_rate, mutation_std), key_incumbent)
            options = (uniform, priors, mutants)
        else:
            p_incumbent = jnp.float32(0.0)
            options = (uniform, priors)
        weights = jnp.stack([p_uniform, 1.0 - p_uniform - p_incumbent, p_incumbent])
        pick = _base.inverse_cdf(draws[:, 0], weights[: len(options)])  # (B,)
        codes = jnp.asarray([Source.UNIFORM, Source.PRIOR, Source.INCUMBENT], jnp.int32)
        return _base.select_rows(pick, options), codes[pick]

    return sampler


def _incumbent_share(spec: SearchSpace, density: _IncumbentDensity, trials: Trials, eta: int,
                     top_rung: int, bracket_cost: float,
                     incumbent_selection: str) -> tuple[jax.Array, Config]:
    """The incumbent's share of the non-uniform mass (0 without evidence), and the incumbent.

    Returns:
        `()` float32 in [0, 1], and the incumbent config (row 0 while there is none).
    """
    n_rungs = top_rung + 1
    success = trials.status == Status.SUCCESS
    told = success | (trials.status == Status.FAILED)
    per_rung = jax.ops.segment_sum(success.astype(jnp.int32),
                                   jnp.where(success, trials.rungs, n_rungs),
                                   n_rungs + 1)[:n_rungs]  # (n_rungs,)
    parents = jnp.clip(trials.parent_ids, 0)
    parent_fidelity = jnp.where(trials.parent_ids >= 0, trials.fidelities[parents], 0.0)
    spent = jnp.sum(jnp.where(told, trials.fidelities - parent_fidelity, 0.0))
    wide = per_rung >= eta
    evidence = (per_rung[top_rung] > 0) & (spent >= bracket_cost) & jnp.any(wide)

    # The incumbent: the lowest successful loss, at any rung or at the highest rung with one.
    candidate = success
    if incumbent_selection == "highest_fidelity":
        candidate &= trials.rungs == jnp.max(jnp.where(success, trials.rungs, -1))
    best_row = jnp.argmin(jnp.where(candidate, trials.losses, jnp.inf))
    best = jax.tree.map(lambda column: column[best_row], trials.configs)

    # The top K = n // eta of the highest rung with >= eta results, weighted K, ..., 1.
    rung = jnp.max(jnp.where(wide, jnp.arange(n_rungs), -1))
    k = per_rung[jnp.clip(rung, 0)] // eta
    capacity = trials.status.shape[0]
    rows = max(1, capacity // eta)  # K never exceeds this
    in_rung = success & (trials.rungs == rung)
    order = jnp.argsort(jnp.where(in_rung, trials.losses, jnp.inf), stable=True)[:rows]
    rank_weight = jnp.maximum(k - jnp.arange(rows), 0).astype(jnp.float32)  # (rows,)
    top = jax.tree.map(lambda column: column[order], trials.configs)
    log_prior = jax.vmap(spec.log_prior)(top)  # (rows,)
    log_incumbent = jax.vmap(density.log_prob, in_axes=(None, 0))(best, top)  # (rows,)
    log_weight = jnp.where(rank_weight > 0, jnp.log(jnp.maximum(rank_weight, 1.0)), -jnp.inf)
    score_incumbent = jax.nn.logsumexp(log_weight + log_incumbent)
    score_prior = jax.nn.logsumexp(log_weight + log_prior)
    share = jax.nn.sigmoid(score_incumbent - score_prior)  # inc / (inc + prior)
    return jnp.where(evidence, share, 0.0), best


class _IncumbentDensity:
    """The prior's shape centred on another config, as a log density in the unit cube.

    Numeric slots: a normal truncated to [0, 1] around the centre's unit value with the
    parameter's `prior_confidence` sigma (integers: times the width of the value's bin,
    i.e. the bin's mass, matching `spec.log_prior`'s counting measure). Categoricals: the
    centre's choice weighs `PRIOR_WEIGHT[confidence]` against 1 for every other choice.
    Inactive slots contribute nothing. As NePS's `Prior.from_parameters(center_values=inc)`.
    """

    def __init__(self, spec: SearchSpace):
        self.spec = spec
        params = spec.parameters()
        columns = [params[path] for path in spec.paths]
        self.is_categorical = np.array([isinstance(p, Categorical) for p in columns], bool)
        self.is_integer = np.array([isinstance(p, Integer) for p in columns], bool)
        self.sigma = np.array([1.0 if c else PRIOR_SIGMA[p.prior_confidence]
                               for p, c in zip(columns, self.is_categorical)], np.float32)
        self.weight = np.array([PRIOR_WEIGHT[p.prior_confidence] if c else 1.0
                                for p, c in zip(columns, self.is_categorical)], np.float32)
        self.n_choices = np.array([len(p.choices) if c else 1
                                   for p, c in zip(columns, self.is_categorical)], np.float32)
        # Integer bins in the unit encoding: value v owns [t(v - 0.5), t(v + 0.5)], rescaled.
        self.is_log = np.array([bool(getattr(p, "log", False)) for p in columns], bool)
        lower = np.array([getattr(p, "lower", 0) for p in columns], np.float64)
        upper = np.array([getattr(p, "upper", 1) for p in columns], np.float64)
        self.lower, self.upper = lower.astype(np.float32), upper.astype(np.float32)
        edge_lo, edge_hi = lower - 0.5, upper + 0.5
        self.t_lo = self._t(edge_lo, self.is_integer & self.is_log).astype(np.float32)
        self.t_hi = self._t(edge_hi, self.is_integer & self.is_log).astype(np.float32)

    @staticmethod
    def _t(x, is_log):
        """Integer values to the (log-)scale their unit encoding is linear in."""
        xp = jnp if isinstance(x, jax.Array) else np
        return xp.where(is_log, xp.log(xp.where(is_log, xp.maximum(x, 1e-30), 1.0)), x)

    def log_prob(self, centre: Config, config: Config) -> jax.Array:
        """Log density of `config` under the distribution centred on `centre` (float32)."""
        spec = self.spec
        u, mu = spec.to_unit(config), spec.to_unit(centre)  # (n_slots,)
        sigma = jnp.asarray(self.sigma)
        mass = ndtr((1.0 - mu) / sigma) - ndtr(-mu / sigma)
        log_pdf = (-0.5 * jnp.square((u - mu) / sigma) - jnp.log(sigma)
                   - 0.5 * math.log(2.0 * math.pi) - jnp.log(mass))
        # Integers: density times bin width (the value is recovered from its bin centre).
        integer_log = self.is_integer & self.is_log
        t_lo, t_hi = jnp.asarray(self.t_lo), jnp.asarray(self.t_hi)
        t = t_lo + u * (t_hi - t_lo)
        value = jnp.clip(jnp.round(jnp.where(integer_log, jnp.exp(t), t)), self.lower, self.upper)
        width = (self._t(value + 0.5, integer_log) - self._t(value - 0.5, integer_log)) / (
            t_hi - t_lo)
        log_numeric = log_pdf + jnp.where(self.is_integer, jnp.log(width), 0.0)
        # Categoricals: same choice <=> same bin centre (bins are >= 1 / n_choices wide).
        n = jnp.asarray(self.n_choices)
        same = jnp.abs(u - mu) < 0.5 / n
        weight = jnp.asarray(self.weight)
        log_categorical = jnp.where(same, jnp.log(weight), 0.0) - jnp.log(weight + n - 1.0)
        log_slot = jnp.where(self.is_categorical, log_categorical, log_numeric)
        return jnp.sum(jnp.where(spec.active(config).array, log_slot, 0.0))
