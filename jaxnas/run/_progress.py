"""The progress line `jn.run` shows on stderr, and its debug log line.

It shows the best loss at ANY fidelity (`IncumbentSelection.ANY_FIDELITY`), and says so:
during a multi-fidelity run that is the number that moves; the run's incumbent (best at
the highest fidelity) is what `jn.run` returns and `python -m jaxnas status` lists.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping

from jaxnas.optimizers import IncumbentSelection
from jaxnas.run._budgets import fraction_spent
from jaxnas.run._objectives import Objectives
from jaxnas.run._records import best_trial, pareto_trials
from jaxnas.run._storage import RunStore

logger = logging.getLogger("jaxnas")

SHOWN = IncumbentSelection.ANY_FIDELITY
LABEL = "best loss (any fidelity)"


class Progress:
    """Reports the run's progress after each batch.

    Args:
        show: print the line on stderr (else only a debug log line, when enabled).
        budgets: the run's budgets, for the share spent.
    """

    def __init__(self, show: bool, budgets: Mapping[str, float],
                 objectives: Objectives | None = None):
        self.show, self.budgets = show, budgets
        self.objectives = objectives

    def update(self, store: RunStore, seconds: float) -> None:
        """Reports the run as `store` holds it, `seconds` into this process's run."""
        debug = logger.isEnabledFor(logging.DEBUG)
        if not (self.show or debug):
            return  # the best trial costs a read of the whole table
        totals = store.totals()
        if self.objectives is not None and self.objectives.several:
            front = pareto_trials(store.all_trials(), self.objectives.names,
                                  self.objectives.signs())
            shown = f"Pareto front {len(front)} trials"
        else:
            best = best_trial(store.all_trials(), SHOWN)
            shown = f"{LABEL} {math.nan if best is None else best.loss:.6g}"
        fraction = fraction_spent(self.budgets, totals, seconds)
        logger.debug("%d trials, %s, %.0f%% of the budget", totals["evaluations"], shown,
                     100 * fraction)
        if self.show:
            print(f"\rjaxnas: {totals['finished']} trials | {shown} | "
                  f"budget {100 * min(fraction, 1):5.1f}% | {seconds:6.1f}s", end="",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        """Ends the line."""
        if self.show:
            print(file=sys.stderr)
