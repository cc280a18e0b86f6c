"""What a run optimises: `jn.run(objectives=...)`, its directions and bounds, and how an
evaluation's output becomes a trial's objective values, its loss and its feasibility.

`objectives` maps names to `"minimize"`, `"maximize"` or a bound `("<=", x)` / `(">=", x)`.
Directions are what the run optimises (the default is `{"loss": "minimize"}`); a bound makes
its metric a constraint on outcomes: a trial is feasible iff every bound holds. Every
optimiser minimises, so a maximised objective is negated before it is told.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MINIMIZE, MAXIMIZE = "minimize", "maximize"
_DIRECTIONS = (MINIMIZE, MAXIMIZE)
_BOUNDS = ("<=", ">=")
DEFAULT = {"loss": MINIMIZE}
# Keys of an evaluation's dict that are never objectives: what the run itself reads.
_RESERVED = ("cost",)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One trial's evaluation, read through the run's objectives.

    Attributes:
        values: every objective's and bounded metric's value, by name.
        loss: what a single-objective optimiser minimises (the objective, negated where
            maximised); NaN with several objectives.
        signed: `(k,)` the objectives, each negated where maximised (what `nsga2` is told).
        violation: how far the bounds are from holding (0: feasible).
        error: why the trial failed (a missing or non-finite objective), or None.
    """

    values: dict
    loss: float
    signed: tuple
    violation: float
    error: str | None


@dataclasses.dataclass(frozen=True)
class Objectives:
    """The run's objectives (in order), their directions, and the bounds on outcomes."""

    names: tuple[str, ...]
    directions: tuple[str, ...]
    bounds: tuple[tuple[str, str, float], ...] = ()

    @classmethod
    def parse(cls, objectives: Any) -> Objectives:
        """Checks `jn.run`'s `objectives` argument (a mapping, or a sequence of
        `(name, direction or bound)` pairs, which may then name one twice)."""
        if objectives is None:
            objectives = DEFAULT
        if isinstance(objectives, Mapping):
            pairs = list(objectives.items())
        elif isinstance(objectives, Sequence) and not isinstance(objectives, str) and all(
                isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2
                for p in objectives):
            pairs = [tuple(p) for p in objectives]
        else:
            raise TypeError(f"jn.run: objectives={objectives!r} must map each objective's "
                            f"name to 'minimize', 'maximize' or a bound such as ('<=', 5.0).")
        names, directions, bounds, seen = [], [], [], set()
        for name, rule in pairs:
            if not isinstance(name, str) or not name:
                raise TypeError(f"jn.run: objectives has the name {name!r}; names must be "
                                f"non-empty strings (the keys the evaluation returns).")
            if name in _RESERVED:
                raise ValueError(f"jn.run: objectives names {name!r}, which the run reads "
                                 f"as the trial's cost; give the objective another name.")
            if name in seen:
                raise ValueError(f"jn.run: objectives names {name!r} twice; each objective "
                                 f"or bound appears once.")
            seen.add(name)
            if isinstance(rule, str):
                if rule not in _DIRECTIONS:
                    raise ValueError(f"jn.run: objectives[{name!r}]={rule!r} is not a "
                                     f"direction; use 'minimize' or 'maximize'.")
                names.append(name)
                directions.append(rule)
            else:
                bounds.append(_bound(name, rule))
        if not names:
            raise ValueError(f"jn.run: objectives={objectives!r} has no objective to "
                             f"optimise, only bounds; add one, e.g. {{'loss': 'minimize'}}.")
        return cls(tuple(names), tuple(directions), tuple(bounds))

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    @property
    def metrics(self) -> tuple[str, ...]:
        """The names an evaluation must return: the objectives, then bounded metrics."""
        return self.names + tuple(b[0] for b in self.bounds if b[0] not in self.names)

    def describe(self) -> dict:
        """A JSON-able description (part of the run's identity)."""
        return {**dict(zip(self.names, self.directions)),
                **{name: [op, value] for name, op, value in self.bounds}}

    def signs(self) -> np.ndarray:
        """`(k,)` +1 for a minimised objective, -1 for a maximised one."""
        return np.asarray([1.0 if d == MINIMIZE else -1.0 for d in self.directions])

    def outcome(self, out: Any) -> Outcome:
        """Reads one trial's evaluation: a mapping by name, a number (one objective and
        no bound) or a sequence of one value per metric (`metrics` order)."""
        metrics = self.metrics
        values, error = {}, None
        if isinstance(out, Mapping):
            missing = [m for m in metrics if m not in out]
            if missing:
                error = (f"the evaluation returned no {', '.join(map(repr, missing))} "
                         f"(objectives {list(metrics)}; it returned "
                         f"{sorted(map(str, out))})")
            values = {m: _number(out[m]) for m in metrics if m in out}
        else:
            flat = np.asarray(out, np.float64).reshape(-1)
            if flat.size != len(metrics):
                error = (f"the evaluation returned {flat.size} value(s) but the objectives "
                         f"{list(metrics)} need {len(metrics)}; return a dict by name")
            else:
                values = dict(zip(metrics, map(float, flat)))
        if error is None:
            bad = [m for m in metrics if not math.isfinite(values[m])]
            if bad:
                error = f"non-finite {', '.join(bad)}"
        if error is not None:
            return Outcome(values, math.nan, (math.nan,) * len(self.names), math.inf, error)
        signed = tuple(float(s * values[n]) for s, n in zip(self.signs(), self.names))
        violation = sum(_violation(values[name], op, bound) for name, op, bound in self.bounds)
        loss = signed[0] if not self.several else math.nan
        return Outcome(values, loss, signed, float(violation), None)


def _bound(name: str, rule: Any) -> tuple[str, str, float]:
    if (isinstance(rule, Sequence) and len(rule) == 2 and rule[0] in _BOUNDS
            and isinstance(rule[1], numbers.Real) and not isinstance(rule[1], bool)
            and math.isfinite(rule[1])):
        return name, rule[0], float(rule[1])
    raise ValueError(f"jn.run: objectives[{name!r}]={rule!r} is neither a direction "
                     f"('minimize', 'maximize') nor a bound ('<=' or '>=', a finite number), "
                     f"e.g. ('<=', 5.0).")


def _number(value: Any) -> float:
    try:
        return float(np.asarray(value, np.float64).reshape(()))
    except (TypeError, ValueError):
        return math.nan


def _violation(value: float, op: str, bound: float) -> float:
    return max(0.0, value - bound) if op == "<=" else max(0.0, bound - value)
