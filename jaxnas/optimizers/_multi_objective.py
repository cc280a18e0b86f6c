"""Several objectives for a single-objective optimiser: its losses made from every trial's
objective vector, by non-dominated sorting or by random scalarisation.

Two modes (`multi_objective(optimizer, n_objectives, mode=...)`):

* `"rank"`: each trial's loss is its non-dominated rank among the trials of its rung
  (constrained domination, as `nsga2`), plus `0.5 / (1 + crowding distance)` to order a
  front, recomputed for the whole table at every tell. Promotions then take a rung's best
  fronts, as MO-ASHA's non-dominated sorting does (Schmucker et al., "Multi-objective
  Asynchronous Successive Halving", 2021), and a model splits good from bad by fronts, as
  MOTPE (Ozaki et al., GECCO 2020) does.
* `"parego"`: at every ask a weight vector `w` is drawn uniformly from the simplex and each
  trial's loss is the augmented Chebyshev scalarisation of its objectives normalised to
  [0, 1] over the successful trials, `max_i w_i f_i + 0.05 sum_i w_i f_i` (ParEGO, Knowles,
  IEEE TEC 2006); a trial that breaks a bound gets `2 + violation / (1 + violation)`, worse
  than every feasible one. With Bayesian optimisation this is ParEGO; with the
  multi-fidelity optimisers it is NePS's random scalarisation per decision.

The wrapped optimiser is unchanged: it reads `state.trials.losses` as it always does, and
the wrapper rewrites that column (never the rows' status) before each of its decisions.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnas.optimizers._base import Optimizer, Proposals, Status
from jaxnas.optimizers._nsga2 import (_UNRANKED, _crowding_distance, non_dominated_ranks,
                                      vector_results)

MODES = ("rank", "parego")
_RHO = 0.05  # ParEGO's augmentation


class MultiObjectiveState(NamedTuple):
    """State of a `multi_objective` optimiser.

    Attributes:
        inner: the wrapped optimiser's state (its `trials.losses` hold the derived losses).
        objectives: `(capacity, n_objectives)` float32, every objective minimised.
        violations: `(capacity,)` float32, how far each trial is from feasible.
    """

    inner: Any
    objectives: jax.Array
    violations: jax.Array

    @property
    def trials(self):
        return self.inner.trials

    @property
    def overflow(self):
        return self.inner.overflow


def multi_objective(optimizer: Optimizer, n_objectives: int, *,
                    mode: str = "rank") -> Optimizer:
    """`optimizer`, told several objectives (see the module docstring for the modes).

    Args:
        optimizer: a single-objective optimiser whose state has a `trials` table.
        n_objectives: objectives per trial.
        mode: `"rank"` (non-dominated sorting per rung) or `"parego"` (a random
            augmented Chebyshev scalarisation per ask).

    Returns:
        An `Optimizer` whose `tell(state, trial_ids, losses, violations=None)` takes
        `(B, n_objectives)` losses (each minimised) and `(B,)` violations (0: feasible).

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"multi_objective: mode={mode!r} must be one of "
                         f"{', '.join(map(repr, MODES))}.")

    def init(key: jax.Array) -> MultiObjectiveState:
        inner = optimizer.init(key)
        capacity = inner.trials.status.shape[0]
        return MultiObjectiveState(inner,
                                   jnp.full((capacity, n_objectives), jnp.nan, jnp.float32),
                                   jnp.zeros((capacity,), jnp.float32))

    def ask(state: MultiObjectiveState, key: jax.Array) -> tuple[MultiObjectiveState,
                                                                 Proposals]:
        inner = state.inner
        if mode == "parego":
            weight_key, key = jax.random.split(key)
            weights = jax.random.dirichlet(weight_key, jnp.ones((n_objectives,)))
            inner = _with_losses(inner, _chebyshev(state, weights))
        inner, proposals = optimizer.ask(inner, key)
        return state._replace(inner=inner), proposals

    def tell(state: MultiObjectiveState, trial_ids: jax.Array, losses: jax.Array,
             violations: jax.Array | None = None) -> MultiObjectiveState:
        told = vector_results("multi_objective", n_objectives, state.inner.trials,
                              trial_ids, losses, violations)
        trial_ids, losses, violations, failed, rows = told
        capacity = state.inner.trials.status.shape[0]
        state = state._replace(
            objectives=state.objectives.at[rows].set(losses, mode="drop"),
            violations=state.violations.at[rows].set(violations, mode="drop"))
        # Which rows succeed (a tell of placeholders), the losses derived from the new
        # table, then the real tell with them (the inner optimiser's own bookkeeping sees
        # the losses it will keep), and every other told row's loss derived again.
        placeholders = jnp.where(failed, jnp.nan, jnp.zeros_like(losses[:, 0]))
        told = state._replace(inner=optimizer.tell(state.inner, trial_ids, placeholders))
        derived = (_ranks(told) if mode == "rank"
                   else _chebyshev(told, jnp.full((n_objectives,), 1.0 / n_objectives)))
        own = derived[jnp.clip(trial_ids, 0, capacity - 1)]
        inner = optimizer.tell(state.inner, trial_ids, jnp.where(failed, jnp.nan, own))
        return state._replace(inner=_with_losses(inner, derived))

    return Optimizer(init, ask, tell)


def _with_losses(inner: Any, losses: jax.Array) -> Any:
    """The inner state with every successful row's loss replaced (others keep NaN)."""
    trials = inner.trials
    success = trials.status == Status.SUCCESS
    return inner._replace(trials=trials._replace(
        losses=jnp.where(success, losses, trials.losses)))


def _ranks(state: MultiObjectiveState) -> jax.Array:
    """Non-dominated rank within each rung, plus a crowding tie-break in (0, 0.5]."""
    trials = state.inner.trials
    success = trials.status == Status.SUCCESS
    rank = non_dominated_ranks(state.objectives, state.violations, success, trials.rungs)
    crowding = _crowding_distance(jnp.where(success[:, None], state.objectives, 0.0), rank,
                                  trials.rungs)
    loss = rank.astype(jnp.float32) + 0.5 / (1.0 + crowding)
    return jnp.where(rank == _UNRANKED, jnp.nan, loss)


def _chebyshev(state: MultiObjectiveState, weights: jax.Array) -> jax.Array:
    """The augmented Chebyshev scalarisation of the normalised objectives (ParEGO)."""
    trials = state.inner.trials
    success = trials.status == Status.SUCCESS
    values = jnp.where(success[:, None], state.objectives, jnp.nan)
    low = jnp.nanmin(jnp.where(success[:, None], values, jnp.inf), axis=0)
    high = jnp.nanmax(jnp.where(success[:, None], values, -jnp.inf), axis=0)
    span = jnp.where(high > low, high - low, 1.0)
    normalised = (values - low) / span
    weighted = weights * normalised
    loss = jnp.max(weighted, axis=1) + _RHO * jnp.sum(weighted, axis=1)
    violation = state.violations
    infeasible = 2.0 + violation / (1.0 + violation)
    return jnp.where(violation > 0, infeasible, loss)
