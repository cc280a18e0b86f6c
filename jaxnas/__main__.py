"""`python -m jaxnas status ROOT`, `python -m jaxnas plot ROOT` and `python -m jaxnas csv ROOT`.

`status` prints a run's progress (trials by status, fidelity and cost spent, workers), its
best trials and its failures; `plot` saves the best loss over trials as a PNG (the `[plot]`
extra); `csv` writes the trial table as CSV.
"""

from __future__ import annotations

import argparse
import collections
import math
import time
from collections.abc import Sequence
from pathlib import Path

from jaxnas._storage import export_csv, load_results


def status(root: Path, top: int = 5) -> str:
    """The text `python -m jaxnas status ROOT` prints."""
    trials = load_results(root)
    counts = collections.Counter(t["status"] for t in trials)
    done = [t for t in trials if t["status"] == "success"]
    fidelity_of = {t["trial_id"]: t["fidelity"] or 0.0 for t in trials}
    spent = sum((t["fidelity"] or 0.0) - fidelity_of.get(t["parent_id"], 0.0)
                for t in trials if t["status"] in ("success", "failed"))
    cost = sum(t["cost"] or 0.0 for t in trials if t["status"] in ("success", "failed"))
    workers = {t["worker"] for t in trials if t["worker"]}
    running = {t["worker"] for t in trials if t["status"] == "running"}
    lines = [f"run {root}: {len(trials)} trials ("
             + ", ".join(f"{counts[s]} {s}" for s in ("success", "failed", "running", "pending")
                         if counts[s]) + ")",
             f"fidelity spent {spent:g}, cost {cost:g}; {len(workers)} worker(s) so far, "
             f"{len(running)} running now"]
    finished = [t["finished"] for t in trials if t["finished"]]
    if finished:
        lines.append(f"last trial finished {time.ctime(max(finished))}")
    if done:
        highest = max(t["fidelity"] or 0.0 for t in done)
        best = sorted((t for t in done if (t["fidelity"] or 0.0) == highest),
                      key=lambda t: t["loss"])[:top]
        lines.append(f"\nbest trials at the highest fidelity ({highest:g}):")
        for t in best:
            values = ", ".join(f"{k}={_short(v)}" for k, v in t["config"].items())
            lines.append(f"  trial {t['trial_id']:>5}  loss {t['loss']:.6g}  {values}")
    failures = [t for t in trials if t["status"] == "failed"]
    if failures:
        errors = collections.Counter(t["error"] or "?" for t in failures)
        lines.append(f"\nfailures ({len(failures)}):")
        for error, n in errors.most_common(top):
            lines.append(f"  {n} x {error}")
        lines.append(f"  (the last one: trial {failures[-1]['trial_id']}; its traceback is in "
                     f"jn.load_results(root)[i]['traceback'])")
    return "\n".join(lines)


def plot(root: Path, out: Path) -> Path:
    """Saves the best loss over finished trials (and every loss, by fidelity) as a PNG."""
    import matplotlib  # noqa: PLC0415 - the [plot] extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    trials = sorted((t for t in load_results(root) if t["status"] == "success"),
                    key=lambda t: t["finished"])
    losses = [t["loss"] for t in trials]
    best = [min(losses[: i + 1]) for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(range(len(losses)), losses, c=[t["fidelity"] or 0 for t in trials], s=8,
               cmap="viridis", label="trial loss (colour: fidelity)")
    ax.step(range(len(best)), best, where="post", color="black", label="best so far")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jaxnas", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("status", help="progress, best trials and failures of a run")
    show.add_argument("root", type=Path)
    show.add_argument("--top", type=int, default=5)
    draw = commands.add_parser("plot", help="save the best loss over trials as a PNG")
    draw.add_argument("root", type=Path)
    draw.add_argument("--out", type=Path, default=None)
    table = commands.add_parser("csv", help="write the trial table as CSV")
    table.add_argument("root", type=Path)
    table.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "status":
        print(status(args.root, args.top))
    elif args.command == "plot":
        print(plot(args.root, args.out or args.root / "progress.png"))
    else:
        print(export_csv(args.root, args.out or args.root / "trials.csv"))


if __name__ == "__main__":
    main()
