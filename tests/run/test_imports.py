"""`jn.import_trials(root, rows)`: finished trials from another run, a CSV file or an
Optuna study join a run, which learns from them and counts only its own work."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

import jaxnas as jn
from tests.run.test_warm_start import loss, space


def run(root, evaluations, optimizer="tpe", seed=0, **kwargs):
    return jn.run(loss, space(optimizer in ("hyperband", "asha")), optimizer=optimizer,
                  root_directory=root, max_evaluations=evaluations, seed=seed,
                  progress=False, optimizer_kwargs={"max_trials": 64}, **kwargs)


def own(trials):
    return [t for t in trials if not t["extra"].get("imported")]


def test_another_run_s_trials_are_learnt_from_and_cost_nothing(tmp_path):
    source = run(tmp_path / "source", 12, optimizer="random_search", seed=1).trials
    run(tmp_path / "plain", 1)
    run(tmp_path / "warm", 1)
    assert jn.import_trials(tmp_path / "warm", tmp_path / "source") == 12
    plain = run(tmp_path / "plain", 10).trials
    warm = run(tmp_path / "warm", 10)
    imported = [t for t in warm.trials if t["extra"].get("imported")]
    assert [(t["config"], t["loss"]) for t in imported] == \
           [(t["config"], t["loss"]) for t in source]
    assert len(own(warm.trials)) == 10  # max_evaluations counts the run's own trials
    # TPE's model, fitted on the imports from its first own ask, proposes better trials.
    assert np.median([t["loss"] for t in own(warm.trials)[1:]]) < \
           np.median([t["loss"] for t in own(plain)[1:]])
    best = min(warm.trials, key=lambda t: t["loss"])
    assert warm.incumbent.trial_id == best["trial_id"]


def test_an_optuna_study_and_csv_files_are_read(tmp_path):
    import optuna  # noqa: PLC0415 - the [plot] extra, which the tests install

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        n = trial.suggest_int("n", 1, 9, step=2)
        return loss(x, kind, n)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=6)
    frame = study.trials_dataframe()
    frame.to_csv(tmp_path / "study.csv", index=False)
    run(tmp_path / "run", 1)
    assert jn.import_trials(tmp_path / "run", frame) == 6
    assert jn.import_trials(tmp_path / "run", tmp_path / "study.csv") == 6
    exported = jn.export_csv(tmp_path / "run", tmp_path / "jaxnas.csv")  # (no imports yet)
    assert jn.import_trials(tmp_path / "run", exported) == 1
    trials = run(tmp_path / "run", 3).trials
    imported = [t for t in trials if t["extra"].get("imported")]
    expected = [({"x": t.params["x"], "kind": "abc".index(t.params["kind"]),
                  "n": t.params["n"]}, t.value) for t in study.trials] * 2
    got = [(t["config"], t["loss"]) for t in imported]
    for (config, value), (want, want_value) in zip(got[:12], expected, strict=True):
        assert (config["kind"], config["n"]) == (want["kind"], want["n"])
        assert config["x"] == pytest.approx(want["x"], rel=1e-6)  # stored as float32
        assert value == pytest.approx(want_value)
    assert got[12] == (trials[0]["config"], trials[0]["loss"])  # the exported own trial


def test_imports_take_new_samples_at_their_fidelity_and_replay_alike(tmp_path):
    rows = [{"x": 0.1, "kind": "a", "n": 1, "fidelity": 3, "loss": loss(0.1, "a", 1, 3)},
            {"x": 0.2, "kind": "b", "n": 3, "loss": 9.0}]  # no fidelity: the highest
    for name in ("whole", "parts"):
        run(tmp_path / name, 1, optimizer="hyperband", checkpoint_every=1)
        jn.import_trials(tmp_path / name, rows)
    whole = run(tmp_path / "whole", 30, optimizer="hyperband", checkpoint_every=1).trials
    # Stopped between two asks (6 own trials; both imports placed), then continued.
    run(tmp_path / "parts", 6, optimizer="hyperband", checkpoint_every=1)
    parts = run(tmp_path / "parts", 30, optimizer="hyperband", checkpoint_every=1).trials
    keys = ("trial_id", "parent_id", "config", "fidelity", "loss", "extra")
    assert [[t[k] for k in keys] for t in parts] == [[t[k] for k in keys] for t in whole]
    imported = {t["fidelity"]: t for t in whole if t["extra"].get("imported")}
    assert sorted(imported) == [3.0, 9.0]
    assert imported[3.0]["loss"] == rows[0]["loss"] and imported[9.0]["loss"] == 9.0
    # The good import at fidelity 3 is promoted: it trains again, from scratch.
    promoted = [t for t in whole if t["parent_id"] == imported[3.0]["trial_id"]]
    assert promoted and promoted[0]["loss"] == pytest.approx(loss(0.1, "a", 1, 9), abs=1e-6)


@pytest.mark.parametrize("rows, match", [
    ([{"x": 0.5, "kind": "a", "n": 1, "loss": 1.0, "colour": 3}],
     r"row 0: unknown column\(s\) \['colour'\]"),
    ([{"x": 0.5, "kind": "a", "n": 1, "loss": 1.0}, {"x": 2.0, "loss": 1.0}],
     r"row 1: x=2\.0 lies outside \[0\.0, 1\.0\]"),
    ([{"config.kind": 3, "loss": 1.0}], r"row 0: kind=3 must be the index of one of its 3"),
    ([{"params_kind": "d", "value": 1.0}], r"row 0: kind='d' is not one of the choices"),
    ([{"x": 0.5}], r"row 0 has no 'loss'"),
    ([{"x": 0.5, "loss": float("inf")}], r"row 0: loss=inf must be a finite number"),
    ([{"x": 0.5, "loss": 1.0, "fidelity": 3}], r"fidelity=3, but the run's space has none"),
])
def test_bad_rows_are_refused_and_change_nothing(tmp_path, rows, match):
    run(tmp_path, 1)
    before = jn.load_results(tmp_path)
    with pytest.raises(ValueError, match=match):
        jn.import_trials(tmp_path, rows)
    assert jn.load_results(tmp_path) == before
    with sqlite3.connect(tmp_path / "trials.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 0


@pytest.mark.parametrize("options", [{}, {"batch_size": 16, "max_trials": 128}])
def test_more_imports_than_the_state_holds_are_taken_and_the_next_run_makes_room(tmp_path,
                                                                                 options):
    """TPE after 2 evaluations holds 3 trials, or, asking 16 at a time, 14 it never
    recorded; 20 imports and 12 more evaluations later the run holds all 34, none lost to
    a full state (the unrecorded samples take imports first, as new samples would). A
    replay of the whole log then holds what the run held: it goes on alike."""
    def go(root, evaluations):
        return jn.run(loss, space(), optimizer="tpe", root_directory=root,
                      max_evaluations=evaluations, progress=False, optimizer_kwargs=options)

    go(tmp_path / "run", 2)
    rows = [{"x": i / 20, "kind": "b", "n": 3, "loss": loss(i / 20, "b", 3)} for i in range(20)]
    assert jn.import_trials(tmp_path / "run", rows) == 20
    trials = go(tmp_path / "run", 14).trials
    assert len(own(trials)) == 14 and len(trials) == 34
    assert all(t["status"] == "success" for t in trials)
    if "max_trials" in options:  # (no growth below: the run reads its newest checkpoint)
        shutil.copytree(tmp_path / "run", tmp_path / "replayed")
        shutil.rmtree(tmp_path / "replayed" / "checkpoints")
        table = [[(t["config"], t["loss"]) for t in go(tmp_path / where, 50).trials]
                 for where in ("run", "replayed")]
        assert table[0] == table[1]


def test_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no jaxnas run in"):
        jn.import_trials(tmp_path / "nothing", [{"x": 0.5, "loss": 1.0}])
    run(tmp_path / "run", 1)
    with pytest.raises(FileNotFoundError, match="neither a run folder nor a CSV file"):
        jn.import_trials(tmp_path / "run", tmp_path / "missing.csv")


def test_status_counts_the_imports_still_waiting_for_their_fidelity(tmp_path):
    """ASHA starts configurations only at its lowest rung: a fully trained import waits."""
    run(tmp_path, 3, optimizer="asha")
    jn.import_trials(tmp_path, [{"x": 0.3, "kind": "a", "n": 1, "loss": 0.5}])
    result = run(tmp_path, 6, optimizer="asha")
    assert not [t for t in result.trials if t["extra"].get("imported")]
    assert "1 imported trial(s) waiting for a new sample at their fidelity (9)" in \
           result.summary()
