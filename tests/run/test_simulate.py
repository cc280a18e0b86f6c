"""`jn.simulate`: whole searches on a pure problem in one program, equal to `jn.run`'s."""

import numpy as np
import pytest

import jaxnas as jn


@pytest.fixture(scope="module")
def hartmann():
    return jn.problems.mf_hartmann(dim=3)


@pytest.fixture(scope="module")
def priorband_sims(hartmann):
    """PriorBand with a good prior, 400 fidelity units: seeds 1 and 4 side by side, and
    seed 4 alone."""
    both = jn.simulate("priorband", hartmann, seeds=[1, 4], max_fidelity_spent=400,
                       prior="good")
    alone = jn.simulate("priorband", hartmann, seeds=[4], max_fidelity_spent=400,
                        prior="good")
    return both, alone


def test_a_simulated_search_is_the_run_jn_run_makes(hartmann, priorband_sims, tmp_path):
    sim = priorband_sims[0]
    result = jn.run(hartmann.evaluate, hartmann.space(prior="good"), optimizer="priorband",
                    root_directory=tmp_path, max_fidelity_spent=400, seed=1)
    trials = result.trials
    n = len(trials)
    assert sim.evaluations[0] == n and sim.stopped_by[0] == result.stopped_by
    assert sim.trial_ids[0, :n].tolist() == [t["trial_id"] for t in trials]
    assert sim.parents[0, :n].tolist() == [t["parent_id"] for t in trials]
    np.testing.assert_array_equal(sim.fidelities[0, :n], [t["fidelity"] for t in trials])
    np.testing.assert_allclose(sim.losses[0, :n], [t["loss"] for t in trials], atol=1e-5)
    np.testing.assert_allclose(np.asarray(sim.configs["x1"])[0, :n],
                               [t["config"]["x1"] for t in trials], atol=1e-6)
    # The budget is counted as jn.run counts it: a promotion pays what it adds.
    fidelity = {t["trial_id"]: t["fidelity"] for t in trials}
    added = [t["fidelity"] - fidelity.get(t["parent_id"], 0.0) for t in trials]
    assert sim.spent[0, n - 1] == pytest.approx(sum(added))
    last = sim.steps[0, :n] == sim.steps[0, n - 1]  # the last ask's trials
    assert sim.spent[0, :n][~last][-1] < 400 <= sim.spent[0, n - 1]
    best, row = sim.incumbents()
    assert best[0] == pytest.approx(result.incumbent.loss, abs=1e-5)
    assert sim.trial_ids[0, row[0]] == result.incumbent.trial_id


def test_seeds_side_by_side_search_as_each_would_alone(priorband_sims):
    both, alone = priorband_sims
    n = alone.evaluations[0]
    assert both.evaluations[1] == n
    np.testing.assert_array_equal(both.trial_ids[1], alone.trial_ids[0])
    np.testing.assert_array_equal(both.fidelities[1, :n], alone.fidelities[0, :n])
    np.testing.assert_allclose(both.losses[1, :n], alone.losses[0, :n], atol=1e-6)
    # different seeds, different searches
    assert not np.array_equal(both.losses[0, :n], both.losses[1, :n])


def test_best_so_far_reads_the_trials_in_order(hartmann, priorband_sims):
    sim = priorband_sims[0]
    budgets = [50.0, 150.0, 250.0, 400.0, 1e9]
    curve = sim.best_so_far(budgets)
    assert curve.shape == (2, 5)
    assert np.all(curve[:, 1:] <= curve[:, :-1])  # best-so-far never gets worse
    for s in range(2):
        n = sim.evaluations[s]
        top = sim.fidelities[s, :n] == hartmann.fidelity_bounds[1]
        for j, budget in enumerate(budgets):
            within = (sim.spent[s, :n] <= budget) & top
            expected = sim.losses[s, :n][within].min() if within.any() else np.inf
            assert curve[s, j] == expected
    # every trial counts when full_fidelity=False; by evaluations counts trials
    assert np.all(sim.best_so_far(budgets, full_fidelity=False) <= curve)
    first = sim.best_so_far([1], by="evaluations", full_fidelity=False)
    np.testing.assert_array_equal(first[:, 0], sim.losses[:, 0])
    regret = sim.regret(curve[:, -1:])
    np.testing.assert_allclose(regret, np.asarray(hartmann.regret(curve[:, -1:])))
    assert np.all(regret[np.isfinite(regret)] >= -1e-6)


def test_other_optimisers_and_problems_with_evaluation_budgets():
    mixed = jn.problems.mf_mixed()  # floats, integers, categoricals, conditional slots
    sim = jn.simulate("hyperband", mixed, seeds=3, max_evaluations=40)
    assert sim.evaluations.tolist() == [40, 40, 40]
    assert sim.stopped_by == ("max_evaluations",) * 3
    assert sorted(sim.trial_ids[0].tolist()[:40]) == list(range(40))
    branin = jn.problems.mf_branin()
    nsga = jn.simulate("nsga2", branin, seeds=2, max_evaluations=60, prior="bad",
                       optimizer_kwargs={"population_size": 20})
    assert nsga.evaluations.tolist() == [60, 60]
    best, _ = nsga.incumbents()
    assert np.all(np.isfinite(best))


def test_bad_input_names_the_parameter(hartmann):
    with pytest.raises(ValueError, match="give a budget"):
        jn.simulate("priorband", hartmann, seeds=2)
    with pytest.raises(ValueError, match="max_fidelity_spent=-5"):
        jn.simulate("priorband", hartmann, max_fidelity_spent=-5)
    with pytest.raises(ValueError, match="max_evaluations=2.5"):
        jn.simulate("priorband", hartmann, max_evaluations=2.5)
    with pytest.raises(ValueError, match=r"seeds=\[1, 1\]"):
        jn.simulate("priorband", hartmann, seeds=[1, 1], max_evaluations=5)
    with pytest.raises(ValueError, match="seeds=0"):
        jn.simulate("priorband", hartmann, seeds=0, max_evaluations=5)
    with pytest.raises(ValueError, match="batching='pmap'"):
        jn.simulate("priorband", hartmann, max_evaluations=5, batching="pmap")
    with pytest.raises(ValueError, match="optimizer_kwargs"):
        spec = jn.compile(hartmann.space())
        jn.simulate(jn.optimizers.priorband(spec), hartmann, max_evaluations=5,
                    optimizer_kwargs={"eta": 2})
