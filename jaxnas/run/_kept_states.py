"""Trained states held in memory for the promotions that continue them, within a budget.

A bucket's trained states come back from its `BucketTrainer` call stacked, one array per
leaf with a row per member. The evaluator keeps the rows of members that may be promoted
(below the top fidelity) as views of those arrays, so nothing is copied; a batch's arrays
live until every member kept from it is gone, so memory is counted, and freed, by batch.

Only the newest batches are kept, up to `KEPT_BYTES` (`JAXNAS_STATES_IN_MEMORY`, in MiB,
sets another budget): a promotion of a state dropped here reads it back from the run
folder (`TrainingStates`), as another process would.
Keeping every trial's state made a process grow with its run, by 700 MB in the
quickstart's, and that costs time as well as memory: allocations that cannot reuse freed
memory touch new pages, which on this project's 2-core VM cost about 30 us each (fresh
memory at 100-140 MB/s), and the quickstart's run took 2 s longer (13.5 s against 11.5 s).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import jax

# The bytes of trained states kept in memory; the newest batch is kept whatever its size.
# The quickstart's batches hold 10-50 MB (members padded to 256-wide layers, AdamW's two
# moments): this is the last several of them, which its promotions read.
KEPT_BYTES = 256 * 2**20
ENVIRONMENT = "JAXNAS_STATES_IN_MEMORY"


def kept_bytes() -> int:
    """The budget in bytes: `JAXNAS_STATES_IN_MEMORY` (MiB) if set and not empty, else
    `KEPT_BYTES`.

    Raises:
        ValueError: the variable is not a non-negative integer.
    """
    value = os.environ.get(ENVIRONMENT, "").strip()
    if not value:  # unset or empty
        return KEPT_BYTES
    try:
        mib = int(value)
        if mib < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"jaxnas: {ENVIRONMENT}={value!r} must be a non-negative integer "
                         f"(MiB of trained states a run keeps in memory; 0 keeps only the "
                         f"newest batch).") from None
    return mib * 2**20


class KeptStates:
    """Trained states of single members by trial id: the newest batches, within `budget`
    bytes (None: every batch), the rest dropped.

    Args:
        budget: the bytes of batches to keep beyond the newest; None keeps all (where a
            dropped state could not be read back).
    """

    def __init__(self, budget: int | None = KEPT_BYTES):
        self.budget = budget
        self._batches: dict[int, _Batch] = {}  # oldest first
        self._batch_of: dict[int, int] = {}  # trial id -> its batch's number
        self._numbers = itertools.count()

    def keep(self, rows: Mapping[int, int], states: Any) -> None:
        """Keeps the rows of `states` (stacked, a row per member) of the trials in `rows`
        (trial id -> row), then drops the oldest batches beyond the budget, never this
        one."""
        if not rows:
            return
        for trial_id in rows:
            self.pop(trial_id)
        number = next(self._numbers)
        nbytes = sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(states))
        self._batches[number] = _Batch(states, dict(rows), nbytes)
        self._batch_of.update(dict.fromkeys(rows, number))
        while self.budget is not None and len(self._batches) > 1 and self.nbytes > self.budget:
            oldest = next(iter(self._batches))
            for trial_id in self._batches.pop(oldest).rows:
                del self._batch_of[trial_id]

    def pop(self, trial_id: int) -> None:
        """Forgets `trial_id`'s state (if kept); its batch goes with its last member."""
        number = self._batch_of.pop(trial_id, None)
        if number is None:
            return
        batch = self._batches[number]
        del batch.rows[trial_id]
        if not batch.rows:
            del self._batches[number]

    @property
    def nbytes(self) -> int:
        """The bytes of the batches kept (a batch counts whole while one member is kept)."""
        return sum(batch.nbytes for batch in self._batches.values())

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._batch_of

    def __getitem__(self, trial_id: int) -> Any:
        batch = self._batches[self._batch_of[trial_id]]
        row = batch.rows[trial_id]
        return jax.tree.map(lambda a: a[row], batch.states)


class _Batch:
    """One `keep`'s states and the rows of the trials still kept from them."""

    def __init__(self, states: Any, rows: dict[int, int], nbytes: int):
        self.states, self.rows, self.nbytes = states, rows, nbytes
