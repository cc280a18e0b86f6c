"""`optimizer="auto"` (jn.run's default) and the warning for optimisers that ignore priors."""

import subprocess
import sys
import warnings

import pytest

import jaxnas as jn

SPACES = {
    "priorband": {"x": jn.Float(0.0, 1.0, prior=0.3), "epochs": jn.IntegerFidelity(1, 9)},
    "hyperband": {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 9)},
    "bayesian_optimization": {"x": jn.Float(0.0, 1.0, prior=0.3),
                              "c": jn.Categorical(("a", "b"))},
    "tpe": {"c": jn.Categorical(("a", "b")), "d": jn.Categorical((1, 2, 3), prior=0)},
}


@pytest.mark.parametrize("expected", sorted(SPACES))
def test_auto_chooses_by_fidelity_priors_and_numbers(expected):
    spec = jn.compile(SPACES[expected])
    assert jn.optimizers.auto_choice(spec) == expected
    # `get("auto")` builds the same optimiser.
    assert jn.optimizers.get("auto", spec).ask.__qualname__ == jn.optimizers.get(
        expected, spec).ask.__qualname__


def test_auto_takes_tpe_where_jax_is_too_old_for_the_gp(monkeypatch):
    """Below jax 0.8.0 `bayesian_optimization` refuses to be built (its GP needs
    `jax.enable_x64`); "auto" then takes TPE for a space without a fidelity."""
    spec = jn.compile(SPACES["bayesian_optimization"])
    monkeypatch.delattr(jn.optimizers.gp.jax, "enable_x64")
    assert jn.optimizers.auto_choice(spec) == "tpe"
    assert jn.optimizers.auto_choice(jn.compile(SPACES["priorband"])) == "priorband"


def objective(x, epochs):
    return (x - 0.3) ** 2 + 1.0 / epochs


def test_the_default_is_auto_and_the_run_says_which_it_used(tmp_path):
    result = jn.run(objective, SPACES["hyperband"], root_directory=tmp_path, max_evaluations=6)
    assert len(result.trials) == 6
    status = subprocess.run([sys.executable, "-m", "jaxnas", "status", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, check=True).stdout
    assert "optimizer hyperband, seed 0" in status
    # Continuing with "auto" or with the name it chose is the same run.
    again = jn.run(objective, SPACES["hyperband"], optimizer="hyperband",
                   root_directory=tmp_path, max_evaluations=8)
    assert len(again.trials) == 8


def test_an_optimiser_that_ignores_priors_warns_naming_them(tmp_path):
    with pytest.warns(UserWarning, match=r"optimizer='hyperband' ignores the priors of the "
                                         r"space \(on x\).*'priorband'"):
        jn.run(objective, SPACES["priorband"], optimizer="hyperband",
               root_directory=tmp_path / "a", max_evaluations=3)
    with pytest.warns(UserWarning, match=r"optimizer='grid_search' ignores the priors"):
        jn.run(objective, SPACES["priorband"], optimizer="grid_search",
               root_directory=tmp_path / "b", max_evaluations=3,
               optimizer_kwargs={"points_per_float": 3, "max_trials": 8})
    # Asked to use them, no warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jn.run(objective, SPACES["priorband"], optimizer="hyperband",
               root_directory=tmp_path / "c", max_evaluations=3,
               optimizer_kwargs={"use_prior": True})
    assert not [w for w in caught if "priors" in str(w.message)]
