"""The runnable examples: the quickstart end to end on a small budget, MNIST-1D's space and data."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from examples import mnist1d_cnn as mnist1d
from jaxnas.nn import BuildError
from jaxnas.train import BucketTrainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_reports_the_incumbent(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--max-fidelity-spent",
         "60", "--root", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600,
        check=True).stdout
    assert "stopped by max_fidelity_spent" in out
    for line in ("architecture : 64 -> ", "learning rate:", "test accuracy:", str(tmp_path)):
        assert line in out, out
    trials = jn.load_results(tmp_path)
    assert trials and all(t["status"] == "success" for t in trials)
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0


@pytest.mark.slow
def test_hardware_aware_prints_the_front_and_saves_its_plot(tmp_path, capsys, monkeypatch):
    from examples import hardware_aware

    out = _example(hardware_aware, capsys, monkeypatch, "--evaluations", "10",
                   "--max-params", "5000", "--root", str(tmp_path))
    assert "10 trained and " in out and "Pareto front, " in out, out
    assert (tmp_path / "pareto_front.png").stat().st_size > 0
    trials = jn.load_results(tmp_path)
    statuses = {t["status"] for t in trials}
    assert statuses <= {"success", "infeasible"}
    assert all(t["objectives"]["params"] <= 5000 for t in trials if t["status"] == "success")
    assert all(t["extra"]["params"] > 5000 for t in trials if t["status"] == "infeasible")
    front_rows = out.split("architecture\n")[1].split("plot:")[0].strip().splitlines()
    assert front_rows and all("64 -> " in row for row in front_rows)


@pytest.mark.slow
def test_grammar_search_prints_the_best_derivation_and_its_accuracy(tmp_path, capsys,
                                                                    monkeypatch):
    """examples/grammar_nas.py end to end on 4 trials of 2 epochs: every trial trains, and
    the derivation printed is the incumbent's, as its space resolves the stored config."""
    from examples import grammar_nas

    out = _example(grammar_nas, capsys, monkeypatch, "--max-evaluations", "4", "--epochs", "2",
                   "--root", str(tmp_path))
    assert "4 trials of " in out and "(stopped by max_evaluations)" in out, out
    trials = jn.load_results(tmp_path)
    assert len(trials) == 4 and all(t["status"] == "success" for t in trials)
    best_id = int(out.split("best trial ")[1].split(":")[0])
    best = next(t for t in trials if t["trial_id"] == best_id)
    assert best["loss"] == min(t["loss"] for t in trials)
    spec = jn.compile(grammar_nas.grammar_space(2), max_nodes=grammar_nas.MAX_NODES)
    cell = spec.resolve(spec.config(best["config"]), build=False)["cell"]
    assert f"  cell         : {grammar_nas.describe(cell)}\n" in out, out
    assert f"  derivation   : {grammar_nas.architecture(cell)}\n" in out, out
    validation = float(out.split("validation accuracy ")[1].split(",")[0])
    assert validation == pytest.approx(1 - best["loss"], abs=1e-4)
    test_accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert 0.0 <= test_accuracy <= 1.0


def _example(module, capsys, monkeypatch, *args: str) -> str:
    """Runs an example's `main()` in this process (its command line `args`); its stdout."""
    monkeypatch.setattr(sys, "argv", [module.__file__, *args])
    module.main()
    return capsys.readouterr().out


def test_the_neps_search_moved_to_jaxnas_continues_its_checkpoints(tmp_path, capsys,
                                                                   monkeypatch):
    """examples/from_neps.py: NePS's training loop, unchanged, under jn.run; promotions
    continue from their parents' checkpoints, so the epochs trained are the budget."""
    from examples import from_neps

    out = _example(from_neps, capsys, monkeypatch, "--max-fidelity-spent", "120", "--root",
                   str(tmp_path))
    trials = jn.load_results(tmp_path)
    continued = [t for t in trials if t["parent_id"] >= 0]
    assert continued and f"{len(continued)} continued from their parent's checkpoint" in out
    assert all(t["extra"]["epochs_trained"] == t["fidelity"] - next(
        p["fidelity"] for p in trials if p["trial_id"] == t["parent_id"]) for t in continued)
    trained = sum(t["extra"]["epochs_trained"] for t in trials)
    assert f"{trained} epochs trained in all" in out and trained >= 120
    assert all((tmp_path / "trial_folders" / f"trial_{t['trial_id']}" / "checkpoint.npz")
               .exists() for t in trials)
    assert 0.0 <= jn.load_results(tmp_path)[0]["loss"] <= 1.0  # objective_to_minimize read


def test_optuna_s_quick_start_moved_to_jaxnas(tmp_path, capsys, monkeypatch):
    from examples import from_optuna

    out = _example(from_optuna, capsys, monkeypatch, "--trials", "12", "--root", str(tmp_path))
    assert "quadratic: best x" in out and "after 12 trials" in out
    classifiers = jn.load_results(tmp_path / "classifiers")
    names = {t["config"]["classifier"] for t in classifiers}  # the branch index
    assert len(classifiers) == 12 and names <= {0, 1}
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert 0.3 <= accuracy <= 1.0


@pytest.mark.slow
def test_mnist1d_space_trains_one_masked_bucket():
    (x, y), validation, test = mnist1d.mnist1d(seed=42)
    assert x.shape == (3200, 40, 1) and validation[0].shape == (800, 40, 1)
    assert test[0].shape == (1000, 40, 1) and set(np.unique(y)) == set(range(10))
    spec = jn.compile(mnist1d.cnn_space())
    assert spec.width_paths  # the channel counts are masked
    configs = jax.vmap(spec.sample_prior)(jax.random.split(jax.random.key(0), 64))
    # Its pooling blocks halve the length, so they cannot be skipped: the depth stays
    # static (masked="widths", what jn.run falls back to), and an open one is refused.
    buckets = spec.buckets(configs, masked="widths")
    rows = np.array([b == buckets[0] for b in buckets])
    members = jax.tree.map(lambda a: a[rows][:4], configs)
    task = jn.SupervisedTask((x[:400], y[:400]), validation, batch_size=100)
    first = jax.tree.map(lambda a: a[0], members)
    open_depth = BucketTrainer(task.for_bucket(spec, first, masked=True))
    with pytest.raises(BuildError, match=r"block 1 of an open depth maps .* must keep"):
        open_depth.state_shapes(np.zeros((1, 2), np.uint32), members)
    trainer = BucketTrainer(task.for_bucket(spec, first, masked="widths"))
    n = int(np.shape(members["learning_rate"])[0])
    _, results = trainer(jax.random.split(jax.random.key(1), n), members, jnp.full(n, 1))
    assert results["loss"].shape == (n,) and np.all((results["loss"] >= 0)
                                                    & (results["loss"] <= 1))
