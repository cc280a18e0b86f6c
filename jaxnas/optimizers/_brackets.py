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
from jaxnas.optimizers._schedule import (Schedule, check_bracket_sizes,
                                        check_early_stopping_rate, check_eta,
                                        hyperband_schedule, rung_fidelities)
from jaxnas.space import Config, SearchSpace

# sampler(state, key, base_rung, batch) -> (configs with leading axis `batch`, (batch,)
# int32 Source codes); `state` is the `BracketState` before the ask, `batch` a static int.
Sampler = Callable[["BracketState", jax.Array, jax.Array, int], tuple[Config, jax.Array]]

# Instance slots and table rows an ask looks at when the live instances (and the rung it
# promotes from) fit in them; otherwise it looks at all of them (the same decision).
ACTIVE_WINDOW = 1024


class BracketState(NamedTuple):
    """State of `successive_halving`, `hyperband`, `priorband` and `priorband_bo`.

    Bracket instance `j` runs bracket `j % n_brackets` of the schedule (its Hyperband
    cycle is `j // n_brackets`). There are `capacity` instance slots: every instance holds
    at least one trial, so the trial table fills first.

    Besides the trial table, the state keeps what the decisions read, updated by `ask` and
    `tell` as trials come and go, so that neither has to scan the table: each instance's
    counts in the rung it is filling, and per-rung summaries of the results. An ask then
    costs what the live bracket instances and the rung it promotes from do, not what the
    capacity does.

    Attributes:
        trials: The trial table (`Trials`), `capacity` rows.
        promoted: `(capacity,)` bool, whether a trial has been promoted to the next rung.
        bracket_rung: `(capacity,)` int32, the rung each bracket instance is filling; -1
            before it starts.
        bracket_target: `(capacity,)` int32, how many trials that rung will hold.
        bracket_asked: `(capacity,)` int32, how many of them have been asked.
        bracket_pending: `(capacity,)` int32, how many of those await a result.
        bracket_succeeded: `(capacity,)` int32, how many of those succeeded.
        bracket_first_row: `(capacity,)` int32, the row of the rung's first trial.
        bracket_source_row: `(capacity,)` int32, the first row of the rung below (the one
            its promotions come from).
        started: `()` int32, bracket instances started.
        first_open: `()` int32, no instance below it can get work again.
        rung_successes: `(n_rungs,)` int32, successful trials per rung.
        leaders: `(n_rungs, L)` int32, the rows of each rung's best successful trials, by
            loss and then row; -1 past them. `L` is 0 for optimisers that do not read it.
        spent: `()` float32, the fidelity told trials trained (a promotion counts what it
            adds), as `jn.run` counts `max_fidelity_spent`.
        overflow: `()` bool, set when an ask needed more rows than the table has.
    """

    trials: Trials
    promoted: jax.Array
    bracket_rung: jax.Array
    bracket_target: jax.Array
    bracket_asked: jax.Array
    bracket_pending: jax.Array
    bracket_succeeded: jax.Array
    bracket_first_row: jax.Array
    bracket_source_row: jax.Array
    started: jax.Array
    first_open: jax.Array
    rung_successes: jax.Array
    leaders: jax.Array
    spent: jax.Array
    overflow: jax.Array


def successive_halving(spec: SearchSpace, *, eta: int = 3, early_stopping_rate: int = 0,
                       use_prior: bool = False, bracket_sizes: str = "hpbandster",
                       sample_prior_first: bool | str = False,
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
        sample_prior_first: False, True (the first sample is the prior's mode,
            `SearchSpace.prior_mode`) or `"highest_fidelity"` (the prior's mode is
            evaluated first at the highest fidelity, outside the brackets), as NePS's
            option of that name; needs a space with priors.
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
    early_stopping_rate = check_early_stopping_rate(owner, early_stopping_rate,
                                                    schedule.n_rungs)
    schedule = hyperband_schedule(schedule.fidelities, schedule.eta,
                                  brackets=(s_max - early_stopping_rate,),
                                  bracket_sizes=bracket_sizes)
    sampler = plain_sampler(spec, _base.check_bool(owner, "use_prior", use_prior))
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials,
                             sample_prior_first=sample_prior_first)


def hyperband(spec: SearchSpace, *, eta: int = 3, use_prior: bool = False,
              bracket_sizes: str = "hpbandster", sample_prior_first: bool | str = False,
              batch_size: int | None = None, max_trials: int = 1024) -> Optimizer:
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
        sample_prior_first: False, True or `"highest_fidelity"` (see `successive_halving`).
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
    return bracket_optimizer(owner, spec, schedule, sampler, batch_size, max_trials,
                             sample_prior_first=sample_prior_first)


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

    def sampler(state: BracketState, key: jax.Array, base_rung: jax.Array, batch: int):
        del state, base_rung  # uniform (or prior) sampling ignores the history
        configs = _base.map_rows(sample, jax.random.split(key, batch))
        return configs, jnp.full((batch,), source, jnp.int32)

    return sampler


# `sample_prior_first`'s values, as NePS names them.
PRIOR_FIRST = (False, True, "highest_fidelity")


def check_sample_prior_first(owner: str, spec: SearchSpace, value: bool | str) -> bool | str:
    """Returns `value` or raises: one of `PRIOR_FIRST`, and a space with priors if set."""
    if not any(value is v or (isinstance(v, str) and value == v) for v in PRIOR_FIRST):
        raise ValueError(f"{owner}: sample_prior_first={value!r} must be False, True or "
                         f"'highest_fidelity'.")
    if value is not False and not _base.has_priors(spec):
        raise ValueError(f"{owner}: sample_prior_first={value!r} needs a space with priors; "
                         f"no parameter of this one has a prior.")
    return value


def _prior_mode(spec: SearchSpace, key: jax.Array) -> Config:
    """The prior's mode; a prior draw where it breaks the space's constraints."""
    config = spec.prior_mode()
    if not spec.constrained:
        return config
    ok = spec.feasible(config)
    return jax.tree.map(lambda m, d: jnp.where(ok, m, d), config, spec.sample_prior(key))


def mode_first(spec: SearchSpace, configs: Config, sources: jax.Array, first: jax.Array,
               key: jax.Array) -> tuple[Config, jax.Array]:
    """`sample_prior_first=True`: row 0 of new samples `configs` is the prior's mode where
    `first` (the run's first ask)."""
    row = (jnp.arange(sources.shape[0]) == 0) & first
    configs = jax.tree.map(lambda c, m: jnp.where(row.reshape(-1, *([1] * (c.ndim - 1))), m, c),
                           configs, _prior_mode(spec, key))
    return configs, jnp.where(row, Source.PRIOR, sources).astype(jnp.int32)


def mode_at_top(spec: SearchSpace, trials: Trials, key: jax.Array, batch: int, top_rung: int,
                fidelity: float, bracket: int) -> tuple[Trials, Proposals]:
    """`sample_prior_first="highest_fidelity"`'s first ask: the prior's mode alone, at
    the top rung's `fidelity`, its trial in bracket `bracket` (one that none is)."""
    configs = jax.tree.map(lambda c: jnp.broadcast_to(c, (batch, *c.shape)),
                           _prior_mode(spec, key))
    valid = jnp.arange(batch) == 0
    fidelities = jnp.full((batch,), fidelity, jnp.float32)
    trials, ids = _base.add_trials(trials, configs, fidelities, valid, sources=Source.PRIOR,
                                   rungs=top_rung, brackets=bracket, parent_ids=-1)
    return trials, Proposals(configs, fidelities, ids, valid, jnp.full((batch,), -1, jnp.int32))


def bracket_optimizer(owner: str, spec: SearchSpace, schedule: Schedule, sampler: Sampler,
                      batch_size: int | None, max_trials: int, leaders: int = 0,
                      sample_prior_first: bool | str = False) -> Optimizer:
    """The shared ask/tell loop over a bracket schedule (see the module docstring).

    Args:
        owner: The public constructor's name, for error messages.
        spec: The compiled space (with a fidelity).
        schedule: The rungs and brackets.
        sampler: `sampler(state, key, base_rung, batch)` draws `batch` new
            configurations and their `Source` codes.
        batch_size: Proposals per ask, or None for the largest rung.
        max_trials: Trials the state must hold.
        leaders: How many of each rung's best trials `BracketState.leaders` keeps (at most
            the capacity); 0 for samplers that do not read them.
        sample_prior_first: Whether the run's first trial is the prior's mode
            (`SearchSpace.prior_mode`, or a prior draw where that breaks a constraint):
            True makes it the first sample of the first bracket, at its lowest fidelity;
            `"highest_fidelity"` evaluates it at the highest fidelity on its own, before
            and outside every bracket, as NePS's `sample_prior_first` does. That trial
            counts among the top rung's results (`rung_successes`, `leaders`) and in
            `spent`, so PriorBand's incumbent and evidence read it (NePS's hides it from
            its sampler); no bracket waits for it or promotes it.

    Returns:
        An `Optimizer` whose state is a `BracketState`.
    """
    sample_prior_first = check_sample_prior_first(owner, spec, sample_prior_first)
    batch = schedule.largest_rung if batch_size is None else batch_size
    batch = _base.check_positive_int(owner, "batch_size", batch)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    capacity = _base.capacity_for(max_trials, batch)
    tables = _ScheduleArrays(schedule, capacity)
    n_leaders = min(leaders, capacity)

    def init(key: jax.Array) -> BracketState:
        del key  # the empty state is deterministic
        minus_one = jnp.full((capacity,), -1, jnp.int32)
        zeros = jnp.zeros((capacity,), jnp.int32)
        return BracketState(
            trials=_base.empty_trials(spec, capacity),
            promoted=jnp.zeros((capacity,), bool),
            bracket_rung=minus_one, bracket_target=zeros, bracket_asked=zeros,
            bracket_pending=zeros, bracket_succeeded=zeros, bracket_first_row=zeros,
            bracket_source_row=zeros, started=jnp.zeros((), jnp.int32),
            first_open=jnp.zeros((), jnp.int32),
            rung_successes=jnp.zeros((tables.n_rungs,), jnp.int32),
            leaders=jnp.full((tables.n_rungs, n_leaders), -1, jnp.int32),
            spent=jnp.zeros((), jnp.float32), overflow=jnp.zeros((), bool),
        )

    def ask(state: BracketState, key: jax.Array) -> tuple[BracketState, Proposals]:
        if sample_prior_first == "highest_fidelity":
            return jax.lax.cond(state.trials.count == 0, prior_ask, bracket_ask, state, key)
        return bracket_ask(state, key)

    def prior_ask(state: BracketState, key: jax.Array) -> tuple[BracketState, Proposals]:
        # In no bracket instance: `capacity` stands for none.
        trials, proposals = mode_at_top(spec, state.trials, key, batch, tables.top_rung,
                                        tables.fidelities[tables.top_rung], capacity)
        return state._replace(trials=trials), proposals

    def bracket_ask(state: BracketState, key: jax.Array) -> tuple[BracketState, Proposals]:
        plan = _plan(state, tables)
        n = jnp.minimum(batch, plan.target - plan.asked)
        fits = plan.any_work & (state.trials.count + n <= capacity)
        n = jnp.where(fits, n, 0)
        valid = jnp.arange(batch) < n
        base_rung = jnp.asarray(tables.base_rungs)[plan.bracket % tables.n_brackets]
        is_sample = plan.rung == base_rung
        parents = _best_unpromoted(state, plan, is_sample, batch)  # (B,)
        if sample_prior_first is True:  # the first sample of the run is the prior's mode
            key, key_mode = jax.random.split(key)
            configs, sources = mode_first(spec, *sampler(state, key, base_rung, batch),
                                          state.trials.count == 0, key_mode)
        else:
            configs, sources = sampler(state, key, base_rung, batch)
        # Both always hold; they make the table's in-place writes below depend on the
        # `lax.cond`s that read the same columns (in `_best_unpromoted` and the sampler),
        # so XLA orders the writes after them instead of copying those columns
        # (O(capacity) per ask).
        valid = valid & (parents >= 0) & (sources >= 0)
        trials = state.trials
        parent_configs = jax.tree.map(lambda column: column[parents], trials.configs)
        configs = jax.tree.map(lambda new, old: jnp.where(is_sample, new, old),
                               configs, parent_configs)
        sources = jnp.where(is_sample, sources, Source.PROMOTION)
        parent_ids = jnp.where(valid & ~is_sample, parents, -1)
        fidelities = jnp.full((batch,), jnp.asarray(tables.fidelities)[plan.rung])
        trials, ids = _base.add_trials(
            trials, configs, fidelities, valid, sources=sources, rungs=plan.rung,
            brackets=plan.bracket, parent_ids=parent_ids)
        promoted_rows = jnp.where(valid & ~is_sample, parents, capacity)

        def put(column: jax.Array, value: jax.Array) -> jax.Array:
            return _set_if(column, plan.bracket, value, fits)

        state = state._replace(
            trials=trials,
            promoted=state.promoted.at[promoted_rows].set(True, mode="drop"),
            bracket_rung=put(state.bracket_rung, plan.rung),
            bracket_target=put(state.bracket_target, plan.target),
            bracket_asked=put(state.bracket_asked, plan.asked + n),
            bracket_pending=put(state.bracket_pending, plan.pending + n),
            bracket_succeeded=put(state.bracket_succeeded, plan.succeeded),
            bracket_first_row=put(state.bracket_first_row, plan.first_row),
            bracket_source_row=put(state.bracket_source_row, plan.source_row),
            started=state.started + (fits & (plan.bracket == state.started)),
            first_open=plan.first_open,
            overflow=state.overflow | ~fits,
        )
        return state, Proposals(configs, fidelities, ids, valid, parent_ids)

    def tell(state: BracketState, trial_ids: jax.Array, losses: jax.Array) -> BracketState:
        trials = _base.record_results(state.trials, trial_ids, losses)
        rows, newly = _base.newly_told(state.trials, trial_ids)
        success = newly & (trials.status[rows] == Status.SUCCESS)
        # A pending trial is always in the rung its instance is filling (a rung is only
        # left once none of it is pending), so its instance's counts are that rung's.
        instance = jnp.where(newly, trials.brackets[rows], capacity)
        rungs = jnp.where(success, trials.rungs[rows], tables.n_rungs)
        parents = trials.parent_ids[rows]
        added = trials.fidelities[rows] - jnp.where(
            parents >= 0, trials.fidelities[jnp.clip(parents, 0)], 0.0)

        def merge_rung(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            # One rung at a time, only those with new successes: a tell is usually one
            # ask's rung, and merging the others would cost as much for nothing.
            leaders, left = carry
            rung = jnp.min(left)
            kept = _base.keep_best(leaders[rung], trials.losses, rows, left == rung)
            return leaders.at[rung].set(kept), jnp.where(left == rung, tables.n_rungs, left)

        leaders = state.leaders
        if leaders.shape[1]:
            leaders, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[1] < tables.n_rungs),
                                            merge_rung, (leaders, rungs))

        return state._replace(
            trials=trials,
            bracket_pending=state.bracket_pending.at[instance].add(-1, mode="drop"),
            bracket_succeeded=state.bracket_succeeded.at[instance].add(
                success.astype(jnp.int32), mode="drop"),
            rung_successes=state.rung_successes.at[rungs].add(1, mode="drop"),
            leaders=leaders,
            spent=state.spent + jnp.sum(jnp.where(newly, added, 0.0)),
        )

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
        self.window = min(capacity, ACTIVE_WINDOW)


class _Plan(NamedTuple):
    """What the next ask does: serve `rung` of bracket instance `bracket`, whose counts
    (after advancing it, if its rung was complete) are the rest."""

    bracket: jax.Array  # () int32
    rung: jax.Array  # () int32
    target: jax.Array  # () int32, trials that rung will hold
    asked: jax.Array  # () int32, of them asked before this ask
    pending: jax.Array  # () int32, of them without a result
    succeeded: jax.Array  # () int32, of them succeeded
    first_row: jax.Array  # () int32
    source_row: jax.Array  # () int32
    any_work: jax.Array  # () bool; False only when every instance slot is used
    first_open: jax.Array  # () int32, the new `BracketState.first_open`


def _plan(state: BracketState, tables: _ScheduleArrays) -> _Plan:
    """Picks the bracket instance to serve, advancing it to its next rung if complete.

    Only instances in `[first_open, started]` can have work. When they fit in
    `ACTIVE_WINDOW` slots, only those slots are looked at; otherwise all of them.
    """
    size, capacity = tables.window, tables.capacity
    if size == capacity:
        return _plan_slots(state, tables, jnp.int32(0), capacity)
    start = jnp.clip(state.first_open, 0, capacity - size)
    return jax.lax.cond(state.started < start + size,
                        lambda: _plan_slots(state, tables, start, size),
                        lambda: _plan_slots(state, tables, jnp.int32(0), capacity))


def _plan_slots(state: BracketState, tables: _ScheduleArrays, start: jax.Array,
                size: int) -> _Plan:
    """`_plan` over the instance slots `[start, start + size)`."""
    def window(column: jax.Array) -> jax.Array:
        return column if size == tables.capacity else jax.lax.dynamic_slice_in_dim(
            column, start, size)

    instance = start + jnp.arange(size, dtype=jnp.int32)
    bracket = instance % tables.n_brackets
    base = jnp.asarray(tables.base_rungs)[bracket]
    rung, target, asked = (window(state.bracket_rung), window(state.bracket_target),
                           window(state.bracket_asked))
    pending, succeeded = window(state.bracket_pending), window(state.bracket_succeeded)
    first_row, source_row = window(state.bracket_first_row), window(state.bracket_source_row)
    started = rung >= 0
    count = state.trials.count
    # A complete rung with survivors moves up; failures are never promoted.
    advance = (started & (asked >= target) & (pending == 0) & (rung < tables.top_rung)
               & (succeeded > 0))
    next_rung = jnp.minimum(rung + 1, tables.top_rung)
    sizes = jnp.asarray(tables.sizes)
    rung = jnp.where(advance, next_rung, rung)
    target = jnp.where(advance, jnp.minimum(sizes[bracket, next_rung], succeeded), target)
    source_row = jnp.where(advance, first_row, source_row)
    # The next instance starts at its base rung.
    fresh = instance == state.started
    rung = jnp.where(fresh, base, rung)
    target = jnp.where(fresh, sizes[bracket, base], target)
    renew = advance | fresh
    asked, pending, succeeded = (jnp.where(renew, 0, column)
                                 for column in (asked, pending, succeeded))
    first_row = jnp.where(renew, count, first_row)
    source_row = jnp.where(fresh, count, source_row)
    has_work = (started | fresh) & (target > asked)
    # Done for good: nothing left to ask, and no pending trial that could let it move up.
    done = started & ~has_work & ((pending == 0) | (rung == tables.top_rung))
    first_open = jnp.where(jnp.all(done), start + size, start + jnp.argmin(done))
    # Priority (NePS): oldest cycle; then promotions before samples, lower rung, lower index.
    cycle = instance // tables.n_brackets
    first_cycle = jnp.min(jnp.where(has_work, cycle, tables.capacity))
    is_sample = rung == base
    order = (is_sample.astype(jnp.int32) * tables.n_rungs + rung) * tables.capacity + instance
    chosen = jnp.argmin(jnp.where(has_work & (cycle == first_cycle), order,
                                  jnp.iinfo(jnp.int32).max)).astype(jnp.int32)
    return _Plan(instance[chosen], rung[chosen], target[chosen], asked[chosen],
                 pending[chosen], succeeded[chosen], first_row[chosen], source_row[chosen],
                 jnp.any(has_work), jnp.maximum(first_open, state.first_open).astype(jnp.int32))


def _best_unpromoted(state: BracketState, plan: _Plan, is_sample: jax.Array,
                     batch: int) -> jax.Array:
    """`(batch,)` rows of the best successful, not yet promoted trials of the rung below
    the planned one, in the planned instance.

    Ties go to the earlier trial. Rows past the candidates are arbitrary (masked by the
    caller: it never asks for more than the rung's survivors). The candidates lie in rows
    `[source_row, first_row)`; when those fit in `ACTIVE_WINDOW` rows only they are
    looked at.
    """
    trials, capacity = state.trials, state.promoted.shape[0]
    rung = plan.rung - 1

    def best(start: jax.Array, size: int) -> jax.Array:
        def window(column: jax.Array) -> jax.Array:
            return column if size == capacity else jax.lax.dynamic_slice_in_dim(
                column, start, size)

        candidate = ((window(trials.brackets) == plan.bracket) & (window(trials.rungs) == rung)
                     & (window(trials.status) == Status.SUCCESS) & ~window(state.promoted))
        # top_k keeps the lower row first among equals and costs what `batch` does; a
        # sort would cost what the rows do.
        order = jax.lax.top_k(-jnp.where(candidate, window(trials.losses), jnp.inf), batch)[1]
        return (start + order).astype(jnp.int32)

    size = min(capacity, ACTIVE_WINDOW)
    if size == capacity or batch > size:
        return best(jnp.int32(0), capacity)
    start = jnp.clip(plan.source_row, 0, capacity - size)
    return jax.lax.cond(is_sample | (plan.first_row <= start + size),
                        lambda: best(start, size), lambda: best(jnp.int32(0), capacity))


def _set_if(column: jax.Array, index: jax.Array, value: jax.Array,
            condition: jax.Array) -> jax.Array:
    return column.at[index].set(jnp.where(condition, value, column[index]))
