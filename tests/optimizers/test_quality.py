"""Search quality on MF-Hartmann-3 (PriorBand's benchmark suite) over 10 seeds (30 paired).

Each optimiser runs a whole search as one `lax.scan` over ask -> evaluate -> tell under
`jax.jit`. The score of a run is the normalised regret (`problem.regret`: 0 at the optimum,
1 at the "bad" prior's value) of the best trial at the maximum fidelity once `BUDGET` of
fidelity is spent, promotions counting only their extra fidelity. At z = 100 the problem
has no noise or bias, so that loss is the function's value.
"""

import functools

import jax
import numpy as np
import pytest

import jaxnas as jn
from jaxnas import optimizers, problems

PROBLEM = problems.mf_hartmann(dim=3, preset="default")
MAX_FIDELITY = 100.0
BUDGET = 20 * MAX_FIDELITY  # about one Hyperband cycle for fidelity 1..100, eta 3
SEEDS = range(10)
# PriorBand with a good and with a bad prior, compared seed by seed: more seeds than the
# comparisons of means, as the per-seed differences are noisy (see that test).
PAIRED_SEEDS = range(30)
REGRET_FLOOR = 1e-3  # a tenth of the good prior's typical regret
# A bad prior may cost PriorBand some budget before incumbent sampling takes over; it must
# stay within this much mean normalised regret of Hyperband (the paper's Fig. 4 claim).
BAD_PRIOR_TOLERANCE = 0.05

SEARCHES = {  # name: (prior, constructor, asks)
    "random_search": (None, lambda s: optimizers.random_search(s, batch_size=10,
                                                               max_trials=64), 2),
    # A cycle (15 rungs) spends 1690; the next one's whole first bracket passes BUDGET.
    "hyperband": (None, lambda s: optimizers.hyperband(s, max_trials=400), 20),
    "priorband_good": ("good", lambda s: optimizers.priorband(s, max_trials=400), 20),
    "priorband_bad": ("bad", lambda s: optimizers.priorband(s, max_trials=400), 20),
}


@functools.cache
def _runner(name: str):
    """The jitted search `key -> final state` of `SEARCHES[name]`, compiled once."""
    prior, make, asks = SEARCHES[name]
    return _search(make(jn.compile(PROBLEM.space(prior=prior))), asks)


def _search(optimizer, asks):
    def step(state, key):
        ask_key, evaluate_key = jax.random.split(key)
        state, proposals = optimizer.ask(state, ask_key)
        keys = jax.random.split(evaluate_key, proposals.valid.shape[0])
        losses = jax.vmap(PROBLEM.evaluate)(proposals.configs, proposals.fidelities, keys)
        return optimizer.tell(state, proposals.trial_ids, losses), None

    @jax.jit
    def run(key):
        init_key, steps_key = jax.random.split(key)
        state, _ = jax.lax.scan(step, optimizer.init(init_key), jax.random.split(steps_key, asks))
        return state

    return run


def _regret_at_budget(state) -> float:
    trials = jax.device_get(state.trials)
    used = slice(0, int(trials.count))
    fidelity, parents = trials.fidelities[used], trials.parent_ids[used]
    cost = fidelity - np.where(parents >= 0, trials.fidelities[np.maximum(parents, 0)], 0.0)
    assert np.sum(cost) >= BUDGET, "the search stopped before spending the budget"
    within = ((np.cumsum(cost) <= BUDGET) & (fidelity == MAX_FIDELITY)
              & (trials.status[used] == optimizers.Status.SUCCESS))
    return float(PROBLEM.regret(np.min(trials.losses[used][within])))


@pytest.fixture(scope="module")
def regrets():
    out = {}
    for name in SEARCHES:
        states = [_runner(name)(jax.random.key(seed)) for seed in SEEDS]
        for state in states:
            optimizers.check(state)
            if name == "hyperband":  # integer rungs round down, as in NePS
                fidelities = np.unique(np.asarray(state.trials.fidelities)[
                    np.asarray(state.trials.status) != optimizers.Status.EMPTY])
                np.testing.assert_array_equal(fidelities, [1, 3, 11, 33, 100])
        out[name] = np.array([_regret_at_budget(state) for state in states])
    return out


def test_priorband_with_a_good_prior_beats_random_search_and_hyperband(regrets):
    good = regrets["priorband_good"].mean()
    assert good < regrets["hyperband"].mean(), regrets
    assert good < regrets["random_search"].mean(), regrets


def test_priorband_does_better_with_a_good_prior_than_with_a_bad_one():
    """The prior must matter: under the same seeds, PriorBand's regret with the good prior
    is below its regret with the bad prior, on average on a log scale.

    PriorBand sampling uniformly where it should sample the prior still beats random search
    and Hyperband above (mean regret about 0.026 against Hyperband's 0.08); this is what
    fails then. Paired seeds and logs: regrets span two decades and a few poor bad-prior
    runs would dominate a plain mean (regrets below `REGRET_FLOOR` count as equal). Over
    four blocks of 30 seeds (0-119), the mean log ratio bad / good lay 1.3 to 4.2 standard
    errors above 0; with uniform sampling in place of the prior, 2.9 to 3.3 standard errors
    below 0 (the good prior then won 3 or 4 of 30 seeds, not 16 to 22). So with 30 seeds
    its sign tells the two apart.
    """
    good, bad = ([_regret_at_budget(_runner(name)(jax.random.key(seed)))
                  for seed in PAIRED_SEEDS] for name in ("priorband_good", "priorband_bad"))
    good, bad = np.array(good), np.array(bad)
    log_ratio = np.log(bad + REGRET_FLOOR) - np.log(good + REGRET_FLOOR)
    standard_error = log_ratio.std(ddof=1) / np.sqrt(len(log_ratio))
    assert log_ratio.mean() > 0, (log_ratio.mean(), standard_error, good, bad)


def test_priorband_with_a_bad_prior_stays_close_to_hyperband(regrets):
    gap = regrets["priorband_bad"].mean() - regrets["hyperband"].mean()
    assert gap <= BAD_PRIOR_TOLERANCE, regrets


def test_hyperband_beats_random_search_at_equal_fidelity(regrets):
    assert regrets["hyperband"].mean() < regrets["random_search"].mean(), regrets
