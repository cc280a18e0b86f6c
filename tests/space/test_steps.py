"""`step=` on `Float` and `Integer`: only the values `lower + k * step`, everywhere.

Sampling, priors, the unit encoding, mutation and the prior's mass treat a stepped
parameter as discrete, like an `Integer`; a step of 1 on an `Integer` changes nothing.
(The optimisers' proposals are checked in tests/optimizers/test_conformance.py.)
"""

import jax
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jaxnas as jn

# Loaded now, not inside a strategy (`jaxnas` loads its parts on first use, and an import
# may touch the `random` module, which hypothesis forbids inside strategies).
Float, Integer = jn.Float, jn.Integer


@st.composite
def stepped(draw):
    """A stepped `Float` or `Integer`, with its grid (the values it may take)."""
    count = draw(st.integers(1, 12))  # steps: count + 1 values
    prior_k = draw(st.one_of(st.none(), st.integers(0, count)))
    confidence = draw(st.sampled_from(["low", "medium", "high"]))
    if draw(st.booleans()):
        lower, step = draw(st.integers(-50, 50)), draw(st.integers(2, 9))
        make = Integer
    else:
        lower = draw(st.sampled_from([-3.0, -1.0, 0.0, 0.5, 2.0]))
        step = draw(st.sampled_from([0.01, 0.1, 0.25, 0.5, 3.0]))
        make = Float
    upper = lower + count * step
    prior = None if prior_k is None else lower + prior_k * step
    parameter = make(lower, upper, step=step, prior=prior, prior_confidence=confidence)
    return parameter, parameter.grid(np.arange(count + 1))


def _on_grid(values, grid):
    values = np.asarray(values)
    return np.all(np.isin(values, np.asarray(grid, values.dtype))), sorted(set(values.tolist()))


# Found by hypothesis: -1.0 + 6 * 0.1 is -0.3999999999999999, whose float32 is -0.4, below
# the float32 of -1.0 + 6 * float32(0.1); the grid and every draw must agree on the last value.
_ROUNDED_UP = Float(-1.0, -1.0 + 6 * 0.1, step=0.1)


@settings(deadline=None, max_examples=6)
@given(stepped(), st.integers(0, 2**16))
@example(drawn=(_ROUNDED_UP, _ROUNDED_UP.grid(np.arange(7))), seed=0)
def test_every_draw_and_decoding_is_on_the_grid(drawn, seed):
    parameter, grid = drawn
    spec = jn.compile({"p": parameter, "x": jn.Float(0.0, 1.0)})
    keys = jax.random.split(jax.random.key(seed), 256)
    sample = jax.jit(jax.vmap(spec.sample))(keys)
    prior = jax.jit(jax.vmap(spec.sample_prior))(keys)
    unit = jax.random.uniform(jax.random.key(seed + 1), (256, 2))
    decoded = jax.jit(jax.vmap(spec.from_unit))(unit)
    moved = jax.jit(jax.vmap(lambda k, c: spec.mutate(k, c, 1.0, 0.3)))(keys, sample)
    for configs in (sample, prior, decoded, moved):
        ok, seen = _on_grid(configs["p"], grid)
        assert ok, (parameter, seen)
    # Every value is reachable, and a value's encoding decodes back to it.
    assert set(np.asarray(sample["p"]).tolist()) == set(np.asarray(grid).tolist()) or len(
        grid) > 64
    back = jax.vmap(spec.from_unit)(jax.vmap(spec.to_unit)(sample))
    np.testing.assert_array_equal(back["p"], sample["p"])


@settings(deadline=None, max_examples=6)
@given(stepped())
def test_the_prior_is_a_probability_mass_over_the_grid(drawn):
    parameter, grid = drawn
    spec = jn.compile({"p": parameter})
    configs = spec.config({"p": np.asarray(grid)})
    mass = np.exp(np.asarray(jax.jit(jax.vmap(spec.log_prior))(configs)))
    assert np.all(mass > 0)
    np.testing.assert_allclose(mass.sum(), 1.0, rtol=1e-4)
    if parameter.prior is None:  # uniform: each value 1 / (count + 1)
        np.testing.assert_allclose(mass, 1.0 / len(grid), rtol=1e-4)
    else:  # the prior's value is the most likely one
        assert grid[np.argmax(mass)] == np.asarray(parameter.prior, grid.dtype)


def test_prior_sampling_follows_the_mass():
    """Draws from `sample_prior` land on each value as often as its prior mass says."""
    spec = jn.compile({"p": jn.Float(0.0, 1.0, step=0.25, prior=0.25,
                                     prior_confidence="medium")})
    grid = spec.parameters()["p"].grid(np.arange(5))
    mass = np.exp(np.asarray(jax.vmap(spec.log_prior)(spec.config({"p": grid}))))
    n = 20_000
    drawn = np.asarray(jax.jit(jax.vmap(spec.sample_prior))(
        jax.random.split(jax.random.key(7), n))["p"])
    counts = np.array([np.sum(drawn == v) for v in grid])
    assert counts.sum() == n
    # Within 5 standard errors of a binomial proportion, for each value.
    np.testing.assert_array_less(np.abs(counts / n - mass), 5 * np.sqrt(mass * (1 - mass) / n))


def test_a_step_is_part_of_the_parameter():
    assert repr(jn.Float(0.0, 1.0, step=0.25)) == "Float(0.0, 1.0, step=0.25)"
    assert jn.Integer(0, 8, step=1).step is None  # every integer: no step
    assert jn.compile({"p": jn.Integer(0, 8, step=2)}) != jn.compile({"p": jn.Integer(0, 8)})
    assert jn.compile({"p": jn.Float(0, 1, step=0.5)}) == jn.compile({"p": jn.Float(0, 1,
                                                                              step=0.5)})
    np.testing.assert_array_equal(jn.Integer(16, 128, step=16).grid(np.arange(8)),
                                  [16, 32, 48, 64, 80, 96, 112, 128])
    with pytest.raises(ValueError, match="needs a step"):
        jn.Float(0.0, 1.0).grid([0, 1])


def test_grid_search_enumerates_the_steps():
    spec = jn.compile({"a": jn.Integer(0, 12, step=4), "b": jn.Float(0.0, 1.0, step=0.25)})
    everything = jn.optimizers.grid_search(spec, batch_size=32)
    three = jn.optimizers.grid_search(spec, batch_size=32, points_per_float=3,
                                      points_per_integer=2)

    def points(opt):
        _, proposals = opt.ask(opt.init(jax.random.key(0)), jax.random.key(1))
        valid = np.asarray(proposals.valid)
        return sorted(zip(np.asarray(proposals.configs["a"])[valid].tolist(),
                          np.asarray(proposals.configs["b"])[valid].tolist()))

    assert points(everything) == [(a, b) for a in (0, 4, 8, 12)
                                  for b in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert points(three) == [(a, b) for a in (0, 12) for b in (0.0, 0.5, 1.0)]


def test_evolution_mutates_a_stepped_integer_along_its_steps():
    """Mutations of a stepped integer (one step when the move leaves it where it was)
    stay on its values and leave the parents' ones."""
    spec = jn.compile({"a": jn.Integer(0, 40, step=10)})
    opt = jn.optimizers.get("regularized_evolution", spec, batch_size=8, population_size=8,
                            sample_size=4, max_trials=64)
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    state, seen = opt.init(jax.random.key(0)), []
    for i in range(5):
        state, proposals = ask(state, jax.random.key(i))
        state = tell(state, proposals.trial_ids,
                     np.abs(np.asarray(proposals.configs["a"]) - 20.0))
        seen += np.asarray(proposals.configs["a"])[np.asarray(proposals.valid)].tolist()
    assert set(seen) <= {0, 10, 20, 30, 40} and len(set(seen)) > 1
