"""Asks that cost what the decision needs, not the capacity: the bounded looks give the
same trials as looking at the whole table, and the bounds are real."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


@pytest.mark.parametrize("failing", [False, True])
def test_evolution_finds_its_population_in_the_newest_rows_or_the_whole_table(
        monkeypatch, failing):
    """With a window of 4 x 3 rows and nine trials in ten failing, the newest rows hold
    fewer than the population and the whole table is read; without failures the window
    always holds it. Either way the same run."""
    from jaxnas.optimizers import _evolution as module  # noqa: PLC0415 - the bound tested

    def loss(configs, ids):
        bad = failing & (ids % 10 != 0)
        return jnp.where(bad, jnp.nan, _quadratic(configs, ids))

    def run():
        opt = optimizers.regularized_evolution(space("no_fidelity"), population_size=3,
                                               sample_size=2, max_trials=256)
        return _drive(opt, 60, loss)

    whole = run()  # window max(1024, 12) >= capacity 256: the whole table
    monkeypatch.setattr(module, "POPULATION_WINDOW", 1)  # window 12 rows
    jax.tree.map(np.testing.assert_array_equal, run(), whole)
