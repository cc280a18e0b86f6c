"""The trial table of a run: one SQLite database in the run's root directory.

Every finished trial is committed here before the optimiser hears of it (DESIGN, principle
7), so a crash never loses a finished result. `sqlite3` is in Python's standard library.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

DATABASE = "trials.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY,
    parent_id INTEGER,
    config TEXT NOT NULL,
    fidelity REAL,
    loss REAL,
    status TEXT NOT NULL,
    cost REAL,
    seconds REAL,
    error TEXT,
    extra TEXT
)
"""


class TrialStore:
    """Appends finished trials to `ROOT/trials.sqlite` and reads them back."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DATABASE
        self._db = sqlite3.connect(self.path)
        self._db.execute(_SCHEMA)
        self._db.commit()

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Commits finished trials (one transaction for the batch)."""
        with self._db:
            self._db.executemany(
                "INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r["trial_id"], r["parent_id"], json.dumps(r["config"]), r["fidelity"],
                  _finite_or_none(r["loss"]), r["status"], r["cost"], r["seconds"],
                  r.get("error"), json.dumps(r.get("extra", {}))) for r in rows])

    def close(self) -> None:
        self._db.close()


def load_results(root: str | Path) -> list[dict[str, Any]]:
    """The trials of a run, in trial-id order (`jn.load_results`).

    Each is a dict with `trial_id`, `parent_id` (the lower rung it continued from, or None),
    `config` (values by path), `fidelity`, `loss` (NaN for a failed trial), `status`
    (`"success"` or `"failed"`), `cost`, `seconds`, `error` and `extra` (other metrics).
    """
    path = Path(root) / DATABASE
    if not path.exists():
        raise FileNotFoundError(f"no jaxnas run in {str(root)!r}: {DATABASE} is missing.")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM trials ORDER BY trial_id").fetchall()
    names = ("trial_id", "parent_id", "config", "fidelity", "loss", "status", "cost",
             "seconds", "error", "extra")
    out = []
    for row in rows:
        trial = dict(zip(names, row))
        trial["config"] = json.loads(trial["config"])
        trial["extra"] = json.loads(trial["extra"] or "{}")
        trial["loss"] = math.nan if trial["loss"] is None else trial["loss"]
        out.append(trial)
    return out


def _finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None
