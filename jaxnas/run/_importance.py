"""Hyperparameter importance of a run's decisions (the report's section): fANOVA (Hutter,
Hoos and Leyton-Brown, ICML 2014) as Optuna implements it, on a random forest of
scikit-learn's, both from the `[plot]` extra.

fANOVA splits the variance of the loss, as a forest models it, into each decision's main
effect; an importance is a decision's share of the variance its main effects explain (they
sum to 1). It is computed on the successful trials of one fidelity: the highest that holds
at least `MIN_TRIALS` of them, since losses at different fidelities are not one function.
A decision the configuration does not use (a layer's width beyond its depth) is read as its
lower bound, so that the forest sees "unused" as one value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from jaxnas.run._records import TrialRecord
from jaxnas.space import Float, Integer, SearchSpace

MIN_TRIALS = 8  # fewer, and a forest of them says more about the sample than the space


@dataclasses.dataclass(frozen=True)
class Importance:
    """Each decision's share of the loss's variance at one fidelity.

    Attributes:
        fidelity: the fidelity of the trials used (None in a space without one).
        trials: how many successful trials it was computed on.
        shares: `{path: share}`, largest first; the shares sum to 1.
    """

    fidelity: float | None
    trials: int
    shares: dict


def importance(trials: Sequence[TrialRecord], space: SearchSpace | None,
               scores: dict[int, float], *, seed: int = 0) -> Importance | None:
    """fANOVA's importances of the decisions that vary, or None with too few trials.

    Args:
        trials: the run's trials; the successful ones with a score are used.
        space: the run's space (None where it could not be stored: every decision is then
            read as a number on the range it took).
        scores: trial id -> the value minimised.
        seed: the forest's seed.
    """
    import optuna  # noqa: PLC0415 - the [plot] extra
    from optuna.distributions import (  # noqa: PLC0415
        CategoricalDistribution, FloatDistribution, IntDistribution)

    by_level: dict[float | None, list[TrialRecord]] = {}
    for t in trials:
        if t.succeeded and math.isfinite(scores.get(t.trial_id, math.nan)):
            by_level.setdefault(t.fidelity, []).append(t)
    levels = [level for level, group in by_level.items() if len(group) >= MIN_TRIALS]
    if not levels:
        return None
    level = max(levels, key=lambda f: -math.inf if f is None else f)
    group = by_level[level]
    parameters = space.parameters() if space is not None else {}
    fidelity_path = space.fidelity.path if space is not None and space.fidelity else None
    active = _active(space, group)
    distributions, columns = {}, {}
    for path in sorted({p for t in group for p in t.config}):
        if path == fidelity_path:
            continue
        values = np.asarray([t.config.get(path, math.nan) for t in group], np.float64)
        param = parameters.get(path)
        if path in active:  # an unused decision takes one value, as SMAC's fANOVA does
            values = np.where(active[path], values, _unused_value(param, values))
        if not np.all(np.isfinite(values)) or np.ptp(values) == 0:
            continue  # constant here: it explains nothing
        if isinstance(param, Float):
            distributions[path] = FloatDistribution(param.lower, param.upper, log=param.log)
            values = np.clip(values, param.lower, param.upper)  # stored as float32
        elif isinstance(param, Integer):
            distributions[path] = IntDistribution(param.lower, param.upper, log=param.log)
        elif param is not None:  # a choice: its index
            n = len(param.choices)
            distributions[path] = CategoricalDistribution(tuple(range(n)))
            values = values.astype(int)
        else:
            distributions[path] = FloatDistribution(float(values.min()), float(values.max()))
        columns[path] = values
    if not distributions:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.add_trials([optuna.trial.create_trial(
        params={p: _python(columns[p][i], distributions[p]) for p in distributions},
        distributions=distributions, value=scores[t.trial_id]) for i, t in enumerate(group)])
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    shares = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return Importance(fidelity=level, trials=len(group), shares=dict(shares))


def _active(space: SearchSpace | None, group: Sequence[TrialRecord]) -> dict:
    """`{path: (n,) bool}`: which decisions each trial's configuration uses ({} without a
    space, or a stored config this space does not read)."""
    if space is None:
        return {}
    import jax  # noqa: PLC0415

    try:
        configs = space.config({p: np.asarray([t.config[p] for t in group])
                                for p in space.paths})
    except KeyError:
        return {}
    used = jax.jit(jax.vmap(space.active))(configs)
    return {p: np.asarray(used[p]) for p in space.paths}


def _unused_value(param, values: np.ndarray) -> float:
    lower = getattr(param, "lower", None)
    if lower is not None:
        return float(lower)
    return 0.0 if param is not None else float(np.min(values))


def _python(value: float, distribution) -> float | int:
    from optuna.distributions import FloatDistribution  # noqa: PLC0415

    return float(value) if isinstance(distribution, FloatDistribution) else int(value)
