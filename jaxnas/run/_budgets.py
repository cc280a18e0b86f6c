"""A run's budgets: checking them at the start, telling which one is spent, and the
optimiser's capacity (`max_trials`) they imply.

What counts as spent (`evaluations`, `cost`, `fidelity`) is the store's `totals()`: one
rule, in SQL, shared by the loop, the progress line and `python -m jaxnas status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax

from jaxnas import optimizers as _optimizers
from jaxnas.space import SearchSpace

DEFAULT_MAX_TRIALS = 1024

# budget name -> the entry of `RunStore.totals()` (or "seconds") it limits
SPENT_BY_BUDGET = {"max_evaluations": "evaluations", "max_cost": "cost",
                   "max_fidelity_spent": "fidelity", "max_seconds": "seconds"}


def check_budgets(**budgets: Any) -> dict[str, float]:
    """The budgets given (not None), checked.

    Raises:
        ValueError: no budget, or one that is not a positive number (an integer for
            `max_evaluations`).
    """
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


def check_checkpoint_every(checkpoint_every: Any) -> None:
    """Raises ValueError unless `checkpoint_every` is an integer >= 1."""
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 1:
        raise ValueError(f"jn.run: checkpoint_every={checkpoint_every!r} must be an integer "
                         f">= 1.")


def spent(totals: Mapping[str, float], seconds: float) -> dict[str, float]:
    """What each budget has used: `totals` (the store's) and this process's seconds."""
    used = {**totals, "seconds": seconds}
    return {name: used[entry] for name, entry in SPENT_BY_BUDGET.items()}


def exhausted(budgets: Mapping[str, float], totals: Mapping[str, float],
              seconds: float) -> str:
    """The first budget that is spent, or ""."""
    used = spent(totals, seconds)
    for name in SPENT_BY_BUDGET:
        if name in budgets and used[name] >= budgets[name]:
            return name
    return ""


def fraction_spent(budgets: Mapping[str, float], totals: Mapping[str, float],
                   seconds: float) -> float:
    """How far the run is towards its end: the largest share of any budget used."""
    used = spent(totals, seconds)
    return max(used[name] / limit for name, limit in budgets.items())


class Probe(NamedTuple):
    """The optimiser `default_max_trials` traced, built with this space and capacity."""

    spec: SearchSpace
    max_trials: int
    optimizer: _optimizers.Optimizer


def default_max_trials(optimizer: Any, spec: SearchSpace, max_evaluations: int | None,
                       kwargs: Mapping | None) -> tuple[int, Probe | None]:
    """`max_evaluations` plus one batch (an ask reserves a whole rung, even past the
    budget), else `DEFAULT_MAX_TRIALS`; and the optimiser traced to learn the batch.

    The batch is read from the shape of an ask, traced. The optimiser traced is the one
    the run builds if its batch is the `batch_size` option (1 if not given): given to
    `make_optimizer` as `probe`, it is returned when the run's space and capacity are
    those it was built with, and the run's first ask reuses this trace. A guess that
    misses costs what it would have saved.
    """
    if max_evaluations is None:
        return DEFAULT_MAX_TRIALS, None
    given = (kwargs or {}).get("batch_size")
    guess = max_evaluations + (given if isinstance(given, int) and given > 0 else 1)
    try:
        opt, built_with = make_optimizer(optimizer, spec, guess, kwargs), guess
    except ValueError:  # a capacity below an optimiser's population (nsga2, evolution)
        built_with = max(max_evaluations, DEFAULT_MAX_TRIALS)
        opt = make_optimizer(optimizer, spec, built_with, kwargs)
    key = jax.random.key(0)
    proposals = jax.eval_shape(opt.ask, jax.eval_shape(opt.init, key), key)[1]
    return (max_evaluations + int(proposals.trial_ids.shape[0]),
            Probe(spec, built_with, opt))


def make_optimizer(optimizer: Any, spec: SearchSpace, max_trials: int,
                   kwargs: Mapping | None, probe: Probe | None = None) -> _optimizers.Optimizer:
    """The run's optimiser: an `Optimizer` value as it is, or a name with `max_trials`.

    `probe`: what `default_max_trials` returned for the same `optimizer` and `kwargs`; its
    optimiser is returned when built with this `spec` and `max_trials`."""
    if isinstance(optimizer, _optimizers.Optimizer):
        if kwargs:
            raise ValueError("jn.run: optimizer_kwargs apply to a named optimizer only.")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"jn.run: optimizer={optimizer!r} must be a name or an Optimizer.")
    if probe is not None and probe.spec is spec and probe.max_trials == max_trials:
        return probe.optimizer
    kwargs = dict(kwargs or {})
    kwargs["max_trials"] = max_trials
    return _optimizers.get(optimizer, spec, **kwargs)
