"""Orbax checkpoints of a run: the optimiser's state, and the trials' trained states.

* `OptimizerCheckpoints` (`ROOT/checkpoints`): the optimiser's state, numbered by the last
  event of the log it includes, so that a resumed run replays only the events after it.
* `TrainingStates` (`ROOT/states`): one checkpoint per trained bucket, so that a promotion
  continues from its parent's state in another process or after a restart.

Both store a state as its leaves by position (`_to_storable`), PRNG keys as raw data.
"""

from __future__ import annotations

import logging
import math
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

    def restore(self, last_event: int) -> tuple[Any, int] | None:
        """The newest good checkpoint no newer than event `last_event`: (state, seq)."""
        self.manager.reload()
        for seq in sorted(self.manager.all_steps(), reverse=True):
            if seq > last_event:
                continue  # a checkpoint of events that never committed
            try:
                item = self.manager.restore(
                    seq, args=self.ocp.args.StandardRestore(_to_storable(self.template)))
                state = jax.device_put(_from_storable(item, self.template))  # no compiles
            except Exception as error:  # noqa: BLE001 - fall back to an older one
                logger.warning("jaxnas.run: checkpoint %s in %s cannot be restored (%s: %s); "
                               "falling back to an older one", seq, self.directory,
                               type(error).__name__, error)
                continue
            return state, int(seq)
        return None


class TrainingStates:
    """Trained states of a run's trials, one Orbax checkpoint per bucket.

    A trial's row in the trial table names its bucket's folder and its row there
    (`state_ref`); a promotion whose parent's state is not in memory (another worker
    trained it, or the process restarted) loads it from there. A missing or unreadable one
    is reported, and the promotion trains from scratch to its fidelity instead.
    """

    def __init__(self, store: RunStore):
        import orbax.checkpoint as ocp  # noqa: PLC0415

        self.store = store
        self.directory = store.states_directory.absolute()
        self.checkpointer = ocp.StandardCheckpointer()
        self.cache: dict[str, dict] = {}

    def finish(self) -> None:
        """Waits for the saves in flight."""
        try:
            self.checkpointer.wait_until_finished()
        except Exception as error:  # noqa: BLE001 - states are a cache, not results
            logger.warning("jaxnas.run: writing training states failed (%s: %s); their "
                           "promotions will train from scratch", type(error).__name__, error)

    def save(self, trial_ids: list[int], states: Any) -> str | None:
        """Saves a bucket's stacked states; returns the folder's name, or None if it failed."""
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
        reference = self.store.state_ref(trial_id)
        if not reference:
            return None
        name, member = reference.rsplit(":", 1)
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
