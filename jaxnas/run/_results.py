"""Reading a run back from its folder: `jn.load_results`, `jn.load_config`, `jn.load_space`
and `jn.export_csv`.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path
from typing import Any

from jaxnas.run._records import COLUMNS
from jaxnas.run._storage import RunStore


def load_results(root: str | Path, *, as_frame: bool = False,
                 storage: str | None = None) -> Any:
    """The trials of a run, in trial-id order (`jn.load_results`).

    Each trial is a dict: `trial_id`, `parent_id` (the lower-rung trial it continued from,
    or -1), `step` (the ask that proposed it), `config` (its values by decision path),
    `fidelity`, `status` (`"pending"`, `"running"`, `"success"` or `"failed"`), `loss` (what
    the optimiser minimised: the objective, negated where maximised; NaN unless successful
    and with several objectives), `cost`, `extra` (the other metrics and curves it
    reported), `seconds`, `created` and `finished` (Unix times), `worker`, `error`,
    `traceback`, `state_ref`, `objectives` (each objective's and bounded metric's value
    as returned, by name) and `feasible` (whether the bounds held; None without bounds).

    Args:
        root: The run folder.
        as_frame: Return a `pandas.DataFrame` (pandas must be installed) with the config
            values as `config.<path>` columns and the objectives as `objective.<name>`.
        storage: the run's database where it is on a server and the folder's record of it
            (`ROOT/storage.json`, without a password) is not enough: a
            `postgresql://user:password@host/db` URL (default: `JAXNAS_STORAGE`, else the
            recorded URL with libpq's `PGPASSWORD` or `~/.pgpass`).

    Raises:
        FileNotFoundError: no run in `root`.
    """
    with RunStore(root, create=False, storage=storage) as store:
        trials = [t.as_dict() for t in store.all_trials()]
    if not as_frame:
        return trials
    try:
        import pandas as pd  # noqa: PLC0415 - optional
    except ImportError as error:
        raise ImportError("load_results(as_frame=True) needs pandas: pip install pandas") \
            from error
    flat = [{**{k: v for k, v in t.items() if k not in ("config", "extra", "objectives")},
             **{f"config.{p}": v for p, v in t["config"].items()},
             **{f"objective.{n}": v for n, v in t["objectives"].items()}} for t in trials]
    return pd.DataFrame(flat)


def load_config(root: str | Path, trial_id: int, *, storage: str | None = None) -> Any:
    """The resolved config of one trial, as the evaluate function saw it (`jn.load_config`).

    The space is read back from the run folder (`load_space`), so its operations are
    built again from their stored definitions. `storage`: as for `load_results`.

    Raises:
        KeyError: no trial `trial_id` in the run.
    """
    with RunStore(root, create=False, storage=storage) as store:
        found = store.trials_by_id([int(trial_id)])
    if not found:
        raise KeyError(f"trial_id={trial_id!r}: no such trial in {str(root)!r}.")
    trial = found[int(trial_id)]
    return load_space(root, storage=storage).resolve(trial.config, trial.fidelity)


def load_space(root: str | Path, *, storage: str | None = None) -> Any:
    """The compiled search space a run was started with (`jn.load_space`).

    It is unpickled: read only runs you trust, as you would import their code.
    `storage`: as for `load_results`.

    Raises:
        ValueError: the space could not be stored (it holds something pickle cannot
            write, such as a lambda); the message says what.
    """
    with RunStore(root, create=False, storage=storage) as store:
        blob = store.get_meta("space")
        why = store.get_meta("space_unpicklable")
    if blob is None:
        raise ValueError(f"the run in {str(root)!r} could not store its space ({why}); "
                         f"define the space's operations as importable functions or "
                         f"classes (not lambdas) to read it back.")
    return pickle.loads(blob)  # noqa: S301 - the run's own file


def export_csv(root: str | Path, path: str | Path, *, storage: str | None = None) -> Path:
    """Writes the trials of a run as CSV (config values as `config.<path>` columns, the
    objectives as `objective.<name>`; `storage`: as for `load_results`)."""
    trials = load_results(root, storage=storage)
    paths = sorted({p for t in trials for p in t["config"]})
    names = list(dict.fromkeys(n for t in trials for n in t["objectives"]))
    columns = [c for c in COLUMNS if c not in ("config", "extra", "objectives")]
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns + [f"config.{p}" for p in paths]
                        + [f"objective.{n}" for n in names] + ["extra"])
        for t in trials:
            writer.writerow([t[c] for c in columns] + [t["config"].get(p) for p in paths]
                            + [t["objectives"].get(n) for n in names]
                            + [json.dumps(t["extra"])])
    return path
