"""PriorBand+BO (Mallik et al., NeurIPS 2023, Sec. 6 and App. F): PriorBand whose uniform
draws come from a Gaussian process once a rung holds enough results.

PriorBand's ensemble policy is kept as it is: each new configuration of a bracket is a
uniform draw, a prior draw or an incumbent mutation, with the same probabilities. Once
some rung holds at least `min_model_points` successful results, the uniform draws are
replaced by the proposals of the GP of `bayesian_optimization` (`_bo.Model`), fitted to
the results of the highest such rung (where the most informative, least biased losses
are), its log-EI acquisition weighted by the prior as in PiBO (`prior ** (beta s / n)`, `n`
that rung's results), so the prior still leads the model while evidence is scarce. The
factor `s` is the prior's share in PriorBand's own ensemble (Sec. 5.2: the prior against
the incumbent, 1 until there is evidence): once the results say the prior is worse than
the incumbent, it stops pulling the model towards itself, as it stops drawing samples.
Promotions are Hyperband's. A rung's model proposals are a batch chosen with the
Kriging believer, so they spread out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnas.optimizers import _base, gp
from jaxnas.optimizers._base import Optimizer, Source
from jaxnas.optimizers._bo import Model, categorical_slots
from jaxnas.optimizers._brackets import BracketState, Sampler, bracket_optimizer, full_schedule
from jaxnas.optimizers._incumbent import check_incumbent_selection
from jaxnas.optimizers._priorband import TOP_K_ROWS, incumbent_share, priorband_sampler
from jaxnas.optimizers._schedule import Schedule
from jaxnas.space import Config, SearchSpace


def priorband_bo(spec: SearchSpace, *, eta: int = 3, min_model_points: int = 10,
                 model_size: int = 64, prior_beta: float = 10.0,
                 mutation_rate: float = 0.5, mutation_std: float = 0.25,
                 incumbent_selection: str = "any_fidelity", bracket_sizes: str = "hpbandster",
                 sample_prior_first: bool | str = False, batch_size: int | None = None,
                 max_trials: int = 1024) -> Optimizer:
    """PriorBand with model-based sampling (the paper's PriorBand+BO).

    Args:
        spec: A compiled search space with a fidelity, priors on its parameters, and at
            least one `Float` or `Integer` (the GP's).
        eta: The reduction factor of the Hyperband schedule (>= 2).
        min_model_points: Successful results a rung needs before its GP replaces the
            uniform draws.
        model_size: The most results the GP is fitted to (the best of the rung).
        prior_beta: PiBO's `beta` for the acquisition (0: the prior does not weigh it).
        mutation_rate, mutation_std, incumbent_selection, bracket_sizes,
            sample_prior_first: as `priorband`.
        batch_size: Proposals per ask; defaults to the largest rung.
        max_trials: Trials the state must hold (see `successive_halving`).

    Returns:
        An `Optimizer` whose state is a `BracketState`; model proposals have
        `Source.MODEL`.

    Raises:
        TypeError, ValueError: a bad argument (named with its value), a space without a
            fidelity or without a numeric slot.
    """
    owner = "priorband_bo"
    gp.check_supported(owner)
    schedule = full_schedule(owner, spec, eta, bracket_sizes)
    ensemble = priorband_sampler(owner, spec, schedule, incumbent=True, prior=True,
                                 mutation_rate=mutation_rate, mutation_std=mutation_std,
                                 incumbent_selection=incumbent_selection)
    min_model_points = _base.check_positive_int(owner, "min_model_points", min_model_points)
    model_size = _base.check_positive_int(owner, "model_size", model_size)
    prior_beta = _base.check_non_negative_float(owner, "prior_beta", prior_beta)
    categorical = categorical_slots(owner, spec)
    beta = prior_beta if _base.has_priors(spec) and prior_beta > 0 else None
    selection = check_incumbent_selection(owner, incumbent_selection)
    sampler = _model_sampler(spec, ensemble, categorical, schedule, selection,
                             min_model_points, model_size, beta)
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials,
                             leaders=TOP_K_ROWS, sample_prior_first=sample_prior_first)


def _model_sampler(spec: SearchSpace, ensemble: Sampler, categorical, schedule: Schedule,
                   selection, min_model_points: int, model_size: int,
                   beta: float | None) -> Sampler:
    n_rungs = schedule.n_rungs
    bracket_cost = schedule.bracket_cost(schedule.base_rungs.index(0))

    def sampler(state: BracketState, key: jax.Array, base_rung: jax.Array,
                batch: int) -> tuple[Config, jax.Array]:
        trials = state.trials
        key_ensemble, key_model = jax.random.split(key)
        configs, sources = ensemble(state, key_ensemble, base_rung, batch)
        per_rung = state.rung_successes
        rung = jnp.max(jnp.where(per_rung >= min_model_points, jnp.arange(n_rungs), -1))
        wanted = (rung >= 0) & jnp.any(sources == Source.UNIFORM)
        model = Model(spec, categorical, min(model_size, trials.status.shape[0]), batch, beta)
        # The prior weighs the acquisition as much as PriorBand still trusts it: its share
        # of the non-uniform mass against the incumbent (1 until there is evidence).
        share, _ = incumbent_share(spec, state, schedule.eta, n_rungs - 1, bracket_cost,
                                   selection)
        modelled = jax.lax.cond(
            wanted, lambda k: model.propose(trials, k, eligible=trials.rungs == rung,
                                            count=jnp.sum(sources == Source.UNIFORM),
                                            prior_scale=1.0 - share),
            lambda k: configs, key_model)
        replace = wanted & (sources == Source.UNIFORM)
        # The k-th uniform row takes the k-th model proposal.
        slot = jnp.clip(jnp.cumsum(replace) - 1, 0, batch - 1)
        configs = jax.tree.map(
            lambda m, c: jnp.where(replace.reshape(-1, *([1] * (c.ndim - 1))), m[slot], c),
            modelled, configs)
        return configs, jnp.where(replace, Source.MODEL, sources).astype(jnp.int32)

    return sampler
