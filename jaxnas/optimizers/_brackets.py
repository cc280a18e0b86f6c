"""Synchronous bracket optimisers: successive halving and Hyperband (and PriorBand's loop).

Scheduling rules (NePS 0.17's `Sync` and `Hyperband` brackets, `neps/optimizers/utils/
brackets.py`, made batch-wise):

* Bracket instances start in a fixed order: Hyperband cycles through its brackets from the
  lowest base rung up (`s = s_max, ..., 0`) and then starts the next cycle; successive
  halving repeats one bracket.
* A rung is complete when every trial asked in it has a result. Only then are its best
  `size(next rung)` successful trials promoted (failed trials never are); promotions keep
  the config, get new trial ids and point to their parent trial.
* Each ask serves one rung of one bracket: all of it, or `batch_size` at a time if it is
  larger. Priority, as in NePS: the oldest Hyperband cycle with work first; within it
  promotions before new samples, lower rungs first, earlier brackets first.
* While trials are pending and nothing can be promoted, ask starts the next bracket, as
  NePS does. Trials never told therefore never block the run, only their own bracket; to
  release a bracket, tell its lost trials NaN (failed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Proposals, Source, Status, Trials
from jaxnas.optimizers._schedule import (Schedule, check_bracket_sizes, check_eta, hyperband_schedule,
                                        rung_fidelities)
from jaxnas.space import Config, SearchSpace

# sampler(trials, key, base_rung, batch) -> (configs with leading axis `batch`, (batch,)
# int32 Source codes); `batch` is a static int.
Sampler = Callable[[Trials, jax.Array, jax.Array, int], tuple[Config, jax.Array]]


class BracketState(NamedTuple):
    """State of `successive_halving`, `hyperband` and `priorband`.

    Bracket instance `j` runs bracket `j % n_brackets` of the schedule (its Hyperband
    cycle is `j // n_brackets`). There are `capacity` instance slots: every instance holds
    at least one trial, so the trial table fills first.

    Attributes:
        trials: The trial table (`Trials`), `capacity` rows.
        promoted: `(capacity,)` bool, whether a trial has been promoted to the next rung.
        bracket_rung: `(capacity,)` int32, the rung each bracket instance is filling; -1
            before it starts.
        bracket_target: `(capacity,)` int32, how many trials that rung will hold.
        bracket_asked: `(capacity,)` int32, how many of them have been asked.
        started: `()` int32, bracket instances started.
        overflow: `()` bool, set when an ask needed more rows than the table has.
    """

    trials: Trials
    promoted: jax.Array
    bracket_rung: jax.Array
    bracket_target: jax.Array
    bracket_asked: jax.Array
    started: jax.Array
    overflow: jax.Array


def successive_halving(spec: SearchSpace, *, eta: int = 3, early_stopping_rate: int = 0,
                       use_prior: bool = False, bracket_sizes: str = "hpbandster",
                       batch_size: int | None = None, max_trials: int = 1024) -> Optimizer:
    """Successive halving (Jamieson & Talwalkar, 2016), repeated bracket after bracket.

    The bracket is Hyperband's bracket `s = s_max - early_stopping_rate` (see `hyperband`):
    for fidelity 1..81 and eta 3, 81 configs at 1, the best 27 at 3, 9 at 9, 3 at 27 and 1
    at 81.

    Args:
        spec: A compiled search space with a fidelity.
        eta: Keep the best `1 / eta` of each rung; rungs are `max / eta**i`.
        early_stopping_rate: Skip this many of the lowest rungs.
        use_prior: Sample new configurations from the prior instead of uniformly.
        bracket_sizes: `"hpbandster"` or `"paper"`, the rule that sizes the bracket when
            `early_stopping_rate > 0` (see `hyperband`).
        batch_size: Proposals per ask; defaults to the largest rung, so that each ask
            returns a whole rung.
        max_trials: Trials the state must hold; its capacity is this (or one batch, if
            larger) rounded up to a power of two. Asking for more sets the overflow flag
            (see `check`).

    Returns:
        An `Optimizer` whose state is a `BracketState`.

    Raises:
        TypeError, ValueError: a bad argument (eta < 2, a space without fidelity, a fidelity
            range narrower than eta, ...); the message names it.
    """
    owner = "successive_halving"
    schedule = full_schedule(owner, spec, eta, bracket_sizes)
    s_max = schedule.n_rungs - 1
    if (isinstance(early_stopping_rate, bool) or not isinstance(early_stopping_rate, int)
            or not 0 <= early_stopping_rate < s_max):
        raise ValueError(f"{owner}: early_stopping_rate={early_stopping_rate!r} must be an "
                         f"integer in [0, {s_max - 1}] (the schedule has {s_max + 1} rungs).")
    schedule = hyperband_schedule(schedule.fidelities, schedule.eta,
                                  brackets=(s_max - early_stopping_rate,),
                                  bracket_sizes=bracket_sizes)
    sampler = plain_sampler(spec, _base.check_bool(owner, "use_prior", use_prior))
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials)


def hyperband(spec: SearchSpace, *, eta: int = 3, use_prior: bool = False,
              bracket_sizes: str = "hpbandster", batch_size: int | None = None,
              max_trials: int = 1024) -> Optimizer:
    """Hyperband (Li et al., JMLR 2018): successive halving over every early-stopping rate.

    Rungs are `max_fidelity / eta**i` down to the minimum fidelity (integer fidelities
    rounded down, as NePS does). Bracket `s` starts `floor((s_max + 1) / (s + 1)) * eta**s`
    configs, as HpBandSter and NePS size it; for fidelity 1..81 and eta 3: 81@1 27@3 9@9
    3@27 1@81; 27@3 9@9 3@27 1@81; 9@9 3@27 1@81; 6@27 2@81; 5@81. With
    `bracket_sizes="paper"` it starts `ceil((s_max + 1) / (s + 1) * eta**s)` (the paper's
    Algorithm 1 and Table 1): 81, then 34@3 11@9 3@27 1@81; 15@9 5@27 1@81; 8@27 2@81; 5@81.

    Args:
        spec: A compiled search space with a fidelity.
        eta: The reduction factor (>= 2).
        use_prior: Sample new configurations from the prior instead of uniformly.
        bracket_sizes: `"hpbandster"` (HpBandSter's and NePS's sizes) or `"paper"`.
        batch_size: Proposals per ask; defaults to the largest rung.
        max_trials: Trials the state must hold (see `successive_halving`).

    Returns:
        An `Optimizer` whose state is a `BracketState`.

    Raises:
        TypeError, ValueError: a bad argument; the message names it.
    """
    owner = "hyperband"
    schedule = full_schedule(owner, spec, eta, bracket_sizes)
    sampler = plain_sampler(spec, _base.check_bool(owner, "use_prior", use_prior))
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials)


def full_schedule(owner: str, spec: SearchSpace, eta: int,
                  bracket_sizes: str = "hpbandster") -> Schedule:
    """Checks the space, eta and bracket_sizes and builds the full Hyperband schedule."""
    spec = _base.check_space(owner, spec, needs_fidelity=True)
    eta = check_eta(owner, eta)
    bracket_sizes = check_bracket_sizes(owner, bracket_sizes)
    info = spec.fidelity
    fidelities = rung_fidelities(owner, info.lower, info.upper, info.is_integer, eta)
    return hyperband_schedule(fidelities, eta, bracket_sizes=bracket_sizes)


def plain_sampler(spec: SearchSpace, use_prior: bool) -> Sampler:
    sample = spec.sample_prior if use_prior else spec.sample
    source = Source.PRIOR if use_prior else Source.UNIFORM

    def sampler(trials: Trials, key: jax.Array, base_rung: jax.Array, batch: int):
        del trials, base_rung  # uniform (or prior) sampling ignores the history
        configs = _base.map_rows(sample, jax.random.split(key, batch))
        return configs, jnp.full((batch,), source, jnp.int32)

    return sampler


def bracket_optimizer(owner: str, spec: SearchSpace, schedule: Schedule, sampler: Sampler,
                      batch_size: int | None, max_trials: int) -> Optimizer:
    """The shared ask/tell loop over a bracket schedule (see the module docstring).

    Args:
        owner: The public constructor's name, for error messages.
        spec: The compiled space (with a fidelity).
        schedule: The rungs and brackets.
        sampler: `sampler(trials, key, base_rung, batch)` draws `batch` new
            configurations and their `Source` codes.
        batch_size: Proposals per ask, or None for the largest rung.
        max_trials: Trials the state must hold.

    Returns:
        An `Optimizer` whose state is a `BracketState`.
    """
    batch = schedule.largest_rung if batch_size is None else batch_size
    batch = _base.check_positive_int(owner, "batch_size", batch)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    capacity = _base.capacity_for(max_trials, batch)
    tables = _ScheduleArrays(schedule, capacity)

    def init(key: jax.Array) -> BracketState:
        del key  # the empty state is deterministic
        minus_one = jnp.full((capacity,), -1, jnp.int32)
        zeros = jnp.zeros((capacity,), jnp.int32)
        return BracketState(
            trials=_base.empty_trials(spec, capacity),
            promoted=jnp.zeros((capacity,), bool),
            bracket_rung=minus_one, bracket_target=zeros, bracket_asked=zeros,
            started=jnp.zeros((), jnp.int32), overflow=jnp.zeros((), bool),
        )

    def ask(state: BracketState, key: jax.Array) -> tuple[BracketState, Proposals]:
        plan = _plan(state, tables)
        n = jnp.minimum(batch, plan.target - plan.asked)
        fits = plan.any_work & (state.trials.count + n <= capacity)
        n = jnp.where(fits, n, 0)
        valid = jnp.arange(batch) < n
        base_rung = jnp.asarray(tables.base_rungs)[plan.bracket % tables.n_brackets]
        is_sample = plan.rung == base_rung
        parents = _best_unpromoted(state, plan.bracket, plan.rung - 1, batch)  # (B,)
        configs, sources = sampler(state.trials, key, base_rung, batch)
        parent_configs = jax.tree.map(lambda column: column[parents], state.trials.configs)
        configs = jax.tree.map(lambda new, old: jnp.where(is_sample, new, old),
                               configs, parent_configs)
        sources = jnp.where(is_sample, sources, Source.PROMOTION)
        parent_ids = jnp.where(valid & ~is_sample, parents, -1)
        fidelities = jnp.full((batch,), jnp.asarray(tables.fidelities)[plan.rung])
        trials, ids = _base.add_trials(
            state.trials, configs, fidelities, valid, sources=sources, rungs=plan.rung,
            brackets=plan.bracket, parent_ids=parent_ids)
        promoted_rows = jnp.where(valid & ~is_sample, parents, capacity)
        state = BracketState(
            trials=trials,
            promoted=state.promoted.at[promoted_rows].set(True, mode="drop"),
            bracket_rung=_set_if(state.bracket_rung, plan.bracket, plan.rung, fits),
            bracket_target=_set_if(state.bracket_target, plan.bracket, plan.target, fits),
            bracket_asked=_set_if(state.bracket_asked, plan.bracket, plan.asked + n, fits),
            started=state.started + (fits & (plan.bracket == state.started)),
            overflow=state.overflow | ~fits,
        )
        return state, Proposals(configs, fidelities, ids, valid, parent_ids)

    def tell(state: BracketState, trial_ids: jax.Array, losses: jax.Array) -> BracketState:
        return state._replace(trials=_base.record_results(state.trials, trial_ids, losses))

    return Optimizer(init, ask, tell)


class _ScheduleArrays:
    """The schedule as arrays, closed over by ask."""

    def __init__(self, schedule: Schedule, capacity: int):
        self.capacity = capacity
        self.n_brackets = len(schedule.base_rungs)
        self.top_rung = schedule.n_rungs - 1
        self.n_rungs = schedule.n_rungs
        self.base_rungs = np.asarray(schedule.base_rungs, np.int32)  # (n_brackets,)
        self.sizes = schedule.size_table()  # (n_brackets, n_rungs)
        self.fidelities = np.asarray(schedule.fidelities, np.float32)  # (n_rungs,)


class _Plan(NamedTuple):
    """What the next ask does: serve `rung` of bracket instance `bracket`."""

    bracket: jax.Array  # () int32
    rung: jax.Array  # () int32
    target: jax.Array  # () int32, trials that rung will hold
    asked: jax.Array  # () int32, of them asked before this ask
    any_work: jax.Array  # () bool; False only when every instance slot is used


def _plan(state: BracketState, tables: _ScheduleArrays) -> _Plan:
    """Picks the bracket instance to serve, advancing it to its next rung if complete."""
    trials, capacity = state.trials, tables.capacity
    instance = jnp.arange(capacity, dtype=jnp.int32)
    bracket = instance % tables.n_brackets
    base = jnp.asarray(tables.base_rungs)[bracket]
    rung, target, asked = state.bracket_rung, state.bracket_target, state.bracket_asked
    started = rung >= 0
    # Results in each instance's current rung: (capacity,) per instance.
    owner = jnp.clip(trials.brackets, 0, capacity - 1)
    in_current = (trials.brackets >= 0) & (trials.rungs == rung[owner])
    segment = jnp.where(in_current, trials.brackets, capacity)
    pending = jax.ops.segment_sum((trials.status == Status.PENDING).astype(jnp.int32),
                                  segment, capacity + 1)[:capacity]
    succeeded = jax.ops.segment_sum((trials.status == Status.SUCCESS).astype(jnp.int32),
                                    segment, capacity + 1)[:capacity]
    # A complete rung with survivors moves up; failures are never promoted.
    advance = (started & (asked >= target) & (pending == 0) & (rung < tables.top_rung)
               & (succeeded > 0))
    next_rung = jnp.minimum(rung + 1, tables.top_rung)
    sizes = jnp.asarray(tables.sizes)
    rung = jnp.where(advance, next_rung, rung)
    target = jnp.where(advance, jnp.minimum(sizes[bracket, next_rung], succeeded), target)
    asked = jnp.where(advance, 0, asked)
    # The next instance starts at its base rung.
    fresh = instance == state.started
    rung = jnp.where(fresh, base, rung)
    target = jnp.where(fresh, sizes[bracket, base], target)
    asked = jnp.where(fresh, 0, asked)
    has_work = (started | fresh) & (target > asked)
    # Priority (NePS): oldest cycle; then promotions before samples, lower rung, lower index.
    cycle = instance // tables.n_brackets
    first_cycle = jnp.min(jnp.where(has_work, cycle, capacity))
    is_sample = rung == base
    order = (is_sample.astype(jnp.int32) * tables.n_rungs + rung) * capacity + instance
    chosen = jnp.argmin(jnp.where(has_work & (cycle == first_cycle), order,
                                  jnp.iinfo(jnp.int32).max)).astype(jnp.int32)
    return _Plan(chosen, rung[chosen], target[chosen], asked[chosen], jnp.any(has_work))


def _best_unpromoted(state: BracketState, bracket: jax.Array, rung: jax.Array,
                     batch: int) -> jax.Array:
    """`(batch,)` rows of the best successful, not yet promoted trials of one rung.

    Ties go to the earlier trial. Rows past the candidates are arbitrary (masked by the
    caller: it never asks for more than the rung's survivors).
    """
    trials = state.trials
    candidate = ((trials.brackets == bracket) & (trials.rungs == rung)
                 & (trials.status == Status.SUCCESS) & ~state.promoted)
    # top_k keeps the lower row first among equals and costs what `batch` does; a sort
    # of the table would cost what its capacity does.
    order = jax.lax.top_k(-jnp.where(candidate, trials.losses, jnp.inf), batch)[1]
    return order.astype(jnp.int32)


def _set_if(column: jax.Array, index: jax.Array, value: jax.Array,
            condition: jax.Array) -> jax.Array:
    return column.at[index].set(jnp.where(condition, value, column[index]))
