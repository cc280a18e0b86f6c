"""The model-based, evolutionary and grid optimisers through `jn.run`: a run resumed from a
checkpoint is the run that was never interrupted, and workers share one run."""

import subprocess
import sys
from pathlib import Path

import pytest

import jaxnas as jn
from tests.run import _worker

REPO = Path(__file__).resolve().parents[2]
SAME = ("trial_id", "parent_id", "config", "fidelity", "status", "loss")
# Small batches and models, so that a few dozen trials exercise each. (BO keeps the state
# TPE keeps, a trial table; PriorBand+BO keeps PriorBand's: their resumes are PriorBand's
# and TPE's, tested here and in test_persistence.py, and each compiles a GP for ~12 s.)
OPTIONS = {
    "tpe": {"batch_size": 4, "n_startup_trials": 6},
    "regularized_evolution": {"batch_size": 4, "population_size": 8, "sample_size": 3},
    "grid_search": {"batch_size": 4, "points_per_float": 4, "shuffle": True},  # 48 points
}


def _table(trials) -> list[tuple]:
    return [tuple(str(t[k]) if k == "config" else t[k] for k in SAME) for t in trials]


def _run(root, evaluations, name):
    return jn.run(_worker.objective(0.0), _worker.space(), optimizer=name,
                  optimizer_kwargs={**OPTIONS[name], "max_trials": 64}, root_directory=root,
                  max_evaluations=evaluations, checkpoint_every=3, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_resumed_run_is_the_run_never_interrupted(tmp_path, name):
    # Stops inside an ask of 4: the resumed run evaluates the rest of it first.
    first, total = 10, 28
    whole = _run(tmp_path / "whole", total, name)
    _run(tmp_path / "parts", first, name)
    resumed = _run(tmp_path / "parts", total, name)
    assert _table(resumed.trials) == _table(whole.trials)
    assert len(resumed.trials) == total


@pytest.mark.slow
def test_two_tpe_workers_share_one_run(tmp_path):
    workers = [subprocess.Popen(
        [sys.executable, "-m", "tests.run._worker", str(tmp_path), "--evaluations", "40",
         "--sleep", "0.02", "--checkpoint-every", "5", "--optimizer", "tpe",
         "--batch-size", "2"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    trials = jn.load_results(tmp_path)
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)) == 40
    assert all(t["status"] == "success" for t in trials)
    assert len({t["worker"] for t in trials}) == 2
