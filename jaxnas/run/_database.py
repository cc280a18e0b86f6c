"""The two databases a run can live in, behind one small interface that `RunStore` writes
its SQL against: SQLite in the run folder (Python's `sqlite3`; the default, nothing to
start) and PostgreSQL at a URL (psycopg 3, the `[postgres]` extra), which workers on many
machines share.

The SQL is the same for both (`?` placeholders, which `Postgres` turns into psycopg's
`%s`); what differs is here: the column types of the schema, how a write transaction
takes the run's one write lock (SQLite's `BEGIN IMMEDIATE`; a transaction-scoped advisory
lock in PostgreSQL, so that, as in SQLite, one worker at a time reads the event log and
appends to it; a worker's results for its own trials skip that lock in PostgreSQL), where the schema version is kept, how a table's existence and columns are
looked up, and how `meta` holds bytes. A URL's password is used to connect and never
written anywhere: `redact` gives the URL that files, logs and messages show.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    import fcntl
except ImportError:  # Windows: SQLite's own busy handler alone
    fcntl = None

SCHEMES = ("postgresql", "postgres")
IDLE_IN_TRANSACTION = "10min"
SQLITE_TIMEOUT = 120.0  # seconds a worker waits for another's write lock
# The run's write lock in PostgreSQL: `pg_advisory_xact_lock` takes it for a transaction.
_WRITE_LOCK = 0x6A61786E  # "jaxn"


class DatabaseError(RuntimeError):
    """A database that cannot be reached or used (the message names it, without its
    password)."""


def is_url(storage: str | None) -> bool:
    """Whether `storage` names a database server (`postgresql://...`)."""
    return storage is not None and urlsplit(str(storage)).scheme in SCHEMES


def redact(url: str) -> str:
    """`url` without its password (`postgresql://user@host:5432/db`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_remote(url: str) -> bool:
    """Whether the server is on another machine (not a local socket or loopback)."""
    host = urlsplit(url).hostname
    return bool(host) and host not in ("localhost", "::1") and not host.startswith("127.") \
        and not host.startswith("/")


class SQLite:
    """`ROOT/trials.sqlite`, in WAL mode so that readers never block the workers."""

    kind = "sqlite"
    real, blob, serial = "REAL", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: Path, *, create: bool):
        self.where = str(path)
        # isolation_level=None: transactions are explicit (`write`); timeout: how long a
        # worker waits for another's write lock.
        self._db = sqlite3.connect(path, timeout=SQLITE_TIMEOUT, isolation_level=None)
        self._lock = None
        if create and fcntl is not None:  # only writers queue (see `write`)
            self._lock = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT, 0o666)
        # Workers that open a new database at the same moment: switching it to WAL answers
        # "database is locked" at once, without waiting on the busy timeout, while another
        # connection switches it; so try again until the timeout.
        deadline = time.monotonic() + SQLITE_TIMEOUT
        while True:
            try:
                self.version()
                if create:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    # FULL: a committed trial survives a crash of the machine, not only
                    # the process.
                    self._db.execute("PRAGMA synchronous=FULL")
                break
            except sqlite3.OperationalError as error:
                if "locked" in str(error) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                self._db.close()
                raise DatabaseError(f"{path} cannot be opened as a jaxnas run database: "
                                    f"{error}") from error
            except sqlite3.DatabaseError as error:
                self._db.close()
                raise DatabaseError(f"{path} cannot be opened as a jaxnas run database: "
                                    f"{error}") from error

    def execute(self, sql: str, args: Sequence = ()) -> Any:
        return self._db.execute(sql, tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        self._db.executemany(sql, [tuple(r) for r in rows])

    def insert(self, sql: str, args: Sequence, key: str) -> int:
        """Runs an `INSERT` and returns the row's new `key` (an autoincrement column)."""
        del key
        return int(self._db.execute(sql, tuple(args)).lastrowid)

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A transaction that holds the database's write lock from its start.

        Workers queue for it on a file lock first (`ROOT/trials.sqlite-lock`, where the
        platform has `flock`): a blocked `flock` wakes the moment the lock is free, while
        SQLite's own busy handler polls with growing sleeps, which left many workers of one
        run waiting on a lock nobody held."""
        with self._queue():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def own_rows(self) -> contextlib.AbstractContextManager:
        """Writes to rows only the caller may change: SQLite has one writer at a time
        however they are written, so they take the write lock (`write`)."""
        return self.write()

    @contextlib.contextmanager
    def _queue(self) -> Iterator[None]:
        if fcntl is None or self._lock is None:
            yield
            return
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        self._db.execute(f"PRAGMA user_version={int(version)}")

    def has_table(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = ?", (name,)).fetchone() is not None

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, items: dict[str, Any]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(items.items()))

    def meta_table(self) -> str:
        return "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)"

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


class Postgres:
    """A PostgreSQL database at `url`, which holds one run (its tables in the URL's
    database, in the connection's schema)."""

    kind = "postgresql"
    real, blob, serial = "DOUBLE PRECISION", "BYTEA", "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str, *, create: bool):
        self.where = redact(url)
        try:
            import psycopg  # noqa: PLC0415 - the `[postgres]` extra
        except ImportError as error:
            raise DatabaseError(f"storage={self.where!r} needs psycopg: pip install "
                                f"'jaxnas[postgres]'") from error
        self._errors = psycopg.Error
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as error:
            raise DatabaseError(f"storage={self.where!r} cannot be reached: "
                                f"{_without(str(error).strip(), url)}") from None
        if create:
            # A worker that hangs inside a transaction would hold the run's write lock for
            # good; the server ends such a session instead (no transaction of jaxnas's is
            # idle that long: the longest compiles one optimiser program).
            self.execute(f"SET idle_in_transaction_session_timeout = "
                         f"'{IDLE_IN_TRANSACTION}'")

    def execute(self, sql: str, args: Sequence = ()) -> Any:
        return self._run(lambda cursor: cursor.execute(_placeholders(sql), tuple(args)))

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._run(lambda cursor: cursor.executemany(_placeholders(sql), rows))

    def _run(self, call: Any) -> Any:
        cursor = self._db.cursor()
        try:
            call(cursor)
        except self._errors as error:
            raise DatabaseError(f"storage={self.where!r}: {error}".strip()) from error
        return cursor

    def insert(self, sql: str, args: Sequence, key: str) -> int:
        return int(self.execute(f"{sql} RETURNING {key}", args).fetchone()[0])

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A transaction that holds the run's write lock from its start."""
        self.execute("BEGIN")
        try:
            self.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK,))
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    @contextlib.contextmanager
    def own_rows(self) -> Iterator[None]:
        """Writes to rows only the caller may change (a worker's results for the trials
        it holds), each statement a transaction of its own: they do not wait for the
        run's write lock, and the server's row locks order them against the one writer
        that also changes those rows (taking back a silent worker's trials, whose
        `WHERE` is checked again once the row is free)."""
        yield

    def version(self) -> int:
        if not self.has_table("meta"):
            return 0
        value = self.get_meta("schema_version")
        return 0 if value is None else int(value)

    def set_version(self, version: int) -> None:
        self.set_meta({"schema_version": int(version)})

    def has_table(self, name: str) -> bool:
        return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]

    def columns(self, table: str) -> set[str]:
        rows = self.execute("SELECT column_name FROM information_schema.columns WHERE "
                            "table_name = ? AND table_schema = current_schema()", (table,))
        return {name for (name,) in rows.fetchall()}

    def get_meta(self, key: str) -> Any:
        row = self.execute("SELECT value, data FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return bytes(row[1]) if row[1] is not None else row[0]

    def set_meta(self, items: dict[str, Any]) -> None:
        self.executemany(
            "INSERT INTO meta (key, value, data) VALUES (?, ?, ?) ON CONFLICT (key) DO "
            "UPDATE SET value = EXCLUDED.value, data = EXCLUDED.data",
            [(k, None if v is None or isinstance(v, bytes) else str(v),
              v if isinstance(v, bytes) else None) for k, v in items.items()])

    def meta_table(self) -> str:
        # Text and bytes apart: PostgreSQL's columns have one type.
        return "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT, data BYTEA)"

    def close(self) -> None:
        self._db.close()


def _placeholders(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (the SQL has no `%` or `?` of its own)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _without(text: str, url: str) -> str:
    """`text` with `url`'s password taken out, should a driver ever quote it."""
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
