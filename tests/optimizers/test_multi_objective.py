"""`multi_objective`: promotions by non-dominated fronts (rank mode), ParEGO's random
Chebyshev scalarisation, and the modes through `optimizers.get`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers


def _spec():
    return jn.compile({"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, 9)})


def test_rank_mode_promotes_the_first_fronts_of_a_rung():
    """Successive halving (eta 3) promotes 3 of its 9 first trials: told that three trials
    form the front and the others lie behind it, it promotes exactly those three, whatever
    their first objective alone says (one of them has the worst first objective)."""
    opt = optimizers.get("successive_halving", _spec(), n_objectives=2)
    state, first = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
    ids = np.asarray(first.trial_ids)[np.asarray(first.valid)]
    assert len(ids) == 9
    values = np.array([[0.0, 9.0], [9.0, 0.0], [4.0, 4.0]] + [[5.0 + i, 5.0 + i]
                                                              for i in range(6)], np.float32)
    values[0, 0], values[1, 0] = 0.0, 10.0  # trial 1: worst first objective, on the front
    state = opt.tell(state, first.trial_ids[:9], values)
    state, promoted = opt.ask(state, jax.random.key(2))
    parents = np.asarray(promoted.parent_ids)[np.asarray(promoted.valid)]
    assert sorted(parents.tolist()) == sorted(ids[:3].tolist())
    # The derived losses: front 0 below 1, fronts in order, extremes first within one.
    losses = np.asarray(state.trials.losses)[ids]
    assert np.all(losses[:3] < 1.0) and np.all(np.diff(losses[3:]) > 0)


def test_rank_mode_ranks_infeasible_trials_last():
    opt = optimizers.get("successive_halving", _spec(), n_objectives=2)
    state, first = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
    values = np.tile(np.arange(9, dtype=np.float32)[:, None], (1, 2))  # 0 dominates all
    violations = np.zeros(first.trial_ids.shape[0], np.float32)
    violations[:3] = 1.0  # the three best break a bound
    state = opt.tell(state, first.trial_ids, np.resize(values, (first.trial_ids.shape[0], 2)),
                     violations)
    state, promoted = opt.ask(state, jax.random.key(2))
    parents = np.asarray(promoted.parent_ids)[np.asarray(promoted.valid)]
    assert sorted(parents.tolist()) == [3, 4, 5]


def test_parego_losses_are_augmented_chebyshev_values():
    """(ParEGO is BO's default mode; any wrapped optimiser shows the same losses.)"""
    opt = optimizers.get("successive_halving", _spec(), n_objectives=2,
                         multi_objective="parego")
    state, proposals = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
    n = proposals.trial_ids.shape[0]
    values = np.resize(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]],
                                np.float32), (n, 2))
    state = opt.tell(state, proposals.trial_ids, values)
    # Equal weights after a tell: max(w f) + 0.05 sum(w f), objectives already in [0, 1].
    expected = 0.5 * values.max(axis=1) + 0.05 * 0.5 * values.sum(axis=1)
    ids = np.asarray(proposals.trial_ids)
    np.testing.assert_allclose(np.asarray(state.trials.losses)[ids], expected, rtol=1e-6)
    bo = optimizers.get("bayesian_optimization", _spec(), n_objectives=2)
    assert optimizers.takes_objective_vectors(bo)  # wrapped, in its default mode


def test_parego_draws_new_weights_at_every_ask():
    """Two asks from the same table with different keys rank the table differently (their
    weights differ), which shows in the losses the inner optimiser saw."""
    spec = jn.compile({"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, 9)})
    opt = optimizers.get("hyperband", spec, n_objectives=2, multi_objective="parego")
    state, first = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
    n = first.trial_ids.shape[0]
    values = np.stack([np.linspace(0, 1, n), np.linspace(1, 0, n)], 1).astype(np.float32)
    state = opt.tell(state, first.trial_ids, values)
    seen = {tuple(np.round(np.asarray(opt.ask(state, jax.random.key(k))[0].trials.losses)[:n],
                           5)) for k in range(5)}
    assert len(seen) > 1


def test_modes_and_counts_are_checked():
    with pytest.raises(ValueError, match=r"multi_objective: mode='pareto' must be one of "
                                         r"'rank', 'parego'"):
        optimizers.get("tpe", _spec(), n_objectives=2, multi_objective="pareto")
    with pytest.raises(ValueError, match=r"tpe: n_objectives=0 must be an integer >= 1"):
        optimizers.get("tpe", _spec(), n_objectives=0)
    assert "n_objectives" in optimizers.options("priorband")
    assert "n_objectives" not in optimizers.options("regularized_evolution")
    opt = optimizers.get("hyperband", _spec(), n_objectives=2)
    assert optimizers.takes_objective_vectors(opt)
    state, proposals = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
    with pytest.raises(ValueError, match=r"n_objectives=2 values per trial id"):
        opt.tell(state, proposals.trial_ids, jnp.zeros((proposals.trial_ids.shape[0], 3)))
    optimizers.check(state)  # the wrapper's state reads like any other
