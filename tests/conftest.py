"""Shared test settings: jaxnas warnings are errors (see pyproject), hypothesis profile for CI."""

import os

# XLA's CPU fusion emitters spend ~1 s compiling a program with dozens of scalar outputs
# (a config is a dict of scalars). The legacy emitters compile 5-6x faster and give the
# same numbers; the suite uses them so it stays within CI's time. Set before jax loads.
# LLVM's optimisation level 0 compiles about a third faster again; the tests' programs are
# tiny, so they run no slower for it. Subprocesses the tests start inherit both flags.
for flag in ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0"):
    if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()

# `import jaxnas` makes one CPU device per core; the suite always has two, so that spreading
# a bucket over devices is tested on any machine.
os.environ.setdefault("JAXNAS_CPU_DEVICES", "2")

# jn.run turns JAX's persistent compilation cache on (~/.cache/jaxnas/xla); the suite uses
# a fresh folder of its own, so that no test depends on what an earlier run left there.
if "JAXNAS_COMPILATION_CACHE" not in os.environ:
    import tempfile

    os.environ["JAXNAS_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxnas-test-cache-")

# ... and every program of every test goes through JAX's persistent cache there, not only
# `jn.run`'s: many tests build the same optimiser or training program again (a fresh closure
# misses JAX's in-memory cache, not the persistent one, which is keyed on the program), and
# the two xdist workers and the subprocesses some tests start share the folder (about 13%
# off the tests that start processes, measured on and off alternately; in-process tests
# gained within noise). Set as JAX's own cache, which `jn.run` leaves as it is.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["JAXNAS_COMPILATION_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.01")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server, started for this test process (tests/_postgres.py)."""
    from tests._postgres import Server  # noqa: PLC0415

    server = Server()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request):
    """A run's `storage=`: None (SQLite in the folder), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").database()
