"""`Space.add_prior` (NePS' `PipelineSpace.add_prior`) and a Categorical whose choices would
come from another parameter, which is refused with the `Dynamic` to write instead."""

import jax
import numpy as np
import pytest

import jaxnas as jn


class Layer:
    """A stand-in operator that records its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(other) is Layer and (self.args, self.kwargs) == (other.args, other.kwargs)


class MySpace(jn.Space):
    lr = jn.Float(1e-4, 1e-1, log=True)
    dropout = jn.Float(0.0, 1.0)
    _width = jn.Integer(16, 128, step=16)
    model = jn.Operation(Layer, kwargs={"features": _width})
    act = jn.Categorical(("relu", "tanh", "gelu"))
    epochs = jn.IntegerFidelity(1, 9)


def _prior_samples(spec, n):
    return jax.vmap(spec.sample_prior)(jax.random.split(jax.random.key(0), n))


def test_add_prior_returns_a_new_space_and_leaves_the_original_alone():
    space = MySpace()
    lr = space["lr"]
    new = space.add_prior("lr", 1e-3, confidence="high")
    assert type(new) is MySpace and list(new) == list(space)
    assert space["lr"] is lr and lr.prior is None  # unchanged
    assert (new["lr"].prior, new["lr"].prior_confidence) == (1e-3, "high")
    assert (new["lr"].lower, new["lr"].upper, new["lr"].log) == (1e-4, 1e-1, True)
    assert all(new[k] is space[k] for k in space if k != "lr")
    assert new.add_prior("lr", 1e-2)["lr"].prior_confidence == "medium"  # the default
    assert jn.compile(new).paths == jn.compile(space).paths


def test_add_prior_replaces_an_existing_prior():
    space = jn.Space({"x": jn.Float(0.0, 1.0, prior=0.2, prior_confidence="low")})
    new = space.add_prior("x", 0.7, "high")
    assert (new["x"].prior, new["x"].prior_confidence) == (0.7, "high")
    assert space["x"].prior == 0.2


def test_a_float_prior_moves_the_prior_samples_and_the_log_prior():
    space = MySpace()
    old_spec, spec = jn.compile(space), jn.compile(space.add_prior("dropout", 0.8, "high"))
    # A normal with sigma 0.125 truncated to [0, 1] puts 97.6% of its mass within 0.25 of
    # 0.8 (uniform: 45%); with n = 1000 the fraction's standard deviation is below 0.016.
    dropout = np.asarray(_prior_samples(spec, 1000)["dropout"])
    assert np.mean(np.abs(dropout - 0.8) < 0.25) > 0.9
    config = spec.sample_prior(jax.random.key(1))
    near, far = config.replace({"dropout": 0.8}), config.replace({"dropout": 0.05})
    assert spec.log_prior(near) > old_spec.log_prior(near) > spec.log_prior(far)


def test_a_categorical_prior_is_the_mode_of_the_prior_samples():
    space = MySpace()
    spec = jn.compile(space.add_prior("act", 2, confidence="high"))
    assert spec.parameters()["act"].prior == 2
    # Weight 6 against 1 + 1: the prior choice has probability 0.75; n = 2000.
    act = np.asarray(_prior_samples(spec, 2000)["act"])
    p = 6 / 8
    assert abs(np.mean(act == 2) - p) < 5 * np.sqrt(p * (1 - p) / 2000)
    config = spec.sample(jax.random.key(2)).replace({"act": 2})
    assert spec.log_prior(config) > jn.compile(space).log_prior(config)


def test_sharing_and_resampled_copies_follow_the_rebuilt_entry():
    class Shared(jn.Space):
        _width = jn.Integer(16, 128, step=16)
        model = jn.Operation(Layer, kwargs={"features": _width})
        copies = (_width.resample(), _width.resample())

    space = Shared()
    new = space.add_prior("_width", 64, confidence="high")
    assert new["model"].kwargs["features"] is new["_width"]
    assert all(copy.source is new["_width"] for copy in new["copies"])
    assert space["model"].kwargs["features"] is space["_width"]  # the original's too
    spec = jn.compile(new)
    assert spec.paths == jn.compile(space).paths == ("_width", "copies[0]", "copies[1]")
    assert {p.prior for p in spec.parameters().values()} == {64}
    config = spec.config({"_width": 48, "copies[0]": 16, "copies[1]": 32})
    assert spec.resolve(config)["model"] == Layer(features=48)


def test_a_dict_space_through_space():
    space = {"lr": jn.Float(1e-4, 1e-1, log=True), "bn": jn.Bool()}
    new = jn.Space(space).add_prior("bn", 1, "high")
    assert new["bn"].prior == 1 and new["lr"] is space["lr"] and space["bn"].prior is None
    assert jn.compile(new).paths == jn.compile(space).paths


@pytest.mark.parametrize(
    "name, prior, confidence, error, match",
    [
        ("lrr", 1e-3, "medium", KeyError, r"no entry 'lrr'; entries are \['lr', 'dropout'"),
        ("lr", 1.0, "medium", ValueError,
         r"add_prior\('lr', prior=1.0\).*prior=1.0 lies outside the bounds \[0.0001, 0.1\]"),
        ("_width", 20, "medium", ValueError,
         r"add_prior\('_width', prior=20\).*prior=20 is not on the grid of step=16"),
        ("_width", 24.5, "medium", ValueError, r"'_width', prior=24.5.*must be a whole number"),
        ("act", 3, "medium", ValueError, r"'act', prior=3\).*out of range for 3 choices"),
        ("act", "gelu", "medium", TypeError,
         r"'act', prior='gelu'\).*must be an index.*'gelu' is choice 2: give prior=2"),
        ("lr", 1e-3, "very", ValueError,
         r"add_prior\('lr', prior=0.001\): confidence='very' is not one of"),
        ("lr", None, "medium", TypeError, r"'lr', prior=None\): None is no prior"),
        ("dropout", "0.5", "medium", TypeError, r"'dropout', prior='0.5'.*finite real number"),
    ],
)
def test_bad_priors_name_the_entry_the_value_and_the_rule(name, prior, confidence, error,
                                                          match):
    with pytest.raises(error, match=match):
        MySpace().add_prior(name, prior, confidence)


@pytest.mark.parametrize(
    "entry, reason",
    [
        (jn.Operation(Layer), "decides nothing itself"),
        (jn.Constant((0.9, 0.999)), "a constant decides nothing"),
        (0.999, "a constant decides nothing"),
        (jn.IntegerFidelity(1, 9), "the optimiser sets the fidelity"),
        (jn.Float(0.0, 1.0).resample(), "resampled copy draws from its source's prior"),
        (jn.ByName("x"), "refers to the entry 'x'"),
        (jn.Dynamic(lambda x: 2 * x, x=jn.ByName("x")), "decides nothing itself"),
        ({"inner": jn.Float(0.0, 1.0)}, "not a container"),
    ],
)
def test_entries_that_take_no_prior_are_refused(entry, reason):
    space = jn.Space({"x": jn.Float(0.0, 1.0), "y": entry})
    with pytest.raises(ValueError, match=rf"add_prior\('y', prior=0.5\): the entry is .*"
                                         rf"which takes no prior: .*{reason}"):
        space.add_prior("y", 0.5)


@pytest.mark.parametrize(
    "choices, shown, options",
    [
        (jn.ByName("widths"), r"ByName\('widths'\)", r"jn.ByName\('widths'\)"),
        (jn.Integer(0, 3), r"Integer\(0, 3\)", "<it>"),
    ],
)
def test_a_categorical_over_another_parameter_says_how_to_write_it(choices, shown, options):
    with pytest.raises(TypeError, match=rf"Categorical\(choices={shown}\): .*cannot come "
                                        rf"from another parameter's value.*jn.Dynamic\(.*"
                                        rf"options={options}, index=jn.Integer"):
        jn.Categorical(choices)
    with pytest.raises(TypeError, match=r"Categorical\(choices="):
        jn.Categorical(choices=choices, prior=0)


def test_the_dynamic_the_message_suggests_works():
    widths = ((32, 64), (64, 128, 256))
    space = {"widths": jn.Categorical(widths),
             "width": jn.Dynamic(lambda options, index: options[index % len(options)],
                                 options=jn.ByName("widths"), index=jn.Integer(0, 2))}
    spec = jn.compile(space)
    assert spec.paths == ("widths", "width.index")
    for seed in range(8):
        resolved = spec.resolve(spec.sample(jax.random.key(seed)))
        assert resolved["widths"] in widths and resolved["width"] in resolved["widths"]
