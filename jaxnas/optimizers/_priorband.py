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
`K, K - 1, ..., 1` by rank, score the prior (`spec.log_prior(config)`) against the same
shape centred on the incumbent (`spec.log_prior(config, centre=incumbent)`: each parameter's
own `prior_confidence`, whether it has a prior or not); the incumbent's share is
`score_inc / (score_inc + score_prior)`.

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

import jax
import jax.numpy as jnp

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Source, Status
from jaxnas.optimizers._brackets import (BracketState, Sampler, bracket_optimizer,
                                         full_schedule, plain_sampler)
from jaxnas.optimizers._incumbent import IncumbentSelection, check_incumbent_selection
from jaxnas.optimizers._schedule import Schedule
from jaxnas.space import Config, SearchSpace


def priorband(spec: SearchSpace, *, eta: int = 3, incumbent: bool = True, prior: bool = True,
              mutation_rate: float = 0.5, mutation_std: float = 0.25,
              incumbent_selection: str = "any_fidelity", bracket_sizes: str = "hpbandster",
              sample_prior_first: bool | str = False, batch_size: int | None = None,
              max_trials: int = 1024) -> Optimizer:
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
        sample_prior_first: False, True (the run's first sample is the prior's mode,
            `SearchSpace.prior_mode`) or `"highest_fidelity"` (the prior's mode is
            evaluated first at the highest fidelity, outside the brackets; its result
            counts for the incumbent and the evidence), as NePS's option of that name.
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
    sampler = priorband_sampler(owner, spec, schedule, incumbent=incumbent, prior=prior,
                                mutation_rate=mutation_rate, mutation_std=mutation_std,
                                incumbent_selection=incumbent_selection)
    # Only the incumbent share reads the leaders; without it this is Hyperband's state.
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials,
                             leaders=TOP_K_ROWS if prior and incumbent else 0,
                             sample_prior_first=sample_prior_first)


def priorband_sampler(owner: str, spec: SearchSpace, schedule: Schedule, *, incumbent: bool,
                      prior: bool, mutation_rate: float, mutation_std: float,
                      incumbent_selection: str) -> Sampler:
    """PriorBand's sampling policy after checking its arguments (shared with
    `priorband_bo`, which replaces its uniform draws by the model's)."""
    incumbent = _base.check_bool(owner, "incumbent", incumbent)
    prior = _base.check_bool(owner, "prior", prior)
    incumbent_selection = check_incumbent_selection(owner, incumbent_selection)
    if not 0.0 <= mutation_rate <= 1.0:
        raise ValueError(f"{owner}: mutation_rate={mutation_rate!r} must lie in [0, 1].")
    if not mutation_std > 0.0:
        raise ValueError(f"{owner}: mutation_std={mutation_std!r} must be > 0.")
    if not prior:
        return plain_sampler(spec, use_prior=False)
    return _ensemble_sampler(spec, schedule, incumbent, mutation_rate, mutation_std,
                             incumbent_selection)


def _ensemble_sampler(spec: SearchSpace, schedule: Schedule, use_incumbent: bool,
                      mutation_rate: float, mutation_std: float,
                      incumbent_selection: IncumbentSelection) -> Sampler:
    eta = schedule.eta
    # Evidence needs one full bracket's fidelity: the largest bracket, starting at rung 0.
    bracket_cost = schedule.bracket_cost(schedule.base_rungs.index(0))
    top_rung = schedule.n_rungs - 1

    def sampler(state: BracketState, key: jax.Array, base_rung: jax.Array,
                batch: int) -> tuple[Config, jax.Array]:
        p_uniform = 1.0 / (1.0 + jnp.float32(eta) ** base_rung.astype(jnp.float32))  # Sec. 5.1
        key_draws, key_rows = jax.random.split(key)
        # One table of uniforms picks the distribution and makes the uniform samples (fewer
        # PRNG call sites compile faster on CPU); a row uses only the option it picks.
        draws = jax.random.uniform(key_draws, (batch, 1 + len(spec.paths)))
        key_prior, key_incumbent = jax.random.split(key_rows, (2, batch))
        if spec.constrained:  # rejection inside `sample` (`SearchSpace.constrain`)
            uniform = _base.map_rows(spec.sample, jax.random.split(key_draws, batch))
        else:
            uniform = jax.vmap(spec.from_unit)(draws[:, 1:])  # uniform in the unit encoding
        priors = _base.map_rows(spec.sample_prior, key_prior)
        if use_incumbent:
            share, best = incumbent_share(spec, state, eta, top_rung, bracket_cost,
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


# The best rows per rung a PriorBand state keeps (`BracketState.leaders`): its incumbent
# share scores those unless its K is larger.
TOP_K_ROWS = 256


def incumbent_share(spec: SearchSpace, state: BracketState, eta: int, top_rung: int,
                     bracket_cost: float,
                     incumbent_selection: IncumbentSelection) -> tuple[jax.Array, Config]:
    """The incumbent's share of the non-uniform mass (0 without evidence), and the incumbent.

    Reads the state's per-rung summaries (`rung_successes`, `leaders`, `spent`), kept by
    `tell`, rather than the trial table.

    Returns:
        `()` float32 in [0, 1], and the incumbent config (row 0 while there is none).
    """
    trials = state.trials
    n_rungs = top_rung + 1
    per_rung = state.rung_successes  # (n_rungs,)
    wide = per_rung >= eta
    evidence = (per_rung[top_rung] > 0) & (state.spent >= bracket_cost) & jnp.any(wide)
    best = jax.tree.map(lambda column: column[best_row(state, incumbent_selection)],
                        trials.configs)

    # The top K = n // eta of the highest rung with >= eta results, weighted K, ..., 1.
    rung = jnp.clip(jnp.max(jnp.where(wide, jnp.arange(n_rungs), -1)), 0)
    k = per_rung[rung] // eta

    def scores(rows: jax.Array):
        rank_weight = jnp.maximum(k - jnp.arange(rows.shape[0]), 0).astype(jnp.float32)
        top = jax.tree.map(lambda column: column[rows], trials.configs)
        log_prior = jax.vmap(spec.log_prior)(top)
        log_incumbent = jax.vmap(lambda row: spec.log_prior(row, centre=best))(top)
        log_weight = jnp.where(rank_weight > 0, jnp.log(jnp.maximum(rank_weight, 1.0)),
                               -jnp.inf)
        return jnp.stack([jax.nn.logsumexp(log_weight + log_incumbent),
                          jax.nn.logsumexp(log_weight + log_prior)])

    def all_rows():
        # K beyond the kept leaders (huge runs): the rung's best rows from the whole table,
        # ties by row (top_k keeps the lower index first).
        capacity = trials.status.shape[0]
        losses = jnp.where((trials.status == Status.SUCCESS) & (trials.rungs == rung),
                           trials.losses, jnp.inf)
        return scores(jax.lax.top_k(-losses, max(1, capacity // eta))[1])

    leaders = state.leaders[rung]
    kept = leaders.shape[0]
    score_incumbent, score_prior = (
        scores(jnp.maximum(leaders, 0)) if kept * eta >= trials.status.shape[0]
        else jax.lax.cond(k <= kept, lambda: scores(jnp.maximum(leaders, 0)), all_rows))
    share = jax.nn.sigmoid(score_incumbent - score_prior)  # inc / (inc + prior)
    return jnp.where(evidence, share, 0.0), best


def best_row(state: BracketState, selection: IncumbentSelection) -> jax.Array:
    """The incumbent's row from the per-rung leaders: the first row with the lowest loss at
    any rung, or at the highest rung with a result (`incumbent_index`'s rule); 0 if none."""
    heads = state.leaders[:, 0]  # (n_rungs,) each rung's best row, -1 if none
    if IncumbentSelection(selection) is IncumbentSelection.HIGHEST_FIDELITY:
        top = jnp.max(jnp.where(heads >= 0, jnp.arange(heads.shape[0]), 0))
        return jnp.maximum(heads[top], 0)
    losses = jnp.where(heads >= 0, state.trials.losses[jnp.maximum(heads, 0)], jnp.inf)
    lowest = jnp.min(losses)
    unused = jnp.iinfo(jnp.int32).max
    row = jnp.min(jnp.where((heads >= 0) & (losses == lowest), heads, unused))
    return jnp.where(row == unused, 0, row)
