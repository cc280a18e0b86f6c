"""A real PostgreSQL server for the tests, started by the suite itself: Debian's server
(installed with apt where the machine lacks it, as CI's fresh machines may), in a
temporary data folder, on a free loopback port, with password (SCRAM) authentication.
Never mocked and never skipped: a machine that cannot start it fails the tests that need it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

ADMIN, ADMIN_PASSWORD = "jaxnas_admin", "admin-" + uuid.uuid4().hex
USER, PASSWORD = "jaxnas_worker", "w0rker-" + uuid.uuid4().hex  # looked for in every output
READER, READER_PASSWORD = "jaxnas_reader", "reader-" + uuid.uuid4().hex


def _binaries() -> Path:
    """The folder of `initdb` and `pg_ctl`."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and os.geteuid() == 0:
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode != 0:  # stale package lists
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            done = subprocess.run(install, capture_output=True, text=True)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert found, f"could not install postgresql: {done.stderr[-2000:]}"
    if not found and shutil.which("initdb"):
        found = [shutil.which("initdb")]
    assert found, "PostgreSQL's initdb is not installed (apt-get install postgresql)"
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A PostgreSQL server in a folder of its own; `stop` removes it.

    Args:
        durable: flush commits to disk as a production server does (the benchmarks); the
            tests run without (`fsync=off`), since nothing there survives the server.
    """

    def __init__(self, durable: bool = False):
        binaries = _binaries()
        # PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.folder = Path(tempfile.mkdtemp(prefix="jaxnas-postgres-"))
        self.folder.chmod(0o755)
        data, pwfile = self.folder / "data", self.folder / "pw"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        if self._as:
            shutil.chown(self.folder, "postgres")
            shutil.chown(pwfile, "postgres")
        self.port = _free_port()
        self._run(str(binaries / "initdb"), "-D", str(data), "-U", ADMIN, "-A",
                  "scram-sha-256", f"--pwfile={pwfile}", "--no-sync")
        self._pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections=200" + ("" if durable else " -c fsync=off"))
        self._run(*self._pg_ctl, "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        self.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'",
                     f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True,
                              cwd=self.folder, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout}{done.stderr}"

    def url(self, database: str, user: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.url(database, ADMIN, ADMIN_PASSWORD),
                             autocommit=True) as db:
            for statement in statements:
                db.execute(statement)

    def database(self) -> str:
        """A new database owned by the worker role, readable by the reader role; its URL."""
        name = "run_" + uuid.uuid4().hex[:12]
        self.execute(f"CREATE DATABASE {name} OWNER {USER}")
        # What the worker creates later, the reader may read.
        self.execute(f"GRANT CONNECT ON DATABASE {name} TO {READER}")
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.url(name), autocommit=True) as db:
            db.execute(f"GRANT USAGE ON SCHEMA public TO {READER}")
            db.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES "
                       f"TO {READER}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self._as, *self._pg_ctl, "-m", "immediate", "stop"],
                       capture_output=True, cwd=self.folder, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
