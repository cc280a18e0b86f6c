"""Distribution tests: fixed seeds, tolerances derived from the sample size.

Each frequency check allows 5 standard errors, sqrt(p (1 - p) / n); each distribution check
uses the Kolmogorov-Smirnov bound 1.63 / sqrt(n) (the 99% quantile). With fixed seeds the
tests are deterministic; the bounds say how far an honest sampler may stray at this n.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn

N = 20_000
KS_BOUND = 1.63 / math.sqrt(N)


def _draw(spec, method="sample", n=N, seed=0):
    fn = jax.jit(jax.vmap(getattr(spec, method)))
    return {p: np.asarray(v) for p, v in fn(jax.random.split(jax.random.key(seed), n)).items()}


def _freq_tolerance(p, n=N):
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-12


def _ks(samples, cdf):
    x = np.sort(samples)
    empirical = np.arange(1, len(x) + 1) / len(x)
    return np.max(np.abs(empirical - cdf(x)))


def _phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _truncnorm_moments(mu, sigma):
    """Mean and std of N(mu, sigma) truncated to [0, 1] (numpy reference)."""
    a, b = -mu / sigma, (1 - mu) / sigma
    pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    z = _phi(b) - _phi(a)
    mean = mu + sigma * (pdf(a) - pdf(b)) / z
    var = sigma**2 * (1 + (a * pdf(a) - b * pdf(b)) / z - ((pdf(a) - pdf(b)) / z) ** 2)
    return mean, math.sqrt(var)


def test_float_is_uniform():
    x = _draw(jn.compile({"x": jn.Float(-2.0, 3.0)}))["x"]
    assert x.min() >= -2.0 and x.max() <= 3.0
    assert _ks(x, lambda v: (v + 2.0) / 5.0) < KS_BOUND


def test_log_float_is_log_uniform():
    x = _draw(jn.compile({"x": jn.Float(1e-5, 1e-1, log=True)}))["x"]
    assert x.min() >= 1e-5 and x.max() <= 1e-1
    assert _ks(np.log(x), lambda v: (v - math.log(1e-5)) / (math.log(1e-1) - math.log(1e-5))) < KS_BOUND


def test_integer_is_uniform_with_both_ends_reachable():
    k = _draw(jn.compile({"k": jn.Integer(1, 5)}))["k"]
    assert k.dtype == np.int32
    for value in range(1, 6):
        assert abs(np.mean(k == value) - 0.2) < _freq_tolerance(0.2), value
    assert set(np.unique(k)) == {1, 2, 3, 4, 5}


def test_log_integer_value_v_owns_log_bin_around_it():
    lo, hi = 1, 8
    k = _draw(jn.compile({"k": jn.Integer(lo, hi, log=True)}))["k"]
    total = math.log((hi + 0.5) / (lo - 0.5))
    for value in range(lo, hi + 1):
        p = math.log((value + 0.5) / (value - 0.5)) / total
        assert abs(np.mean(k == value) - p) < _freq_tolerance(p), value


def test_categorical_is_uniform():
    idx = _draw(jn.compile({"c": jn.Categorical(("a", "b", "c", "d"))}))["c"]
    for i in range(4):
        assert abs(np.mean(idx == i) - 0.25) < _freq_tolerance(0.25)


@pytest.mark.parametrize("confidence, sigma", [("low", 0.5), ("medium", 0.25), ("high", 0.125)])
def test_float_prior_is_a_truncated_normal_in_unit_space(confidence, sigma):
    spec = jn.compile({"x": jn.Float(0.0, 10.0, prior=7.0, prior_confidence=confidence)})
    u = _draw(spec, "sample_prior")["x"] / 10.0
    mean, std = _truncnorm_moments(0.7, sigma)
    assert abs(u.mean() - mean) < 5 * std / math.sqrt(N)
    assert abs(u.std() - std) < 5 * std / math.sqrt(2 * N) * 1.5  # kurtosis slack


def test_log_float_prior_lives_in_log_space():
    spec = jn.compile({"lr": jn.Float(1e-5, 1e-1, log=True, prior=1e-3, prior_confidence="high")})
    lr = _draw(spec, "sample_prior")["lr"]
    u = (np.log(lr) - math.log(1e-5)) / (math.log(1e-1) - math.log(1e-5))
    mean, std = _truncnorm_moments(0.5, 0.125)
    assert abs(u.mean() - mean) < 5 * std / math.sqrt(N)
    assert abs(np.median(lr) - 1e-3) / 1e-3 < 0.05


def test_prior_concentration_rises_with_confidence():
    spreads = []
    for confidence in ("low", "medium", "high"):
        spec = jn.compile({"x": jn.Float(0.0, 1.0, prior=0.3, prior_confidence=confidence)})
        spreads.append(np.mean(np.abs(_draw(spec, "sample_prior")["x"] - 0.3)))
    assert spreads[0] > spreads[1] > spreads[2]


@pytest.mark.parametrize("confidence, weight", [("low", 2), ("medium", 4), ("high", 6)])
def test_categorical_prior_weight(confidence, weight):
    spec = jn.compile({"c": jn.Categorical(tuple("abcde"), prior=3, prior_confidence=confidence)})
    idx = _draw(spec, "sample_prior")["c"]
    p = weight / (weight + 4)
    assert abs(np.mean(idx == 3) - p) < _freq_tolerance(p)
    for other in (0, 1, 2, 4):
        q = 1 / (weight + 4)
        assert abs(np.mean(idx == other) - q) < _freq_tolerance(q)


def test_integer_prior_matches_binned_truncated_normal():
    spec = jn.compile({"k": jn.Integer(0, 9, prior=2, prior_confidence="medium")})
    k = _draw(spec, "sample_prior")["k"]
    mu, sigma = 0.25, 0.25  # prior 2 is the centre of bin 2 of 10
    z = _phi((1 - mu) / sigma) - _phi(-mu / sigma)
    for value in range(10):
        p = (_phi(((value + 1) / 10 - mu) / sigma) - _phi((value / 10 - mu) / sigma)) / z
        assert abs(np.mean(k == value) - p) < _freq_tolerance(p), value


def test_parameters_without_prior_stay_uniform_under_sample_prior():
    spec = jn.compile({"x": jn.Float(0.0, 1.0), "y": jn.Float(0.0, 1.0, prior=0.9)})
    x = _draw(spec, "sample_prior")["x"]
    assert _ks(x, lambda v: v) < KS_BOUND


@pytest.mark.parametrize("confidence", ["low", "medium", "high"])
def test_log_prior_is_a_normalised_density(confidence):
    """Each kind's prior integrates (or sums) to one over its own values."""
    def density(parameter, values, dtype):
        spec = jn.compile({"p": parameter})
        return np.exp(np.asarray(jax.jit(jax.vmap(spec.log_prior))(
            {"p": jnp.asarray(values, dtype)}), np.float64))

    grid = (np.arange(4000) + 0.5) / 4000  # midpoint rule over the unit encoding
    x = density(jn.Float(0.0, 2.0, prior=1.5, prior_confidence=confidence), 2.0 * grid,
                jnp.float32)
    assert x.mean() == pytest.approx(1.0, rel=1e-3)  # density w.r.t. the unit encoding
    k = density(jn.Integer(1, 6, prior=2, prior_confidence=confidence), np.arange(1, 7),
                jnp.int32)
    assert k.sum() == pytest.approx(1.0, rel=1e-5)
    assert k.argmax() == 1  # the mode is the prior
    c = density(jn.Categorical((0.1, 0.2, 0.3), prior=0, prior_confidence=confidence),
                np.arange(3), jnp.int32)
    assert c.sum() == pytest.approx(1.0, rel=1e-5) and c.argmax() == 0


def test_log_prior_matches_a_numpy_reference():
    spec = jn.compile({"x": jn.Float(0.0, 4.0, prior=1.0, prior_confidence="high"),
                       "c": jn.Categorical(("a", "b", "c"), prior=2, prior_confidence="low")})
    config = {"x": jnp.float32(2.0), "c": jnp.int32(0)}
    mu, sigma, u = 0.25, 0.125, 0.5
    z = _phi((1 - mu) / sigma) - _phi(-mu / sigma)
    expected = (-0.5 * ((u - mu) / sigma) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(sigma)
                - math.log(z)) + math.log(1 / 4)
    assert float(spec.log_prior(config)) == pytest.approx(expected, rel=1e-5)


def test_shared_objects_share_and_resampled_copies_are_independent():
    width = jn.Integer(1, 4)
    space = {"a": width, "b": width, "c": width.resample(), "d": jn.Resampled(width)}
    spec = jn.compile(space)
    assert spec.paths == ("a", "c", "d")  # one decision for the shared object
    draws = _draw(spec)
    for i in range(50):
        resolved = spec.resolve({p: v[i] for p, v in draws.items()})
        assert resolved["a"] == resolved["b"] == draws["a"][i]
    for other in ("c", "d"):
        assert abs(np.mean(draws["a"] == draws[other]) - 0.25) < _freq_tolerance(0.25)
    assert abs(np.corrcoef(draws["a"], draws["c"])[0, 1]) < 5 / math.sqrt(N)
    assert abs(np.mean(draws["c"] == draws["d"]) - 0.25) < _freq_tolerance(0.25)


def test_branch_activity_follows_the_chosen_branch():
    a, b = jn.Float(0, 1), jn.Integer(1, 3)
    spec = jn.compile({"pick": jn.Categorical(((a,), (b,), ("none",)), prior=0,
                                              prior_confidence="high")})
    draws = jax.vmap(spec.sample_prior)(jax.random.split(jax.random.key(0), N))
    active = {p: np.asarray(v) for p, v in jax.vmap(spec.active)(draws).items()}
    idx = np.asarray(draws["pick"])
    assert np.array_equal(active["pick.choices[0][0]"], idx == 0)
    assert np.array_equal(active["pick.choices[1][0]"], idx == 1)
    assert active["pick"].all()
    assert abs(np.mean(idx == 0) - 6 / 8) < _freq_tolerance(6 / 8)


def test_nested_branches_are_active_only_under_their_parents():
    inner = jn.Categorical(((jn.Float(0, 1),), ("leaf",)))
    spec = jn.compile({"outer": jn.Categorical(((inner,), ("stop",)))})
    draws = _draw(spec)
    active = {p: np.asarray(v) for p, v in jax.vmap(spec.active)(
        {p: jnp.asarray(v) for p, v in draws.items()}).items()}
    deep = "outer.choices[0][0].choices[0][0]"
    expected = (draws["outer"] == 0) & (draws["outer.choices[0][0]"] == 0)
    assert np.array_equal(active[deep], expected)
    assert abs(np.mean(expected) - 0.25) < _freq_tolerance(0.25)


def test_shared_object_in_two_branches_is_active_when_either_is_chosen():
    shared = jn.Float(0, 1)
    spec = jn.compile({"x": jn.Categorical(((shared,), ("no",))),
                       "y": jn.Categorical(((shared,), ("no",)))})
    draws = _draw(spec)
    active = jax.vmap(spec.active)({p: jnp.asarray(v) for p, v in draws.items()})
    path = "x.choices[0][0]"
    expected = (draws["x"] == 0) | (draws["y"] == 0)
    assert np.array_equal(np.asarray(active[path]), expected)


def test_recursive_choices_beyond_max_depth_have_probability_zero():
    grammar = {"expr": jn.Categorical(
        ((jn.ByName("expr").resample(), jn.ByName("expr").resample()), (jn.Integer(0, 9),)))}
    spec = jn.compile(grammar, max_depth=2)
    draws = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), 2000))
    deepest = [p for p in spec.paths if p.count("choices[0]") == 2 and spec.parameters()[p]
               is grammar["expr"]]
    assert deepest, spec.paths
    for path in deepest:  # the copies at max_depth can only take the terminal choice
        assert np.all(np.asarray(draws[path]) == 1)

    def leaves(tree):
        return 1 if isinstance(tree, int) else sum(leaves(t) for t in tree)

    counts = [leaves(spec.resolve(jax.tree.map(lambda x: x[i], draws))["expr"])
              for i in range(200)]
    assert max(counts) <= 4 and min(counts) == 1 and 4 in counts
    # The top choice is still uniform: half the configs are a single leaf.
    assert abs(np.mean(np.asarray(draws["expr"]) == 1) - 0.5) < _freq_tolerance(0.5, 2000)


def test_mutate_changes_each_slot_with_the_given_rate():
    spec = jn.compile({f"c{i}": jn.Categorical((0, 1, 2)) for i in range(8)}
                      | {f"x{i}": jn.Float(0, 1) for i in range(8)})
    base = spec.sample(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 4000)
    mutated = jax.jit(jax.vmap(spec.mutate, in_axes=(0, None, None, None)))(keys, base, 0.3, 0.1)
    cat_changed = np.mean([np.asarray(mutated[f"c{i}"]) != int(base[f"c{i}"]) for i in range(8)])
    assert abs(cat_changed - 0.3) < _freq_tolerance(0.3, 4000 * 8)
    x_moved = np.concatenate([np.asarray(mutated[f"x{i}"]) - float(base[f"x{i}"]) for i in range(8)])
    moved = x_moved[x_moved != 0]
    assert abs(len(moved) / len(x_moved) - 0.3) < _freq_tolerance(0.3, len(x_moved))
    assert np.abs(moved).mean() < 0.1  # a local move, about sigma * sqrt(2 / pi) before truncation


def test_integer_log_prior_is_accurate_far_in_the_tail():
    spec = jn.compile({"n": jn.Integer(0, 10, prior=0, prior_confidence="high")})
    log_prior = jax.vmap(spec.log_prior)({"n": jnp.arange(11, dtype=jnp.int32)})
    mu, sigma = 0.5 / 11, 0.125
    z = _phi((1 - mu) / sigma) - _phi(-mu / sigma)
    for n in range(11):
        a, b = (n / 11 - mu) / sigma, ((n + 1) / 11 - mu) / sigma
        # Upper-tail masses via erfc to avoid the very cancellation under test.
        mass = 0.5 * (math.erfc(a / math.sqrt(2)) - math.erfc(b / math.sqrt(2))) / z
        assert float(log_prior[n]) == pytest.approx(math.log(mass), rel=1e-3, abs=1e-3), n


def _truncnorm_mass(a, b, mu, sigma):
    """Mass of N(mu, sigma) truncated to [0, 1] on [a, b] (numpy reference)."""
    z = _phi((1 - mu) / sigma) - _phi(-mu / sigma)
    return (_phi((b - mu) / sigma) - _phi((a - mu) / sigma)) / z


def test_centred_log_prior_matches_a_numpy_reference():
    """Every slot takes its confidence around the centre, whether it has a prior or not."""
    spec = jn.compile({
        "x": jn.Float(0.0, 4.0, prior_confidence="low"),  # no prior: sigma 0.5 all the same
        "n": jn.Integer(1, 64, log=True, prior=8, prior_confidence="high"),
        "c": jn.Categorical(("a", "b", "c"), prior=2, prior_confidence="low"),
    })
    centre = {"x": jnp.float32(1.0), "n": jnp.int32(4), "c": jnp.int32(0)}
    config = {"x": jnp.float32(3.0), "n": jnp.int32(20), "c": jnp.int32(0)}

    def unit_n(v):
        return (math.log(v) - math.log(0.5)) / (math.log(64.5) - math.log(0.5))

    mu, sigma, u = 0.25, 0.5, 0.75
    z = _phi((1 - mu) / sigma) - _phi(-mu / sigma)
    log_x = (-0.5 * ((u - mu) / sigma) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(sigma)
             - math.log(z))
    log_n = math.log(_truncnorm_mass(unit_n(19.5), unit_n(20.5), unit_n(4), 0.125))
    log_c = math.log(2 / (2 + 2))  # the centre's choice weighs 2 ("low") against 1 + 1
    expected = log_x + log_n + log_c
    got = jax.jit(lambda c, k: spec.log_prior(c, centre=k))(config, centre)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    other = dict(config, c=jnp.int32(2))  # not the centre's choice: the prior's is irrelevant
    assert float(spec.log_prior(other, centre=centre)) == pytest.approx(
        log_x + log_n + math.log(1 / 4), rel=1e-5)


def test_centred_log_prior_at_the_prior_is_the_prior():
    spec = jn.compile({"x": jn.Float(1e-4, 1.0, log=True, prior=1e-2),
                       "n": jn.Integer(0, 9, prior=3, prior_confidence="high"),
                       "c": jn.Categorical((1, 2, 3, 4), prior=1)})
    centre = {"x": jnp.float32(1e-2), "n": jnp.int32(3), "c": jnp.int32(1)}
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), 64))
    prior = jax.vmap(spec.log_prior)(configs)
    centred = jax.vmap(lambda c: spec.log_prior(c, centre=centre))(configs)
    np.testing.assert_allclose(np.asarray(centred), np.asarray(prior), rtol=1e-4, atol=1e-4)


def test_centred_log_prior_weighs_only_feasible_choices():
    """At `max_depth` the copy of a recursive rule has one feasible choice: probability 1."""
    grammar = {"expr": jn.Categorical((jn.ByName("expr").resample(), jn.Integer(0, 9)),
                                      prior_confidence="high")}
    spec = jn.compile(grammar, max_depth=1)
    copy = "expr.choices[0]"
    leaf = "expr.choices[0].choices[1]"  # the shared Integer, where it is first met
    assert spec.paths == ("expr", copy, leaf)
    config = {"expr": jnp.int32(0), copy: jnp.int32(1), leaf: jnp.int32(5)}
    log_integer = math.log(_truncnorm_mass(0.5, 0.6, 0.55, 0.25))
    # The top choice: the centre's weighs 6 against 1; the copy's only feasible choice: 1.
    expected = math.log(6 / 7) + log_integer
    assert float(spec.log_prior(config, centre=config)) == pytest.approx(expected, rel=1e-5)
