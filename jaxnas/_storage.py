"""The run folder's database: trials, the optimiser's event log and the run's metadata.

One SQLite file, `ROOT/trials.sqlite` (Python's standard `sqlite3`), in WAL mode so that
readers (`jn.load_results`, `python -m jaxnas status`) never block the workers, with every
change in a transaction. Three tables:

* `trials`: one row per trial, written `running` when it is asked (claimed by the worker
  that asked it) and updated to `success` or `failed` when it finishes; `pending` is a
  trial whose worker died, waiting to be claimed again.
* `events`: the optimiser's history, in order: `ask` (step, the trial ids it started) and
  `tell` (step, once every trial of that ask has finished). The optimiser is a pure
  function of its seed and this log, so any process can rebuild its state by replaying it
  (`jaxnas._run`); Orbax checkpoints only shorten the replay.
* `meta`: the schema version, the space (pickled, and described slot by slot), the
  optimiser and its arguments, the seed and the package versions.

The schema version is SQLite's `user_version`; a database from a newer jaxnas is refused.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import pickle
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DATABASE = "trials.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "success", "failed")
FINISHED = ("success", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    parent_id INTEGER NOT NULL,
    config TEXT NOT NULL,
    fidelity REAL,
    status TEXT NOT NULL,
    loss REAL,
    cost REAL,
    extra TEXT,
    seconds REAL,
    created REAL,
    finished REAL,
    worker TEXT,
    error TEXT,
    traceback TEXT,
    state_ref TEXT
);
CREATE INDEX IF NOT EXISTS trials_by_status ON trials (status, step);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    trial_ids TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_step ON events (step, kind);
"""

_COLUMNS = ("trial_id", "step", "parent_id", "config", "fidelity", "status", "loss", "cost",
            "extra", "seconds", "created", "finished", "worker", "error", "traceback",
            "state_ref")


class StorageError(RuntimeError):
    """A run folder that cannot be used: missing, read-only, or from a newer jaxnas."""


class RunStore:
    """A connection to one run folder's database (one per process).

    Args:
        root: The run folder.
        create: Create the folder and the database if missing (a worker); otherwise the
            database must exist (a reader).
    """

    def __init__(self, root: str | Path, *, create: bool):
        self.root = Path(root)
        self.path = self.root / DATABASE
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(f"root_directory={str(self.root)!r} cannot be created: "
                                   f"{error}") from error
            if not os.access(self.root, os.W_OK):
                raise StorageError(f"root_directory={str(self.root)!r} is read-only: a run "
                                   f"needs to write its trials there.")
        elif not self.path.exists():
            raise FileNotFoundError(f"no jaxnas run in {str(self.root)!r}: {DATABASE} is "
                                    f"missing.")
        # isolation_level=None: transactions are explicit (`transaction`); timeout: how long
        # a worker waits for another's write lock.
        try:
            self.db = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise StorageError(f"{self.path} cannot be opened as a jaxnas run database: "
                               f"{error}") from error
        if version > SCHEMA_VERSION:
            self.db.close()
            raise StorageError(f"{self.path} has schema version {version}, newer than this "
                               f"jaxnas reads ({SCHEMA_VERSION}); upgrade jaxnas to open it.")
        if create:
            try:
                self._create()
            except sqlite3.OperationalError as error:
                self.db.close()
                raise StorageError(f"root_directory={str(self.root)!r} cannot hold a run: "
                                   f"{error}") from error

    def _create(self) -> None:
        """WAL mode, durable commits and the tables (idempotent)."""
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed trial survives a crash of the machine, not only the process.
        self.db.execute("PRAGMA synchronous=FULL")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database's write lock from its start.

        `BEGIN IMMEDIATE` takes the lock at once, so a worker that reads the event log
        and then appends to it does so with no other worker in between.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ metadata

    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, items: dict[str, Any]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(items.items()))

    # -------------------------------------------------------------------- trials

    def add_trials(self, rows: Sequence[dict], *, worker: str) -> None:
        """Inserts asked trials as `running`, claimed by `worker` (inside a transaction)."""
        now = time.time()
        self.db.executemany(
            "INSERT INTO trials (trial_id, step, parent_id, config, fidelity, status, "
            "created, worker) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
            [(r["trial_id"], r["step"], r["parent_id"], json.dumps(r["config"]),
              r["fidelity"], now, worker) for r in rows])

    def finish_trials(self, rows: Sequence[dict]) -> None:
        """Records finished trials (one transaction for all of them)."""
        now = time.time()
        with self.transaction():
            self.db.executemany(
                "UPDATE trials SET status = ?, loss = ?, cost = ?, extra = ?, seconds = ?, "
                "finished = ?, error = ?, traceback = ?, state_ref = ? WHERE trial_id = ?",
                [(r["status"], _finite_or_none(r["loss"]), r["cost"],
                  json.dumps(r.get("extra") or {}), r["seconds"], now, r.get("error"),
                  r.get("traceback"), r.get("state_ref"), r["trial_id"]) for r in rows])

    def release_dead(self, alive: Any) -> int:
        """Sets `running` trials whose worker is not alive back to `pending` (in a
        transaction); `alive(worker) -> bool`. Returns how many."""
        running = self.db.execute(
            "SELECT DISTINCT worker FROM trials WHERE status = 'running'").fetchall()
        dead = [w for (w,) in running if not alive(w)]
        for worker in dead:
            self.db.execute("UPDATE trials SET status = 'pending', worker = NULL "
                            "WHERE status = 'running' AND worker = ?", (worker,))
        return len(dead)

    def claim_pending(self, worker: str) -> list[dict]:
        """Claims the pending trials of the oldest step that has any (in a transaction)."""
        row = self.db.execute(
            "SELECT MIN(step) FROM trials WHERE status = 'pending'").fetchone()
        if row[0] is None:
            return []
        self.db.execute("UPDATE trials SET status = 'running', worker = ? "
                        "WHERE status = 'pending' AND step = ?", (worker, row[0]))
        return self.trials("WHERE step = ? AND worker = ? AND status = 'running' "
                           "ORDER BY trial_id", (row[0], worker))

    def trials(self, where: str = "", args: tuple = ()) -> list[dict]:
        rows = self.db.execute(f"SELECT * FROM trials {where}", args).fetchall()
        return [_trial(row) for row in rows]

    def totals(self) -> dict:
        """Trials counted, summed cost and fidelity added, over every trial in the table."""
        count, cost = self.db.execute(
            "SELECT COUNT(*), TOTAL(COALESCE(cost, fidelity, 0)) FROM trials "
            "WHERE status IN ('success', 'failed')").fetchone()
        everything = self.db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        added = self.db.execute(
            "SELECT TOTAL(COALESCE(t.fidelity, 0) - COALESCE(p.fidelity, 0)) FROM trials t "
            "LEFT JOIN trials p ON p.trial_id = t.parent_id "
            "WHERE t.status IN ('success', 'failed')").fetchone()[0]
        return {"evaluations": everything, "finished": count, "cost": cost, "fidelity": added}

    # -------------------------------------------------------------------- events

    def append_event(self, kind: str, step: int, trial_ids: Sequence[int]) -> int:
        cursor = self.db.execute("INSERT INTO events (kind, step, trial_ids) VALUES (?, ?, ?)",
                                 (kind, step, json.dumps(list(map(int, trial_ids)))))
        return int(cursor.lastrowid)

    def events(self, after: int) -> list[tuple[int, str, int, list[int]]]:
        rows = self.db.execute("SELECT seq, kind, step, trial_ids FROM events WHERE seq > ? "
                               "ORDER BY seq", (after,)).fetchall()
        return [(seq, kind, step, json.loads(ids)) for seq, kind, step, ids in rows]

    def asked_ids(self, step: int) -> list[int]:
        """The trial ids of step `step`'s ask, in the order it recorded them."""
        row = self.db.execute("SELECT trial_ids FROM events WHERE kind = 'ask' AND step = ?",
                              (step,)).fetchone()
        if row is None:
            raise RuntimeError(f"no ask event for step {step} in {str(self.root)!r}")
        return json.loads(row[0])

    def last_step(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(step), 0) FROM events "
                                   "WHERE kind = 'ask'").fetchone()[0])

    def untold_finished_steps(self) -> list[int]:
        """Asked steps whose trials have all finished but that have no `tell` event."""
        rows = self.db.execute(
            "SELECT e.step FROM events e WHERE e.kind = 'ask' AND NOT EXISTS "
            "(SELECT 1 FROM events t WHERE t.kind = 'tell' AND t.step = e.step) AND NOT EXISTS "
            "(SELECT 1 FROM trials x WHERE x.step = e.step AND x.status NOT IN "
            "('success', 'failed')) ORDER BY e.step").fetchall()
        return [step for (step,) in rows]


# ---------------------------------------------------------------- reading a run


def load_results(root: str | Path, *, as_frame: bool = False) -> Any:
    """The trials of a run, in trial-id order (`jn.load_results`).

    Each trial is a dict: `trial_id`, `parent_id` (the lower-rung trial it continued from,
    or -1), `step` (the ask that proposed it), `config` (its values by decision path),
    `fidelity`, `status` (`"pending"`, `"running"`, `"success"` or `"failed"`), `loss` (NaN
    unless successful), `cost`, `extra` (the other metrics and curves it reported),
    `seconds`, `created` and `finished` (Unix times), `worker`, `error` and `traceback`.

    Args:
        root: The run folder.
        as_frame: Return a `pandas.DataFrame` (pandas must be installed) with the config
            values as `config.<path>` columns.

    Raises:
        FileNotFoundError: no run in `root`.
    """
    store = RunStore(root, create=False)
    try:
        trials = store.trials("ORDER BY trial_id")
    finally:
        store.close()
    if not as_frame:
        return trials
    try:
        import pandas as pd  # noqa: PLC0415 - optional
    except ImportError as error:
        raise ImportError("load_results(as_frame=True) needs pandas: pip install pandas") \
            from error
    flat = [{**{k: v for k, v in t.items() if k not in ("config", "extra")},
             **{f"config.{p}": v for p, v in t["config"].items()}} for t in trials]
    return pd.DataFrame(flat)


def load_config(root: str | Path, trial_id: int) -> Any:
    """The resolved config of one trial, as the evaluate function saw it (`jn.load_config`).

    The space is read back from the run folder (`load_space`), so its operations are
    built again from their stored definitions.

    Raises:
        KeyError: no trial `trial_id` in the run.
    """
    store = RunStore(root, create=False)
    try:
        rows = store.trials("WHERE trial_id = ?", (int(trial_id),))
    finally:
        store.close()
    if not rows:
        raise KeyError(f"trial_id={trial_id!r}: no such trial in {str(root)!r}.")
    spec = load_space(root)
    return spec.resolve(rows[0]["config"], rows[0]["fidelity"])


def load_space(root: str | Path) -> Any:
    """The compiled search space a run was started with (`jn.load_space`).

    Raises:
        ValueError: the space could not be stored (it holds something pickle cannot
            write, such as a lambda); the message says what.
    """
    store = RunStore(root, create=False)
    try:
        blob = store.get_meta("space")
        why = store.get_meta("space_unpicklable")
    finally:
        store.close()
    if blob is None:
        raise ValueError(f"the run in {str(root)!r} could not store its space ({why}); "
                         f"define the space's operations as importable functions or "
                         f"classes (not lambdas) to read it back.")
    return pickle.loads(blob)  # noqa: S301 - the run's own file


def export_csv(root: str | Path, path: str | Path) -> Path:
    """Writes the trials of a run as CSV (config values as `config.<path>` columns)."""
    trials = load_results(root)
    paths = sorted({p for t in trials for p in t["config"]})
    columns = [c for c in _COLUMNS if c not in ("config", "extra")]
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns + [f"config.{p}" for p in paths] + ["extra"])
        for t in trials:
            writer.writerow([t[c] for c in columns] + [t["config"].get(p) for p in paths]
                            + [json.dumps(t["extra"])])
    return path


def _trial(row: tuple) -> dict:
    trial = dict(zip(_COLUMNS, row))
    trial["config"] = json.loads(trial["config"])
    trial["extra"] = json.loads(trial["extra"] or "{}")
    trial["loss"] = math.nan if trial["loss"] is None else trial["loss"]
    return trial


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
