"""What `python -m jaxnas status` and `plot` show of a run, and `RunResult.summary()`.

`summarise` is the one text report of a run: trials by status, what the budgets count as
spent (the store's `totals()`), workers, the best trials at the highest fidelity (the
run's incumbent first) and the failures. A best trial is shown as the space resolves it:
each entry by its name, only the decisions the configuration uses, architectures as calls
(`model=Sequential(Dense(123), relu, Dense(10))`); by its decision paths where the run
could not store its space.
"""

from __future__ import annotations

import collections
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxnas.nn import Built
from jaxnas.run._objectives import Objectives
from jaxnas.run._records import FAILED, INCUMBENT, TrialRecord, best_trial, pareto_trials
from jaxnas.run._results import load_space
from jaxnas.run._storage import RunStore
from jaxnas.space import Operation, SearchSpace


def summarise(root: str | Path, top: int = 5, *, storage: str | None = None) -> str:
    """A run's progress, best trials and failures, as text (`python -m jaxnas status`).

    Args:
        root: The run folder.
        top: How many best trials and kinds of failure to list.
        storage: the run's database URL, as for `jn.load_results`.

    Raises:
        FileNotFoundError: no run in `root`.
    """
    with RunStore(root, create=False, storage=storage) as store:
        trials, totals = store.all_trials(), store.totals()
        description = json.loads(store.get_meta("run") or "{}")
        waiting = store.waiting_imports()
        beating = store.workers()
    counts = collections.Counter(t.status for t in trials)
    workers = {t.worker for t in trials if t.worker}
    running = {t.worker for t in trials if t.status == "running"}
    lines = [f"run {root}: {len(trials)} trials ("
             + ", ".join(f"{counts[s]} {s}" for s in ("success", "failed", "infeasible", "running",
                                                     "pending")
                         if counts[s]) + ")",
             f"fidelity spent {totals['fidelity']:g}, cost {totals['cost']:g}; "
             f"{len(workers)} worker(s) so far, {len(running)} running now"]
    lines += _worker_lines(beating)
    if description.get("optimizer"):
        lines.append(f"optimizer {description['optimizer']}, seed {description.get('seed')}")
    if waiting:
        levels = sorted({w["fidelity"] for w in waiting}, key=lambda f: f or 0.0)
        lines.append(f"{len(waiting)} imported trial(s) waiting for a new sample at their "
                     f"fidelity ({', '.join(_short(f) for f in levels)})")
    finished = [t.finished for t in trials if t.finished]
    if finished:
        lines.append(f"last trial finished {time.ctime(max(finished))}")
    objectives = Objectives.parse(description.get("objectives"))
    best = (_front_lines(trials, top, objectives) if objectives.several
            else _best_lines(trials, top, _stored_space(root, storage)))
    return "\n".join(lines + best + _failure_lines(trials, top))


def _worker_lines(workers: list[dict]) -> list[str]:
    """How many workers beat, stopped, or fell silent past their heartbeat timeout (each
    of those named, with how long it has been silent)."""
    if not workers:
        return []
    stopped = [w for w in workers if w["stopped"] is not None]
    silent = [w for w in workers if w["stopped"] is None and w["silent"] > w["timeout"]]
    alive = len(workers) - len(stopped) - len(silent)
    line = f"workers: {alive} alive, {len(stopped)} stopped, {len(silent)} silent"
    return [line] + [f"  {w['name']} silent for {w['silent']:.0f} s (timeout "
                     f"{w['timeout']:g} s): its trials go to other workers" for w in silent]


def _front_lines(trials: list[TrialRecord], top: int, objectives: Objectives) -> list[str]:
    """The Pareto front at the highest fidelity (its first `top` trials by the first
    objective)."""
    front = pareto_trials(trials, objectives.names, objectives.signs())
    if not front:
        return []
    first, sign = objectives.names[0], objectives.signs()[0]
    shown = sorted(front, key=lambda t: sign * t.objectives[first])[:top]
    lines = [f"\nPareto front at the highest fidelity: {len(front)} trials ("
             + ", ".join(f"{n} {d}" for n, d in zip(objectives.names, objectives.directions))
             + f"), the first {len(shown)} by {first}:"]
    for t in shown:
        values = ", ".join(f"{n}={_short(t.objectives[n])}" for n in objectives.names)
        lines.append(f"  trial {t.trial_id:>5}  {values}")
    return lines


def _stored_space(root: str | Path, storage: str | None = None) -> SearchSpace | None:
    """The run's space (`jn.load_space`), or None where it was not stored or cannot be
    read here (say, an operator from a module this process cannot import)."""
    try:
        return load_space(root, storage=storage)
    except Exception:  # noqa: BLE001 - the report falls back to decision paths
        return None


def _entries(spec: SearchSpace | None, trial: TrialRecord) -> str:
    """`trial`'s configuration as the space resolves it (`name=value`, architectures as
    calls, the fidelity left out), or its decision paths without a space."""
    if spec is not None:
        try:
            resolved = spec.resolve(spec.config(trial.config), trial.fidelity, build=False)
        except Exception:  # noqa: BLE001 - a space this process resolves differently
            resolved = None
        if resolved is not None:
            fidelity = spec.fidelity.path if spec.fidelity is not None else None
            return ", ".join(f"{name}={_text(value)}" for name, value in _named(resolved)
                             if name != fidelity)
    return ", ".join(f"{k}={_short(v)}" for k, v in trial.config.items())


def _named(resolved: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A resolved space's entries by name, nested dicts as `outer.inner`."""
    if isinstance(resolved, Mapping):
        return [pair for key, value in resolved.items()
                for pair in _named(value, f"{prefix}{key}.")]
    if prefix:
        return [(prefix[:-1], resolved)]
    if isinstance(resolved, (list, tuple)):  # a space that is a sequence
        return [(f"[{i}]", value) for i, value in enumerate(resolved)]
    return [("value", resolved)]


def _text(value: Any) -> str:
    """One line: an operation, or a model built from one (a `Dynamic` of `jn.nn.build`), as
    a call; sequences of them element by element."""
    if isinstance(value, Built):
        value = value.operation
    if isinstance(value, Operation):
        return str(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_text(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' * (len(value) == 1)})"
    return " ".join(_short(value).split())


def _best_lines(trials: list[TrialRecord], top: int,
                spec: SearchSpace | None = None) -> list[str]:
    incumbent = best_trial(trials, INCUMBENT)
    if incumbent is None:
        return []
    level = incumbent.fidelity or 0.0
    best = sorted((t for t in trials if t.succeeded and (t.fidelity or 0.0) == level),
                  key=lambda t: t.loss)[:top]
    lines = [f"\nbest trials at the highest fidelity ({level:g}), the incumbent first:"]
    for t in best:
        values = _entries(spec, t)
        named = "".join(f"{k} {_short(v)}  " for k, v in t.objectives.items() if k != "loss")
        lines.append(f"  trial {t.trial_id:>5}  loss {t.loss:.6g}  {named}{values}")
    return lines


def _failure_lines(trials: list[TrialRecord], top: int) -> list[str]:
    failures = [t for t in trials if t.status == FAILED]
    if not failures:
        return []
    errors = collections.Counter(t.error or "?" for t in failures)
    lines = [f"\nfailures ({len(failures)}):"]
    lines += [f"  {n} x {error}" for error, n in errors.most_common(top)]
    lines.append(f"  (the last one: trial {failures[-1].trial_id}; its traceback is in "
                 f"jn.load_results(root)[i]['traceback'])")
    return lines


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def plot(root: str | Path, out: str | Path, *, storage: str | None = None) -> Path:
    """Saves every successful trial's loss against the budget spent when it finished, its
    colour its fidelity (with a colour bar), and the best loss so far (any fidelity), as a
    PNG (the `[plot]` extra). The budget is the fidelity spent, as `max_fidelity_spent`
    counts it (a continued trial adds only what it trained on); without a fidelity, the
    trials finished. `storage`: as for `summarise`."""
    import matplotlib  # noqa: PLC0415 - the [plot] extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with RunStore(root, create=False, storage=storage) as store:
        trials = sorted((t for t in store.all_trials() if t.finished),
                        key=lambda t: t.finished)
    spent, x, label = _budget_axis(trials)
    shown = [(position, t) for position, t in zip(x, trials) if t.succeeded]
    positions, losses = [p for p, _ in shown], [t.loss for _, t in shown]
    best = [min(losses[: i + 1]) for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if spent:
        points = ax.scatter(positions, losses, c=[t.fidelity for _, t in shown], s=10,
                            cmap="viridis", label="trial loss")
        fig.colorbar(points, ax=ax, label="fidelity")
    else:
        ax.scatter(positions, losses, s=10, label="trial loss")
    ax.step(positions, best, where="post", color="black",
            label="best loss so far (any fidelity)")
    ax.set_xlabel(label)
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def _budget_axis(trials: list[TrialRecord]) -> tuple[bool, list[float], str]:
    """For finished trials in finishing order: whether the run has a fidelity, each
    trial's position on the x axis (the fidelity spent once it finished, or its count),
    and the axis label."""
    if not any(t.fidelity is not None for t in trials):
        return False, [float(i + 1) for i in range(len(trials))], "finished trials"
    fidelity = {t.trial_id: t.fidelity or 0.0 for t in trials}
    total, x = 0.0, []
    for t in trials:
        total += (t.fidelity or 0.0) - fidelity.get(t.parent_id, 0.0) * (t.parent_id >= 0)
        x.append(total)
    return True, x, "fidelity spent (budget)"
