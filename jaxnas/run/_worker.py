"""One process's share of a run: the optimiser's state rebuilt from the event log, the
trials it claims, the asks it makes and the tells it appends.

Every change to the log happens inside a write transaction, after replaying what other
processes appended, so all processes apply the same events in the same order and hold the
same state. Asks use `fold_in(key, step)`: replaying an ask proposes the same trials again,
which is checked. A trial's PRNG key is `fold_in(fold_in(key, 1), root)`, where `root` is
its first ancestor, so a promotion trains on with its parent's key.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxnas import optimizers as _optimizers
from jaxnas.optimizers import Proposals
from jaxnas._compiling import HELPER_OPTIONS, jit_with
from jaxnas._shapes import HELPER_MIN_ROWS, pad_to_power_of_two
from jaxnas.run._budgets import exhausted
from jaxnas.run._checkpoints import OptimizerCheckpoints
from jaxnas.run._heartbeat import DEFAULT_TIMEOUT, Heartbeat, process_gone
from jaxnas.run._objectives import Objectives
from jaxnas.run._records import TrialRecord
from jaxnas.run._storage import RunStore
from jaxnas.run._warm_start import WarmStart, substitute

logger = logging.getLogger("jaxnas")

# `next_batch`'s reason to stop when the optimiser's state has no room for an ask.
STATE_FULL = "the optimiser's capacity (optimizer_kwargs max_trials)"
# Events replayed per read of the rows they refer to: an `IN (...)` list of at most a few
# thousand ids, well within SQLite's limit on a statement's parameters.
_EVENTS_READ_AT_ONCE = 256


class Worker:
    """One process's view of the optimiser: its state, rebuilt from the event log.

    Args:
        optimizer: the run's optimiser.
        store: the run folder's database.
        seed: the run's seed.
        checkpoint_every: save the state every this many events.
        objectives: the run's objectives: what each trial's told loss is.
        warm_start: the run's initial configurations, put in place of the first new
            samples of the asks (and of their replays).
        heartbeat_timeout: seconds this worker may be silent (its heartbeat thread
            stopped, hung or cut off) before its trials are given to other workers.
        name: the name `jn.optimizers.get` made the optimiser by (None: the user's own),
            which says how its programs compile (`jn.optimizers.jitted`).

    Call `close` when done: it stops the heartbeat and frees the worker's trials.
    """

    def __init__(self, optimizer: _optimizers.Optimizer, store: RunStore, seed: int,
                 checkpoint_every: int, objectives: Objectives,
                 warm_start: WarmStart | None = None,
                 heartbeat_timeout: float = DEFAULT_TIMEOUT, name: str | None = None,
                 grown_after: int = 0):
        self.store = store
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.warm_start = warm_start or WarmStart([])
        self.objectives = objectives
        # A multi-objective optimiser (`jn.optimizers.takes_objective_vectors`) is told
        # every objective and the bounds' violation; any other the single loss, NaN for
        # a trial that broke a bound (it ranks below every feasible one).
        self.vector = _optimizers.takes_objective_vectors(optimizer)
        self.key = jax.random.key(seed)
        # Compiled as `jn.optimizers.jitted` says for the optimiser's name.
        init, self.ask, self.tell = _optimizers.jitted(optimizer, name)
        self.trial_keys = _key_maker(jax.random.fold_in(self.key, 1))
        self.root_of: dict[int, int] = {}  # trial id -> its first ancestor (its key)
        init_key = jax.random.fold_in(self.key, 0)
        # One compile beats op-by-op dispatch.
        self.state = init(init_key)
        # Traced through the jitted ask, whose first call then reuses this trace.
        proposals = self.ask.trace(self.state, init_key).out_info[1]
        self.batch_size = proposals.trial_ids.shape[0]
        self.checkpoints = OptimizerCheckpoints(store.checkpoints_directory, self.state)
        self.checkpoint_every = checkpoint_every
        self.seq, self.saved_seq = 0, 0
        # Whether the state may hold asked rows the run never recorded (`_reissue`): looked
        # at once, since a checkpoint may hold them, then after each ask that has some.
        self.may_hold_unrecorded = True
        self.full = ""  # why the last ask found the state full
        with store.transaction():
            # Checkpoints up to event `grown_after` hold a smaller state (the run's
            # capacity grew since, `claim_folder`): those events are replayed instead.
            restored = self.checkpoints.restore(store.last_event(), after=grown_after)
            if restored is not None:
                self.state, self.seq = restored
                self.saved_seq = self.seq
            for trial_id, parent in store.parents():
                self._note_parent(trial_id, parent)
            self._catch_up()
        # Beats from here on: the worker holds no trial before its first `next_batch`.
        self.heartbeat = Heartbeat(store.root, self.name, heartbeat_timeout, store.storage)

    def _note_parent(self, trial_id: int, parent: int) -> None:
        self.root_of[trial_id] = self.root_of.get(parent, parent) if parent >= 0 else trial_id

    # ------------------------------------------------------------------ the log

    def _catch_up(self) -> None:
        """Applies the events other processes appended.

        The log only grows, and an event is committed with everything it refers to (an
        ask with its trials, a tell after their results), so replaying what is committed
        needs no lock. Workers call it once outside the write transaction, where most of
        the replay happens (with many workers, each replays every other's events: inside
        the lock, that serialises them), and once inside, for the few events appended in
        between, before they append their own."""
        events = self.store.events(self.seq)
        for start in range(0, len(events), _EVENTS_READ_AT_ONCE):
            chunk = events[start:start + _EVENTS_READ_AT_ONCE]
            # What the events refer to, read in two queries rather than two an event:
            # the trials that took imports, and the rows of those and of the told trials.
            asked = [i for _, kind, _, ids in chunk if kind in ("ask", "reissue")
                     for i in ids]
            imported = self.store.imported_ids(asked) if asked else set()
            told = {i for _, kind, _, ids in chunk if kind == "tell" for i in ids}
            reissued = {i for _, kind, _, ids in chunk if kind == "reissue" for i in ids}
            needed = sorted(told | imported | reissued)
            rows = self.store.trials_by_id(needed) if needed else {}
            for seq, kind, step, ids in chunk:
                if kind == "ask":
                    self.state = self._replay_ask(step, ids, imported & set(ids), rows)
                elif kind == "tell":
                    self.state = self._tell(ids, rows)
                else:  # "reissue": trials the state holds already (see `_reissue`)
                    for trial_id in ids:
                        self._note_parent(trial_id, rows[trial_id].parent_id)
                    took = sorted(imported & set(ids))  # ... some with imports' configs
                    if took:
                        self.state, _ = substitute(
                            self.state, _table_proposals(self.state.trials), took,
                            [rows[i].config for i in took])
                self.seq = seq

    def _replay_ask(self, step: int, ids: list[int], imported: set[int],
                    stored: dict[int, TrialRecord]) -> Any:
        state, proposals = self.ask(self.state, jax.random.fold_in(self.key, step))
        state, proposals, _ = self.warm_start.apply(self.state, state, proposals)
        if imported:  # the configs they took, as the ask stored them
            at = np.asarray(proposals.trial_ids).tolist()
            state, proposals = substitute(state, proposals,
                                          [at.index(i) for i in sorted(imported)],
                                          [stored[i].config for i in sorted(imported)])
        valid = np.asarray(proposals.valid)
        proposed = np.asarray(proposals.trial_ids)[valid].tolist()
        self.may_hold_unrecorded |= len(ids) < len(proposed)
        if not set(ids) <= set(proposed):
            raise RuntimeError(
                f"jn.run: replaying step {step} of the run in {str(self.store.root)!r} "
                f"proposed trials {proposed[:8]}..., not the stored {ids[:8]}...: the "
                f"optimiser is not the one that wrote this run.")
        parents = np.asarray(proposals.parent_ids)[valid].tolist()
        for trial_id, parent in zip(proposed, parents):
            if trial_id in ids:
                self._note_parent(trial_id, parent)
        return state

    def _tell(self, ids: list[int], trials: dict[int, TrialRecord]) -> Any:
        padded = np.full((self.batch_size,), -1, np.int32)
        k = len(self.objectives.names)
        losses = np.full((self.batch_size, k), np.nan, np.float32)
        violations = np.zeros((self.batch_size,), np.float32)
        signs = self.objectives.signs()
        for i, trial_id in enumerate(ids):
            padded[i] = trial_id
            trial = trials[trial_id]
            if not trial.succeeded:
                continue
            if self.vector:
                losses[i] = [s * trial.objectives[n]
                             for s, n in zip(signs, self.objectives.names)]
                violations[i] = _violation(trial, self.objectives)
            elif trial.feasible is not False:
                losses[i, 0] = (trial.loss if not self.objectives.several
                                else signs[0] * trial.objectives[self.objectives.names[0]])
        if self.vector:  # numpy in: the jitted tell moves them (no program per shape)
            return self.tell(self.state, padded, losses, violations)
        return self.tell(self.state, padded, losses[:, 0])

    def prepare_tell(self) -> None:
        """Traces and compiles `tell` by calling it on a step that tells nothing (its
        result is dropped): what the first real tell would do, done while the process
        waits anyway, e.g. for the first batch's training program to compile."""
        jax.block_until_ready(self._tell([], {}))

    def _tell_finished_steps(self) -> None:
        """Appends a `tell` for every asked step whose trials have all finished."""
        for step in self.store.untold_finished_steps():
            self.store.append_event("tell", step, self.store.asked_ids(step))

    # ------------------------------------------------------------- scheduling

    def next_batch(self, budgets: dict, seconds: float) -> tuple[list[TrialRecord], str]:
        """Claims the next trials to evaluate: a dead worker's, else a new ask.

        Returns:
            The claimed trials (one step's), and "" or why the run stops.
        """
        self._catch_up()  # most of the replay, outside the write lock (see `_catch_up`)
        with self.store.transaction():
            self._catch_up()
            for gone in self.store.release_dead(
                    lambda worker: worker != self.name and process_gone(worker)):
                logger.warning("jaxnas.run: worker %s is gone or silent past its heartbeat "
                               "timeout; its unfinished trials are evaluated again", gone)
            self._tell_finished_steps()
            self._catch_up()
            claimed = self.store.claim_pending(self.name)
            if claimed:
                return claimed, ""
            while True:
                totals = self.store.totals()
                stopped_by = exhausted(budgets, totals, seconds)
                if stopped_by:
                    return [], stopped_by
                reissued = self._reissue(budgets, totals)
                if reissued:
                    return reissued, ""
                trials, stopped_by = self._ask(budgets, totals)
                if trials or stopped_by:
                    return trials, stopped_by
                # Every trial of that ask took an import and has finished: tell, ask again.
                self._tell_finished_steps()
                self._catch_up()

    def _ask(self, budgets: dict, totals: dict) -> tuple[list[TrialRecord], str]:
        """Asks for the next step's trials and claims them (inside a transaction).

        Returns:
            The trials to evaluate, and "" or why the run stops. A new sample may take an
            initial configuration (`WarmStart`) or a waiting import at its fidelity; an
            import's trial is finished at once with the imported result, so an ask whose
            trials all took imports returns no trials and no reason to stop.
        """
        step = self.store.last_step() + 1
        state, proposals = self.ask(self.state, jax.random.fold_in(self.key, step))
        try:
            _optimizers.check(state)
        except ValueError as full:
            self.full = str(full)  # `jn.run` grows the state, or stops and says so
            return [], STATE_FULL
        state, proposals, taken = self.warm_start.apply(self.state, state, proposals)
        proposals = jax.device_get(proposals)
        rows = np.flatnonzero(np.asarray(proposals.valid))
        if rows.size == 0:
            return [], "the optimiser has nothing more to propose"
        trials = self._record(proposals, state, rows, set(taken), "ask", step, budgets,
                              totals)
        self.checkpoint()
        return trials, ""

    def _reissue(self, budgets: dict, totals: dict) -> list[TrialRecord]:
        """Records and claims the trials the state asked that the run never recorded, as
        a new step (inside a transaction).

        An ask whose rows pass `max_evaluations` records only those within it; the state
        holds the rest as pending, and no result would ever come for them. A run continued
        with a larger budget evaluates them first, so that it is the run made at once
        (the same trials, configurations and keys). Their step's event is a `reissue`,
        numbered below 0 so that later asks keep their numbers (their keys); replaying it
        changes no state, except where imports waiting since took some of its rows (as
        they take a new ask's): their configs are written in again.

        Returns:
            The trials to evaluate (those that took no import).
        """
        table = getattr(self.state, "trials", None)  # a user's optimiser may keep none
        if not self.may_hold_unrecorded or not isinstance(table, _optimizers.Trials):
            return []
        count = int(table.count)
        pending = np.flatnonzero(np.asarray(table.status)[:count] == _optimizers.Status.PENDING)
        known = self.store.trials_by_id(pending.tolist()) if pending.size else {}
        rows = np.asarray([i for i in pending.tolist() if i not in known], np.int64)
        self.may_hold_unrecorded = rows.size > 0
        if rows.size == 0:
            return []
        # Imports waiting since take these rows as they would a new ask's (they are new
        # samples the run never recorded); the replay of the event does the same.
        return self._record(_table_proposals(table), self.state, rows, set(), "reissue",
                            self.store.next_reissue_step(), budgets, totals)

    def _record(self, proposals: Any, state: Any, rows: np.ndarray, taken: set[int],
                kind: str, step: int, budgets: dict, totals: dict) -> list[TrialRecord]:
        """Records proposal rows `rows` as step `step`'s trials under a `kind` event and
        claims them, `state` becoming the worker's: waiting imports take the new samples
        at their fidelity (not the rows in `taken`) and finish at once; the run's own
        rows are kept up to `max_evaluations`, the rest stay in the state, unrecorded.

        Returns:
            The trials to evaluate (those that took no import).
        """
        placed = self._place_imports(proposals, rows, taken)
        if "max_evaluations" in budgets:  # the run's own trials, up to the budget
            room = budgets["max_evaluations"] - totals["evaluations"]
            cut = np.cumsum([r not in placed for r in rows.tolist()]) > room
            rows = rows[~cut]
            self.may_hold_unrecorded |= bool(cut.any())
            kept = set(rows.tolist())
            placed = {r: row for r, row in placed.items() if r in kept}
        if placed:
            state, proposals = substitute(state, proposals, list(placed),
                                          [row["config"] for row in placed.values()])
        trials = _proposed(proposals, rows, step, self.name)
        self.seq = self.store.append_event(kind, step, [t.trial_id for t in trials])
        self.state = state
        for t in trials:
            self._note_parent(t.trial_id, t.parent_id)
        self.store.add_trials(trials, worker=self.name)
        by_row = dict(zip(rows.tolist(), trials))
        self.store.place_imports({row["import_id"]: by_row[r].trial_id
                                  for r, row in placed.items()})
        self.store.record_finished([self._imported(by_row[r], row)
                                    for r, row in placed.items()])
        return [by_row[r] for r in rows.tolist() if r not in placed]

    def _place_imports(self, proposals: Any, rows: np.ndarray,
                       taken: set[int]) -> dict[int, dict]:
        """`{proposal row: import}`: the new samples that take the waiting imports, each
        the first waiting one at the row's fidelity, in import order."""
        waiting = self.store.waiting_imports()
        if not waiting:
            return {}
        parents = np.asarray(proposals.parent_ids)
        fidelities = np.asarray(proposals.fidelities, np.float64)
        placed = {}
        for row in rows.tolist():
            if parents[row] >= 0 or row in taken:
                continue
            level = None if math.isnan(fidelities[row]) else float(fidelities[row])
            match = next((w for w in waiting if _same_level(w["fidelity"], level)), None)
            if match is not None:
                placed[row] = match
                waiting.remove(match)
        return placed

    def _imported(self, trial: TrialRecord, row: dict) -> TrialRecord:
        """`trial` finished with an import's result."""
        outcome = self.objectives.outcome(row["objectives"] or {"loss": row["loss"]})
        return trial.finish(outcome.loss, seconds=0.0, error=outcome.error,
                            extra={**row["extra"], "imported": True},
                            objectives=outcome.values if outcome.error is None else None,
                            feasible=(outcome.violation == 0.0
                                      if self.objectives.bounds else None))

    def record(self, trials: list[TrialRecord]) -> None:
        """Records finished trials that this worker still holds. One it lost (it fell
        silent past its heartbeat timeout, and another worker took the trial) is logged
        and dropped: the other worker's result stands."""
        lost = self.store.finish_claimed(trials, self.name)
        if lost:
            logger.warning("jaxnas.run: trials %s were given to another worker while this "
                           "one (%s) was silent; its results for them are dropped", lost,
                           self.name)

    def close(self) -> None:
        """Stops the heartbeat; the worker's unfinished trials are free for others."""
        self.heartbeat.stop()

    def key_ids(self, trials: list[TrialRecord]) -> list[int]:
        """The id each trial's PRNG key is folded from: its first ancestor's."""
        return [self.root_of[t.trial_id] for t in trials]

    def checkpoint(self, force: bool = False) -> None:
        """Saves the state if `checkpoint_every` events passed (inside a transaction,
        so that one process writes at a time)."""
        if self.seq == self.saved_seq or (not force and
                                          self.seq - self.saved_seq < self.checkpoint_every):
            return
        if force:
            with self.store.transaction():
                self._catch_up()
                self.checkpoints.save(self.seq, self.state)
        else:
            self.checkpoints.save(self.seq, self.state)
        self.saved_seq = self.seq


def _violation(trial: TrialRecord, objectives: Objectives) -> float:
    """How far a finished trial is from its bounds (0 when feasible)."""
    if trial.feasible is not False:
        return 0.0
    return max(objectives.outcome(trial.objectives).violation, np.finfo(np.float32).tiny)


def _same_level(a: float | None, b: float | None) -> bool:
    """Whether two fidelities (None: a space without one) are the same level."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _table_proposals(table: _optimizers.Trials) -> Proposals:
    """The state's trial table as proposals on the host, a row per trial id."""
    host = jax.device_get(table)
    count = int(host.count)
    return Proposals(host.configs, host.fidelities, np.arange(count), np.ones(count, bool),
                     host.parent_ids)


def _proposed(proposals: Any, rows: np.ndarray, step: int, worker: str) -> list[TrialRecord]:
    """The valid proposals (host values) as trial records claimed by `worker`."""
    configs = jax.tree.map(lambda a: np.asarray(a)[rows], proposals.configs)
    fidelities = np.asarray(proposals.fidelities)[rows]
    out = []
    for j, i in enumerate(rows):
        fidelity = float(fidelities[j])
        out.append(TrialRecord(
            trial_id=int(proposals.trial_ids[i]), step=step,
            parent_id=int(proposals.parent_ids[i]),
            config={path: np.asarray(configs[path][j]).item() for path in configs},
            fidelity=None if math.isnan(fidelity) else fidelity, worker=worker))
    return out


def _key_maker(base: jax.Array) -> Callable[[list[int]], np.ndarray]:
    """`ids -> key data`: each trial's PRNG key `fold_in(base, id)` as raw key data on the
    host (`(n, ...)` uint32, what `BucketTrainer` takes), made by one jitted call on the
    ids padded to at least `HELPER_MIN_ROWS` and sliced on the host, so that a run's
    batches of every size share one program."""
    fold = jit_with(jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(base, i))),
                    HELPER_OPTIONS)

    def keys(ids: list[int]) -> np.ndarray:
        size = pad_to_power_of_two(len(ids), HELPER_MIN_ROWS)  # one shape, one compile
        padded = np.asarray(list(ids) + [0] * (size - len(ids)), np.int32)
        return np.asarray(fold(padded))[: len(ids)]

    return keys
