"""`jn.run`: ask the optimiser, train or evaluate each bucket at once, store, tell.

One iteration of the loop:

1. `ask` gives a batch of proposals (new configurations and promotions);
2. the host groups the valid ones into buckets of equal structure (widths masked, so that
   configurations differing only in widths share one);
3. each bucket is evaluated in one jit-compiled, vmapped call (a `Task` or a pure function),
   or one trial at a time (a plain Python callable); promoted trials continue from their
   parent's training state, kept on the host;
4. the results are committed to the trial table (SQLite) and only then told to the optimiser.

Budgets (evaluations, cost, fidelity spent, seconds) are checked between batches; whichever
runs out first ends the run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import pickle
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import optimizers as _optimizers
from jaxnas._storage import DATABASE, RunStore
from jaxnas.space import Config, SearchSpace, compile as _compile
from jaxnas.space._config import Layout
from jaxnas.train import BucketTrainer, Task, pad_to_power_of_two

logger = logging.getLogger("jaxnas")

DEFAULT_MAX_TRIALS = 1024
CHECKPOINTS = "checkpoints"
STATES = "states"


@dataclasses.dataclass(frozen=True)
class Incumbent:
    """The best trial: lowest loss among the successful trials at the highest fidelity."""

    trial_id: int
    loss: float
    fidelity: float | None
    config: Any  # the resolved config (the user's pytree, operations built)
    values: dict  # the config's values by path
    metrics: dict  # what else the evaluation reported (curves, test scores, ...)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What `jn.run` returns.

    Attributes:
        incumbent: the best trial, or None when no trial succeeded.
        trials: every trial of the run (see `jn.load_results`).
        root_directory: where the run is stored.
        stopped_by: the budget that ended the run (or why it ended).
    """

    incumbent: Incumbent | None
    trials: list
    root_directory: Path
    stopped_by: str


def run(evaluate: Any, space: Any, *, optimizer: str | _optimizers.Optimizer = "priorband",
        root_directory: str | Path, max_evaluations: int | None = None,
        max_cost: float | None = None, max_fidelity_spent: float | None = None,
        max_seconds: float | None = None, seed: int = 0, masked: bool = True,
        optimizer_kwargs: Mapping | None = None, progress: bool | None = None,
        overwrite: bool = False, checkpoint_every: int = 20) -> RunResult:
    """Searches `space` for the configuration that minimises `evaluate`'s loss.

    The run lives in `root_directory`: every trial in `trials.sqlite` (committed the
    moment it finishes, before the optimiser hears of it), the optimiser's history, and
    Orbax checkpoints of its state. Calling `run` again with the same arguments on the same
    folder continues the run: nothing finished is evaluated again, and trials that were
    running when a process died are evaluated once more. Several processes calling `run`
    on one folder share the work, as NePS or Optuna workers do: each asks for its own
    batches and the optimiser's state stays one consistent history.

    Failed trials: an exception raised by `evaluate` (a plain callable's trial, or a whole
    training bucket) or a non-finite loss makes the trial `failed`, recorded with its
    error and traceback; it is never promoted or the incumbent, and the run goes on. In a
    vmapped bucket each member's loss is its own: one diverging member fails alone.

    Args:
        evaluate: one of
            * a `jn.Task` (pure `init`, `train`, `evaluate`), or an object with
              `for_bucket(spec, config, masked) -> Task` such as `jn.SupervisedTask`:
              vmapped per bucket, training states carried across rungs;
            * a pure JAX function `f(config, fidelity, key) -> loss` (jitted and vmapped);
            * a plain Python callable `f(**config) -> float | dict`, called one trial at a
              time with the resolved values by name (the fidelity under its own name). A
              dict gives `loss` and optionally `cost`. An exception is a failed trial.
        space: a space pytree or a compiled `SearchSpace`.
        optimizer: an optimiser name (`jn.optimizers.get`) or an `Optimizer` value.
        root_directory: the run folder; a new one starts a run, an existing one continues.
        max_evaluations: stop once the run holds this many trials (all workers together).
        max_cost: stop once the summed cost (a trial's `cost`, else its fidelity) reaches it.
        max_fidelity_spent: stop once the fidelity trained reaches it (a continued trial
            counts only the fidelity it adds).
        max_seconds: stop this process after this much wall-clock time (checked between
            batches).
        seed: the run's seed: every random draw follows from `jax.random.key(seed)`.
        masked: group configurations that differ only in widths into one bucket.
        optimizer_kwargs: keyword arguments for a named optimiser. `max_trials` (the
            state's capacity) defaults to `max_evaluations` plus one batch, else 1024; a
            continued run keeps the capacity it started with.
        progress: show a progress line (default: when stderr is a terminal).
        overwrite: delete a run already in `root_directory` that was started with another
            space, optimiser or seed, and start afresh (otherwise that is an error).
        checkpoint_every: save the optimiser's state with Orbax every this many optimiser
            events (asks and tells); a resumed run restores the newest good checkpoint
            and replays only the events after it.

    Returns:
        A `RunResult` with the incumbent and every trial of the run.

    Raises:
        ValueError: no budget or a bad one; an existing run with another space, optimiser
            or seed (the message says what differs).
        StorageError: a folder that cannot be written, or a database from a newer jaxnas.
    """
    spec = space if isinstance(space, SearchSpace) else _compile(space)
    budgets = _check_budgets(max_evaluations=max_evaluations, max_cost=max_cost,
                             max_fidelity_spent=max_fidelity_spent, max_seconds=max_seconds)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 1:
        raise ValueError(f"jn.run: checkpoint_every={checkpoint_every!r} must be an integer "
                         f">= 1.")
    evaluator = _evaluator(evaluate, spec, masked)
    root = Path(root_directory)
    description = _describe_run(spec, optimizer, optimizer_kwargs, seed)
    if isinstance(optimizer, str):
        _optimizers.get(optimizer, spec, **dict(optimizer_kwargs or {}))  # bad names fail here
    if overwrite:
        _remove_other_run(root, description)
    store = RunStore(root, create=True)
    show = sys.stderr.isatty() if progress is None else progress
    start, stopped_by = time.monotonic(), ""
    try:
        given = (optimizer_kwargs or {}).get("max_trials")
        max_trials = _claim_folder(store, spec, description,
                                   given or _default_max_trials(optimizer, spec, max_evaluations,
                                                                optimizer_kwargs), given)
        opt = _make_optimizer(optimizer, spec, max_trials, optimizer_kwargs)
        if hasattr(evaluator, "attach"):
            evaluator.attach(store)
        worker = _Worker(opt, store, seed, checkpoint_every)
        while True:
            claimed, stopped_by = worker.next_batch(budgets, time.monotonic() - start)
            if stopped_by:
                break
            batch = _batch(claimed, worker.key_ids(claimed), worker.layout)
            evaluator(batch, worker.trial_key, store.finish_trials)
            worker.finished(claimed[0]["step"])
            _report(show, store.totals(), store, budgets, time.monotonic() - start)
        worker.checkpoint(force=True)
        if getattr(evaluator, "saved", None) is not None:
            evaluator.saved.finish()
        trials = store.trials("ORDER BY trial_id")
    finally:
        store.close()
        if show:
            print(file=sys.stderr)
    incumbent = _incumbent(spec, trials)
    logger.info("jaxnas.run stopped: %s; %d trials; best loss %s", stopped_by, len(trials),
                None if incumbent is None else incumbent.loss)
    return RunResult(incumbent, trials, root, stopped_by)


# ------------------------------------------------------------ the run folder


def _describe_run(spec: SearchSpace, optimizer: Any, kwargs: Mapping | None,
                  seed: int) -> dict:
    """What must match for a folder's run to be continued."""
    if isinstance(optimizer, _optimizers.Optimizer):
        name = f"{optimizer.ask.__module__}.{optimizer.ask.__qualname__}"
        arguments = {}
    else:
        name = optimizer
        arguments = {k: v for k, v in dict(kwargs or {}).items() if k != "max_trials"}
    return {"space": spec.describe(), "optimizer": name,
            "optimizer_kwargs": json.loads(json.dumps(arguments, default=repr)),
            "seed": int(seed)}


def _remove_other_run(root: Path, description: dict) -> None:
    """`overwrite=True`: deletes the folder's run if it is a different one."""
    if not (root / DATABASE).exists():
        return
    store = RunStore(root, create=False)
    try:
        stored = store.get_meta("run")
    finally:
        store.close()
    if stored is not None and json.loads(stored) == description:
        return  # the same run: continue it
    logger.warning("jaxnas.run: overwrite=True deletes the run in %s", root)
    for path in root.glob(DATABASE + "*"):
        path.unlink()
    shutil.rmtree(root / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(root / STATES, ignore_errors=True)


def _claim_folder(store: RunStore, spec: SearchSpace, description: dict,
                  max_trials: int, given_max_trials: int | None) -> int:
    """Writes a new run's metadata, or checks that the folder's run is this one.

    Returns:
        The optimiser's capacity (`max_trials`): a continued run keeps the one it started
        with, since its state has that shape; an explicit different one is an error.
    """
    with store.transaction():
        stored = store.get_meta("run")
        if stored is None:
            try:
                space_blob, unpicklable = pickle.dumps(spec), None
            except Exception as error:  # noqa: BLE001 - say why in load_space
                space_blob, unpicklable = None, f"{type(error).__name__}: {error}"
            store.set_meta({
                "run": json.dumps(description), "space": space_blob,
                "space_unpicklable": unpicklable, "created": time.time(),
                "versions": json.dumps(_versions()), "max_trials": int(max_trials),
            })
            return int(max_trials)
        stored_max_trials = int(store.get_meta("max_trials"))
    differences = _differences(json.loads(stored), description)
    if given_max_trials is not None and given_max_trials != stored_max_trials:
        differences.append(f"max_trials was {stored_max_trials}, now {given_max_trials}")
    if differences:
        raise ValueError(
            f"jn.run: root_directory={str(store.root)!r} holds a different run, so it cannot "
            f"be continued: {'; '.join(differences)}. Use a new root_directory, or pass "
            f"overwrite=True to delete that run.")
    return stored_max_trials


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for path in sorted(set(old["space"]) | set(new["space"])):
        a, b = old["space"].get(path), new["space"].get(path)
        if a != b:
            out.append(f"space {path!r} was {a or 'absent'}, now {b or 'absent'}")
    for key in ("optimizer", "optimizer_kwargs", "seed"):
        if old[key] != new[key]:
            out.append(f"{key} was {old[key]!r}, now {new[key]!r}")
    return out


def _versions() -> dict:
    from importlib import metadata  # noqa: PLC0415

    out = {"python": sys.version.split()[0]}
    for package in ("jaxnas", "jax", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


class _Worker:
    """One process's view of the optimiser: its state, rebuilt from the event log.

    Every change to the log happens inside a write transaction, after replaying what other
    processes appended, so all processes apply the same events in the same order and hold
    the same state. Asks use `fold_in(key, step)`: replaying an ask proposes the same
    trials again, which is checked.
    """

    def __init__(self, opt: _optimizers.Optimizer, store: RunStore, seed: int,
                 checkpoint_every: int):
        self.opt, self.store = opt, store
        self.key = jax.random.key(seed)
        self.ask, self.tell = jax.jit(opt.ask), jax.jit(opt.tell)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.trial_key = _key_maker(jax.random.fold_in(self.key, 1))
        self.root_of: dict[int, int] = {}  # trial id -> its first ancestor (its key)
        init_key = jax.random.fold_in(self.key, 0)
        self.state = jax.jit(opt.init)(init_key)  # one compile beats op-by-op dispatch
        proposals = jax.eval_shape(opt.ask, self.state, init_key)[1]
        self.batch = proposals.trial_ids.shape[0]
        self.layout = proposals.configs.layout
        self.checkpoints = _Checkpoints(store.root / CHECKPOINTS, self.state)
        self.checkpoint_every = checkpoint_every
        self.seq, self.saved_seq = 0, 0
        with store.transaction():
            restored = self.checkpoints.restore(self.store.events(0))
            if restored is not None:
                self.state, self.seq = restored
                self.saved_seq = self.seq
            for tid, parent in store.db.execute(
                    "SELECT trial_id, parent_id FROM trials ORDER BY trial_id"):
                self.root_of[tid] = self.root_of.get(parent, parent) if parent >= 0 else tid
            self._catch_up()

    # ------------------------------------------------------------------ the log

    def _catch_up(self) -> None:
        """Applies the events other processes appended (inside a transaction)."""
        for seq, kind, step, ids in self.store.events(self.seq):
            if kind == "ask":
                self.state = self._replay_ask(step, ids)
            else:
                self.state = self._tell(ids)
            self.seq = seq

    def _replay_ask(self, step: int, ids: list[int]) -> Any:
        state, proposals = self.ask(self.state, jax.random.fold_in(self.key, step))
        proposed = np.asarray(proposals.trial_ids)[np.asarray(proposals.valid)].tolist()
        if not set(ids) <= set(proposed):
            raise RuntimeError(
                f"jn.run: replaying step {step} of the run in {str(self.store.root)!r} "
                f"proposed trials {proposed[:8]}..., not the stored {ids[:8]}...: the "
                f"optimiser is not the one that wrote this run.")
        parents = np.asarray(proposals.parent_ids)[np.asarray(proposals.valid)].tolist()
        for tid, parent in zip(proposed, parents):
            if tid in ids:
                self.root_of[tid] = self.root_of.get(parent, parent) if parent >= 0 else tid
        return state

    def _tell(self, ids: list[int]) -> Any:
        rows = {t["trial_id"]: t for t in self.store.trials(
            f"WHERE trial_id IN ({','.join('?' * len(ids))})", tuple(ids))}
        padded = np.full((self.batch,), -1, np.int32)
        losses = np.full((self.batch,), np.nan, np.float32)
        for i, tid in enumerate(ids):
            padded[i] = tid
            losses[i] = rows[tid]["loss"] if rows[tid]["status"] == "success" else np.nan
        return self.tell(self.state, jnp.asarray(padded), jnp.asarray(losses))

    # ------------------------------------------------------------- scheduling

    def next_batch(self, budgets: dict, seconds: float) -> tuple[list[dict], str]:
        """Claims the next trials to evaluate: a dead worker's, else a new ask.

        Returns:
            The claimed trials (one step's), and "" or why the run stops.
        """
        with self.store.transaction():
            self._catch_up()
            self.store.release_dead(_alive)
            for step in self.store.untold_finished_steps():
                self.store.append_event("tell", step, self.store.asked_ids(step))
            self._catch_up()
            claimed = self.store.claim_pending(self.worker)
            if claimed:
                return claimed, ""
            totals = self.store.totals()
            stopped_by = _exhausted(budgets, totals, seconds)
            if stopped_by:
                return [], stopped_by
            step = self.store.last_step() + 1
            state, proposals = self.ask(self.state, jax.random.fold_in(self.key, step))
            try:
                _optimizers.check(state)
            except ValueError as full:
                logger.warning("jaxnas.run: %s", full)
                return [], "the optimiser's capacity (optimizer_kwargs max_trials)"
            proposals = jax.device_get(proposals)
            rows = np.flatnonzero(np.asarray(proposals.valid))
            if "max_evaluations" in budgets:
                rows = rows[: budgets["max_evaluations"] - totals["evaluations"]]
            if rows.size == 0:
                return [], "the optimiser has nothing more to propose"
            trials = _proposed_rows(proposals, rows, step)
            self.seq = self.store.append_event("ask", step, [t["trial_id"] for t in trials])
            self.state = state
            for t in trials:
                parent = t["parent_id"]
                self.root_of[t["trial_id"]] = (self.root_of.get(parent, parent)
                                               if parent >= 0 else t["trial_id"])
            self.store.add_trials(trials, worker=self.worker)
            self.checkpoint()
        for t in trials:
            t["worker"] = self.worker
        return trials, ""

    def finished(self, step: int) -> None:
        """Tells the optimiser a step's results once all its trials have finished."""
        with self.store.transaction():
            self._catch_up()
            if step in self.store.untold_finished_steps():
                self.store.append_event("tell", step, self.store.asked_ids(step))
                self._catch_up()
            self.checkpoint()

    def key_ids(self, trials: list[dict]) -> list[int]:
        return [self.root_of[t["trial_id"]] for t in trials]

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


def _alive(worker: str | None) -> bool:
    """Whether the worker that claimed a trial still runs (False for another host's
    worker only if it is this host's and its process is gone)."""
    if worker is None:
        return False
    host, pid, _ = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return True  # cannot know; see `jn.run`'s docstring
    if int(pid) == os.getpid():
        return False  # an earlier run in this process that did not finish its trials
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proposed_rows(proposals: Any, rows: np.ndarray, step: int) -> list[dict]:
    configs = jax.tree.map(lambda a: np.asarray(a)[rows], proposals.configs)
    fidelities = np.asarray(proposals.fidelities)[rows]
    out = []
    for j, i in enumerate(rows):
        fidelity = float(fidelities[j])
        out.append({"trial_id": int(proposals.trial_ids[i]),
                    "parent_id": int(proposals.parent_ids[i]), "step": step,
                    "config": _host_config(configs, j),
                    "fidelity": None if math.isnan(fidelity) else fidelity})
    return out


def _batch(trials: list[dict], key_ids: list[int], layout: Layout) -> dict:
    """Claimed trials as the evaluators' batch: a `Config` batch, one row per trial.

    The stored values are the float32 / int32 values the optimiser proposed, so the
    configs equal the proposals exactly.
    """
    floats = [p for p, f in zip(layout.paths, layout.is_float) if f]
    ints = [p for p, f in zip(layout.paths, layout.is_float) if not f]
    configs = Config(
        np.asarray([[t["config"][p] for p in floats] for t in trials], np.float32)
        .reshape(len(trials), len(floats)),
        np.asarray([[t["config"][p] for p in ints] for t in trials], np.int32)
        .reshape(len(trials), len(ints)),
        layout)
    return {
        "configs": configs,
        "fidelities": [math.nan if t["fidelity"] is None else t["fidelity"] for t in trials],
        "trial_ids": [t["trial_id"] for t in trials],
        "parent_ids": [t["parent_id"] for t in trials],
        "key_ids": key_ids,
    }


class _Checkpoints:
    """Orbax checkpoints of the optimiser's state, numbered by the last event applied.

    Saves are atomic (Orbax writes to a temporary folder and renames it), the newest
    `MAX_TO_KEEP` are kept, and a checkpoint that fails to restore is skipped with a
    warning for the one before it.
    """

    MAX_TO_KEEP = 3

    def __init__(self, directory: Path, template: Any):
        import orbax.checkpoint as ocp  # noqa: PLC0415 - slow to import; only runs need it

        self.ocp = ocp
        self.directory = directory
        self.template = template
        self.manager = ocp.CheckpointManager(
            directory.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=self.MAX_TO_KEEP,
                                                 enable_async_checkpointing=False,
                                                 cleanup_tmp_directories=True))

    def save(self, seq: int, state: Any) -> None:
        self.manager.reload()  # another process may have saved since
        if seq in self.manager.all_steps():
            return
        self.manager.save(seq, args=self.ocp.args.StandardSave(_to_storable(state)))

    def restore(self, events: list) -> tuple[Any, int] | None:
        """The newest good checkpoint no newer than the log: (state, seq)."""
        self.manager.reload()
        last = events[-1][0] if events else 0
        for seq in sorted(self.manager.all_steps(), reverse=True):
            if seq > last:
                continue  # a checkpoint of events that never committed
            try:
                item = self.manager.restore(
                    seq, args=self.ocp.args.StandardRestore(_to_storable(self.template)))
                state = jax.tree.map(jnp.asarray, _from_storable(item, self.template))
            except Exception as error:  # noqa: BLE001 - fall back to an older one
                logger.warning("jaxnas.run: checkpoint %s in %s cannot be restored (%s: %s); "
                               "falling back to an older one", seq, self.directory,
                               type(error).__name__, error)
                continue
            return state, int(seq)
        return None


class _TrainingStates:
    """Trained states of a run's trials, one Orbax checkpoint per bucket in ROOT/states.

    A trial's row in the trial table names its bucket's folder and its row there
    (`state_ref`); a promotion whose parent's state is not in memory (another worker
    trained it, or the process restarted) loads it from there. A missing or unreadable one
    is reported, and the promotion trains from scratch to its fidelity instead.
    """

    def __init__(self, store: RunStore):
        import orbax.checkpoint as ocp  # noqa: PLC0415

        self.store = store
        self.directory = (store.root / STATES).absolute()
        self.checkpointer = ocp.StandardCheckpointer()
        self.ocp = ocp
        self.cache: dict[str, dict] = {}

    def finish(self) -> None:
        """Waits for the saves in flight."""
        self.checkpointer.wait_until_finished()

    def save(self, trial_ids: list[int], states: Any) -> str | None:
        name = f"trial_{min(trial_ids)}"
        try:
            # Asynchronous: the write overlaps the next bucket's training. A process killed
            # before it finishes leaves no folder (Orbax renames it into place when done),
            # and the promotion falls back to training from scratch.
            self.checkpointer.save(self.directory / name, _to_storable(states), force=True)
        except Exception as error:  # noqa: BLE001 - states are a cache, not results
            logger.warning("jaxnas.run: could not save the training states of trials %s "
                           "(%s: %s); their promotions will train from scratch", trial_ids,
                           type(error).__name__, error)
            return None
        return name

    def load(self, trial_id: int, template: Any) -> Any:
        """Trial `trial_id`'s trained state, shaped like `template` (one member's), or None."""
        found = self.store.db.execute("SELECT state_ref FROM trials WHERE trial_id = ?",
                                      (int(trial_id),)).fetchone()
        if found is None or not found[0]:
            return None
        name, member = found[0].rsplit(":", 1)
        self.checkpointer.wait_until_finished()  # this process may still be writing it
        try:
            if name not in self.cache:
                self.cache = {name: self.checkpointer.restore(self.directory / name)}
            return _from_storable(self.cache[name], template, member=int(member))
        except Exception as error:  # noqa: BLE001 - fall back to training from scratch
            logger.warning("jaxnas.run: the training state of trial %d (%s) cannot be "
                           "restored (%s: %s); its promotion trains from scratch", trial_id,
                           name, type(error).__name__, error)
            return None


def _to_storable(state: Any) -> dict[str, Any]:
    """The state's leaves by position, PRNG keys as their raw data and empty arrays left
    out (Orbax writes neither); `_from_storable` puts them back."""
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(state)):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if leaf.size:
            out[f"leaf_{i:05d}"] = leaf
    return out


def _from_storable(item: dict[str, Any], template: Any, member: int | None = None) -> Any:
    """The state from `_to_storable`'s dict, checked against `template` (arrays or shapes).

    `member`: the row to take from each stored leaf, when `item` holds a bucket's states
    stacked and `template` is one member's. Leaves come back as numpy arrays (keys as keys).
    """
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, like in enumerate(leaves):
        is_key = jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key)
        expected = jax.eval_shape(jax.random.key_data, like) if is_key else like
        stored = item.get(f"leaf_{i:05d}")
        if stored is None:  # an empty leaf (Orbax writes none)
            if math.prod(expected.shape):
                raise ValueError(f"the checkpoint lacks leaf {i} of the state")
            value = np.zeros(expected.shape, expected.dtype)
        else:
            value = np.asarray(stored) if member is None else np.asarray(stored)[member]
        if value.shape != expected.shape or value.dtype != expected.dtype:
            raise ValueError(f"leaf {i} of the checkpoint is {value.shape} {value.dtype}, "
                             f"the state expects {expected.shape} {expected.dtype}")
        if is_key:
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
        out.append(value)
    if len(item) > sum(1 for like in leaves if math.prod(like.shape)):
        raise ValueError("the checkpoint holds more arrays than the state")
    return jax.tree.unflatten(treedef, out)


# ----------------------------------------------------------------------- pieces


def _check_budgets(**budgets: Any) -> dict:
    given = {k: v for k, v in budgets.items() if v is not None}
    if not given:
        raise ValueError("jn.run needs a budget: max_evaluations, max_cost, "
                         "max_fidelity_spent or max_seconds.")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"jn.run: {name}={value!r} must be a positive number.")
    if "max_evaluations" in given and not isinstance(given["max_evaluations"], int):
        raise ValueError(f"jn.run: max_evaluations={given['max_evaluations']!r} must be an "
                         f"integer.")
    return given


def _exhausted(budgets: dict, spent: dict, seconds: float) -> str:
    checks = (("max_evaluations", spent["evaluations"]), ("max_cost", spent["cost"]),
              ("max_fidelity_spent", spent["fidelity"]), ("max_seconds", seconds))
    for name, used in checks:
        if name in budgets and used >= budgets[name]:
            return name
    return ""


def _default_max_trials(optimizer: Any, spec: SearchSpace, max_evaluations: int | None,
                        kwargs: Mapping | None) -> int:
    """`max_evaluations` plus one batch (an ask reserves a whole rung, even past the
    budget), else `DEFAULT_MAX_TRIALS`."""
    if max_evaluations is None:
        return DEFAULT_MAX_TRIALS
    opt = _make_optimizer(optimizer, spec, max_evaluations, kwargs)
    key = jax.random.key(0)
    proposals = jax.eval_shape(opt.ask, jax.eval_shape(opt.init, key), key)[1]
    return max_evaluations + int(proposals.trial_ids.shape[0])


def _make_optimizer(optimizer: Any, spec: SearchSpace, max_trials: int,
                    kwargs: Mapping | None) -> _optimizers.Optimizer:
    if isinstance(optimizer, _optimizers.Optimizer):
        if kwargs:
            raise ValueError("jn.run: optimizer_kwargs apply to a named optimizer only.")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"jn.run: optimizer={optimizer!r} must be a name or an Optimizer.")
    kwargs = dict(kwargs or {})
    kwargs["max_trials"] = max_trials
    return _optimizers.get(optimizer, spec, **kwargs)


def _select(proposals: Any, rows: np.ndarray) -> dict:
    """The valid proposals as host (numpy) values: indexing them compiles nothing."""
    host = jax.device_get(proposals)
    return {
        "configs": jax.tree.map(lambda a: np.asarray(a)[rows], host.configs),
        "fidelities": np.asarray(host.fidelities)[rows].tolist(),
        "trial_ids": np.asarray(host.trial_ids)[rows].tolist(),
        "parent_ids": np.asarray(host.parent_ids)[rows].tolist(),
    }


def _key_maker(base: jax.Array) -> Callable[[list[int]], jax.Array]:
    """`ids -> keys`: one PRNG key per trial, `fold_in(base, id)`, made by one jitted call."""
    fold = jax.jit(jax.vmap(lambda i: jax.random.fold_in(base, i)))

    def keys(ids: list[int]) -> jax.Array:
        size = pad_to_power_of_two(len(ids))  # few shapes, few compiles
        padded = np.asarray(list(ids) + [0] * (size - len(ids)), np.int32)
        return fold(padded)[: len(ids)] if size != len(ids) else fold(padded)

    return keys


def _host_config(configs: Any, i: int) -> dict:
    return {path: np.asarray(configs[path][i]).item() for path in configs}


def _row(batch: dict, i: int, loss: float, *, seconds: float, cost: float | None = None,
         error: str | None = None, extra: dict | None = None,
         trace: str | None = None) -> dict:
    fidelity = batch["fidelities"][i]
    ok = error is None and math.isfinite(loss)
    return {"trial_id": batch["trial_ids"][i], "parent_id": batch["parent_ids"][i],
            "config": _host_config(batch["configs"], i),
            "fidelity": None if fidelity is None or math.isnan(fidelity) else fidelity,
            "loss": float(loss), "status": "success" if ok else "failed",
            "cost": cost if cost is not None else (None if fidelity is None or math.isnan(fidelity)
                                                   else fidelity),
            "seconds": seconds, "error": error if error else (None if ok else "non-finite loss"),
            "traceback": trace, "extra": extra or {}}


# -------------------------------------------------------------------- evaluators


def _evaluator(evaluate: Any, spec: SearchSpace, masked: bool) -> Callable:
    if hasattr(evaluate, "for_bucket") or isinstance(evaluate, Task):
        return _TaskEvaluator(evaluate, spec, masked)
    if not callable(evaluate):
        raise TypeError(f"jn.run: evaluate={evaluate!r} must be a Task, a pure function "
                        f"f(config, fidelity, key) or a callable f(**config).")
    if _is_pure(evaluate):
        return _TaskEvaluator(_pure_task(evaluate), spec, masked, bucketed=False)
    return _PlainEvaluator(evaluate, spec)


def _is_pure(fn: Callable) -> bool:
    """A pure JAX evaluate takes exactly `(config, fidelity, key)` positionally."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return [p.name for p in parameters] == ["config", "fidelity", "key"]


class _TaskEvaluator:
    """Trains each bucket with a `BucketTrainer`; keeps trained states for promotions.

    With `bucketed=False` the whole batch is one bucket (a pure function, whose config
    values all arrive traced).
    """

    def __init__(self, task: Any, spec: SearchSpace, masked: bool, bucketed: bool = True):
        self.task, self.spec, self.masked, self.bucketed = task, spec, masked, bucketed
        if hasattr(task, "check_space"):  # a space the task cannot train fails here, early
            task.check_space(spec)
        self.trainers: dict[tuple, BucketTrainer] = {}
        self.states: dict[int, Any] = {}  # trial id -> trained state (one member)
        self.saved: _TrainingStates | None = None

    def attach(self, store: RunStore) -> None:
        """Saves trained states in the run folder, so that a promotion continues from its
        parent's state in another process or after a restart. A pure function's "state"
        is its key and fidelity, which a promotion rebuilds exactly: nothing to save."""
        if self.bucketed:
            self.saved = _TrainingStates(store)

    def __call__(self, batch: dict, trial_key: Callable, commit: Callable) -> list[dict]:
        configs = batch["configs"]
        signatures = (self.spec.buckets(configs, masked=self.masked) if self.bucketed
                      else [()] * len(batch["trial_ids"]))
        results = [None] * len(signatures)
        for signature in dict.fromkeys(signatures):
            rows = [i for i, s in enumerate(signatures) if s == signature]
            trainer = self._trainer(signature, configs, rows[0])
            members = jax.tree.map(lambda a: a[np.asarray(rows)], configs)
            keys = trial_key([batch["key_ids"][i] for i in rows])
            fidelities = np.asarray([batch["fidelities"][i] for i in rows], np.float32)
            parents = [batch["parent_ids"][i] for i in rows]
            missing = [p for p in parents if p >= 0 and p not in self.states]
            if self.saved is not None and missing:
                template = jax.eval_shape(  # one member's state: the bucket shares its shape
                    trainer.task.init, jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype),
                    jax.tree.map(lambda a: a[0], members))
                for p in missing:
                    restored = self.saved.load(p, template)
                    if restored is not None:
                        self.states[p] = restored
            has_parent = np.array([p in self.states for p in parents])
            parent_states = None
            if has_parent.any():
                template = next(self.states[p] for p in parents if p in self.states)
                parent_states = jax.tree.map(
                    _stack, *[self.states.get(p, template) for p in parents])
            t0 = time.monotonic()
            try:
                states, out = jax.block_until_ready(trainer(
                    keys, members, fidelities, parent_states,
                    has_parent if has_parent.any() else None))
            except Exception as error:  # noqa: BLE001 - the bucket fails, the run goes on
                logger.warning("a bucket of %d trials failed: %r", len(rows), error)
                seconds, trace = (time.monotonic() - t0) / len(rows), traceback.format_exc()
                bucket = [_row(batch, i, math.nan, seconds=seconds, trace=trace,
                               error=f"{type(error).__name__}: {error}") for i in rows]
                commit(bucket)
                for i, row in zip(rows, bucket):
                    results[i] = row
                continue
            seconds = (time.monotonic() - t0) / len(rows)
            states, out = jax.device_get((states, out))  # host copies: sliced for free
            for j, i in enumerate(rows):
                self.states[batch["trial_ids"][i]] = jax.tree.map(lambda a: a[j], states)
                metrics = out if isinstance(out, Mapping) else {"loss": out}
                loss = float(np.asarray(metrics["loss"])[j])
                extra = {k: np.asarray(v[j]).tolist() for k, v in metrics.items()
                         if k not in ("loss", "cost")}
                cost = float(np.asarray(metrics["cost"])[j]) if "cost" in metrics else None
                results[i] = _row(batch, i, loss, seconds=seconds, cost=cost, extra=extra)
            for parent in parents:
                self.states.pop(parent, None)  # continued: its child's state replaces it
            top = self.spec.fidelity.upper if self.spec.fidelity is not None else None
            if self.saved is not None and top is not None and np.any(fidelities < top):
                # (A trial at the maximum fidelity is never continued: nothing to save.)
                reference = self.saved.save([batch["trial_ids"][i] for i in rows], states)
                for j, i in enumerate(rows):
                    results[i]["state_ref"] = f"{reference}:{j}" if reference else None
            commit([results[i] for i in rows])  # each bucket is committed as it finishes
        return results

    def _trainer(self, signature: tuple, configs: Any, row: int) -> BucketTrainer:
        if signature not in self.trainers:
            task = self.task
            if hasattr(task, "for_bucket"):
                task = task.for_bucket(self.spec, jax.tree.map(lambda a: a[row], configs),
                                       self.masked)
            self.trainers[signature] = BucketTrainer(task)
        return self.trainers[signature]


def _stack(*leaves: Any) -> Any:
    """Stacks one leaf of several saved states: on the host, except typed PRNG keys."""
    if jax.dtypes.issubdtype(getattr(leaves[0], "dtype", None), jax.dtypes.prng_key):
        return jnp.stack(leaves)
    return np.stack(leaves)


def _pure_task(fn: Callable) -> Task:
    """`f(config, fidelity, key)` as a `Task`: the state is the trial's key and fidelity.

    So a pure function runs through the same `BucketTrainer` (jit, vmap, padding) as any
    task; it has no structure to bucket, as every config value reaches it traced.
    """

    def init(key, config):
        del config
        return {"key": jax.random.key_data(key), "fidelity": jnp.zeros((), jnp.float32)}

    def train(state, config, fidelity):
        del config
        return {**state, "fidelity": jnp.asarray(fidelity, jnp.float32)}

    def evaluate(state, config):
        return fn(config, state["fidelity"], jax.random.wrap_key_data(state["key"]))

    return Task(init, train, evaluate)


class _PlainEvaluator:
    """`f(**config)`, one trial at a time, with the resolved values by name."""

    def __init__(self, fn: Callable, spec: SearchSpace):
        self.fn, self.spec = fn, spec

    def __call__(self, batch: dict, trial_key: Callable, commit: Callable) -> list[dict]:
        del trial_key  # a plain callable draws its own randomness
        results = []
        for i in range(len(batch["trial_ids"])):
            config = jax.tree.map(lambda a: a[i], batch["configs"])
            fidelity = batch["fidelities"][i]
            t0 = time.monotonic()
            try:
                resolved = self.spec.resolve(
                    config, None if math.isnan(fidelity) else fidelity)
                out = self.fn(**resolved)
                loss = float(out["loss"] if isinstance(out, Mapping) else out)
                cost = out.get("cost") if isinstance(out, Mapping) else None
                extra = ({k: v for k, v in out.items() if k not in ("loss", "cost")}
                         if isinstance(out, Mapping) else {})
                results.append(_row(batch, i, loss, seconds=time.monotonic() - t0,
                                    cost=None if cost is None else float(cost),
                                    extra=_jsonable(extra)))
            except Exception as error:  # noqa: BLE001 - a failing trial is recorded
                logger.warning("trial %d failed: %r", batch["trial_ids"][i], error)
                results.append(_row(batch, i, math.nan, seconds=time.monotonic() - t0,
                                    error=f"{type(error).__name__}: {error}",
                                    trace=traceback.format_exc()))
            commit(results[-1:])  # each trial is committed as it finishes
        return results


def _jsonable(extra: dict) -> dict:
    out = {}
    for k, v in extra.items():
        try:
            out[k] = np.asarray(v).tolist()
        except Exception:  # noqa: BLE001 - keep what can be stored
            out[k] = repr(v)
    return out


# ----------------------------------------------------------------------- results


def _incumbent(spec: SearchSpace, trials: list[dict]) -> Incumbent | None:
    done = [t for t in trials if t["status"] == "success"]
    if not done:
        return None
    top = max((t["fidelity"] or 0.0) for t in done)
    best = min((t for t in done if (t["fidelity"] or 0.0) == top), key=lambda t: t["loss"])
    resolved = spec.resolve(best["config"], best["fidelity"])
    return Incumbent(best["trial_id"], best["loss"], best["fidelity"], resolved,
                     dict(best["config"]), dict(best["extra"]))


def _report(show: bool, totals: dict, store: RunStore, budgets: dict,
            seconds: float) -> None:
    best = store.db.execute("SELECT MIN(loss) FROM trials WHERE status = 'success'").fetchone()[0]
    best = math.nan if best is None else best
    used = {"max_evaluations": totals["evaluations"], "max_cost": totals["cost"],
            "max_fidelity_spent": totals["fidelity"], "max_seconds": seconds}
    fraction = max(used[k] / v for k, v in budgets.items())
    logger.debug("%d trials, best loss %.6g, %.0f%% of the budget", totals["evaluations"],
                 best, 100 * fraction)
    if show:
        print(f"\rjaxnas: {totals['finished']} trials | best loss {best:.6g} | "
              f"budget {100 * min(fraction, 1):5.1f}% | {seconds:6.1f}s", end="",
              file=sys.stderr, flush=True)
