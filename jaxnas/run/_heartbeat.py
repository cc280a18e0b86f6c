"""A worker's heartbeat: a thread that tells the run's database, every few seconds, that the
worker is alive, so that the trials of a worker that died or hung go back to the others.

A worker on this host whose process has ended is known to be gone at once (`process_gone`);
one on another host, or one whose process still exists but does not move (stopped, hung in
a driver, cut off from the database), is gone once it has been silent longer than its
`heartbeat_timeout` (Optuna's heartbeat and stale-trial rule, judged by whichever worker
next asks for work). The thread has its own connection and writes one row; the training
in the main thread never waits for it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from pathlib import Path

from jaxnas.run._storage import RunStore

logger = logging.getLogger("jaxnas")

DEFAULT_TIMEOUT = 300.0  # seconds of silence after which a worker's trials are taken over
LONGEST_INTERVAL = 30.0  # a worker beats at least this often


def check_timeout(heartbeat_timeout: float) -> float:
    """`heartbeat_timeout` as a float, or a ValueError that names it."""
    if (isinstance(heartbeat_timeout, bool) or not isinstance(heartbeat_timeout, int | float)
            or not math.isfinite(heartbeat_timeout) or heartbeat_timeout <= 0):
        raise ValueError(f"jn.run: heartbeat_timeout={heartbeat_timeout!r} must be a positive, "
                         f"finite number of seconds (how long a worker may be silent before "
                         f"its trials are given to another).")
    return float(heartbeat_timeout)


class Heartbeat:
    """Joins `name` to the run in `root` and beats for it until `stop`.

    Args:
        root: the run folder.
        name: the worker's name, `host:pid:tag`.
        storage: the run's database URL (None: SQLite in the folder).
        timeout: seconds of silence after which the worker counts as gone; it beats five
            times per timeout (at most every 30 s).
    """

    def __init__(self, root: Path, name: str, timeout: float, storage: str | None = None):
        self.root, self.name, self.timeout, self.storage = root, name, timeout, storage
        self.interval = min(timeout / 5, LONGEST_INTERVAL)
        host, pid, _ = name.rsplit(":", 2)
        with self._store() as store:
            store.join(name, host, int(pid), timeout)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="jaxnas-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        store = self._store()  # a connection of this thread's own
        try:
            while not self._stopping.wait(self.interval):
                try:
                    store.beat(self.name)
                except Exception as error:  # noqa: BLE001 - a missed beat is not fatal
                    logger.warning("jaxnas.run: heartbeat of %s not written: %s", self.name,
                                   error)
        finally:
            store.close()

    def stop(self) -> None:
        """Stops beating and records that the worker left: its unfinished trials are free
        for others at once."""
        self._stopping.set()
        self._thread.join()
        with self._store() as store:
            store.leave(self.name)

    def _store(self) -> RunStore:
        return RunStore(self.root, create=False, storage=self.storage)


def process_gone(worker: str) -> bool:
    """Whether `worker` (`host:pid:tag`) is known to have ended: its host is this one and
    its process is gone (or is this process, which no longer runs that worker). A worker
    on another host is never known to be gone here; its heartbeat tells."""
    host, pid, _ = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return False
    if int(pid) == os.getpid():
        return True  # an earlier run in this process that did not finish its trials
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
