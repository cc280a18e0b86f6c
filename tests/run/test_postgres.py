"""Runs on a real PostgreSQL server (started by the suite, tests/_postgres.py): no password
is ever written or shown, a read-only user can look at a run, and bad URLs, databases and
folders are refused, named, before any trial starts. The persistence and heartbeat tests
run on both databases (their `storage` fixture)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import jaxnas as jn
from tests import _postgres
from tests.run import _worker

REPO = Path(__file__).resolve().parents[2]


def _run(root, storage, evaluations=12, **kwargs):
    return jn.run(_worker.objective(0.0), _worker.space(), root_directory=root,
                  max_evaluations=evaluations, progress=False, storage=storage, **kwargs)


def _status(root, **environment) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(environment)
    return subprocess.run([sys.executable, "-m", "jaxnas", "status", str(root)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


def test_no_password_is_written_or_shown(postgres_server, tmp_path, caplog, capsys):
    url = postgres_server.database()
    caplog.set_level(logging.DEBUG, logger="jaxnas")
    result = _run(tmp_path / "run", url)
    assert len(result.trials) == 12
    secret = _postgres.PASSWORD
    # Not in the run folder's files (storage.json names the database without it) ...
    recorded = (tmp_path / "run" / "storage.json").read_text()
    assert url.replace(f":{secret}", "") in recorded
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    # ... nor in the database's metadata and trials, the logs, the printed output, the
    # result, its summary or the status command (which reads the URL from the environment).
    with psycopg.connect(url) as db:
        for table in ("meta", "trials", "events", "workers"):
            assert secret not in str(db.execute(f"SELECT * FROM {table}").fetchall())
    printed = capsys.readouterr()
    assert secret not in caplog.text + printed.out + printed.err
    assert secret not in repr(result) + result.summary()
    status = _status(tmp_path / "run", JAXNAS_STORAGE=url)
    assert status.returncode == 0, status.stderr
    assert "12 trials (12 success)" in status.stdout and secret not in status.stdout
    # Without a password, the status names the database and libpq's error, nothing more.
    refused = _status(tmp_path / "run")
    assert refused.returncode != 0
    assert "password" in refused.stderr and secret not in refused.stderr
    assert "Traceback" not in refused.stderr and "cannot be reached" in refused.stderr
    # A wrong password and an unreachable server: named without the password.
    wrong = url.replace(secret, "not-the-" + secret[::-1])
    for bad in (wrong, f"postgresql://{_postgres.USER}:{secret}@127.0.0.1:1/nowhere"):
        with pytest.raises(jn.StorageError) as raised:
            _run(tmp_path / "other", bad)
        assert "cannot be reached" in str(raised.value)
        assert secret not in str(raised.value) and secret[::-1] not in str(raised.value)
    assert not (tmp_path / "other" / "storage.json").exists()


def test_a_read_only_user_can_look_at_a_run_but_not_write_to_it(postgres_server, tmp_path):
    url = postgres_server.database()
    _run(tmp_path, url)
    reader = url.replace(f"{_postgres.USER}:{_postgres.PASSWORD}",
                         f"{_postgres.READER}:{_postgres.READER_PASSWORD}")
    assert len(jn.load_results(tmp_path, storage=reader)) == 12
    assert jn.load_space(tmp_path, storage=reader) is not None
    page = jn.report(tmp_path, tmp_path / "report.html", storage=reader)
    assert "12 trials (12 success)" in page.read_text()
    status = _status(tmp_path, JAXNAS_STORAGE=reader)
    assert status.returncode == 0 and "12 trials (12 success)" in status.stdout, status.stderr
    with pytest.raises(Exception, match="permission denied"):
        _run(tmp_path, reader, evaluations=20)
    assert len(jn.load_results(tmp_path, storage=url)) == 12  # nothing was written


def test_bad_databases_and_folders_are_refused_by_name(postgres_server, tmp_path):
    first, second = postgres_server.database(), postgres_server.database()
    _run(tmp_path / "a", first)
    # A database that holds another run (another seed), from another folder.
    with pytest.raises(ValueError, match=r"holds a different run.*seed was 0, now 1"):
        _run(tmp_path / "b", first, seed=1)
    # The folder's run is in another database than the one named.
    with pytest.raises(jn.StorageError, match="holds a run whose database is"):
        _run(tmp_path / "a", second)
    # Not a PostgreSQL URL.
    with pytest.raises(ValueError, match=r"storage='mysql://x/y' must be None .* or a "
                                         r"PostgreSQL URL"):
        _run(tmp_path / "c", "mysql://x/y")
    # A database from a newer jaxnas.
    postgres_server.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                            database=first.rsplit("/", 1)[1])
    with pytest.raises(jn.StorageError,
                       match="schema version 99, newer than this jaxnas reads"):
        _run(tmp_path / "a", first)
    # A database on another machine with a folder in memory that no other machine sees:
    # refused before any connection (`.invalid` never resolves).
    shm = Path("/dev/shm")
    if shm.is_dir():
        with pytest.raises(ValueError, match="is on tmpfs, which no other machine reaches"):
            _run(shm / f"jaxnas-test-{os.getpid()}", "postgresql://u:p@db.invalid/run")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_overwrite_replaces_the_run_in_the_database(postgres_server, tmp_path):
    url = postgres_server.database()
    _run(tmp_path, url, seed=0)
    again = _run(tmp_path, url, seed=1, overwrite=True)
    assert len(again.trials) == 12
    assert [t["trial_id"] for t in jn.load_results(tmp_path, storage=url)] == list(range(12))
