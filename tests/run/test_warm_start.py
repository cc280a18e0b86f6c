"""`jn.run(initial_configs=[...])`: given configurations are evaluated first, learnt from
like any other trial, replayed alike on resume, and checked when the run is defined."""

from __future__ import annotations

import pytest

import jaxnas as jn

GIVEN = [{"x": 0.25, "kind": "c", "n": 7}, {"x": 0.75}, {"kind": "b", "n": 3}]
OFFSET = {"a": 0.0, "b": 1.0, "c": 2.0}


def space(fidelity: bool = False) -> dict:
    out = {"x": jn.Float(0.0, 1.0), "kind": jn.Categorical(("a", "b", "c")),
           "n": jn.Integer(1, 9, step=2)}
    if fidelity:
        out["epochs"] = jn.IntegerFidelity(1, 9)
    return out


def loss(x, kind, n, epochs=9):
    return abs(x - 0.125) + OFFSET[kind] + n / 10 + 1.0 / epochs


def stored(entry: dict) -> dict:
    """An initial configuration as the trial table stores it (a choice by index)."""
    return {k: ("abc".index(v) if k == "kind" else v) for k, v in entry.items()}


def run(root, optimizer="random_search", evaluations=12, initial=GIVEN, **kwargs):
    return jn.run(loss, space(fidelity=optimizer in ("hyperband", "priorband")),
                  optimizer=optimizer, root_directory=root, max_evaluations=evaluations,
                  seed=0, progress=False, initial_configs=initial, **kwargs)


def test_the_given_configurations_come_first_and_keep_the_draws_they_leave_out(tmp_path):
    plain = run(tmp_path / "plain", initial=None).trials
    warm = run(tmp_path / "warm").trials
    for trial, entry, draw in zip(warm, GIVEN, plain):
        # what an entry gives is evaluated as given; what it leaves out, as drawn
        merged = {**draw["config"], **stored(entry)}
        assert trial["config"] == merged
        assert trial["loss"] == pytest.approx(loss(merged["x"], "abc"[merged["kind"]],
                                                   merged["n"]))
    # Random search draws the rest as it would have: the initial ones only took places.
    assert [t["config"] for t in warm[3:]] == [t["config"] for t in plain[3:]]


@pytest.mark.parametrize("optimizer", ["priorband", "tpe"])
def test_the_optimiser_learns_from_them(tmp_path, optimizer):
    """The best of the space, given first: PriorBand promotes it up its rungs; TPE's
    incumbent is it, and the model, fitted on it, proposes near it."""
    best = {"x": 0.125, "kind": "a", "n": 1}
    result = run(tmp_path, optimizer, evaluations=30 if optimizer == "tpe" else 40,
                 initial=[best], optimizer_kwargs={"n_startup_trials": 3}
                 if optimizer == "tpe" else None)
    first = result.trials[0]
    assert first["config"] == stored(best)
    if optimizer == "priorband":
        promoted = [t for t in result.trials if t["parent_id"] == first["trial_id"]]
        assert promoted and promoted[0]["config"] == first["config"]
        assert promoted[0]["fidelity"] > first["fidelity"]
    else:
        assert result.incumbent.trial_id == 0
        modelled = [t for t in result.trials[3:] if t["config"]["kind"] == 0]
        assert len(modelled) > len(result.trials[3:]) / 3  # the best choice, more often


def test_a_resumed_run_replaces_the_same_proposals(tmp_path):
    whole = run(tmp_path / "whole", "hyperband", evaluations=20, checkpoint_every=1)
    # Stopped after the first ask (nine trials at fidelity 1, three of them given).
    run(tmp_path / "parts", "hyperband", evaluations=9, checkpoint_every=1)
    parts = run(tmp_path / "parts", "hyperband", evaluations=20, checkpoint_every=1)
    keys = ("trial_id", "parent_id", "config", "fidelity", "loss")
    assert [[t[k] for k in keys] for t in parts.trials] == \
           [[t[k] for k in keys] for t in whole.trials]
    with pytest.raises(ValueError, match="initial_configs was"):
        run(tmp_path / "parts", "hyperband", evaluations=21, initial=GIVEN[:1])


@pytest.mark.parametrize("initial, error, match", [
    ([{"y": 0.5}], ValueError, r"initial_configs\[0\]\['y'\]=0\.5: 'y' is not a decision "
                               r"of the space \(its decisions by path: x, kind, n\)"),
    ([{}, {"x": 1.5}], ValueError, r"initial_configs\[1\]\['x'\]=1\.5 lies outside "
                                   r"\[0\.0, 1\.0\]"),
    ([{"n": 4}], ValueError, r"initial_configs\[0\]\['n'\]=4 is not on the grid of "
                             r"step=2 from lower=1"),
    ([{"n": 2.5}], ValueError, r"\['n'\]=2\.5 must be a whole number"),
    ([{"kind": "d"}], ValueError, r"\['kind'\]='d' is not one of the choices \('a', 'b', "
                                  r"'c'\)\."),
    ([{"kind": 1}], ValueError, r"\['kind'\]=1 is not one of the choices"),
    ([{"x": float("nan")}], ValueError, r"\['x'\]=nan must be a finite number"),
    ({"x": 0.5}, TypeError, r"initial_configs=\{'x': 0\.5\} must be a list of dicts"),
    ([0.5], TypeError, r"initial_configs\[0\]=0\.5 must be a dict"),
])
def test_an_entry_outside_the_space_is_refused_before_the_folder_is_touched(
        tmp_path, initial, error, match):
    with pytest.raises(error, match=match):
        run(tmp_path / "run", initial=initial)
    assert not (tmp_path / "run").exists()


def test_the_fidelity_and_grid_search_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\['epochs'\]=3: 'epochs' is the space's "
                                         r"fidelity, which the optimiser chooses"):
        run(tmp_path / "run", "hyperband", initial=[{"epochs": 3}])
    with pytest.raises(ValueError, match="initial_configs cannot be used with "
                                         "optimizer='grid_search'"):
        run(tmp_path / "run", "grid_search", initial=[{"x": 0.5}])
    assert not (tmp_path / "run").exists()
