"""Which trial is the best so far: one rule for the optimisers, the run and its reports.

"Best" has two meanings in multi-fidelity search, and every place that shows or uses a best
trial names which one it means:

* `ANY_FIDELITY`: the lowest loss seen at any fidelity. PriorBand mutates it (as NePS 0.17
  and the paper's implementation do); the run's progress line shows it.
* `HIGHEST_FIDELITY`: the lowest loss among the trials at the highest fidelity that has a
  successful result (SMAC's "highest observed budget"). `jn.run`'s incumbent is this one:
  a low-fidelity loss is not the loss the user will train to.
"""

from __future__ import annotations

import enum
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class IncumbentSelection(str, enum.Enum):
    """Which trial is the incumbent (see the module docstring)."""

    ANY_FIDELITY = "any_fidelity"
    HIGHEST_FIDELITY = "highest_fidelity"


def check_incumbent_selection(owner: str, value: Any) -> IncumbentSelection:
    """`value` as an `IncumbentSelection`, or a ValueError that names `owner` and the choices."""
    try:
        return IncumbentSelection(value)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in IncumbentSelection)
        raise ValueError(f"{owner}: incumbent_selection={value!r} must be one of {choices} "
                         f"(which result counts as the best so far).") from None


def incumbent_index(losses: Any, levels: Any, succeeded: Any,
                    selection: IncumbentSelection | str) -> Any:
    """The row of the incumbent among trials, or -1 when none succeeded.

    Works on numpy arrays on the host (the run, its reports) and on jax arrays, traced, on
    the device (an optimiser's trial table), with the same rule.

    Args:
        losses: `(n,)` losses (any value where the trial did not succeed).
        levels: `(n,)` fidelities or rung indices: larger means higher fidelity.
        succeeded: `(n,)` bool, the trials with a finite loss.
        selection: which best (`IncumbentSelection`).

    Returns:
        A scalar int: the first row with the lowest loss among the candidates; -1 if no
        trial succeeded.
    """
    xp = jnp if any(isinstance(a, jax.Array) for a in (losses, levels, succeeded)) else np
    losses, levels = xp.asarray(losses), xp.asarray(levels)
    candidate = xp.asarray(succeeded, bool)
    if IncumbentSelection(selection) is IncumbentSelection.HIGHEST_FIDELITY:
        top = xp.max(xp.where(candidate, levels, -xp.inf)) if levels.size else 0
        candidate = candidate & (levels == top)
    if not losses.size:
        return -1
    row = xp.argmin(xp.where(candidate, losses, xp.inf))
    return xp.where(xp.any(candidate), row, -1)
