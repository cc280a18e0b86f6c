"""A run's budgets: checking them at the start, telling which one is spent, and the
optimiser's capacity (`max_trials`) they imply.

What counts as spent (`evaluations`, `cost`, `fidelity`) is the store's `totals()`: one
rule, in SQL, shared by the loop, the progress line and `python -m jaxnas status`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

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


def default_max_trials(optimizer: Any, spec: SearchSpace, max_evaluations: int | None,
                       kwargs: Mapping | None) -> int:
    """`max_evaluations` plus one batch (an ask reserves a whole rung, even past the
    budget), else `DEFAULT_MAX_TRIALS`.

    The batch is read from the shape of an ask, traced. The optimiser traced is the one
    the run builds next if its batch is the `batch_size` option (1 if not given): the
    next `make_optimizer` for the same arguments returns it, and the run's first ask
    reuses this trace. A guess that misses costs what it would have saved.
    """
    _probed.last = None
    if max_evaluations is None:
        return DEFAULT_MAX_TRIALS
    given = (kwargs or {}).get("batch_size")
    guess = max_evaluations + (given if isinstance(given, int) and given > 0 else 1)
    try:
        opt, built_with = make_optimizer(optimizer, spec, guess, kwargs), guess
    except ValueError:  # a capacity below an optimiser's population (nsga2, evolution)
        built_with = max(max_evaluations, DEFAULT_MAX_TRIALS)
        opt = make_optimizer(optimizer, spec, built_with, kwargs)
    key = jax.random.key(0)
    proposals = jax.eval_shape(opt.ask, jax.eval_shape(opt.init, key), key)[1]
    _probed.last = ((optimizer, spec, built_with, kwargs), opt)
    return max_evaluations + int(proposals.trial_ids.shape[0])


_probed = threading.local()  # `last`: ((name, spec, max_trials, kwargs), the Optimizer)


def make_optimizer(optimizer: Any, spec: SearchSpace, max_trials: int,
                   kwargs: Mapping | None) -> _optimizers.Optimizer:
    """The run's optimiser: an `Optimizer` value as it is, or a name with `max_trials`
    (the one `default_max_trials` just traced, if built from the same arguments)."""
    probed, _probed.last = getattr(_probed, "last", None), None
    if isinstance(optimizer, _optimizers.Optimizer):
        if kwargs:
            raise ValueError("jn.run: optimizer_kwargs apply to a named optimizer only.")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"jn.run: optimizer={optimizer!r} must be a name or an Optimizer.")
    if probed is not None:
        (name, probed_spec, probed_max_trials, probed_kwargs), built = probed
        if (name == optimizer and probed_spec is spec and probed_max_trials == max_trials
                and probed_kwargs is kwargs):
            return built
    return _build(optimizer, spec, max_trials, kwargs)


def _build(optimizer: str, spec: SearchSpace, max_trials: int,
           kwargs: Mapping | None) -> _optimizers.Optimizer:
    kwargs = dict(kwargs or {})
    kwargs["max_trials"] = max_trials
    return _optimizers.get(optimizer, spec, **kwargs)
