"""Asynchronous successive halving (ASHA): Li et al., "A System for Massively Parallel
Hyperparameter Tuning", MLSys 2020, Algorithm 2; and its Hyperband and PriorBand forms.

Rungs are successive halving's: `max_fidelity / eta**i` down to the minimum fidelity
(`rung_fidelities`), the `early_stopping_rate` lowest skipped. There are no brackets and
nothing to wait for: every row of an ask

* promotes, if it can: from the highest rung below the top downwards, the best successful
  trial of rung `k` that is not promoted yet and ranks within the top `floor(n_k / eta)` of
  the `n_k` successful trials of rung `k` (by loss, ties to the earlier trial) goes on to
  rung `k + 1`: a new trial with its configuration and fidelity `k + 1`, the trial as its
  parent (Algorithm 2's `get_job`);
* else samples a new configuration at the base rung (uniformly, or from the prior).

Pending trials never block: a rung promotes from the results it has, and a late result
only counts from the next ask on. Failed trials (NaN or inf) are never promoted and do not
count in `n_k`, as in the paper, where a rung holds completed trials; NePS 0.17's `Async`
bracket counts pending and failed trials in `n_k` too, so it may promote before the
results it ranks are in. The rows of one ask decide on the same results, as that many
workers asking at once would, and none promotes a trial that another promotes.

`async_hyperband` runs ASHA in every bracket of Hyperband at once (the paper's Section 3.3):
each new configuration joins bracket `s` (new configurations at rung `s`) with probability
proportional to the new configurations Hyperband's bracket `s` starts, and is promoted
only among the results of its own bracket (`Trials.brackets` holds `s`). `async_priorband`
samples those new configurations as PriorBand does (uniform, prior or around the
incumbent, with PriorBand's weights for the bracket's base rung), from summaries of the
results it computes in the ask (per-rung successes, each rung's best rows and the fidelity
spent, what `BracketState` keeps for synchronous PriorBand). Both are NePS's
asynchronous Hyperband and PriorBand, with Algorithm 2's promotion rule.

Why the ask reads the table and not a summary kept by `tell` (as `_brackets` keeps the
best rows of each rung): the rule ranks a candidate among every result of its rung, and
`multi_objective`'s rank mode rewrites every trial's loss at each tell, which would leave
any order kept beside the table stale. The ask reads the smallest prefix of the
table (`ACTIVE_WINDOW` rows, doubled as needed) that holds every trial, so that a large,
mostly empty table costs what its trials do.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Proposals, Source, Status, Trials
from jaxnas.optimizers._brackets import (ACTIVE_WINDOW, Sampler, check_sample_prior_first,
                                         full_schedule, mode_at_top, mode_first,
                                         plain_sampler)
from jaxnas.optimizers._priorband import TOP_K_ROWS, priorband_sampler
from jaxnas.optimizers._schedule import (Schedule, check_early_stopping_rate, check_eta,
                                         rung_fidelities)
from jaxnas.space import SearchSpace


class ASHAState(NamedTuple):
    """State of `asha`.

    Attributes:
        trials: The trial table (`Trials`), `capacity` rows. Rungs are numbered as in
            `successive_halving` (0 is the space's lowest fidelity, also with an
            `early_stopping_rate`); `brackets` is -1 throughout.
        promoted: `(capacity,)` bool, whether a trial has been promoted to the next rung.
        overflow: `()` bool, set when an ask needed more rows than the table has.
    """

    trials: Trials
    promoted: jax.Array
    overflow: jax.Array


def asha(spec: SearchSpace, *, eta: int = 3, early_stopping_rate: int = 0,
         use_prior: bool = False, sample_prior_first: bool | str = False,
         batch_size: int | None = None, max_trials: int = 1024) -> Optimizer:
    """Asynchronous successive halving (Li et al., MLSys 2020, Algorithm 2).

    Each ask fills `batch_size` rows: promotions first (a trial ranked within the top
    `1 / eta` of the successful results of its rung, not promoted yet, from the highest
    rung down), then new configurations at the base rung. Pending trials never hold an ask
    up. See the module docstring for the exact rule.

    Args:
        spec: A compiled search space with a fidelity.
        eta: Promote the best `1 / eta` of each rung; rungs are `max / eta**i`.
        early_stopping_rate: Skip this many of the lowest rungs (new configurations start
            at rung `early_stopping_rate`).
        use_prior: Sample new configurations from the prior instead of uniformly.
        sample_prior_first: False, True (the run's first sample is the prior's mode,
            `SearchSpace.prior_mode`) or `"highest_fidelity"` (the prior's mode is
            evaluated first, alone, at the highest fidelity), as NePS's option of that
            name; needs a space with priors.
        batch_size: Proposals per ask; defaults to `eta`. A rung promotes once it holds
            `eta` results, so an ask of `eta` new configurations gives the base rung its
            first promotion as soon as sequential ASHA would (after `eta` results), while
            `jn.run` trains `eta` trials at once instead of one. The rows of an ask act as
            that many parallel workers do in the paper: each decides without the results
            of the others, so a large batch promotes on less information.
        max_trials: Trials the state must hold; its capacity is this (or one batch, if
            larger) rounded up to a power of two. Asking for more sets the overflow flag
            (see `check`).

    Returns:
        An `Optimizer` whose state is an `ASHAState`.

    Raises:
        TypeError, ValueError: a bad argument (eta < 2, a space without fidelity, a fidelity
            range narrower than eta, ...); the message names it.

    Example:
        >>> opt = asha(spec, eta=3, batch_size=8)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))
    """
    owner = "asha"
    spec = _base.check_space(owner, spec, needs_fidelity=True)
    eta = check_eta(owner, eta)
    info = spec.fidelity
    fidelities = rung_fidelities(owner, info.lower, info.upper, info.is_integer, eta)
    base_rung = check_early_stopping_rate(owner, early_stopping_rate, len(fidelities))
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    return _asynchronous(owner, spec, eta, fidelities, (base_rung,), (1.0,),
                         plain_sampler(spec, use_prior), batch_size, max_trials,
                         bracket_ids=False, sample_prior_first=sample_prior_first)


def async_hyperband(spec: SearchSpace, *, eta: int = 3, use_prior: bool = False,
                    bracket_sizes: str = "hpbandster", sample_prior_first: bool | str = False,
                    batch_size: int | None = None, max_trials: int = 1024) -> Optimizer:
    """Asynchronous Hyperband: ASHA in every Hyperband bracket at once (Li et al., MLSys
    2020, Section 3.3; NePS's `async_hb`).

    A new configuration joins bracket `s` (it starts at rung `s`) with probability
    proportional to the new configurations Hyperband's bracket `s` starts
    (`bracket_sizes`), and is promoted as in `asha` among its bracket's results only.

    Args:
        spec: A compiled search space with a fidelity.
        eta: Promote the best `1 / eta` of each rung; rungs are `max / eta**i`.
        use_prior: Sample new configurations from the prior instead of uniformly.
        bracket_sizes: `"hpbandster"` or `"paper"`: the bracket weights (see `hyperband`).
        sample_prior_first: False, True or `"highest_fidelity"` (see `asha`); the prior's
            trial at the highest fidelity is in no bracket.
        batch_size: Proposals per ask; defaults to `eta` (see `asha`).
        max_trials: Trials the state must hold (see `asha`).

    Returns:
        An `Optimizer` whose state is an `ASHAState` (`trials.brackets` holds each trial's
        bracket `s`).
    """
    owner = "async_hyperband"
    schedule = full_schedule(owner, spec, eta, bracket_sizes)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    return _asynchronous(owner, spec, schedule.eta, schedule.fidelities,
                         *_bracket_weights(schedule), plain_sampler(spec, use_prior),
                         batch_size, max_trials, sample_prior_first=sample_prior_first)


def async_priorband(spec: SearchSpace, *, eta: int = 3, incumbent: bool = True,
                    prior: bool = True, mutation_rate: float = 0.5,
                    mutation_std: float = 0.25, incumbent_selection: str = "any_fidelity",
                    bracket_sizes: str = "hpbandster", sample_prior_first: bool | str = False,
                    batch_size: int | None = None, max_trials: int = 1024) -> Optimizer:
    """Asynchronous PriorBand: `async_hyperband` whose new configurations PriorBand samples
    (uniform, prior or around the incumbent; Mallik et al., NeurIPS 2023), from the
    results in the table when it asks. The arguments are `priorband`'s and
    `async_hyperband`'s.

    Returns:
        An `Optimizer` whose state is an `ASHAState`; `trials.sources` records which
        distribution produced each trial.
    """
    owner = "async_priorband"
    schedule = full_schedule(owner, spec, eta, bracket_sizes)
    sampler = priorband_sampler(owner, spec, schedule, incumbent=incumbent, prior=prior,
                                mutation_rate=mutation_rate, mutation_std=mutation_std,
                                incumbent_selection=incumbent_selection)
    return _asynchronous(owner, spec, schedule.eta, schedule.fidelities,
                         *_bracket_weights(schedule), sampler, batch_size, max_trials,
                         summaries=prior and incumbent,
                         sample_prior_first=sample_prior_first)


def _bracket_weights(schedule: Schedule) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Each Hyperband bracket's base rung, and the new configurations it starts (the
    weights its bracket is drawn with)."""
    sizes = schedule.size_table()
    return (tuple(schedule.base_rungs),
            tuple(float(sizes[b, r]) for b, r in enumerate(schedule.base_rungs)))


def _asynchronous(owner: str, spec: SearchSpace, eta: int, fidelities: Sequence[float],
                  base_rungs: tuple[int, ...], weights: tuple[float, ...], sampler: Sampler,
                  batch_size: int | None, max_trials: int, *, bracket_ids: bool = True,
                  summaries: bool = False, sample_prior_first: bool | str = False
                  ) -> Optimizer:
    """The ask/tell of ASHA over `len(base_rungs)` brackets (see the module docstring).

    Args:
        base_rungs, weights: each bracket's rung for new configurations, and how often a
            new configuration joins it (relative).
        sampler: draws new configurations (a `_brackets.Sampler`; given the results'
            summaries when `summaries`, else no state).
        bracket_ids: record each trial's bracket in `Trials.brackets` (-1 if False: one
            bracket, `asha`).
        sample_prior_first: as `asha`'s; with `"highest_fidelity"` the prior's trial is
            in bracket `len(base_rungs)`, which is none (-1 without `bracket_ids`).
    """
    fidelities = np.asarray(fidelities, np.float32)  # (n_rungs,)
    sample_prior_first = check_sample_prior_first(owner, spec, sample_prior_first)
    batch = _base.check_positive_int(owner, "batch_size", eta if batch_size is None
                                     else batch_size)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    capacity = _base.capacity_for(max_trials, batch)
    n_rungs = len(fidelities)
    # The (bracket, rung) pairs that promote, in the order an ask serves them: the highest
    # rung first, then the bracket.
    pairs = sorted(((b, r) for b, base in enumerate(base_rungs)
                    for r in range(base, n_rungs - 1)), key=lambda p: (-p[1], p[0]))
    promoting = np.asarray([r for _, r in pairs], np.int32)
    promoting_brackets = np.asarray([b if bracket_ids else -1 for b, _ in pairs], np.int32)
    rung_of_bracket = jnp.asarray(base_rungs, jnp.int32)
    cdf = np.cumsum(weights) / np.sum(weights)

    def init(key: jax.Array) -> ASHAState:
        del key  # the empty state is deterministic
        return ASHAState(_base.empty_trials(spec, capacity), jnp.zeros((capacity,), bool),
                         jnp.zeros((), bool))

    def ask(state: ASHAState, key: jax.Array) -> tuple[ASHAState, Proposals]:
        if sample_prior_first == "highest_fidelity":
            return jax.lax.cond(state.trials.count == 0, prior_ask, asha_ask, state, key)
        return asha_ask(state, key)

    def prior_ask(state: ASHAState, key: jax.Array) -> tuple[ASHAState, Proposals]:
        trials, proposals = mode_at_top(spec, state.trials, key, batch, n_rungs - 1,
                                        fidelities[-1], len(base_rungs) if bracket_ids else -1)
        return state._replace(trials=trials), proposals

    def asha_ask(state: ASHAState, key: jax.Array) -> tuple[ASHAState, Proposals]:
        parents, parent_rungs, summary = _promotions(
            state, promoting, promoting_brackets, eta, batch,
            n_rungs if summaries else 0, fidelities)
        fits = state.trials.count + batch <= capacity
        # `parents >= -1` always holds: it makes the table's in-place writes below depend
        # on the `lax.switch` in `_promotions` that reads the same columns, so XLA orders
        # the writes after it instead of copying those columns (O(capacity) per ask).
        valid = fits & (parents >= -1)
        promotion = parents >= 0  # a prefix of the rows
        trials = state.trials
        key_bracket, key_sample = jax.random.split(key)
        if len(base_rungs) == 1:
            bracket = jnp.zeros((batch,), jnp.int32)
        else:
            bracket = jnp.searchsorted(jnp.asarray(cdf, jnp.float32),
                                       jax.random.uniform(key_bracket, (batch,)),
                                       side="right").astype(jnp.int32)
            bracket = jnp.minimum(bracket, len(base_rungs) - 1)
        new_rung = rung_of_bracket[bracket]
        if summaries:  # one row each: the base rung is the row's own
            new, new_sources = jax.vmap(
                lambda k, rung: jax.tree.map(lambda a: a[0], sampler(summary, k, rung, 1))
            )(jax.random.split(key_sample, batch), new_rung)
        elif len(base_rungs) == 1:
            new, new_sources = sampler(None, key_sample, new_rung[0], batch)
        else:
            new, new_sources = sampler(None, key_sample, new_rung, batch)
        if sample_prior_first is True:  # the run's first sample is the prior's mode
            key_mode = jax.random.fold_in(key, 1)
            new, new_sources = mode_first(spec, new, new_sources, trials.count == 0, key_mode)
        old = jax.tree.map(lambda column: column[jnp.maximum(parents, 0)], trials.configs)
        configs = _base.select_rows(promotion.astype(jnp.int32), (new, old))
        rungs = jnp.where(promotion, parent_rungs + 1, new_rung).astype(jnp.int32)
        parent_brackets = trials.brackets[jnp.maximum(parents, 0)]
        brackets = (jnp.where(promotion, parent_brackets, bracket) if bracket_ids
                    else jnp.full((batch,), -1)).astype(jnp.int32)
        rung_fidelity = jnp.asarray(fidelities)[rungs]
        sources = jnp.where(promotion, Source.PROMOTION, new_sources).astype(jnp.int32)
        parent_ids = jnp.where(valid & promotion, parents, -1)
        trials, ids = _base.add_trials(trials, configs, rung_fidelity, valid,
                                       sources=sources, rungs=rungs, parent_ids=parent_ids,
                                       brackets=brackets)
        promoted_rows = jnp.where(valid & promotion, parents, capacity)
        state = ASHAState(trials, state.promoted.at[promoted_rows].set(True, mode="drop"),
                          state.overflow | ~fits)
        return state, Proposals(configs, rung_fidelity, ids, valid, parent_ids)

    def tell(state: ASHAState, trial_ids: jax.Array, losses: jax.Array) -> ASHAState:
        return state._replace(trials=_base.record_results(state.trials, trial_ids, losses))

    return Optimizer(init, ask, tell)


class _Summary(NamedTuple):
    """What PriorBand's sampler reads of a `BracketState`, computed from the table."""

    trials: Trials
    rung_successes: jax.Array  # (n_rungs,)
    leaders: jax.Array  # (n_rungs, L) each rung's best rows by loss, then row; -1 past them
    spent: jax.Array  # () the fidelity told trials trained (a promotion: what it adds)


def _promotions(state: ASHAState, promoting: np.ndarray, brackets: np.ndarray, eta: int,
                batch: int, n_rungs: int, fidelities: np.ndarray):
    """The trials an ask promotes, in the order its rows take them, and (with `n_rungs`)
    the results' summaries PriorBand's sampler reads.

    Reads the first `ACTIVE_WINDOW * 2**i` rows, the fewest that hold every trial (a
    `lax.switch`; all of them give the same answer), so that an ask costs what the trials
    in the table do, not what its capacity does.

    Returns:
        `(batch,)` int32 rows, -1 past the promotions (which fill a prefix); `(batch,)`
        int32 the rung each is promoted from; a `_Summary`, or None without `n_rungs`.
    """
    capacity = state.promoted.shape[0]
    sizes = [capacity]  # the prefixes an ask may read, the whole table last
    while sizes[0] > ACTIVE_WINDOW:
        sizes.insert(0, sizes[0] // 2)
    kept = min(TOP_K_ROWS, sizes[0])

    def from_rows(size: int):
        trials = state.trials
        rows, rungs = _promotable(trials.rungs[:size], trials.brackets[:size],
                                  trials.status[:size], trials.losses[:size],
                                  state.promoted[:size], promoting, brackets, eta, batch)
        first = _first(rows, rungs, batch)
        if not n_rungs:
            return first
        return first, _summarise(trials, size, n_rungs, kept, fidelities)

    if len(sizes) == 1:
        out = from_rows(capacity)
    else:
        index = jnp.sum(state.trials.count > jnp.asarray(sizes[:-1]))
        out = jax.lax.switch(index, [functools.partial(from_rows, size) for size in sizes])
    if not n_rungs:
        return (*out, None)
    (parents, parent_rungs), (successes, leaders, spent) = out
    return parents, parent_rungs, _Summary(state.trials, successes, leaders, spent)


def _summarise(trials: Trials, size: int, n_rungs: int, kept: int,
               fidelities: np.ndarray) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-rung successes, each rung's best `kept` rows and the fidelity spent, from the
    first `size` rows (which hold every trial)."""
    rungs, status = trials.rungs[:size], trials.status[:size]
    losses = jnp.where(trials.losses[:size] == 0.0, 0.0, trials.losses[:size])
    success = status == Status.SUCCESS
    in_rung = success[None, :] & (rungs[None, :] == jnp.arange(n_rungs)[:, None])
    successes = jnp.sum(in_rung, axis=1).astype(jnp.int32)
    best = jax.lax.top_k(jnp.where(in_rung, -losses, -jnp.inf), kept)[1]  # lower row first
    leaders = jnp.where(jnp.take_along_axis(in_rung, best, axis=1), best, -1)
    told = success | (status == Status.FAILED)
    parents = trials.parent_ids[:size]
    fidelity = jnp.asarray(fidelities)[jnp.maximum(rungs, 0)]
    below = jnp.where(parents >= 0, jnp.asarray(fidelities)[
        jnp.maximum(trials.rungs[jnp.maximum(parents, 0)], 0)], 0.0)
    spent = jnp.sum(jnp.where(told, fidelity - below, 0.0))
    return successes, leaders.astype(jnp.int32), spent


def _promotable(rungs: jax.Array, brackets: jax.Array, status: jax.Array, losses: jax.Array,
                promoted: jax.Array, promoting: np.ndarray, promoting_brackets: np.ndarray,
                eta: int, batch: int) -> tuple[jax.Array, jax.Array]:
    """Each promoting (bracket, rung)'s best unpromoted successful trials and whether each
    may be promoted (Algorithm 2: within the top `floor(n_k / eta)` of its rung).

    Args:
        rungs, brackets, status, losses, promoted: `(N,)` columns of the rows looked at.
        promoting, promoting_brackets: `(P,)` the rungs that promote and their brackets
            (-1: `asha`'s one bracket), in the order they are served.

    Returns:
        `(P, K)` int32 rows, best first in each rung (`K = min(batch, N)`), -1 where a row
        may not be promoted (as every row after it in that rung).
    """
    size = rungs.shape[0]
    losses = jnp.where(losses == 0.0, 0.0, losses)  # -0.0 -> 0.0: equal losses tie
    in_rung = ((status == Status.SUCCESS)[None, :]
               & (rungs[None, :] == jnp.asarray(promoting)[:, None])
               & (brackets[None, :] == jnp.asarray(promoting_brackets)[:, None]))  # (P, N)
    waiting = in_rung & ~promoted[None, :]
    # The best waiting trials of each rung; top_k keeps the lower row first among equals.
    best = jax.lax.top_k(jnp.where(waiting, -losses, -jnp.inf), min(batch, size))[1]
    best_loss = losses[best]  # (P, K)
    # A trial's rank in its rung: the successful trials before it, by loss and then row.
    row = jnp.arange(size)
    ahead = ((losses < best_loss[..., None])
             | ((losses == best_loss[..., None]) & (row < best[..., None])))  # (P, K, N)
    rank = jnp.sum(in_rung[:, None, :] & ahead, axis=-1)
    quota = jnp.sum(in_rung, axis=1) // eta  # (P,) floor(n_k / eta)
    allowed = jnp.take_along_axis(waiting, best, axis=1) & (rank < quota[:, None])
    return (jnp.where(allowed, best, -1).astype(jnp.int32),
            jnp.broadcast_to(jnp.asarray(promoting)[:, None], best.shape))


def _first(rows: jax.Array, rungs: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
    """The first `batch` entries of `rows` that are not -1, in row-major order, and their
    rungs; -1 past them."""
    rows, rungs = rows.reshape(-1), rungs.reshape(-1)
    taken = rows >= 0
    slot = jnp.where(taken, jnp.cumsum(taken) - 1, batch)  # past the batch: dropped
    empty = jnp.full((batch,), -1, jnp.int32)
    return (empty.at[slot].set(rows, mode="drop"),
            empty.at[slot].set(rungs.astype(jnp.int32), mode="drop"))
