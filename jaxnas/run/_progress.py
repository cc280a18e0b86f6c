"""The progress bar `jn.run` shows on stderr, and its debug log line.

The bar is rich's (`rich.progress`, which flax already installs): the share of the budget
spent with an ETA, the trials finished and failed, and the best loss with its fidelity.
Without rich it is one line rewritten in place.

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
from jaxnas.run._records import FAILED, best_trial, pareto_trials
from jaxnas.run._storage import RunStore

logger = logging.getLogger("jaxnas")

SHOWN = IncumbentSelection.ANY_FIDELITY
LABEL = "best loss (any fidelity)"


class Progress:
    """Reports the run's progress after each batch.

    Args:
        show: show the bar on stderr (else only a debug log line, when enabled).
        budgets: the run's budgets, for the share spent.
        objectives: the run's objectives (several: the Pareto front's size is shown).
    """

    def __init__(self, show: bool, budgets: Mapping[str, float],
                 objectives: Objectives | None = None):
        self.show, self.budgets = show, budgets
        self.objectives = objectives
        self._bar, self._task = (_rich_bar() if show else (None, None))

    def update(self, store: RunStore, seconds: float) -> None:
        """Reports the run as `store` holds it, `seconds` into this process's run."""
        debug = logger.isEnabledFor(logging.DEBUG)
        if not (self.show or debug):
            return  # the best trial costs a read of the whole table
        totals = store.totals()
        trials = store.all_trials()
        if self.objectives is not None and self.objectives.several:
            front = pareto_trials(trials, self.objectives.names, self.objectives.signs())
            shown = f"Pareto front {len(front)} trials"
        else:
            best = best_trial(trials, SHOWN)
            shown = f"{LABEL} {math.nan if best is None else best.loss:.6g}"
            if best is not None and best.fidelity is not None:
                shown += f" at fidelity {best.fidelity:g}"
        failed = sum(t.status == FAILED for t in trials)
        fraction = fraction_spent(self.budgets, totals, seconds)
        logger.debug("%d trials, %s, %.0f%% of the budget", totals["evaluations"], shown,
                     100 * fraction)
        if not self.show:
            return
        counts = f"{totals['finished']} trials ({failed} failed)"
        if self._bar is not None:
            self._bar.update(self._task, completed=min(fraction, 1.0),
                             status=f"{counts} | {shown}")
        else:
            print(f"\rjaxnas: {counts} | {shown} | budget {100 * min(fraction, 1):5.1f}% | "
                  f"{seconds:6.1f}s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Ends the bar (its last state stays on the screen)."""
        if self._bar is not None:
            self._bar.stop()
        elif self.show:
            print(file=sys.stderr)


def _rich_bar() -> tuple:
    """A started rich progress bar over the budget's share and its task, or (None, None)
    without rich."""
    try:
        from rich.console import Console  # noqa: PLC0415 - only when a bar is shown
        from rich.progress import (  # noqa: PLC0415
            BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    except ImportError:
        return None, None
    # Not a terminal (a log file): wide enough that the last state is printed whole.
    console = Console(file=sys.stderr, width=None if sys.stderr.isatty() else 200)
    bar = Bar(TextColumn("jaxnas"), BarColumn(bar_width=24),
              TextColumn("{task.percentage:>3.0f}% of the budget"), TimeElapsedColumn(),
              TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
              console=console, transient=False)
    task = bar.add_task("jaxnas", total=1.0, status="starting")
    bar.start()
    return bar, task
