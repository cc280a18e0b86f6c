"""`jn.simulate`: whole searches on a pure problem, every seed's in one compiled program.

An optimiser is three pure functions and a `jn.problems` problem is one, so a whole
search (ask -> evaluate -> tell until a budget is spent) is one `lax.while_loop`, and many
searches are its `vmap` over seeds: one jit-compiled program, no Python between trials.
What an optimiser does is what it would do under `jn.run` with the problem's `evaluate` as
a pure function and the same seed, trial for trial (the keys are derived as `jn.run`'s
worker derives them; `tests/run/test_simulate.py` checks the tables are equal):

* the optimiser's state starts from `fold_in(key(seed), 0)`, ask `s` (from 1) draws with
  `fold_in(key(seed), s)`;
* a trial's noise key is `fold_in(fold_in(key(seed), 1), root)`, `root` being its first
  ancestor (a promotion continues its parent's trial, noise draw included);
* budgets are checked before each ask: `max_fidelity_spent` counts the fidelity a trial
  adds to its parent's, `max_evaluations` the trials, and the batch that crosses
  `max_evaluations` is cut to it; the last batch may overshoot a fidelity budget;
* a search also ends when its optimiser proposes nothing or its table is full.

The result holds each trial in evaluation order, per seed, as host arrays, and computes
from them the curves HPO research reads: best-so-far over the budget, the incumbent at
the full fidelity, and its regret.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import optimizers as _optimizers
from jaxnas.run._budgets import default_max_trials, make_optimizer
from jaxnas.space import SearchSpace, compile as _compile

STOP_REASONS = ("max_fidelity_spent", "max_evaluations", "nothing proposed", "table full")
# Named optimisers whose seeds run one after another by default (see `simulate`).
ONE_SEED_AT_A_TIME = frozenset({"bayesian_optimization", "priorband_bo"})


@dataclasses.dataclass(frozen=True)
class Simulation:
    """Every seed's search, trial by trial in evaluation order (host arrays).

    Attributes:
        seeds: `(S,)` the seeds, one search each.
        losses: `(S, T)` each trial's loss; NaN past a search's last trial.
        fidelities: `(S, T)` the fidelity each trial was evaluated at.
        added: `(S, T)` the fidelity it added to its parent's (its own, for a new one).
        parents: `(S, T)` its parent's trial id, -1 for a new configuration.
        trial_ids: `(S, T)` its id in the optimiser's table; -1 past the last trial.
        configs: the trials' configs, each leaf with leading axes `(S, T)`.
        steps: `(S, T)` the ask (from 1) that proposed it.
        stopped_by: `(S,)` why each search ended (one of `STOP_REASONS`).
        max_fidelity: the space's top fidelity (NaN for a space without one).
        optimum: the problem's full-fidelity optimum (NaN if it has none).
        seconds: wall-clock time of the searches, compiled program excluded.
        compile_seconds: time to trace and compile the program.
        problem: the problem searched (its `regret` normalises losses).
    """

    seeds: np.ndarray
    losses: np.ndarray
    fidelities: np.ndarray
    added: np.ndarray
    parents: np.ndarray
    trial_ids: np.ndarray
    configs: Any
    steps: np.ndarray
    stopped_by: tuple[str, ...]
    max_fidelity: float
    optimum: float
    seconds: float
    compile_seconds: float
    problem: Any = dataclasses.field(repr=False, compare=False)

    @property
    def evaluations(self) -> np.ndarray:
        """`(S,)` the trials each search evaluated."""
        return (self.trial_ids >= 0).sum(axis=1)

    @property
    def spent(self) -> np.ndarray:
        """`(S, T)` fidelity spent once each trial finished (what it added, summed)."""
        return np.cumsum(np.where(self.trial_ids >= 0, self.added, 0.0), axis=1)

    def best_so_far(self, budgets: Sequence[float], *, full_fidelity: bool = True,
                    by: str = "fidelity") -> np.ndarray:
        """`(S, len(budgets))` the best loss among the trials finished within each budget.

        Args:
            budgets: the points, in fidelity spent (`by="fidelity"`) or trials
                (`by="evaluations"`).
            full_fidelity: count only trials at the space's top fidelity (the default:
                what a search would return); False counts every trial.
            by: `"fidelity"` or `"evaluations"`.

        Returns:
            The best losses; +inf where no trial counts yet.
        """
        if by not in ("fidelity", "evaluations"):
            raise ValueError(f"best_so_far: by={by!r} must be 'fidelity' or 'evaluations'.")
        used = self.spent if by == "fidelity" else np.cumsum(self.trial_ids >= 0, axis=1)
        counts = self.trial_ids >= 0
        if full_fidelity and np.isfinite(self.max_fidelity):
            counts &= self.fidelities >= self.max_fidelity
        losses = np.where(counts & np.isfinite(self.losses), self.losses, np.inf)
        best = np.minimum.accumulate(losses, axis=1)
        out = np.full((len(self.seeds), len(budgets)), np.inf)
        for j, budget in enumerate(budgets):
            index = (used <= budget).sum(axis=1) - 1  # the last trial within the budget
            within = index >= 0
            out[within, j] = best[np.flatnonzero(within), index[within]]
        return out

    def incumbents(self) -> tuple[np.ndarray, np.ndarray]:
        """`(losses (S,), rows (S,))`: each search's best full-fidelity trial (its row in
        the arrays, -1 and +inf where it has none)."""
        counts = (self.trial_ids >= 0) & np.isfinite(self.losses)
        if np.isfinite(self.max_fidelity):
            counts &= self.fidelities >= self.max_fidelity
        losses = np.where(counts, self.losses, np.inf)
        rows = np.argmin(losses, axis=1)
        best = losses[np.arange(len(rows)), rows]
        return best, np.where(np.isfinite(best), rows, -1)

    def regret(self, losses: Any) -> np.ndarray:
        """The problem's normalised regret of `losses` (e.g. `best_so_far(...)`)."""
        return np.asarray(self.problem.regret(np.asarray(losses, np.float32)))


def simulate(optimizer: str | _optimizers.Optimizer, problem: Any, *,
             seeds: int | Sequence[int] = 1, max_fidelity_spent: float | None = None,
             max_evaluations: int | None = None, prior: str | None = None,
             confidence: str = "medium", optimizer_kwargs: Mapping | None = None,
             space: SearchSpace | None = None, batching: str | None = None) -> Simulation:
    """Runs one whole search per seed, all of them in one jit-compiled program.

    Args:
        optimizer: a name `jn.run` accepts (`"priorband"`, `"hyperband"`, `"tpe"`, ...,
            `"auto"`) or an `Optimizer` built on the problem's space (then pass `space`
            too, or the problem's space with `prior` and `confidence` is assumed).
        problem: a `jn.problems` problem (`mf_hartmann`, `mf_branin`, `mf_mixed`): a
            pure `evaluate(config, fidelity, key)`.
        seeds: how many searches (seeds 0, 1, ...) or the seeds themselves.
        max_fidelity_spent: stop a search once the fidelity it trained reaches this (a
            promotion counts what it adds to its parent's fidelity), as `jn.run` does.
        max_evaluations: stop a search after this many trials.
        prior: the problem's prior to search with (`"good"`, `"medium"`, `"at25"`,
            `"bad"`) or None.
        confidence: the prior's confidence (`"low"`, `"medium"`, `"high"`).
        optimizer_kwargs: options of a named optimiser (its `max_trials`, the table's
            capacity, defaults as in `jn.run`).
        space: the compiled space, when `optimizer` is an `Optimizer` built on another
            space than `problem.space(prior, confidence)`.
        batching: how the seeds' searches share the program: `"vmap"` (side by side,
            one wide step for all of them: the fast way for most optimisers) or `"map"`
            (one after another inside the program). None: `"map"` for the GP-based
            optimisers (`ONE_SEED_AT_A_TIME`), whose vmapped model fits run every branch
            of their conditionals, and whose batched Cholesky factorisations (jaxlib's
            LAPACK kernel spreads a batch over XLA's CPU thread pool) deadlocked inside
            the search loop for `priorband_bo` on jaxlib 0.10.2; `"vmap"` otherwise.

    Returns:
        A `Simulation`: every trial of every search, in order, and the curves over them.

    Raises:
        ValueError: no budget, a budget that is not positive, an empty or repeated seed
            list, or a named optimiser's bad options (named as `jn.run` names them).

    Example:
        >>> p = jn.problems.mf_hartmann(dim=6)
        >>> sim = jn.simulate("priorband", p, seeds=256, max_fidelity_spent=2000,
        ...                   prior="good")
        >>> sim.regret(sim.best_so_far([500, 1000, 2000])).shape
        (256, 3)
    """
    seeds = _seeds(seeds)
    limits = _budgets(max_fidelity_spent, max_evaluations)
    if batching is None:
        batching = "map" if optimizer in ONE_SEED_AT_A_TIME else "vmap"
    if batching not in ("vmap", "map"):
        raise ValueError(f"jn.simulate: batching={batching!r} must be 'vmap', 'map' or None.")
    if space is None:
        space = _compile(problem.space(prior=prior, confidence=confidence))
    if not isinstance(optimizer, _optimizers.Optimizer):
        max_trials = dict(optimizer_kwargs or {}).get("max_trials") or default_max_trials(
            optimizer, space, max_evaluations, optimizer_kwargs)[0]
        kwargs = {k: v for k, v in dict(optimizer_kwargs or {}).items() if k != "max_trials"}
        if optimizer == "nsga2":  # a problem has one objective
            kwargs.setdefault("n_objectives", 1)
        optimizer = make_optimizer(optimizer, space, max_trials, kwargs)
    elif optimizer_kwargs:
        raise ValueError("jn.simulate: optimizer_kwargs apply to a named optimizer only.")
    top = space.fidelity.upper if space.fidelity is not None else float("nan")
    one = _search(optimizer, problem, limits)
    search = jax.jit(jax.vmap(one) if batching == "vmap" else
                     (lambda keys: jax.lax.map(one, keys)))
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    start = time.perf_counter()
    compiled = search.lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.device_get(jax.block_until_ready(compiled(keys)))
    seconds = time.perf_counter() - start
    order = np.argsort(np.where(out["evaluated"], out["order"], np.iinfo(np.int32).max),
                       axis=1, kind="stable")
    take = lambda a: np.take_along_axis(  # noqa: E731 - rows in evaluation order
        np.asarray(a), order.reshape(order.shape + (1,) * (np.ndim(a) - 2)), axis=1)
    evaluated = take(out["evaluated"])
    ids = np.where(evaluated, take(np.broadcast_to(np.arange(order.shape[1]), order.shape)),
                   -1)
    optimum = getattr(problem, "optimum", float("nan"))
    return Simulation(
        seeds=np.asarray(seeds), losses=np.where(evaluated, take(out["losses"]), np.nan),
        fidelities=np.where(evaluated, take(out["fidelities"]), np.nan),
        added=np.where(evaluated, take(out["added"]), 0.0),
        parents=np.where(evaluated, take(out["parents"]), -1), trial_ids=ids,
        configs=jax.tree.map(take, out["configs"]), steps=np.where(evaluated,
                                                                   take(out["steps"]), 0),
        stopped_by=tuple(STOP_REASONS[i] for i in np.asarray(out["stopped_by"])),
        max_fidelity=float(top), optimum=float(optimum), seconds=seconds,
        compile_seconds=compile_seconds, problem=problem)


def _search(optimizer: _optimizers.Optimizer, problem: Any, limits: dict[str, float]):
    """`key -> one search's tables`: a `while_loop` of ask -> evaluate -> tell."""
    fidelity_limit = limits.get("max_fidelity_spent", np.inf)
    evaluation_limit = limits.get("max_evaluations", np.iinfo(np.int32).max)

    def run(key):
        state = optimizer.init(jax.random.fold_in(key, 0))
        trial_base = jax.random.fold_in(key, 1)
        capacity = state.trials.status.shape[-1]
        shapes = jax.eval_shape(optimizer.ask, state, key)[1]
        batch = shapes.trial_ids.shape[0]
        config_rows = jax.tree.map(lambda s: jnp.zeros((capacity, *s.shape[1:]), s.dtype),
                                   shapes.configs)
        tables = {
            "losses": jnp.full((capacity,), jnp.nan, jnp.float32),
            "fidelities": jnp.zeros((capacity,), jnp.float32),
            "added": jnp.zeros((capacity,), jnp.float32),
            "parents": jnp.full((capacity,), -1, jnp.int32),
            "roots": jnp.arange(capacity, dtype=jnp.int32),
            "order": jnp.zeros((capacity,), jnp.int32),
            "steps": jnp.zeros((capacity,), jnp.int32),
            "evaluated": jnp.zeros((capacity,), bool),
            "configs": config_rows,
        }
        carry = (state, tables, jnp.int32(1), jnp.float32(0), jnp.int32(0), jnp.int32(-1))

        def running(carry):
            return carry[5] < 0

        def step(carry):
            state, tables, s, spent, count, _ = carry
            stop = jnp.where(spent >= fidelity_limit, 0,
                             jnp.where(count >= evaluation_limit, 1, -1))
            new_state, proposals = optimizer.ask(state, jax.random.fold_in(key, s))
            valid = proposals.valid
            # Rows past the evaluation budget are dropped, as jn.run cuts the batch.
            valid &= jnp.cumsum(valid) <= evaluation_limit - count
            stop = jnp.where((stop < 0) & new_state.overflow, 3, stop)
            stop = jnp.where((stop < 0) & ~valid.any(), 2, stop)
            ids = jnp.where(valid, proposals.trial_ids, capacity)  # capacity: dropped
            parents = jnp.where(valid, proposals.parent_ids, -1)
            safe_parents = jnp.maximum(parents, 0)
            roots = jnp.where(parents >= 0, tables["roots"][safe_parents],
                              jnp.where(valid, proposals.trial_ids, 0))
            fidelities = proposals.fidelities.astype(jnp.float32)
            trial_keys = jax.vmap(lambda r: jax.random.fold_in(trial_base, r))(roots)
            losses = jax.vmap(problem.evaluate)(proposals.configs, fidelities, trial_keys)
            losses = jnp.where(valid, losses.astype(jnp.float32), jnp.nan)
            before = jnp.where(parents >= 0, tables["fidelities"][safe_parents], 0.0)
            added = jnp.where(valid, jnp.nan_to_num(fidelities) - before, 0.0)
            told = optimizer.tell(new_state, jnp.where(valid, proposals.trial_ids, -1),
                                  losses)
            order = count + jnp.cumsum(valid) - 1
            put = lambda table, rows: table.at[ids].set(rows, mode="drop")  # noqa: E731
            updated = {
                "losses": put(tables["losses"], losses),
                "fidelities": put(tables["fidelities"], fidelities),
                "added": put(tables["added"], added),
                "parents": put(tables["parents"], parents),
                "roots": put(tables["roots"], roots),
                "order": put(tables["order"], order),
                "steps": put(tables["steps"], jnp.full((batch,), s)),
                "evaluated": put(tables["evaluated"], valid),
                "configs": jax.tree.map(put, tables["configs"], proposals.configs),
            }
            # A step that stops the search is the last: only its tables must stay as they
            # were (the state and counters it leaves are never read).
            tables = jax.tree.map(lambda a, b: jnp.where(stop < 0, a, b), updated, tables)
            return told, tables, s + 1, spent + added.sum(), count + valid.sum(), stop

        _, tables, _, _, _, stop = jax.lax.while_loop(running, step, carry)
        return {**tables, "stopped_by": stop}

    return run


def _seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"jn.simulate: seeds={seeds!r} must be a positive count or a "
                             f"list of seeds.")
        return list(range(int(seeds)))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"jn.simulate: seeds={seeds!r} must be a positive count or a list "
                         f"of integer seeds.") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise ValueError(f"jn.simulate: seeds={seeds!r} must be distinct integers >= 0, at "
                         f"least one.")
    return out


def _budgets(max_fidelity_spent: Any, max_evaluations: Any) -> dict[str, float]:
    limits = {}
    if max_fidelity_spent is not None:
        if isinstance(max_fidelity_spent, bool) or not np.isfinite(
                float(max_fidelity_spent)) or float(max_fidelity_spent) <= 0:
            raise ValueError(f"jn.simulate: max_fidelity_spent={max_fidelity_spent!r} must "
                             f"be a positive number.")
        limits["max_fidelity_spent"] = float(max_fidelity_spent)
    if max_evaluations is not None:
        if isinstance(max_evaluations, bool) or not isinstance(
                max_evaluations, (int, np.integer)) or max_evaluations < 1:
            raise ValueError(f"jn.simulate: max_evaluations={max_evaluations!r} must be a "
                             f"positive integer.")
        limits["max_evaluations"] = int(max_evaluations)
    if not limits:
        raise ValueError("jn.simulate: give a budget, max_fidelity_spent or "
                         "max_evaluations; a search without one would not end.")
    return limits
