"""`python -m jaxnas status|report|plot|csv ROOT`: look at a run from the shell.

`status` prints a run's progress (trials by status, fidelity and cost spent, workers), its
best trials and its failures; `report` writes the HTML report (`jn.report`); `plot` saves
the best loss over trials as a PNG; `csv` writes the trial table as CSV (`report` and
`plot` need the `[plot]` extra). This file only parses the arguments: the
reports are `jaxnas.run`'s.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from jaxnas.run import StorageError, export_csv, plot, report, summarise

STORAGE_HELP = ("for a run on a database server: a postgresql:// URL, say another user's "
                "(default: JAXNAS_STORAGE, else the URL in ROOT/storage.json with libpq's "
                "PGPASSWORD or ~/.pgpass; a password on the command line is visible to "
                "other users of the machine)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jaxnas", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("status", help="progress, best trials and failures of a run")
    show.add_argument("root", type=Path)
    show.add_argument("--storage", default=None, help=STORAGE_HELP)
    show.add_argument("--top", type=int, default=5)
    page = commands.add_parser("report", help="write a self-contained HTML report of a run")
    page.add_argument("root", type=Path)
    page.add_argument("--storage", default=None, help=STORAGE_HELP)
    page.add_argument("--out", type=Path, default=None, help="default: ROOT/report.html")
    draw = commands.add_parser("plot", help="save the best loss over trials as a PNG")
    draw.add_argument("root", type=Path)
    draw.add_argument("--storage", default=None, help=STORAGE_HELP)
    draw.add_argument("--out", type=Path, default=None)
    table = commands.add_parser("csv", help="write the trial table as CSV")
    table.add_argument("root", type=Path)
    table.add_argument("--storage", default=None, help=STORAGE_HELP)
    table.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        _command(args)
    except (FileNotFoundError, StorageError, ValueError) as error:  # said plainly, no trace
        parser.exit(2, f"python -m jaxnas {args.command}: {error}\n")


def _command(args: argparse.Namespace) -> None:
    if args.command == "status":
        print(summarise(args.root, args.top, storage=args.storage))
    elif args.command == "report":
        print(report(args.root, args.out, storage=args.storage))
    elif args.command == "plot":
        print(plot(args.root, args.out or args.root / "progress.png", storage=args.storage))
    else:
        print(export_csv(args.root, args.out or args.root / "trials.csv",
                         storage=args.storage))


if __name__ == "__main__":
    main()
