"""Constraints on the architecture a configuration builds (`jn.constraints`), for
`jn.run(constraints=[...])`.

Each is checked on the built model's `jn.nn.summary` (parameter count, FLOPs) before
training: a configuration that breaks one is recorded `infeasible` with the measured value,
never trained, never counted in `max_evaluations` or cost, and told to the optimiser as a
failure. (A constraint on the configuration's values is a plain jittable predicate
`fn(config) -> bool`, given to `jn.run` as it is.)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class ArchitectureConstraint:
    """`measure(summary) <= limit` on the summary of a configuration's built model.

    Attributes:
        name: how results and errors name it (`max_params`, ...).
        measure: a key of `jn.nn.summary`'s dict (`"params"`, `"flops"`) or a function of
            that dict returning a number.
        limit: the largest feasible value.
    """

    name: str
    measure: str | Callable[[Mapping[str, Any]], float]
    limit: float

    def value(self, summary: Mapping[str, Any]) -> float:
        """The measured value of a model's summary."""
        if isinstance(self.measure, str):
            return float(summary[self.measure])
        return float(self.measure(summary))

    def violation(self, summary: Mapping[str, Any]) -> float:
        """How far the model is over the limit (0 when feasible)."""
        return max(0.0, self.value(summary) - self.limit)

    def describe(self) -> str:
        measure = self.measure if isinstance(self.measure, str) else getattr(
            self.measure, "__qualname__", repr(self.measure))
        return f"{self.name}: {measure} <= {self.limit:g}"


def _limit(owner: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"jn.constraints.{owner}({value!r}): the limit must be a positive, "
                         f"finite number.")
    return float(value)


def max_params(n: float) -> ArchitectureConstraint:
    """At most `n` parameters in the built model (`jn.nn.summary(...)["params"]`)."""
    return ArchitectureConstraint("max_params", "params", _limit("max_params", n))


def max_flops(n: float) -> ArchitectureConstraint:
    """At most `n` FLOPs in one forward pass of one example (XLA's cost analysis)."""
    return ArchitectureConstraint("max_flops", "flops", _limit("max_flops", n))


def architecture(measure: Callable[[Mapping[str, Any]], float], limit: float, *,
                 name: str | None = None) -> ArchitectureConstraint:
    """`measure(summary) <= limit` for any function of `jn.nn.summary`'s dict."""
    if not callable(measure):
        raise TypeError(f"jn.constraints.architecture: measure={measure!r} must be a "
                        f"function of the model's summary dict.")
    return ArchitectureConstraint(name or getattr(measure, "__name__", "architecture"),
                                  measure, _limit("architecture", limit))


__all__ = ["ArchitectureConstraint", "architecture", "max_flops", "max_params"]
