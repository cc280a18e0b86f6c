"""Workers on one machine: throughput of 1, 2, 4 and 8 worker processes sharing a run, on
SQLite and on PostgreSQL, for an asynchronous optimiser (ASHA) and a synchronous one
(Hyperband), side by side in one run.

Each ask gives a worker `--batch-size` trials (default 3, ASHA's default: eta), which it
evaluates one after another; with one trial an ask, every trial costs each worker a replay
of one more ask and tell of the optimiser, and on two cores eight workers spend their time
there (`--batch-size 1` shows it).

Each worker is a process running the same `jn.run` on one run (the README's "several
workers"); the objective sleeps in proportion to its fidelity (`--unit` seconds an epoch,
times a jitter of 0.8-1.2 drawn from the configuration), so the workers' CPU use is the
framework's own. The budget grows with the workers (`--budget` epochs per worker, as
`max_fidelity_spent`), and the workers wait at a start line until every one has imported
jaxnas, so that throughput compares steady states:

    throughput = epochs finished between the moment every worker runs a trial and the
                 last trial's end, per second of that window (from the trials' times in
                 the database)
    efficiency = throughput with k workers / (k x throughput with one)

Target (issue 16): the asynchronous optimiser's efficiency at 8 workers >= 0.85; the
synchronous one's is reported beside it (its workers idle while a rung's slowest trial
finishes). PostgreSQL is Debian's server, started for the benchmark in a temporary folder
(`tests/_postgres.py`, as the tests start it).

Run from the repository root:
    python benchmarks/scaling.py             # 1, 2, 4, 8 workers; both databases
    python benchmarks/scaling.py --quick     # 1 and 4 workers, SQLite, a short budget

Prints a markdown table and writes `benchmarks/results/scaling.json`. One repetition per
cell, seed 0.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "scaling.json"
TARGET_EFFICIENCY = 0.85
OPTIMIZERS = {"asha": "asynchronous", "hyperband": "synchronous"}


def objective(unit: float):
    def evaluate(x, y, epochs):
        digest = hashlib.sha256(f"{x:.12g},{y:.12g}".encode()).digest()
        jitter = 0.8 + 0.4 * digest[0] / 255
        time.sleep(unit * epochs * jitter)
        return (x - 0.3) ** 2 + (y + 0.2) ** 2 + 1.0 / epochs
    return evaluate


def worker(args: argparse.Namespace) -> None:
    """One worker process: imports, says it is ready, waits for the start line, runs."""
    import jaxnas as jn  # noqa: PLC0415

    space = {"x": jn.Float(-1.0, 1.0), "y": jn.Float(-1.0, 1.0),
             "epochs": jn.IntegerFidelity(1, 27)}
    print("ready", flush=True)
    go = Path(args.root) / "go"
    while not go.exists():
        time.sleep(0.01)
    jn.run(objective(args.unit), space, optimizer=args.optimizer, root_directory=args.root,
           max_fidelity_spent=args.total, storage=args.storage, progress=False,
           optimizer_kwargs={"batch_size": args.batch_size, "max_trials": args.max_trials},
           checkpoint_every=200)


def measure(root: Path, workers: int, optimizer: str, storage: str | None,
            budget: float, unit: float, batch_size: int) -> dict:
    """Runs `workers` processes on one run; returns its throughput figures."""
    root.mkdir(parents=True)
    total = budget * workers
    command = [sys.executable, __file__, "--worker", str(root), "--optimizer", optimizer,
               "--unit", str(unit), "--total", str(total), "--batch-size", str(batch_size),
               "--max-trials", str(int(total) + 256)]
    if storage is not None:
        command += ["--storage", storage]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO) for _ in range(workers)]
    for p in processes:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    started, cpu = time.time(), _children_cpu()
    (root / "go").touch()
    for p in processes:
        _, err = p.communicate(timeout=1800)
        assert p.returncode == 0, err[-3000:]
    wall, cpu = time.time() - started, _children_cpu() - cpu
    import jaxnas as jn  # noqa: PLC0415

    trials = jn.load_results(root, storage=storage)
    fidelity = {t["trial_id"]: t["fidelity"] for t in trials}
    finished = [t for t in trials if t["status"] == "success"]
    first = {}
    for t in trials:
        first[t["worker"]] = min(first.get(t["worker"], t["created"]), t["created"])
    t0 = max(first.values())  # every worker is running a trial from here on
    t1 = max(t["finished"] for t in finished)
    added = [t["fidelity"] - (fidelity[t["parent_id"]] if t["parent_id"] >= 0 else 0.0)
             for t in finished if t["finished"] >= t0]
    return {"workers": workers, "optimizer": optimizer,
            "storage": "sqlite" if storage is None else "postgresql",
            "trials": len(trials), "epochs": sum(t["fidelity"] for t in finished),
            "wall_s": wall, "window_s": t1 - t0, "cpu_ms_per_trial": 1e3 * cpu / len(trials),
            "throughput_epochs_per_s": sum(added) / (t1 - t0),
            "workers_seen": len({t["worker"] for t in trials})}


def _children_cpu() -> float:
    """CPU seconds (user and system) of the finished worker processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--budget", type=float, default=600.0,
                        help="epochs per worker (default 600)")
    parser.add_argument("--unit", type=float, default=0.02,
                        help="seconds an epoch sleeps (default 0.02)")
    parser.add_argument("--batch-size", type=int, default=3,
                        help="trials an ask gives a worker, which it evaluates one after "
                             "another (default 3: ASHA's default, eta)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    # A worker process (started by this script).
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", default="asha", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--max-trials", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--storage", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        args.root = args.worker
        worker(args)
        return
    counts = [1, 4] if args.quick else args.workers
    budget = 150.0 if args.quick else args.budget
    server = None
    databases: list[str | None] = [] if args.no_sqlite else [None]
    if not (args.quick or args.no_postgres):
        sys.path.insert(0, str(REPO))
        from tests._postgres import Server  # noqa: PLC0415 - the suite's own server

        server = Server(durable=True)
        databases.append("postgresql")
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="jaxnas_scaling_") as tmp:
            for database in databases:
                for optimizer in OPTIMIZERS:
                    for k in counts:
                        url = server.database() if database else None
                        print(f"{database or 'sqlite'}, {optimizer}, {k} worker(s) ...",
                              flush=True)
                        rows.append(measure(Path(tmp) / f"{database}-{optimizer}-{k}", k,
                                            optimizer, url, budget, args.unit,
                                            args.batch_size))
    finally:
        if server is not None:
            server.stop()
    for row in rows:
        one = next(r for r in rows if r["workers"] == counts[0] and
                   r["optimizer"] == row["optimizer"] and r["storage"] == row["storage"])
        row["efficiency"] = (row["throughput_epochs_per_s"] * counts[0]
                             / (row["workers"] * one["throughput_epochs_per_s"]))
    print("\n| storage | optimiser | workers | trials | window | epochs/s | efficiency | "
          "CPU per trial, all workers |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['storage']} | {r['optimizer']} ({OPTIMIZERS[r['optimizer']]}) | "
              f"{r['workers']} | {r['trials']:,} | {r['window_s']:.1f} s | "
              f"{r['throughput_epochs_per_s']:.1f} | {r['efficiency']:.2f} | "
              f"{r['cpu_ms_per_trial']:.1f} ms |")
    most = max(counts)
    targets = {}
    for r in rows:
        if r["workers"] == most and r["optimizer"] == "asha":
            targets[r["storage"]] = {"efficiency": r["efficiency"],
                                     "met": r["efficiency"] >= TARGET_EFFICIENCY}
            print(f"Target, asynchronous efficiency at {most} workers on {r['storage']} >= "
                  f"{TARGET_EFFICIENCY}: {'met' if r['efficiency'] >= TARGET_EFFICIENCY else 'NOT met'}"
                  f" ({r['efficiency']:.2f}).")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _common import machine_info, write_results  # noqa: PLC0415

    write_results(args.out, {
        "benchmark": "scaling", "machine": machine_info("psycopg"),
        "settings": {"workers": counts, "budget_epochs_per_worker": budget,
                     "seconds_per_epoch": args.unit, "jitter": "0.8-1.2 by config",
                     "batch_size": args.batch_size, "repetitions": 1, "seed": 0},
        "rows": rows, "targets": targets})


if __name__ == "__main__":
    main()
