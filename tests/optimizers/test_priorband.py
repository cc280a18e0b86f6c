"""PriorBand's sampling policy against the paper's formulas, on fixed seeds.

Statistical tests draw `N_KEYS` asks from one state (with different keys) and accept an
empirical frequency within 5 standard errors of the formula, the standard error being
`sqrt(p (1 - p) / n)` for the `n` samples drawn.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxnas.optimizers import Source, Status
from tests.optimizers._shared import drive, jitted, rungs_served

ETA = 3
N_KEYS = 1000
# The conformance test's PriorBand: space "mixed27" (x: Float(0, 1, prior=0.3), s:
# Float(-1, 1, step=0.5, prior=0.5), n: Integer(1, 64, log, prior=8), c: Categorical(3
# choices, prior=1); all "medium", i.e. sigma 0.25 in the unit cube and weight 4 against 1),
# fidelity 1..27.
SETTINGS = dict(max_trials=200)
SIGMA, WEIGHT, N_CHOICES = 0.25, 4.0, 3
# The cost of the largest bracket (27@1, 9@3, 3@9, 1@27) when promotions continue.
BRACKET_COST = 27 * 1 + 9 * (3 - 1) + 3 * (9 - 3) + 1 * (27 - 9)


def _priorband(**kwargs):
    opt, ask, tell = jitted("priorband", "mixed27", **{**SETTINGS, **kwargs})
    # One state, N_KEYS keys. A loop (lax.map) compiles faster on CPU than vmap here.
    many = jax.jit(lambda state, keys: jax.lax.map(lambda key: opt.ask(state, key), keys))
    return opt, ask, tell, many


@pytest.fixture(scope="module")
def priorband():
    return _priorband()


def _within_5_se(successes: int, n: int, p: float) -> None:
    se = np.sqrt(p * (1 - p) / n)
    assert abs(successes / n - p) <= 5 * se, (successes / n, p, 5 * se, n)


def _draw(many, state, seed):
    """Sources and configs of the valid rows of N_KEYS asks from `state`."""
    states, proposals = jax.device_get(
        many(state, jax.random.split(jax.random.key(seed), N_KEYS)))
    valid = proposals.valid
    sources = np.take_along_axis(states.trials.sources,
                                 np.where(valid, proposals.trial_ids, 0), axis=1)[valid]
    configs = {path: np.asarray(proposals.configs[path])[valid] for path in ("x", "n", "c")}
    return sources, configs


def test_uniform_share_per_base_rung_without_evidence(priorband):
    """p_uniform = 1 / (1 + eta**r) for a bracket with base rung r (Sec. 5.1)."""
    opt, ask, _, many = priorband
    state = opt.init(jax.random.key(0))
    for base_rung in range(4):  # nothing told: each ask starts the next bracket
        sources, configs = _draw(many, state, seed=10 + base_rung)
        assert set(np.unique(sources)) <= {Source.UNIFORM, Source.PRIOR}
        p_uniform = 1 / (1 + ETA ** base_rung)
        uniform = sources == Source.UNIFORM
        _within_5_se(int(uniform.sum()), len(sources), p_uniform)
        # The rows come from the distributions their source names: the prior's choice
        # has probability 4 / 6 under the prior and 1 / 3 uniformly.
        chosen = configs["c"] == 1
        _within_5_se(int(chosen[~uniform].sum()), int((~uniform).sum()), WEIGHT / (WEIGHT + 2))
        _within_5_se(int(chosen[uniform].sum()), int(uniform.sum()), 1 / N_CHOICES)
        state, _ = ask(state, jax.random.key(base_rung))


def _loss(configs, fidelities):
    """Lower at low fidelity and wiggly across fidelities: the lowest loss over all rungs
    (NePS's incumbent) is not the best at the top rung (the paper's)."""
    x = configs["x"]
    return jnp.square(x - 0.7) + fidelities / 100 + 0.05 * jnp.sin(40 * x + fidelities)


def _unit_integer(v):
    lo, hi = np.log(0.5), np.log(64.5)
    return (np.log(v) - lo) / (hi - lo)


def _truncnorm_pdf(u, mu):
    return stats.truncnorm.pdf(u, -mu / SIGMA, (1 - mu) / SIGMA, loc=mu, scale=SIGMA)


def _truncnorm_bin(v, mu):
    a, b = _unit_integer(v - 0.5), _unit_integer(v + 0.5)
    dist = stats.truncnorm(-mu / SIGMA, (1 - mu) / SIGMA, loc=mu, scale=SIGMA)
    return dist.cdf(b) - dist.cdf(a)


def _unit_step(v):
    """s: Float(-1, 1, step=0.5): five bins of width 0.5 over [-1.25, 1.25]."""
    return (v + 1.25) / 2.5


def _truncnorm_step(v, mu):
    a, b = _unit_step(v - 0.25), _unit_step(v + 0.25)
    dist = stats.truncnorm(-mu / SIGMA, (1 - mu) / SIGMA, loc=mu, scale=SIGMA)
    return dist.cdf(b) - dist.cdf(a)


def _density(centre, x, s, n, c):
    """The prior's shape centred on `centre` = (x, s, n, c), at (x, s, n, c) (reference)."""
    cx, cs, cn, cc = centre
    pmf = np.where(c == cc, WEIGHT, 1.0) / (WEIGHT + N_CHOICES - 1)
    return (_truncnorm_pdf(x, cx) * _truncnorm_step(s, _unit_step(cs))
            * _truncnorm_bin(n, _unit_integer(cn)) * pmf)


def _reference_policy(trials, base_rung, incumbent_selection="any_fidelity"):
    """(p_uniform, p_prior, p_incumbent, incumbent row) from the paper's rules, in numpy."""
    success = trials.status == Status.SUCCESS
    told = success | (trials.status == Status.FAILED)
    per_rung = np.bincount(trials.rungs[success], minlength=4)
    parent_fidelity = np.where(trials.parent_ids >= 0,
                               trials.fidelities[np.maximum(trials.parent_ids, 0)], 0.0)
    spent = np.sum((trials.fidelities - parent_fidelity)[told])
    p_uniform = 1 / (1 + ETA ** base_rung)
    assert per_rung[3] > 0 and spent >= BRACKET_COST and np.any(per_rung >= ETA)
    # The top K = n // eta of the highest rung with >= eta results, weighted K, ..., 1.
    rung = np.max(np.flatnonzero(per_rung >= ETA))
    rows = np.flatnonzero(success & (trials.rungs == rung))
    rows = rows[np.argsort(trials.losses[rows], kind="stable")][: len(rows) // ETA]
    weights = np.arange(len(rows), 0, -1)
    # The incumbent: the lowest loss at any rung (NePS, the paper's implementation), or the
    # best result at the highest rung with results.
    if incumbent_selection == "any_fidelity":
        pool = np.flatnonzero(success)
    else:
        pool = np.flatnonzero(success & (trials.rungs == trials.rungs[success].max()))
    incumbent = pool[np.argmin(trials.losses[pool])]
    config = trials.configs
    x, s, n, c = (config[path][rows] for path in ("x", "s", "n", "c"))
    prior = _density((0.3, 0.5, 8, 1), x, s, n, c)
    around = _density(tuple(config[path][incumbent] for path in ("x", "s", "n", "c")),
                      x, s, n, c)
    share = np.sum(weights * around) / (np.sum(weights * around) + np.sum(weights * prior))
    p_incumbent = (1 - p_uniform) * share
    return p_uniform, 1 - p_uniform - p_incumbent, p_incumbent, incumbent


@pytest.mark.parametrize("incumbent_selection", ["any_fidelity", "highest_fidelity", None])
def test_incumbent_share_matches_the_reference(priorband, incumbent_selection):
    """The policy and the centre of incumbent sampling, for both incumbent selections (None:
    the default, which is NePS's and the paper implementation's lowest loss at any rung)."""
    if incumbent_selection is None:
        opt, ask, tell, many = priorband
        incumbent_selection = "any_fidelity"
    else:
        opt, ask, tell, many = _priorband(incumbent_selection=incumbent_selection)
    # Two brackets with results: 27@1 .. 1@27 and 9@3 .. 1@27. Then rung 2 holds 6
    # results (K = 2), rung 3 two, and one bracket's fidelity is spent.
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 7,
                           loss=_loss)
    assert rungs_served(history) == [(27, 1), (9, 3), (3, 9), (1, 27), (9, 3), (3, 9), (1, 27)]
    trials = jax.device_get(state.trials)
    p_uniform, p_prior, p_incumbent, incumbent = _reference_policy(
        trials, base_rung=2, incumbent_selection=incumbent_selection)
    # `_loss` makes the two selections differ: the lowest loss is not at the top rung.
    told = trials.status == Status.SUCCESS
    lowest = np.nanargmin(np.where(told, trials.losses, np.nan))
    assert trials.rungs[lowest] < 3
    assert (lowest == incumbent) == (incumbent_selection == "any_fidelity")
    assert 0.05 < p_incumbent < 0.99 * (1 - p_uniform)  # prior and incumbent both matter

    sources, configs = _draw(many, state, seed=5)  # the next bracket: 6@9, base rung 2
    n = len(sources)
    assert n == 6 * N_KEYS
    _within_5_se(int(np.sum(sources == Source.UNIFORM)), n, p_uniform)
    _within_5_se(int(np.sum(sources == Source.PRIOR)), n, p_prior)
    _within_5_se(int(np.sum(sources == Source.INCUMBENT)), n, p_incumbent)

    # Incumbent samples keep each parameter with probability 1 - 0.5; a mutated float
    # moves and a mutated categorical changes, so kept values equal the incumbent's.
    mutants = sources == Source.INCUMBENT
    for path in ("x", "c"):
        kept = configs[path][mutants] == trials.configs[path][incumbent]
        _within_5_se(int(kept.sum()), int(mutants.sum()), 0.5)


def test_without_incumbent_sampling_only_prior_and_uniform():
    opt, ask, tell = jitted("priorband", "mixed27", incumbent=False, **SETTINGS)
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 12,
                           loss=_loss)
    sources = np.asarray(state.trials.sources)[: int(state.trials.count)]
    assert set(np.unique(sources)) == {Source.UNIFORM, Source.PRIOR, Source.PROMOTION}


def test_without_prior_it_is_hyperband():
    opt, ask, tell = jitted("priorband", "mixed27", prior=False, **SETTINGS)
    hb, hb_ask, hb_tell = jitted("hyperband", "mixed27", **SETTINGS)
    state, history = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 12)
    chex.clear_trace_counter()  # chex counts both optimisers' ask (the same code) together
    hb_state, hb_history = drive(hb_ask, hb_tell, hb.init(jax.random.key(0)),
                                 jax.random.key(1), 12)
    jax.tree.map(np.testing.assert_array_equal, state, hb_state)
    assert set(np.unique(np.asarray(state.trials.sources)[: int(state.trials.count)])) == {
        Source.UNIFORM, Source.PROMOTION}


def test_the_capacity_does_not_change_the_asks():
    """At capacity 256 PriorBand's incumbent share scores every row of its rung (85 at
    most); at 2,048 only the top 256 (its K is 2): the same asks."""
    def asks(max_trials):
        chex.clear_trace_counter()  # chex counts both capacities' ask (the same code)
        opt, ask, tell, many = _priorband(max_trials=max_trials)
        state, _ = drive(ask, tell, opt.init(jax.random.key(0)), jax.random.key(1), 7,
                         loss=_loss)
        # 400 asks of 6 draws: a share that moved by 0.01 would change ~24 sources
        return jax.device_get(many(state, jax.random.split(jax.random.key(5), 400))[1])

    # the same draws; float values up to the last bit of another program's fusion
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
                 asks(2048), asks(256))
