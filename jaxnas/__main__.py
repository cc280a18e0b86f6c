"""`python -m jaxnas status ROOT`, `python -m jaxnas plot ROOT` and `python -m jaxnas csv ROOT`.

`status` prints a run's progress (trials by status, fidelity and cost spent, workers), its
best trials and its failures; `plot` saves the best loss over trials as a PNG (the `[plot]`
extra); `csv` writes the trial table as CSV. This file only parses the arguments: the
reports are `jaxnas.run`'s.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from jaxnas.run import export_csv, plot, summarise


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
        print(summarise(args.root, args.top))
    elif args.command == "plot":
        print(plot(args.root, args.out or args.root / "progress.png"))
    else:
        print(export_csv(args.root, args.out or args.root / "trials.csv"))


if __name__ == "__main__":
    main()
