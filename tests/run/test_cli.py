"""`python -m jaxnas plot ROOT` and `python -m jaxnas csv ROOT` on a small finished run."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jaxnas as jn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def objective(x, n, epochs):
    """A plain callable whose third call fails (a failed trial belongs in the table too)."""
    objective.calls += 1
    if objective.calls == 3:
        raise RuntimeError("the third trial fails")
    return {"loss": (x - 0.3) ** 2 + 1.0 / n, "cost": 0.5 * epochs, "note": f"n={n}"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A finished run of eight trials, one of them failed."""
    objective.calls = 0
    root = tmp_path_factory.mktemp("run")
    space = {"x": jn.Float(0.0, 1.0), "n": jn.Integer(1, 9), "epochs": jn.IntegerFidelity(1, 9)}
    jn.run(objective, space, optimizer="hyperband", root_directory=root, max_evaluations=8)
    return root


def _jaxnas(*args: str) -> str:
    """Runs `python -m jaxnas ARGS` in a fresh interpreter on this copy of jaxnas; its stdout."""
    package_root = str(Path(jn.__file__).resolve().parents[1])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "jaxnas", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_plot_writes_a_png_of_the_run(root):
    # The [plot] extra, which the [test] extra installs: never skipped.
    import matplotlib.pyplot as plt

    path = root / "progress.png"  # the default output
    assert _jaxnas("plot", str(root)) == str(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100
    pixels = plt.imread(path)
    assert pixels.std() > 0  # not a blank canvas


def _as_csv(value) -> str:
    """How the csv module writes a value: None as an empty field, the rest by str()."""
    return "" if value is None else str(value)


def test_csv_writes_every_trial_as_load_results_reads_it(root, tmp_path):
    path = tmp_path / "table.csv"
    assert _jaxnas("csv", str(root), "--out", str(path)) == str(path)
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    trials = jn.load_results(root)
    assert len(rows) == len(trials) == 8
    assert sorted(t["status"] for t in trials) == ["failed"] + ["success"] * 7
    header = list(rows[0])
    assert {"trial_id", "parent_id", "fidelity", "status", "loss", "cost"} <= set(header)
    assert "config.x" in header and "config.n" in header and header[-1] == "extra"
    for row, trial in zip(rows, trials):
        for column in header:
            if column == "extra":
                assert json.loads(row[column]) == trial["extra"]
            elif column.startswith("config."):
                assert row[column] == _as_csv(trial["config"][column[len("config."):]])
            elif column.startswith("objective."):
                assert row[column] == _as_csv(trial["objectives"].get(column[10:]))
            elif column == "loss" and math.isnan(trial["loss"]):
                assert math.isnan(float(row[column]))
            else:
                assert row[column] == _as_csv(trial[column]), column
    # The numbers read back as numbers: config values and losses are exact.
    succeeded = [(row, t) for row, t in zip(rows, trials) if t["status"] == "success"]
    for row, trial in succeeded:
        assert float(row["loss"]) == trial["loss"]
        assert float(row["config.x"]) == trial["config"]["x"]
        assert json.loads(row["extra"])["note"] == f"n={trial['config']['n']}"
