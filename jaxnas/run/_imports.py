"""`jn.import_trials(root, rows)`: finished trials from elsewhere, learnt from by a run.

The rows are checked against the run's space and objectives, then queued in the run
folder (`imports`, `_storage.py`). The next asks place them: a new sample at an import's
fidelity takes the imported configuration and is finished at once with the imported result
(`_worker.py`), so that the optimiser is told it like any trial of its own (TPE and BO model
it, PriorBand may promote it) while the budgets count only what the run itself evaluates.

Rows come as
* another run folder (a path to it): its successful trials (`jn.load_results`);
* a CSV file (`python -m jaxnas csv`'s, or Optuna's `trials_dataframe().to_csv()`);
* a pandas DataFrame (`jn.load_results(root, as_frame=True)`, Optuna's
  `study.trials_dataframe()`);
* a list of dicts: `jn.load_results`' trials, or flat rows.

A flat row names its decisions as `config.<path>` (stored values: a choice by index),
`params_<path>` (Optuna's: a choice by value) or `<path>` (a choice by value); its result as
the objectives' names (`objective.<name>` too), `loss`, or Optuna's `value` / `values_<i>`
(the run's objectives in order); its `fidelity` (none: the space's highest) and `status` /
`state` (only successful / COMPLETE rows are imported). Optuna's and jaxnas' other columns
are ignored; any other column is an error.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxnas.run._objectives import Objectives
from jaxnas.run._records import COLUMNS
from jaxnas.run._results import load_results, load_space
from jaxnas.run._storage import RunStore, run_exists
from jaxnas.run._warm_start import _stored
from jaxnas.space import Categorical, Float, Integer, SearchSpace

# Columns of jaxnas' and Optuna's tables that say nothing an import needs.
_IGNORED = set(COLUMNS) - {"config", "fidelity", "status", "objectives"} | {
    "number", "datetime_start", "datetime_complete", "duration", "extra"}
_IGNORED_PREFIXES = ("user_attrs_", "system_attrs_")
_DONE = {"success", "COMPLETE", "TrialState.COMPLETE"}


def import_trials(root: str | Path, rows: Any, *, storage: str | None = None) -> int:
    """Adds finished trials from elsewhere to the run in `root` (`jn.import_trials`).

    The run must exist (`jn.run` started it; its next `jn.run` gives the optimiser room for
    the imports beside its own evaluations, see `claim_folder`); its next asks place them
    (see the module docstring), and `jn.run` on the folder then learns from them. An
    import waits for a new sample at its fidelity: single-fidelity optimisers start every
    configuration at the highest, Hyperband and PriorBand start brackets at every rung, but
    successive halving and ASHA start only at their lowest rung, so they take only imports
    at that fidelity (`python -m jaxnas status` counts the ones still waiting).

    Args:
        root: The run folder.
        rows: another run folder, a CSV file, a pandas DataFrame, or a list of dicts.
        storage: the run's database URL, as for `jn.load_results`.

    Returns:
        How many trials were queued (successful rows; others are skipped).

    Raises:
        FileNotFoundError: no run in `root`, or no such file or folder to import.
        ValueError: a column that is neither a decision, a result nor a known column; a
            value outside its decision's range or choices; a missing or non-finite
            objective; a fidelity outside the space's. Nothing is written then.
    """
    root = Path(root)
    with RunStore(root, create=False, storage=storage) as store:
        description = store.get_meta("run")
    spec = load_space(root, storage=storage)
    objectives = Objectives.parse(json.loads(description or "{}").get("objectives"))
    records = _records(rows)
    checked = []
    for i, record in enumerate(records):
        row = _checked(f"jn.import_trials: row {i}", record, spec, objectives)
        if row is not None:
            checked.append(row)
    # No room is needed now: the run's next `jn.run` sizes its optimiser for its own
    # evaluations plus every import, growing the state if it must (`claim_folder`).
    with RunStore(root, create=True, storage=storage) as store:  # an older run's `imports`
        store.add_imports(checked)
    return len(checked)


def _records(rows: Any) -> list[Mapping]:
    """The rows as mappings, whatever form they came in."""
    if isinstance(rows, (str, Path)):
        path = Path(rows)
        if path.is_dir():
            if not run_exists(path):
                raise FileNotFoundError(f"jn.import_trials: no jaxnas run in {str(path)!r} "
                                        f"to import from.")
            return load_results(path)
        if not path.is_file():
            raise FileNotFoundError(f"jn.import_trials: {str(path)!r} is neither a run "
                                    f"folder nor a CSV file.")
        with path.open(newline="") as file:
            return [{k: _parsed(v) for k, v in row.items()} for row in csv.DictReader(file)]
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        return rows.to_dict("records")
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"jn.import_trials: rows={type(rows).__name__} must be a run "
                        f"folder, a CSV file, a pandas DataFrame or a list of dicts.")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"jn.import_trials: row {i} is a {type(row).__name__}, not a "
                            f"dict.")
    return list(rows)


def _parsed(text: str) -> Any:
    """A CSV cell: a number where it reads as one, None where empty, else the text."""
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if re.fullmatch(r"[-+]?\d+", text.strip()) else number


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _checked(where: str, record: Mapping, spec: SearchSpace,
             objectives: Objectives) -> dict | None:
    """One row as `add_imports` stores it, or None for a row that did not succeed."""
    status = record.get("status", record.get("state", "success"))
    if str(status) not in _DONE:
        return None
    parameters = spec.parameters()
    fidelity_path = spec.fidelity.path if spec.fidelity is not None else None
    metrics = objectives.metrics
    config, results, fidelity, unknown = {}, {}, record.get("fidelity"), []
    if isinstance(record.get("config"), Mapping):  # jn.load_results' trials
        for path, value in record["config"].items():
            _decision(where, path, value, parameters, config, stored=True)
        found = record.get("objectives") or {}
        results = {m: found[m] for m in metrics if m in found}
        if not results and "loss" in metrics:
            results["loss"] = record.get("loss")
    else:
        for key, value in record.items():
            if key in ("status", "state", "fidelity"):
                continue
            name, stored = key, False
            if key.startswith("config."):
                name, stored = key[len("config."):], True
            elif key.startswith("params_"):
                name = key[len("params_"):]
            if name == fidelity_path:
                fidelity = value
            elif name in parameters:
                _decision(where, name, value, parameters, config, stored=stored)
            elif key.startswith("objective.") and key[len("objective."):] in metrics:
                results[key[len("objective."):]] = value
            elif key in metrics:
                results[key] = value
            elif key == "value" and len(metrics) == 1:  # an Optuna study's
                results[metrics[0]] = value
            elif (m := re.fullmatch(r"values_(\d+)", key)) and int(m.group(1)) < len(metrics):
                results[metrics[int(m.group(1))]] = value
            elif key in _IGNORED or key.startswith(_IGNORED_PREFIXES) or \
                    key.startswith("objective."):
                continue
            else:
                unknown.append(key)
    if unknown:
        known = ", ".join(list(parameters)[:8])
        raise ValueError(
            f"{where}: unknown column(s) {unknown}: a column is a decision of the space "
            f"({known}{', ...' if len(parameters) > 8 else ''}; also as config.<path> or "
            f"params_<path>), an objective ({', '.join(metrics)}; also objective.<name>, "
            f"loss, value, values_<i>), fidelity, status or state.")
    missing = [m for m in metrics if _missing(results.get(m))]
    if missing:
        raise ValueError(f"{where} has no {', '.join(map(repr, missing))} (the run's "
                         f"objectives: {', '.join(metrics)}).")
    for name, value in results.items():
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{where}: {name}={value!r} must be a finite number.")
    return {"config": config, "fidelity": _fidelity(where, spec, fidelity),
            "loss": objectives.outcome({k: float(v) for k, v in results.items()}).loss,
            "objectives": {k: float(v) for k, v in results.items()}, "extra": {}}


def _decision(where: str, path: str, value: Any, parameters: dict, config: dict, *,
              stored: bool) -> None:
    """Checks one decision's value and writes it into `config` as the space stores it."""
    if path not in parameters:
        known = ", ".join(list(parameters)[:8])
        raise ValueError(f"{where}: {path!r} is not a decision of the space (its decisions "
                         f"by path: {known}{', ...' if len(parameters) > 8 else ''}).")
    if _missing(value):
        return
    param, at = parameters[path], f"{where}: {path}={value!r}"
    if not stored:
        config[path] = _stored(at, param, value)
    elif isinstance(param, Categorical):
        if not isinstance(value, numbers.Integral) or not 0 <= value < len(param.choices):
            raise ValueError(f"{at} must be the index of one of its {len(param.choices)} "
                             f"choices (a stored config names a choice by index).")
        config[path] = int(value)
    else:
        if isinstance(param, (Float, Integer)) and isinstance(value, numbers.Real):
            # A stored value is float32: within its rounding of a bound, it is the bound.
            slack = 1e-6 * max(abs(param.lower), abs(param.upper), 1.0)
            if param.lower - slack <= value < param.lower:
                value = param.lower
            elif param.upper < value <= param.upper + slack:
                value = param.upper
        config[path] = _stored(at, param, value)


def _fidelity(where: str, spec: SearchSpace, value: Any) -> float | None:
    info = spec.fidelity
    if info is None:
        if not _missing(value):
            raise ValueError(f"{where}: fidelity={value!r}, but the run's space has none.")
        return None
    if _missing(value):
        return float(info.upper)  # trained fully (an Optuna study's trial)
    if not isinstance(value, numbers.Real) or not info.lower <= value <= info.upper:
        raise ValueError(f"{where}: fidelity={value!r} lies outside the space's "
                         f"[{info.lower!r}, {info.upper!r}].")
    return float(value)
