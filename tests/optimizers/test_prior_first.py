"""`sample_prior_first` (NePS's option) of the bracket optimisers, and the prior's mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers
from jaxnas.optimizers import Source
from tests.optimizers._shared import drive, jitted, rungs_served, space, toy_loss

# "mixed27": x Float(0, 1, prior=0.3), s Float(-1, 1, step=0.5, prior=0.5), n Integer(1,
# 64, log, prior=8), c Categorical(3 choices, prior=1); fidelity 1..27, eta 3.
MODE = {"x": 0.3, "s": 0.5, "n": 8, "c": 1}
# Hyperband's rungs for 1..27 and eta 3, bracket after bracket.
HYPERBAND = [(27, 1.0), (9, 3.0), (3, 9.0), (1, 27.0), (9, 3.0), (3, 9.0), (1, 27.0)]


def _values(proposals, row):
    return {path: np.asarray(v)[row].item()
            for path, v in space("mixed27").values(proposals.configs).items()}


def test_the_prior_mode_is_each_parameter_s_prior_or_the_middle_of_its_range():
    spec = jn.compile({
        "lr": jn.Float(1e-4, 1e-1, log=True, prior=3e-3),
        "width": jn.Integer(16, 256, log=True, prior=128),
        "act": jn.Categorical(("relu", "gelu", "tanh"), prior=2),
        "rate": jn.Float(0.0, 0.5),  # no prior: the middle of the range
        "wide": jn.Float(1e-3, 1e3, log=True),  # ... on the log scale
        "norm": jn.Categorical((True, False)),  # no prior: the first choice
    })
    values = jax.jit(lambda: spec.values(spec.prior_mode()))()
    assert values["lr"] == pytest.approx(3e-3, rel=1e-5)
    assert int(values["width"]) == 128 and int(values["act"]) == 2
    assert values["rate"] == pytest.approx(0.25)
    assert values["wide"] == pytest.approx(1.0, rel=1e-4)
    assert int(values["norm"]) == 0


@pytest.mark.parametrize("name", ["hyperband", "priorband"])
def test_highest_fidelity_evaluates_the_prior_s_mode_first_outside_the_brackets(name):
    opt, ask, tell = jitted(name, "mixed27", max_trials=200,
                            sample_prior_first="highest_fidelity")
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 8)
    first = history[0]
    assert np.asarray(first.valid).sum() == 1 and int(first.trial_ids[0]) == 0
    assert float(first.fidelities[0]) == 27.0 and int(first.parent_ids[0]) == -1
    assert _values(first, 0) == pytest.approx(MODE)
    assert int(state.trials.sources[0]) == Source.PRIOR
    # Then Hyperband's brackets, as without the option: the prior's trial is in none of
    # them, so no rung waits for it and none promotes it.
    assert rungs_served(history[1:]) == HYPERBAND
    parents = np.concatenate([np.asarray(p.parent_ids)[np.asarray(p.valid)]
                              for p in history[1:]])
    assert 0 not in parents
    # It counts among the top rung's results.
    assert int(state.rung_successes[-1]) == 1 + 2


@pytest.mark.parametrize("name", ["asha", "async_hyperband", "async_priorband"])
def test_asynchronous_optimisers_evaluate_the_prior_s_mode_first_too(name):
    opt, ask, tell = jitted(name, "mixed27", batch_size=4, max_trials=200,
                            sample_prior_first="highest_fidelity")
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 12)
    assert np.asarray(history[0].valid).sum() == 1
    assert float(history[0].fidelities[0]) == 27.0 and _values(history[0], 0) == pytest.approx(MODE)
    later = [(p.fidelities[p.valid], p.parent_ids[p.valid]) for p in map(jax.device_get,
                                                                         history[1:])]
    assert all(np.asarray(p.valid).sum() == 4 for p in history[1:])
    assert 0 not in np.concatenate([parents for _, parents in later])
    assert 1.0 in np.concatenate([fidelities for fidelities, _ in later])  # then as usual


@pytest.mark.parametrize("name", ["asha", "async_hyperband", "async_priorband"])
def test_true_makes_the_prior_s_mode_the_first_asynchronous_sample(name):
    opt, ask, tell = jitted(name, "mixed27", batch_size=4, max_trials=200,
                            sample_prior_first=True)
    _, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 2)
    assert _values(history[0], 0) == pytest.approx(MODE)
    assert _values(history[1], 3) != pytest.approx(MODE)


def test_priorband_bo_takes_the_option_too():
    """Its first ask, run op by op (`disable_jit`: the `lax.cond` runs only the branch
    taken, so the GP's is never compiled)."""
    opt = optimizers.priorband_bo(space("mixed27"), max_trials=200, min_model_points=4,
                                  model_size=16, sample_prior_first="highest_fidelity")
    with jax.disable_jit():
        state, first = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
    assert np.asarray(first.valid).sum() == 1 and float(first.fidelities[0]) == 27.0
    assert _values(first, 0) == pytest.approx(MODE)
    assert int(state.trials.count) == 1 and int(state.trials.sources[0]) == Source.PRIOR


def test_true_makes_the_prior_s_mode_the_first_sample_of_the_first_bracket():
    opt, ask, tell = jitted("priorband", "mixed27", max_trials=200, sample_prior_first=True)
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 7)
    assert rungs_served(history) == HYPERBAND
    assert _values(history[0], 0) == pytest.approx(MODE)
    assert int(state.trials.sources[0]) == Source.PRIOR
    # Only the first sample of the run: the next bracket's first sample is a draw.
    assert _values(history[4], 0) != pytest.approx(MODE)


def test_a_good_prior_result_becomes_priorband_s_incumbent():
    """The prior's trial at full fidelity is told the best loss of the run: once PriorBand
    samples around its incumbent, it mutates the prior's mode."""
    opt, ask, tell = jitted("priorband", "mixed27", max_trials=200,
                            sample_prior_first="highest_fidelity")

    def loss(configs, fidelities):  # the mode's x = 0.3 is best, far better than the rest
        return jnp.where(jnp.abs(configs["x"] - 0.3) < 1e-6, -10.0,
                         toy_loss(configs, fidelities))

    state, _ = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 16, loss)
    sources = np.asarray(state.trials.sources)[: int(state.trials.count)]
    around = np.flatnonzero(sources == Source.INCUMBENT)
    # x is continuous: only a mutation of the mode that left x alone has x = 0.3 exactly
    # (prior and uniform draws never do); each of the n such rows is one with
    # probability 1/2. At least n/2 - 3 standard errors of them.
    kept = np.asarray(state.trials.configs["x"])[around] == np.float32(0.3)
    assert around.size >= 8
    assert kept.sum() >= around.size / 2 - 3 * np.sqrt(around.size / 4)
    others = np.flatnonzero(sources == Source.PRIOR)[1:]  # the mode's trial is row 0
    assert not np.any(np.asarray(state.trials.configs["x"])[others] == np.float32(0.3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(sample_prior_first="lowest_fidelity"),
     r"priorband: sample_prior_first='lowest_fidelity' must be False, True or "
     r"'highest_fidelity'"),
    (dict(sample_prior_first=1), r"sample_prior_first=1 must be False, True"),
])
def test_bad_values_raise_naming_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.priorband(space("mixed27"), **kwargs)


def test_a_space_without_priors_is_refused():
    with pytest.raises(ValueError, match=r"hyperband: sample_prior_first=True needs a space "
                                         r"with priors"):
        optimizers.hyperband(space("plain27"), sample_prior_first=True)


def test_a_run_evaluates_the_prior_first_and_resumes(tmp_path):
    spec = {"x": jn.Float(0.0, 1.0, prior=0.3), "epochs": jn.IntegerFidelity(1, 9)}

    def objective(x, epochs):
        return (x - 0.3) ** 2 + 1.0 / epochs

    kwargs = {"sample_prior_first": "highest_fidelity", "max_trials": 64}
    first = jn.run(objective, spec, optimizer="priorband", optimizer_kwargs=kwargs,
                   root_directory=tmp_path / "resumed", max_evaluations=5)
    trial = first.trials[0]
    assert trial["config"]["x"] == pytest.approx(0.3) and trial["fidelity"] == 9
    assert first.incumbent.trial_id == trial["trial_id"]  # its loss, 1/9, is the best
    resumed = jn.run(objective, spec, optimizer="priorband", optimizer_kwargs=kwargs,
                     root_directory=tmp_path / "resumed", max_evaluations=16)
    # Replayed on resuming, the first ask is still the prior's alone, and it is asked once.
    assert len(resumed.trials) == 16
    assert [t["fidelity"] for t in resumed.trials[:5]] == [9, 1, 1, 1, 1]
    assert [t["config"]["x"] == trial["config"]["x"] for t in resumed.trials].count(True) == 1
