"""Asks that cost what the decision needs, not the capacity: the bounded looks give the
same trials as looking at the whole table, and the bounds are real."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers
from tests.optimizers._shared import space


def _drive(opt, steps: int, loss):
    """`steps` asks and tells of `opt` on the no-fidelity space; the final state."""
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for i in range(steps):
        state, proposals = ask(state, jax.random.key(i + 1))
        state = tell(state, proposals.trial_ids, loss(proposals.configs, proposals.trial_ids))
    return jax.device_get(state)


def _quadratic(configs, ids):
    del ids
    return jnp.square(configs["x"] - 0.3) + 0.1 * (configs["c"] == 1)


def test_tpe_reads_every_trial_until_the_run_holds_more_than_its_model_size():
    spec = space("no_fidelity")
    whole = _drive(optimizers.tpe(spec, max_trials=128, model_size=4096), 30, _quadratic)
    bounded = _drive(optimizers.tpe(spec, max_trials=128, model_size=32), 30, _quadratic)
    # 30 trials <= 32: the same trials (up to float rounding: sums over another length)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
                 bounded, whole)
    newest = _drive(optimizers.tpe(spec, max_trials=128, model_size=12), 30, _quadratic)
    # past 12 trials the model reads the newest 12 only: other proposals
    assert not np.array_equal(newest.trials.configs["x"], whole.trials.configs["x"])
    np.testing.assert_allclose(newest.trials.configs["x"][:12],
                               whole.trials.configs["x"][:12], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="model_size=0"):
        optimizers.tpe(spec, model_size=0)


def test_evolution_finds_its_population_behind_a_thousand_failures():
    """Trials 40 on fail: past trial 1,064 the newest 1,024 rows (where evolution looks
    first) hold no member, and the population is still the newest three successes (rows
    37-39), so every child of the last ask is a one-slot mutation of one of them."""
    spec = jn.compile({name: jn.Float(0.0, 1.0) for name in "abcd"})
    opt = optimizers.regularized_evolution(spec, population_size=3, sample_size=2,
                                           batch_size=128, max_trials=2048)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state = opt.init(jax.random.key(0))
    for i in range(15):  # 1,920 trials
        state, proposals = ask(state, jax.random.key(i + 1))
        losses = jnp.where(proposals.trial_ids >= 40, jnp.nan, proposals.configs["a"])
        state = tell(state, proposals.trial_ids, losses)
    floats = np.asarray(state.trials.configs.floats)
    members = floats[37:40]
    children = floats[1792:1920]  # the last ask's
    changed = (children[:, None, :] != members[None, :, :]).sum(axis=-1)  # (128, 3)
    assert np.all(changed.min(axis=1) == 1)
