"""Storage overhead per trial and resume time: jaxnas's run folder beside NePS's, in one run.

Both sides run random search on the same 4-parameter space with a trivial plain-Python
objective (NePS-style `f(**config) -> float`, one trial at a time), so the wall time minus
the time inside the objective is what each framework spends per trial: sampling,
bookkeeping and writing the trial to disk.

    * jaxnas: `jn.run(..., optimizer="random_search")`; every trial is committed to
      `trials.sqlite` (WAL, synchronous=FULL) as it finishes. The storage share of that
      overhead is the time spent inside SQLite (every `sqlite3` call), measured in a second,
      profiled run of the same size (`cProfile`, which slows the Python around it but
      times each C call into SQLite as it is), so the first run's timings are untouched.
      Only public names are used, so the same script runs on any jaxnas version.
    * jaxnas on PostgreSQL: the same run with `storage="postgresql://..."`, on Debian's
      server started for the benchmark in a temporary folder on this machine
      (`tests/_postgres.py`; loopback TCP, commits flushed to disk). Its storage share
      is the time spent in the driver's calls (psycopg's `Cursor.execute` and
      `executemany`, timed around each).
    * NePS 0.17: `neps.run(..., optimizer="random_search")`; each trial is a folder of
      YAML/JSON files under a file lock, as NePS stores runs.

Resume: the same call again on the finished folder (the budget is already met), timed
from the call to its return: jaxnas restores the newest Orbax checkpoint and replays the
events after it (XLA compilation of ask/tell included, reported on its own); NePS reads its
trial folders back.

Run from the repository root:
    python benchmarks/storage.py            # 1k and 10k trials; NePS at 1k and 10k (hours:
                                            # NePS's cost per trial grows with the run)
    python benchmarks/storage.py --quick    # 200 trials each side
    python benchmarks/storage.py --sizes 1000 2000 10000 --neps-max 2000
    python benchmarks/storage.py --no-postgres   # SQLite and NePS only

Prints a markdown table and writes `benchmarks/results/storage.json`. One repetition per
size (seed 0); the per-trial figures are averages over all the run's trials.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import logging
import pstats
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jaxnas as jn
from _common import machine_info, write_results

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "storage.json"
TARGET_OVERHEAD_RATIO = 10.0
TARGET_RESUME_S = 2.0


def objective(x, y, n, kind, **_):
    return (x - 0.5) ** 2 + (y + 0.5) ** 2 + 0.01 * n + (0.1 if kind == "b" else 0.0)


def jaxnas_space():
    return {"x": jn.Float(-2.0, 2.0), "y": jn.Float(-2.0, 2.0), "n": jn.Integer(1, 100),
            "kind": jn.Categorical(("a", "b", "c"))}


class _Stopwatch:
    """Adds up the seconds spent inside the functions it wraps."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def _sqlite_seconds(profile: cProfile.Profile) -> float:
    """The seconds a profiled run spent inside SQLite: its `sqlite3` calls (connect,
    execute, executemany, fetches, commits). None calls another, so their times add up."""
    stats = pstats.Stats(profile).stats
    return sum(cumulative for (_, _, name), (_, _, _, cumulative, _) in stats.items()
               if "sqlite3" in name)


def _run(trials: int, root: Path, objective_fn, storage: str | None = None) -> float:
    """Seconds for one `jn.run` of random search to `trials` trials in `root`."""
    # jaxnas loads its modules on first use: importing them is once per process, not a
    # per-trial overhead, so it happens before the clock starts.
    run, space = jn.run, jaxnas_space()
    start = time.perf_counter()
    run(objective_fn, space, optimizer="random_search", root_directory=root,
        max_evaluations=trials, progress=False, optimizer_kwargs={"batch_size": 100},
        storage=storage)
    return time.perf_counter() - start


def run_jaxnas_postgres(trials: int, root: Path, url: str) -> dict:
    """The same run with its trials in PostgreSQL; the storage share is the time inside
    the driver's calls (psycopg's cursors, timed around each one)."""
    import psycopg  # noqa: PLC0415 - the [postgres] extra; its cursors are timed

    inside, database = _Stopwatch(), _Stopwatch()
    timed_objective = inside.wrap(objective)
    originals = {name: getattr(psycopg.Cursor, name) for name in ("execute", "executemany")}
    for name, method in originals.items():
        setattr(psycopg.Cursor, name, database.wrap(method))
    try:
        wall = _run(trials, root, timed_objective, url)
    finally:
        for name, method in originals.items():
            setattr(psycopg.Cursor, name, method)
    resume = _run(trials, root, timed_objective, url)
    return {"trials": trials, "wall_s": wall, "objective_s": inside.seconds,
            "overhead_per_trial_s": (wall - inside.seconds) / trials,
            "storage_per_trial_s": database.seconds / trials, "resume_s": resume}


def run_jaxnas(trials: int, root: Path) -> dict:
    inside = _Stopwatch()
    timed_objective = inside.wrap(objective)
    wall = _run(trials, root, timed_objective)
    objective_s = inside.seconds
    resume = _run(trials, root, timed_objective)  # the budget is met: restore and replay
    profile = cProfile.Profile()
    profiled_root = root.with_name(root.name + "_profiled")
    profile.enable()
    try:
        _run(trials, profiled_root, objective)
    finally:
        profile.disable()
    return {"trials": trials, "wall_s": wall, "objective_s": objective_s,
            "overhead_per_trial_s": (wall - objective_s) / trials,
            "storage_per_trial_s": _sqlite_seconds(profile) / trials, "resume_s": resume,
            "database_bytes": sum(p.stat().st_size for p in root.glob("trials.sqlite*"))}


def run_neps(trials: int, root: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import neps  # noqa: PLC0415 - the [bench] extra

    class Space(neps.PipelineSpace):
        x = neps.Float(-2.0, 2.0)
        y = neps.Float(-2.0, 2.0)
        n = neps.Integer(1, 100)
        kind = neps.Categorical(("a", "b", "c"))

    inside = _Stopwatch()
    timed_objective = inside.wrap(objective)

    start = time.perf_counter()
    neps.run(timed_objective, Space(), root_directory=root, optimizer="random_search",
             total_evaluations_to_spend=trials)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    neps.run(timed_objective, Space(), root_directory=root, optimizer="random_search",
             total_evaluations_to_spend=trials)
    resume = time.perf_counter() - start
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"trials": trials, "wall_s": wall, "objective_s": inside.seconds,
            "overhead_per_trial_s": (wall - inside.seconds) / trials, "resume_s": resume,
            "files": sum(1 for p in root.rglob("*") if p.is_file()), "bytes": size}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 trials each side")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000],
                        help="run sizes in trials (default 1000 10000)")
    parser.add_argument("--neps-max", type=int, default=10_000,
                        help="largest run NePS does (default 10000)")
    parser.add_argument("--no-postgres", action="store_true",
                        help="leave out jaxnas on PostgreSQL")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = (200,) if args.quick else tuple(args.sizes)
    logging.getLogger("neps").setLevel(logging.WARNING)
    rows = []
    server = None
    if not args.no_postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests._postgres import Server  # noqa: PLC0415 - the suite's own server

        server = Server(durable=True)
    try:
        with tempfile.TemporaryDirectory(prefix="jaxnas_storage_") as tmp:
            for n in sizes:
                print(f"jaxnas, {n} trials ...", flush=True)
                ours = run_jaxnas(n, Path(tmp) / f"jaxnas_{n}")
                postgres = None
                if server is not None:
                    print(f"jaxnas on PostgreSQL, {n} trials ...", flush=True)
                    postgres = run_jaxnas_postgres(n, Path(tmp) / f"jaxnas_pg_{n}",
                                                   server.database())
                theirs = None
                if n <= args.neps_max:
                    print(f"NePS, {n} trials ...", flush=True)
                    theirs = run_neps(n, Path(tmp) / f"neps_{n}")
                rows.append({"trials": n, "jaxnas": ours, "jaxnas_postgres": postgres,
                             "neps": theirs})
    finally:
        if server is not None:
            server.stop()
    results = {"benchmark": "storage", "machine": machine_info("neural-pipeline-search"),
               "settings": {"sizes": list(sizes), "optimizer": "random_search",
                            "objective": "plain Python, one trial at a time",
                            "repetitions": 1, "seed": 0},
               "rows": rows}
    print("\n| trials | jaxnas overhead/trial | of which SQLite | on PostgreSQL | of which "
          "PostgreSQL | NePS overhead/trial | ratio (SQLite) | ratio (PostgreSQL) | "
          "jaxnas resume | on PostgreSQL | NePS resume |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ours, pg, theirs = row["jaxnas"], row["jaxnas_postgres"], row["neps"]
        ratio = (theirs["overhead_per_trial_s"] / ours["overhead_per_trial_s"]) if theirs \
            else None
        row["overhead_ratio"] = ratio
        row["overhead_ratio_postgres"] = (theirs["overhead_per_trial_s"]
                                          / pg["overhead_per_trial_s"]) if theirs and pg \
            else None
        ms = lambda d, k: f"{1e3 * d[k]:.3f} ms" if d else "not run"  # noqa: E731
        times = lambda r: f"{r:.0f}x" if r else "-"  # noqa: E731
        print(f"| {row['trials']:,} | {ms(ours, 'overhead_per_trial_s')} | "
              f"{ms(ours, 'storage_per_trial_s')} | {ms(pg, 'overhead_per_trial_s')} | "
              f"{ms(pg, 'storage_per_trial_s')} | {ms(theirs, 'overhead_per_trial_s')} | "
              f"{times(ratio)} | {times(row['overhead_ratio_postgres'])} | "
              f"{ours['resume_s']:.2f} s | "
              + (f"{pg['resume_s']:.2f} s | " if pg else "not run | ")
              + (f"{theirs['resume_s']:.2f} s |" if theirs else "not run |"))
    ratios = [r["overhead_ratio"] for r in rows if r["overhead_ratio"] is not None]
    largest = rows[-1]["jaxnas"]
    results["targets"] = {
        "overhead_ratio_min": min(ratios) if ratios else None,
        "overhead_ratio_target": TARGET_OVERHEAD_RATIO,
        "overhead_met": bool(ratios) and min(ratios) >= TARGET_OVERHEAD_RATIO,
        "resume_s_largest": largest["resume_s"], "resume_trials": largest["trials"],
        "resume_target_s": TARGET_RESUME_S,
        "resume_met": largest["resume_s"] < TARGET_RESUME_S,
    }
    t = results["targets"]
    worst = "n/a" if t["overhead_ratio_min"] is None else f"{t['overhead_ratio_min']:.0f}x"
    verdict = ("not measured (NePS not run)" if t["overhead_ratio_min"] is None
               else "met" if t["overhead_met"] else "NOT met")
    print(f"\nTarget, overhead per trial >= {TARGET_OVERHEAD_RATIO:g}x below NePS's: "
          f"{verdict} (worst ratio {worst}).")
    print(f"Target, resume of a {t['resume_trials']:,}-trial run < {TARGET_RESUME_S:g} s: "
          f"{'met' if t['resume_met'] else 'NOT met'} ({t['resume_s_largest']:.2f} s).")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
