"""The run's database and the folder's file names: every SQL statement of jaxnas lives here.

By default one SQLite file, `ROOT/trials.sqlite` (Python's standard `sqlite3`), in WAL mode
so that readers (`jn.load_results`, `python -m jaxnas status`) never block the workers;
with `storage="postgresql://..."` a PostgreSQL database that workers on many machines
share (`ROOT/storage.json` then names it, without its password). The same SQL for both
(`_database.py` holds what differs), every change in a transaction. Five tables:

* `trials`: one row per trial, written `running` when it is asked (claimed by the worker
  that asked it) and updated to `success` or `failed` when it finishes; `pending` is a
  trial whose worker died, waiting to be claimed again.
* `events`: the optimiser's history, in order: `ask` (step, the trial ids it started) and
  `tell` (step, once every trial of that ask has finished). The optimiser is a pure
  function of its seed and this log, so any process can rebuild its state by replaying it
  (`_worker.py`); Orbax checkpoints (`ROOT/checkpoints`) only shorten the replay.
* `imports`: finished trials from elsewhere (`jn.import_trials`), each waiting until an
  ask's new sample at its fidelity takes its place (`trial_id` set then, in the same
  transaction as the ask), when it becomes a finished trial of the run.
* `workers`: every worker process that joined the run, with its heartbeat (the time it
  last said it is alive, written by a thread of its own every few seconds), the timeout
  after which its silence means it is gone, and when it stopped, if it did.
* `meta`: the schema version, the space (pickled, and described slot by slot), the
  optimiser and its arguments, the seed and the package versions.

Trained states of trials live in the run folder, `ROOT/states` (`_checkpoints.py`), which
every worker must reach. The schema version is SQLite's `user_version` (a `meta` row in
PostgreSQL); a database from a newer jaxnas is refused.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from jaxnas.run._database import DatabaseError, Postgres, SQLite, is_remote, is_url, redact
from jaxnas.run._records import COLUMNS, TrialRecord

DATABASE = "trials.sqlite"
STORAGE_FILE = "storage.json"  # a run on a database server: its URL, without the password
STORAGE_VARIABLE = "JAXNAS_STORAGE"  # the URL readers connect with, for such a run
CHECKPOINTS = "checkpoints"
STATES = "states"
# 2: the trials' `objectives` and `feasible` columns; 3: `imports`; 4: `workers`
SCHEMA_VERSION = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    parent_id INTEGER NOT NULL,
    config TEXT NOT NULL,
    fidelity {real},
    status TEXT NOT NULL,
    loss {real},
    cost {real},
    extra TEXT,
    seconds {real},
    created {real},
    finished {real},
    worker TEXT,
    error TEXT,
    traceback TEXT,
    state_ref TEXT,
    objectives TEXT,
    feasible INTEGER
);
CREATE INDEX IF NOT EXISTS trials_by_status ON trials (status, step);
CREATE TABLE IF NOT EXISTS events (
    seq {serial},
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    trial_ids TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_step ON events (step, kind);
CREATE TABLE IF NOT EXISTS imports (
    import_id {serial},
    config TEXT NOT NULL,
    fidelity {real},
    loss {real},
    objectives TEXT NOT NULL,
    extra TEXT NOT NULL,
    trial_id INTEGER
);
CREATE INDEX IF NOT EXISTS imports_by_trial ON imports (trial_id);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started {real} NOT NULL,
    heartbeat {real} NOT NULL,
    timeout {real} NOT NULL,
    stopped {real}
);
"""
# Columns added after version 1, with their types: a version-1 database gets them when a
# worker opens it, and a reader of one sees them as NULL.
_ADDED_COLUMNS = {"objectives": "TEXT", "feasible": "INTEGER"}


class StorageError(RuntimeError):
    """A run that cannot be stored or read: a folder missing or read-only, a database
    that cannot be reached, or one from a newer jaxnas."""


def storage_of(root: str | Path, storage: str | None = None) -> str | None:
    """The database of the run in `root`: `storage` if given (a `postgresql://` URL);
    else, for a run that recorded one in `ROOT/storage.json`, the URL in the environment
    variable `JAXNAS_STORAGE` if set (say, with a read-only user's name and password), else
    the recorded URL (without its password: libpq's `PGPASSWORD` or `~/.pgpass` supply
    it); else None for the folder's SQLite file.

    Raises:
        ValueError: `storage` is neither None nor a `postgresql://` URL.
        StorageError: `storage` names another database than the one the folder's run
            recorded.
    """
    recorded = _recorded_storage(Path(root))
    if storage is None:
        if recorded is None or not os.environ.get(STORAGE_VARIABLE):
            return recorded
        storage = os.environ[STORAGE_VARIABLE]
    if not is_url(storage):
        raise ValueError(f"storage={str(storage)!r} must be None (SQLite in the run folder) "
                         f"or a PostgreSQL URL, postgresql://user:password@host:port/database.")
    if recorded is not None and not _same_database(recorded, storage):
        raise StorageError(f"root_directory={str(root)!r} holds a run whose database is "
                           f"{recorded!r}, not storage={redact(storage)!r}.")
    return storage


def _recorded_storage(root: Path) -> str | None:
    try:
        return json.loads((root / STORAGE_FILE).read_text())["url"]
    except FileNotFoundError:
        return None


def _same_database(a: str, b: str) -> bool:
    """Whether two URLs name the same database (users and passwords aside)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.hostname, pa.port or 5432, pa.path) == (pb.hostname, pb.port or 5432, pb.path)


def run_exists(root: str | Path, storage: str | None = None) -> bool:
    """Whether `root` holds a run (its database has one)."""
    storage = storage_of(root, storage)
    if storage is None:
        return (Path(root) / DATABASE).exists()
    try:
        with RunStore(root, create=False, storage=storage) as store:
            return store.get_meta("run") is not None
    except FileNotFoundError:  # a database without the run's tables
        return False


def delete_run(root: str | Path, storage: str | None = None) -> None:
    """Deletes the run in `root`: its database (or its tables, on a server),
    checkpoints and training states."""
    root = Path(root)
    storage = storage_of(root, storage)
    if storage is None:
        for path in root.glob(DATABASE + "*"):
            path.unlink()
    else:
        with RunStore(root, create=False, storage=storage) as store:
            store.drop()
    shutil.rmtree(root / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(root / STATES, ignore_errors=True)


class RunStore:
    """A connection to one run's database (one per process and thread); a context
    manager that closes it.

    Args:
        root: The run folder.
        create: Create the folder and the database's tables if missing (a worker);
            otherwise the run must exist (a reader, which only reads: a database user
            with read-only rights will do).
        storage: Where the trials are: None for SQLite in the run folder (or the
            database the folder's run recorded), or a `postgresql://` URL.
    """

    def __init__(self, root: str | Path, *, create: bool, storage: str | None = None):
        self.root = Path(root)
        self.path = self.root / DATABASE
        self.storage = storage_of(self.root, storage)
        if create:
            _check_writable(self.root)
        elif self.storage is None and not self.path.exists():
            raise FileNotFoundError(f"no jaxnas run in {str(self.root)!r}: {DATABASE} is "
                                    f"missing.")
        try:
            self._db = (SQLite(self.path, create=create) if self.storage is None
                        else Postgres(self.storage, create=create))
        except DatabaseError as error:
            raise StorageError(str(error)) from None
        self.where = self._db.where
        self._imports_table = False
        version = self._db.version()
        if version > SCHEMA_VERSION:
            self._db.close()
            raise StorageError(f"{self.where} has schema version {version}, newer than this "
                               f"jaxnas reads ({SCHEMA_VERSION}); upgrade jaxnas to open it.")
        if create:
            try:
                self._create()
            except (sqlite3.OperationalError, DatabaseError) as error:
                self._db.close()
                raise StorageError(f"root_directory={str(self.root)!r} cannot hold a run "
                                   f"({self.where}): {error}") from error
            if self.storage is not None:
                _record_storage(self.root, self.storage)
        elif not self._db.has_table("trials"):
            self._db.close()
            raise FileNotFoundError(f"no jaxnas run in {self.where!r}.")
        self._select = self._select_trials()  # the columns, once the schema is settled

    @property
    def checkpoints_directory(self) -> Path:
        """Where the optimiser's Orbax checkpoints go."""
        return self.root / CHECKPOINTS

    @property
    def states_directory(self) -> Path:
        """Where the trials' trained states go."""
        return self.root / STATES

    def _create(self) -> None:
        """The tables (idempotent)."""
        db = self._db
        with self.transaction():
            db.execute(db.meta_table())
            for statement in _SCHEMA.format(real=db.real, serial=db.serial).split(";"):
                if statement.strip():
                    db.execute(statement)
            present = self._columns()
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE trials ADD COLUMN {column} {kind}")
            db.set_version(SCHEMA_VERSION)

    def drop(self) -> None:
        """Drops the run's tables (`overwrite=True` on a database server)."""
        with self.transaction():
            for table in ("workers", "imports", "events", "trials", "meta"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")

    def _columns(self) -> set[str]:
        return self._db.columns("trials")

    def _select_trials(self) -> str:
        """`SELECT` of every `TrialRecord` column (NULL for one an older database lacks)."""
        present = self._columns()
        columns = [c if c in present else f"NULL AS {c}" for c in COLUMNS]
        return f"SELECT {', '.join(columns)} FROM trials"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction that holds the run's write lock from its start, so that
        a worker that reads the event log and then appends to it does so with no other
        worker in between."""
        with self._db.write():
            yield

    # ------------------------------------------------------------------ metadata

    def get_meta(self, key: str) -> Any:
        return self._db.get_meta(key)

    def set_meta(self, items: dict[str, Any]) -> None:
        self._db.set_meta(items)

    # ------------------------------------------------------------- writing trials

    def add_trials(self, trials: Sequence[TrialRecord], *, worker: str) -> None:
        """Inserts asked trials as `running`, claimed by `worker` (inside a transaction)."""
        now = time.time()
        self._db.executemany(
            "INSERT INTO trials (trial_id, step, parent_id, config, fidelity, status, "
            "created, worker) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
            [(t.trial_id, t.step, t.parent_id, json.dumps(t.config), t.fidelity, now, worker)
             for t in trials])

    def record_finished(self, trials: Sequence[TrialRecord]) -> None:
        """Records finished trials (inside a transaction)."""
        now = time.time()
        self._db.executemany(f"UPDATE trials SET {_FINISHED} WHERE trial_id = ?",
                             [(*_finished_values(t, now), t.trial_id) for t in trials])

    def finish_claimed(self, trials: Sequence[TrialRecord], worker: str) -> list[int]:
        """Records the finished trials that `worker` still holds (one transaction).

        A trial goes back to `pending` when its worker falls silent past its heartbeat
        timeout, and another worker may take it; if the silent one comes back, its result
        is not recorded over the other's. Returns the ids of the trials not recorded.
        """
        lost = []
        now = time.time()
        with self._db.own_rows():
            for t in trials:
                cursor = self._db.execute(
                    f"UPDATE trials SET {_FINISHED} WHERE trial_id = ? AND "
                    "status = 'running' AND worker = ?",
                    (*_finished_values(t, now), t.trial_id, worker))
                if cursor.rowcount == 0:
                    lost.append(t.trial_id)
        return lost

    def release_dead(self, gone: Callable[[str], bool]) -> list[str]:
        """Sets the `running` trials of workers that are gone back to `pending`, to be
        claimed again (inside a transaction).

        A worker is gone when it stopped, when it has been silent longer than its
        heartbeat timeout (by this process's clock: the hosts' clocks must agree to well
        within the timeout), or when `gone(name)` says so (its process is known to have
        ended). A worker without a heartbeat, from a jaxnas before schema 4, is judged
        by `gone` alone. Returns the names of the workers whose trials were released.
        """
        running = [w for (w,) in self._db.execute(
            "SELECT DISTINCT worker FROM trials WHERE status = 'running'").fetchall()]
        if not running:
            return []
        now = time.time()
        beats = {name: (heartbeat, timeout, stopped) for name, heartbeat, timeout, stopped
                 in self._db.execute("SELECT name, heartbeat, timeout, stopped FROM workers")}
        dead = []
        for worker in running:
            beat = beats.get(worker)
            silent = beat is not None and (beat[2] is not None or now - beat[0] > beat[1])
            if worker is None or silent or gone(worker):
                dead.append(worker)
        for worker in dead:
            held, args = ("worker IS NULL", ()) if worker is None else ("worker = ?", (worker,))
            self._db.execute("UPDATE trials SET status = 'pending', worker = NULL "
                             f"WHERE status = 'running' AND {held}", args)
        return dead

    # ------------------------------------------------------------------- workers

    def join(self, name: str, host: str, pid: int, timeout: float) -> None:
        """Records a worker that joins the run, beating from now."""
        now = time.time()
        with self.transaction():
            self._db.execute("INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, NULL)",
                             (name, host, pid, now, now, float(timeout)))

    def beat(self, name: str) -> None:
        """The worker's heartbeat: it is alive now (one short write)."""
        self._db.execute("UPDATE workers SET heartbeat = ? WHERE name = ?", (time.time(), name))

    def leave(self, name: str) -> None:
        """Records that the worker stopped: its unfinished trials are free at once."""
        self._db.execute("UPDATE workers SET stopped = ? WHERE name = ?", (time.time(), name))

    def workers(self) -> list[dict]:
        """Every worker that joined the run: `name`, `host`, `pid`, `started`,
        `heartbeat`, `timeout`, `stopped` (None while it runs) and `silent` (seconds
        since its heartbeat), oldest first."""
        if not self._db.has_table("workers"):
            return []
        rows = self._db.execute("SELECT name, host, pid, started, heartbeat, timeout, stopped "
                                "FROM workers ORDER BY started").fetchall()
        now = time.time()
        keys = ("name", "host", "pid", "started", "heartbeat", "timeout", "stopped")
        return [{**dict(zip(keys, row)), "silent": now - row[4]} for row in rows]

    def claim_pending(self, worker: str) -> list[TrialRecord]:
        """Claims the pending trials of the oldest step that has any (in a transaction)."""
        step = self._db.execute(
            "SELECT MIN(step) FROM trials WHERE status = 'pending'").fetchone()[0]
        if step is None:
            return []
        self._db.execute("UPDATE trials SET status = 'running', worker = ? "
                         "WHERE status = 'pending' AND step = ?", (worker, step))
        return self._trials("WHERE step = ? AND worker = ? AND status = 'running' "
                            "ORDER BY trial_id", (step, worker))

    # ------------------------------------------------------------- reading trials

    def all_trials(self) -> list[TrialRecord]:
        """Every trial, in trial-id order."""
        return self._trials("ORDER BY trial_id")

    def trials_by_id(self, trial_ids: Sequence[int]) -> dict[int, TrialRecord]:
        """The trials with these ids (those that exist), by id."""
        marks = ",".join("?" * len(trial_ids))
        found = self._trials(f"WHERE trial_id IN ({marks})", tuple(map(int, trial_ids)))
        return {t.trial_id: t for t in found}

    def parents(self) -> list[tuple[int, int]]:
        """`(trial_id, parent_id)` of every trial, in trial-id order."""
        return self._db.execute(
            "SELECT trial_id, parent_id FROM trials ORDER BY trial_id").fetchall()

    def state_ref(self, trial_id: int) -> str | None:
        """Where the trial's trained state is saved ("folder:row"), or None."""
        row = self._db.execute("SELECT state_ref FROM trials WHERE trial_id = ?",
                               (int(trial_id),)).fetchone()
        return None if row is None else row[0]

    def outcomes(self) -> dict[str, np.ndarray]:
        """Every trial's loss, fidelity (None as 0) and success, as `(n,)` host arrays
        in trial-id order: what `jn.optimizers.incumbent_index` picks the best from."""
        rows = self._db.execute(
            "SELECT trial_id, loss, COALESCE(fidelity, 0), status = 'success' FROM trials "
            "ORDER BY trial_id").fetchall()
        table = np.asarray(rows, np.float64).reshape(len(rows), 4)  # a NULL loss is NaN
        return {"trial_ids": table[:, 0].astype(np.int64), "losses": table[:, 1],
                "fidelities": table[:, 2], "succeeded": table[:, 3].astype(bool)}

    def totals(self) -> dict[str, float]:
        """What the run has spent, over every trial in the table.

        Returns:
            `evaluations` (trials asked, finished or not, except infeasible ones, which
            were never trained), `finished`, `cost` (the summed cost, a trial's fidelity
            where it reported none) and `fidelity` (the fidelity trained: a continued
            trial counts only what it adds to its parent's). Imported trials were
            spent elsewhere: they count in none of them.
        """
        imported = "(SELECT trial_id FROM imports WHERE trial_id IS NOT NULL)"
        own, own_t = ((f"AND trial_id NOT IN {imported}", f"AND t.trial_id NOT IN {imported}")
                      if self._has_imports() else ("", ""))
        count, cost = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(COALESCE(cost, fidelity, 0)), 0.0) FROM trials "
            f"WHERE status IN ('success', 'failed') {own}").fetchone()
        everything = self._db.execute(
            f"SELECT COUNT(*) FROM trials WHERE status != 'infeasible' {own}").fetchone()[0]
        added = self._db.execute(
            "SELECT COALESCE(SUM(COALESCE(t.fidelity, 0) - COALESCE(p.fidelity, 0)), 0.0) "
            "FROM trials t "
            "LEFT JOIN trials p ON p.trial_id = t.parent_id "
            f"WHERE t.status IN ('success', 'failed') {own_t}").fetchone()[0]
        return {"evaluations": everything, "finished": count, "cost": cost, "fidelity": added}

    def _trials(self, where: str, args: tuple = ()) -> list[TrialRecord]:
        rows = self._db.execute(f"{self._select} {where}", args).fetchall()
        return [_record(row) for row in rows]

    # ------------------------------------------------------------------- imports

    def add_imports(self, rows: Sequence[dict]) -> None:
        """Queues finished trials from elsewhere (`config`, `fidelity`, `loss`,
        `objectives`, `extra`), in one transaction."""
        with self.transaction():
            self._db.executemany(
                "INSERT INTO imports (config, fidelity, loss, objectives, extra) "
                "VALUES (?, ?, ?, ?, ?)",
                [(json.dumps(r["config"]), r["fidelity"], _finite_or_none(r["loss"]),
                  json.dumps(r["objectives"]), json.dumps(r["extra"])) for r in rows])

    def waiting_imports(self) -> list[dict]:
        """The imports no trial has taken yet, in the order they were imported."""
        if not self._has_imports():
            return []
        rows = self._db.execute("SELECT import_id, config, fidelity, loss, objectives, extra "
                                "FROM imports WHERE trial_id IS NULL ORDER BY import_id")
        return [{"import_id": i, "config": json.loads(c), "fidelity": f,
                 "loss": math.nan if loss is None else loss, "objectives": json.loads(o),
                 "extra": json.loads(e)} for i, c, f, loss, o, e in rows.fetchall()]

    def import_count(self) -> int:
        """How many trials were imported into the run, placed or waiting."""
        if not self._has_imports():
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM imports").fetchone()[0])

    def place_imports(self, placed: dict[int, int]) -> None:
        """Records which trial took each import (`{import_id: trial_id}`; inside the
        ask's transaction)."""
        self._db.executemany("UPDATE imports SET trial_id = ? WHERE import_id = ?",
                             [(t, i) for i, t in placed.items()])

    def imported_ids(self, trial_ids: Sequence[int] | None = None) -> set[int]:
        """Which of `trial_ids` (default: all) took an import."""
        if not self._has_imports():
            return set()
        rows = self._db.execute("SELECT trial_id FROM imports WHERE trial_id IS NOT NULL")
        found = {t for (t,) in rows.fetchall()}
        return found if trial_ids is None else found & set(map(int, trial_ids))

    def _has_imports(self) -> bool:
        # A table, once there, stays: only its absence (a run from before schema 3,
        # opened read-only) is looked up again.
        if not self._imports_table:
            self._imports_table = self._db.has_table("imports")
        return self._imports_table

    # -------------------------------------------------------------------- events

    def append_event(self, kind: str, step: int, trial_ids: Sequence[int]) -> int:
        """Appends an `ask` or `tell` event (inside a transaction); returns its number."""
        return self._db.insert("INSERT INTO events (kind, step, trial_ids) VALUES (?, ?, ?)",
                               (kind, step, json.dumps(list(map(int, trial_ids)))), "seq")

    def events(self, after: int) -> list[tuple[int, str, int, list[int]]]:
        """`(seq, kind, step, trial_ids)` of the events after number `after`, in order."""
        rows = self._db.execute("SELECT seq, kind, step, trial_ids FROM events WHERE seq > ? "
                                "ORDER BY seq", (after,)).fetchall()
        return [(seq, kind, step, json.loads(ids)) for seq, kind, step, ids in rows]

    def last_event(self) -> int:
        """The number of the newest event (0 if none)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def asked_ids(self, step: int) -> list[int]:
        """The trial ids of step `step`'s ask, in the order it recorded them."""
        row = self._db.execute("SELECT trial_ids FROM events WHERE kind IN ('ask', 'reissue') "
                               "AND step = ?", (step,)).fetchone()
        if row is None:
            raise RuntimeError(f"no ask event for step {step} in {str(self.root)!r}")
        return json.loads(row[0])

    def last_step(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(step), 0) FROM events "
                                    "WHERE kind = 'ask'").fetchone()[0])

    def next_reissue_step(self) -> int:
        """The step number of the next `reissue` event: -1, -2, ..., so that the asks'
        own numbers, which their PRNG keys are folded from, are those of a run that
        needed none."""
        return min(int(self._db.execute("SELECT COALESCE(MIN(step), 0) FROM events "
                                        "WHERE kind = 'reissue'").fetchone()[0]), 0) - 1

    def untold_finished_steps(self) -> list[int]:
        """Asked steps whose trials have all finished but that have no `tell` event."""
        rows = self._db.execute(
            "SELECT e.step FROM events e WHERE e.kind IN ('ask', 'reissue') AND NOT EXISTS "
            "(SELECT 1 FROM events t WHERE t.kind = 'tell' AND t.step = e.step) AND NOT EXISTS "
            "(SELECT 1 FROM trials x WHERE x.step = e.step AND x.status NOT IN "
            "('success', 'failed', 'infeasible')) ORDER BY e.step").fetchall()
        return [step for (step,) in rows]


_FINISHED = ("status = ?, loss = ?, cost = ?, extra = ?, seconds = ?, finished = ?, error = ?, "
             "traceback = ?, state_ref = ?, objectives = ?, feasible = ?")


def _finished_values(t: TrialRecord, now: float) -> tuple:
    """The values of `_FINISHED`'s columns for a finished trial."""
    return (t.status, _finite_or_none(t.loss), t.cost, json.dumps(t.extra or {}), t.seconds,
            now, t.error, t.traceback, t.state_ref, json.dumps(t.objectives or {}),
            None if t.feasible is None else int(t.feasible))


def _record_storage(root: Path, url: str) -> None:
    """Writes `ROOT/storage.json`, so that readers of the folder find the database (its
    URL without the password)."""
    path = root / STORAGE_FILE
    text = json.dumps({"url": redact(url)})
    if not path.exists() or path.read_text() != text:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(text)
        temporary.replace(path)


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"root_directory={str(root)!r} cannot be created: "
                           f"{error}") from error
    if not os.access(root, os.W_OK):
        raise StorageError(f"root_directory={str(root)!r} is read-only: a run "
                           f"needs to write its trials there.")


def _record(row: tuple) -> TrialRecord:
    values = dict(zip(COLUMNS, row))
    values["config"] = json.loads(values["config"])
    values["extra"] = json.loads(values["extra"] or "{}")
    values["loss"] = math.nan if values["loss"] is None else values["loss"]
    values["objectives"] = json.loads(values["objectives"] or "{}")
    values["feasible"] = None if values["feasible"] is None else bool(values["feasible"])
    return TrialRecord(**values)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# File systems whose files only this machine sees, by their /proc/mounts type.
_MEMORY_FILE_SYSTEMS = ("tmpfs", "ramfs")


def check_shared_folder(root: Path, storage: str | None) -> None:
    """Refuses a run folder that workers on other machines cannot reach, combined with a
    database on another machine (where it can tell: a folder on a memory file system).

    Raises:
        ValueError: the folder is on tmpfs or ramfs and `storage` names another machine.
    """
    if storage is None or not is_remote(storage):
        return
    kind = _file_system(Path(root))
    if kind in _MEMORY_FILE_SYSTEMS:
        raise ValueError(
            f"jn.run: root_directory={str(root)!r} is on {kind}, which no other machine "
            f"reaches, but storage={redact(storage)!r} is a database on another machine, "
            f"for workers on several machines. They share the optimiser's checkpoints and "
            f"the trained states through the run folder: put it on a file system every "
            f"worker mounts (NFS, Lustre, GPFS, ...).")


def _file_system(path: Path) -> str | None:
    """The type of the file system `path` is on (Linux's /proc/mounts), or None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    path = path.resolve()
    best, kind = -1, None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (path == Path(point) or Path(point) in path.parents) and len(point) > best:
            best, kind = len(point), fields[2]
    return kind
