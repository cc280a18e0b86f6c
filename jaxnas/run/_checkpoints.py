"""Orbax checkpoints of a run: the optimiser's state, and the trials' trained states.

* `OptimizerCheckpoints` (`ROOT/checkpoints`): the optimiser's state, numbered by the last
  event of the log it includes, so that a resumed run replays only the events after it.
* `TrainingStates` (`ROOT/states`): one checkpoint per trained bucket, so that a promotion
  continues from its parent's state in another process or after a restart.

Both store a state as its leaves by position (`_to_storable`), PRNG keys as raw data.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxnas.run._storage import RunStore

logger = logging.getLogger("jaxnas")


class OptimizerCheckpoints:
    """Orbax checkpoints of the optimiser's state, numbered by the last event applied.

    Saves are atomic (Orbax writes to a temporary folder and renames it), the newest
    `MAX_TO_KEEP` are kept, and a checkpoint that fails to restore is skipped with a
    warning for the one before it.
    """

    MAX_TO_KEEP = 3

    def __init__(self, directory: Path, template: Any):
        self.directory = directory
        self.template = template
        self._manager: Any = None

    @property
    def manager(self) -> Any:
        """Orbax's manager of the folder, made (and Orbax imported) at first use."""
        if self._manager is None:
            ocp = orbax_checkpoint()
            self._manager = ocp.CheckpointManager(
                self.directory.absolute(),
                options=ocp.CheckpointManagerOptions(max_to_keep=self.MAX_TO_KEEP,
                                                     enable_async_checkpointing=False,
                                                     cleanup_tmp_directories=True))
        return self._manager

    def save(self, seq: int, state: Any) -> None:
        self.manager.reload()  # another process may have saved since
        if seq in self.manager.all_steps():
            return
        self.manager.save(seq, args=orbax_checkpoint().args.StandardSave(_to_storable(state)))

    def restore(self, last_event: int, after: int = 0) -> tuple[Any, int] | None:
        """The newest good checkpoint no newer than event `last_event`: (state, seq).
        Those up to event `after` are of a smaller state (the run's capacity grew since)
        and are not read."""
        if not _has_steps(self.directory):
            return None  # a new run: no need to import Orbax yet
        self.manager.reload()
        for seq in sorted(self.manager.all_steps(), reverse=True):
            if seq > last_event:
                continue  # a checkpoint of events that never committed
            if seq <= after:
                break  # older ones are of a smaller state too
            try:
                item = self.manager.restore(seq, args=orbax_checkpoint().args.StandardRestore(
                    _to_storable(self.template)))
                state = jax.device_put(_from_storable(item, self.template))  # no compiles
            except Exception as error:  # noqa: BLE001 - fall back to an older one
                logger.warning("jaxnas.run: checkpoint %s in %s cannot be restored (%s: %s); "
                               "falling back to an older one", seq, self.directory,
                               type(error).__name__, error)
                continue
            return state, int(seq)
        return None


def _has_steps(directory: Path) -> bool:
    """Whether `directory` holds a finished checkpoint (a folder named by its number)."""
    try:
        return any(entry.name.isdigit() for entry in directory.iterdir())
    except FileNotFoundError:
        return False


class TrainingStates:
    """Trained states of a run's trials, one Orbax checkpoint per bucket.

    A trial's row in the trial table names its bucket's folder and its row there
    (`state_ref`); a promotion whose parent's state is not in memory (another worker
    trained it, or the process restarted) loads it from there. A missing or unreadable one
    is reported, and the promotion trains from scratch to its fidelity instead.

    Writes run in one background thread, in order, so that they overlap the next batch's
    training instead of holding up the run; on Linux that thread runs at the lowest CPU
    priority (`background_priority`), so that it takes a core only when the training
    leaves one idle. Orbax itself is imported there, at the first save, which is when a
    run first needs it. A process killed before a write finishes
    leaves no folder (Orbax renames it into place when done), and the promotion falls back
    to training from scratch.
    """

    def __init__(self, store: RunStore):
        self.store = store
        self.directory = store.states_directory.absolute()
        self.cache: dict[str, dict] = {}
        self._checkpointer: Any = None  # made in the writer thread at its first save
        self._writer = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="jaxnas-training-states", initializer=background_priority)
        self._last: concurrent.futures.Future | None = None

    def finish(self) -> None:
        """Waits for the writes in flight."""
        if self._last is not None:
            self._last.result()  # the write reports its own failure

    def close(self) -> None:
        """Waits for the writes in flight and ends the writer thread."""
        self.finish()
        self._writer.shutdown()

    def save(self, trial_ids: list[int], states: Any) -> str:
        """Queues a bucket's stacked states (host arrays, not changed afterwards) for
        writing; returns the folder's name."""
        name = f"trial_{min(trial_ids)}"
        self._last = self._writer.submit(self._write, name, trial_ids, states)
        return name

    def _write(self, name: str, trial_ids: list[int], states: Any) -> None:
        try:
            if self._checkpointer is None:
                ocp = orbax_checkpoint()
                self._checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
            self._checkpointer.save(self.directory / name, args=orbax_checkpoint().args
                                    .StandardSave(_to_storable(states)), force=True)
        except Exception as error:  # noqa: BLE001 - states are a cache, not results
            logger.warning("jaxnas.run: could not save the training states of trials %s "
                           "(%s: %s); their promotions will train from scratch", trial_ids,
                           type(error).__name__, error)

    def load(self, trial_id: int, template: Any) -> Any:
        """Trial `trial_id`'s trained state, shaped like `template` (one member's), or None."""
        reference = self.store.state_ref(trial_id)
        if not reference:
            return None
        name, member = reference.rsplit(":", 1)
        self.finish()  # this process may still be writing it
        try:
            if name not in self.cache:
                ocp = orbax_checkpoint()
                checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
                self.cache = {name: checkpointer.restore(self.directory / name)}
            return _from_storable(self.cache[name], template, member=int(member))
        except Exception as error:  # noqa: BLE001 - fall back to training from scratch
            logger.warning("jaxnas.run: the training state of trial %d (%s) cannot be "
                           "restored (%s: %s); its promotion trains from scratch", trial_id,
                           name, type(error).__name__, error)
            return None


def background_priority() -> None:
    """Gives the calling thread the lowest CPU priority (nice 19), where that is a thread's
    own (Linux; elsewhere `setpriority` would renice the whole process, so it is left
    alone). Threads it starts later inherit it (Orbax's, and TensorStore's when Orbax is
    first used there). On a machine with few cores, writes at normal priority take CPU
    time from the training: the quickstart ran about 0.3 s faster on 2 cores with its
    state writes at nice 19."""
    if sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:  # not permitted here: the writes keep the normal priority
        pass


def orbax_checkpoint() -> Any:
    """`orbax.checkpoint`, imported when a run first saves or restores something (it takes
    a good part of a second to import; `import jaxnas` does not need it)."""
    import orbax.checkpoint as ocp  # noqa: PLC0415

    return ocp


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
