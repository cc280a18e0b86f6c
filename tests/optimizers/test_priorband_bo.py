"""PriorBand+BO: the model replaces PriorBand's uniform draws, and only those, once a rung
holds enough results."""

import jax
import numpy as np
import pytest

from jaxnas import optimizers
from tests.optimizers._shared import drive, jitted, space

ARGUMENTS = dict(max_trials=200, min_model_points=4, model_size=16)


def test_the_model_replaces_uniform_draws_once_a_rung_has_enough_results():
    opt, ask, tell = jitted("priorband_bo", "mixed27", **ARGUMENTS)
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 12)
    trials = jax.device_get(state.trials)
    n = int(trials.count)
    sources, rungs, status = trials.sources[:n], trials.rungs[:n], trials.status[:n]
    new = sources != optimizers.Source.PROMOTION
    for i in np.flatnonzero(new):
        # Results told before trial i was asked: those of earlier asks.
        earlier = np.arange(n) < _first_id_of_its_ask(history, i)
        told = earlier & (status == optimizers.Status.SUCCESS)
        enough = any(np.sum(told & (rungs == r)) >= 4 for r in range(4))
        if enough:
            assert sources[i] != optimizers.Source.UNIFORM, i
        else:
            assert sources[i] != optimizers.Source.MODEL, i
    assert np.any(sources == optimizers.Source.MODEL)
    assert np.any(sources == optimizers.Source.PRIOR)  # the prior's share is kept


def _first_id_of_its_ask(history, trial_id):
    for proposals in history:
        ids = np.asarray(proposals.trial_ids)[np.asarray(proposals.valid)]
        if trial_id in ids:
            return int(ids.min())
    raise AssertionError(trial_id)


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_model_points=0), r"priorband_bo: min_model_points=0 must be an integer >= 1"),
    (dict(prior_beta=float("nan")), r"priorband_bo: prior_beta=nan must be a finite number"),
    (dict(eta=1), r"priorband_bo: eta=1 must be an integer >= 2"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.priorband_bo(space("mixed27"), **kwargs)


def test_needs_a_fidelity():
    with pytest.raises(ValueError, match=r"priorband_bo: the space has no fidelity"):
        optimizers.priorband_bo(space("no_fidelity"))

