"""The trial record: one row of the trial table, frozen, as the runner passes it around;
and which record is the best.

Inside the runner a trial is a `TrialRecord` (typed fields, changed only by
`dataclasses.replace`); at the public edge (`jn.load_results`, `RunResult.trials`) it
becomes the plain dict users have always read, with the same keys in the same order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxnas.metrics import non_dominated
from jaxnas.optimizers import IncumbentSelection, incumbent_index

SUCCESS, FAILED, INFEASIBLE = "success", "failed", "infeasible"
FINISHED = (SUCCESS, FAILED, INFEASIBLE)

# The run's incumbent (`jn.run`, `status`): a low-fidelity loss is not the loss the user
# will train to.
INCUMBENT = IncumbentSelection.HIGHEST_FIDELITY


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial: what the optimiser proposed and, once finished, what it scored.

    Attributes:
        trial_id: the optimiser's id of the trial.
        step: the ask that proposed it.
        parent_id: the lower-rung trial it continues from, or -1.
        config: its values by decision path (host Python numbers).
        fidelity: the fidelity it trains to, or None in a space without one.
        status: "pending", "running", "success", "failed" or "infeasible" (it broke a
            constraint of `jn.run(constraints=...)` and was never trained).
        loss: what the optimiser minimised: the objective, negated where it is maximised;
            NaN unless it succeeded, and with several objectives (see `objectives`).
        cost: the cost it reported, else its fidelity.
        extra: the other metrics and curves it reported.
        seconds: its share of the evaluation's wall-clock time.
        created, finished: Unix times.
        worker: the process that claimed it.
        error, traceback: why it failed.
        state_ref: where its trained state is saved ("folder:row"), if anywhere.
        objectives: the value of each objective and bounded metric, by name, as the
            evaluation returned it (not negated).
        feasible: whether every bound on the outcomes holds; None in a run without bounds.
    """

    trial_id: int
    step: int
    parent_id: int
    config: dict
    fidelity: float | None
    status: str = "running"
    loss: float = math.nan
    cost: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    seconds: float | None = None
    created: float | None = None
    finished: float | None = None
    worker: str | None = None
    error: str | None = None
    traceback: str | None = None
    state_ref: str | None = None
    objectives: dict = dataclasses.field(default_factory=dict)
    feasible: bool | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCESS

    def finish(self, loss: float, *, seconds: float, cost: float | None = None,
               error: str | None = None, trace: str | None = None,
               extra: dict | None = None, objectives: dict | None = None,
               feasible: bool | None = None) -> TrialRecord:
        """This trial with its outcome: failed if `error` is given, or if it has no
        `objectives` and the loss is not finite (with them, the caller checked them).

        The cost defaults to the fidelity (the trial's training budget).
        """
        ok = error is None and (objectives is not None or math.isfinite(loss))
        return dataclasses.replace(
            self, loss=float(loss), status=SUCCESS if ok else FAILED,
            cost=cost if cost is not None else self.fidelity, seconds=seconds,
            error=error if error else (None if ok else "non-finite loss"), traceback=trace,
            extra=extra or {}, objectives=objectives or {},
            feasible=feasible if ok else None)

    def infeasible(self, reason: str, measures: dict) -> TrialRecord:
        """This trial, refused before training: `reason` names the broken constraint,
        `extra` holds what was measured. It costs nothing."""
        return dataclasses.replace(self, status=INFEASIBLE, error=reason, cost=0.0,
                                   seconds=0.0, extra=dict(measures), feasible=False)

    def as_dict(self) -> dict[str, Any]:
        """The trial as `jn.load_results` returns it (a dict, keys in column order)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


COLUMNS = tuple(field.name for field in dataclasses.fields(TrialRecord))


def best_trial(trials: Sequence[TrialRecord],
               selection: IncumbentSelection | str) -> TrialRecord | None:
    """The best feasible trial under `selection` (`jn.optimizers.incumbent_index`'s one
    rule; a trial without a fidelity counts as fidelity 0), or None when none succeeded
    (or every success broke a bound). Several objectives have no best trial (NaN losses):
    see `pareto_trials`."""
    losses = np.asarray([t.loss for t in trials], np.float64)
    levels = np.asarray([t.fidelity or 0.0 for t in trials], np.float64)
    succeeded = np.asarray([t.succeeded and t.feasible is not False
                            and math.isfinite(t.loss) for t in trials], bool)
    row = int(incumbent_index(losses, levels, succeeded, selection))
    return None if row < 0 else trials[row]


def pareto_trials(trials: Sequence[TrialRecord], names: Sequence[str],
                  signs: Sequence[float]) -> list[TrialRecord]:
    """The non-dominated feasible successful trials at the highest fidelity any of them
    reached, in trial-id order (`RunResult.pareto_front`); objectives `names`, each
    multiplied by its sign (+1 minimised, -1 maximised)."""
    done = [t for t in trials if t.succeeded and t.feasible is not False
            and all(n in t.objectives for n in names)]
    if not done:
        return []
    top = max(t.fidelity or 0.0 for t in done)
    done = [t for t in done if (t.fidelity or 0.0) == top]
    points = np.asarray([[s * t.objectives[n] for n, s in zip(names, signs)] for t in done])
    keep = non_dominated(points)
    return [t for t, k in zip(done, keep) if k]
