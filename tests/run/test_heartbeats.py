"""Heartbeats: a worker that dies on another host, or hangs on this one, loses its trials to
the other workers once its heartbeat timeout has passed, and a hung worker's late results
never replace theirs."""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jaxnas as jn
from tests.run import _worker

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 1.5  # the silent worker's heartbeat timeout, seconds


def _running(root, storage=None) -> dict[int, str]:
    """`{trial_id: worker}` of the trials running now (nothing if the run has not started)."""
    if storage is not None:
        if not (Path(root) / "storage.json").exists():
            return {}
        return {t["trial_id"]: t["worker"] for t in jn.load_results(root, storage=storage)
                if t["status"] == "running"}
    path = Path(root) / "trials.sqlite"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(path, timeout=60.0) as db:
            rows = db.execute("SELECT trial_id, worker FROM trials WHERE status = 'running'")
            return dict(rows.fetchall())
    except sqlite3.OperationalError:  # the tables are not there yet
        return {}


def _start(root, *args, host: str | None = None, storage=None) -> subprocess.Popen:
    """A worker process (`tests/run/_worker.py`); with `host`, in a UTS namespace of its
    own whose hostname is `host`, so that it is, for the others, a worker on another
    machine (`unshare` needs root, as CI and this project's machines run)."""
    command = [sys.executable, "-m", "tests.run._worker", str(root), *map(str, args)]
    if storage is not None:
        command += ["--storage", storage]
    if host is not None:
        command = ["unshare", "--uts", "sh", "-c",
                   f"hostname {host} && exec {' '.join(command)}"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _stop_holding(root, process, successes_before: int = 4, storage=None) -> dict[int, str]:
    """Stops (SIGSTOP) the process's worker once it has finished a few trials, at a moment
    when it holds some; returns them."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        finished = [t for t in _finished(root, storage) if t["status"] == "success"]
        if len(finished) >= successes_before and _running(root, storage):
            process.send_signal(signal.SIGSTOP)
            running = _running(root, storage)  # what it holds now that it cannot move
            if running and _write_lock_free(root, storage):
                return running
            # Stopped between two batches, or inside a write (whose lock a stopped process
            # keeps, as SQLite must): again.
            process.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("the worker never held a trial")


def _write_lock_free(root, storage=None) -> bool:
    if storage is not None:  # the run's lock is a transaction's advisory lock
        import psycopg

        with psycopg.connect(storage) as db:
            return not db.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE "
                                  "locktype = 'advisory')").fetchone()[0]
    db = sqlite3.connect(Path(root) / "trials.sqlite", timeout=0.5, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # database is locked
        return False
    finally:
        db.close()


def _finished(root, storage=None) -> list[dict]:
    if not (Path(root) / ("trials.sqlite" if storage is None else "storage.json")).exists():
        return []
    try:
        return [t for t in jn.load_results(root, storage=storage)
                if t["status"] in ("success", "failed")]
    except Exception:  # noqa: BLE001 - not created yet
        return []


def _last_beat(root, worker: str, storage=None) -> float:
    query = "SELECT heartbeat FROM workers WHERE name = ?"
    if storage is None:
        with sqlite3.connect(Path(root) / "trials.sqlite") as db:
            return db.execute(query, (worker,)).fetchone()[0]
    import psycopg

    with psycopg.connect(storage) as db:
        return db.execute(query.replace("?", "%s"), (worker,)).fetchone()[0]


def _take_over(root, evaluations: int, storage=None) -> jn.RunResult:
    """A second worker, in this process, with the same run's arguments."""
    return jn.run(_worker.objective(0.1), _worker.space(), optimizer="priorband",
                  root_directory=root, max_evaluations=evaluations, checkpoint_every=1,
                  progress=False, storage=storage)


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs root and unshare to make a second host")
def test_a_worker_killed_on_another_host_loses_its_trials_after_its_timeout(tmp_path,
                                                                            storage):
    evaluations = 48
    other = _start(tmp_path, "--evaluations", evaluations, "--sleep", 0.3,
                   "--heartbeat-timeout", TIMEOUT, host="elsewhere", storage=storage)
    held = _stop_holding(tmp_path, other, storage=storage)
    other.send_signal(signal.SIGKILL)
    other.wait()
    (name,) = set(held.values())
    assert name.startswith("elsewhere:")  # another host: no process check can see it
    before = {t["trial_id"]: t for t in _finished(tmp_path, storage)}
    last_beat = _last_beat(tmp_path, name, storage)

    result = _take_over(tmp_path, evaluations, storage)

    trials = {t["trial_id"]: t for t in result.trials}
    assert len(trials) == evaluations
    assert all(t["status"] == "success" for t in trials.values())
    for trial_id in held:  # evaluated again, by this process's worker, after the timeout
        assert trials[trial_id]["worker"].startswith(f"{socket.gethostname()}:")
        assert trials[trial_id]["finished"] >= last_beat + TIMEOUT
    for trial_id, trial in before.items():  # finished before the kill: never evaluated again
        assert trials[trial_id]["worker"] == name
        assert trials[trial_id]["loss"] == trial["loss"]
    status = result.summary()
    assert "workers: 0 alive, 1 stopped, 1 silent" in status
    assert f"{name} silent for" in status


def test_a_hung_worker_loses_its_trials_and_its_late_results_are_dropped(tmp_path):
    evaluations = 40
    hung = _start(tmp_path, "--evaluations", evaluations, "--sleep", 0.3,
                  "--heartbeat-timeout", TIMEOUT)
    try:
        held = _stop_holding(tmp_path, hung)  # alive as a process, silent as a worker
        result = _take_over(tmp_path, evaluations)
        taken = {t["trial_id"]: t for t in result.trials if t["trial_id"] in held}
        assert len(taken) == len(held)
        assert all(t["status"] == "success" and t["worker"] not in held.values()
                   for t in taken.values())
    finally:
        hung.send_signal(signal.SIGCONT)
    _, errors = hung.communicate(timeout=120)
    assert hung.returncode == 0, errors
    # It finished the trials it held, found them taken, and kept out of their rows.
    assert "were given to another worker while this one" in errors
    after = {t["trial_id"]: t for t in jn.load_results(tmp_path)}
    for trial_id, trial in taken.items():
        assert after[trial_id]["worker"] == trial["worker"]
        assert after[trial_id]["finished"] == trial["finished"]
    assert len(after) == evaluations
    assert all(t["status"] == "success" for t in after.values())


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), "60", True])
def test_a_bad_heartbeat_timeout_is_refused_before_anything_starts(tmp_path, timeout):
    with pytest.raises(ValueError, match=f"heartbeat_timeout={timeout!r} must be a positive"):
        jn.run(_worker.objective(0.0), _worker.space(), root_directory=tmp_path,
               max_evaluations=3, heartbeat_timeout=timeout)
    assert not (tmp_path / "trials.sqlite").exists()
