"""Bad input raises a clear error that names the parameter or path, the value and the rule."""

import math

import pytest

import jaxnas as jn


class _Op:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: jn.Float(1.0, 1.0), ValueError, ["lower=1.0", "upper=1.0", "less than upper"]),
        (lambda: jn.Integer(5, 2), ValueError, ["lower=5", "upper=2", "less than upper"]),
        (lambda: jn.Float(0.0, 1.0, log=True), ValueError, ["log=True", "lower > 0", "0.0"]),
        (lambda: jn.Integer(-1, 4, log=True), ValueError, ["log=True", "lower > 0"]),
        (lambda: jn.Float(0.0, 1.0, prior=2.0), ValueError, ["prior=2.0", "outside", "[0.0, 1.0]"]),
        (lambda: jn.Integer(1, 9, prior=0), ValueError, ["prior=0", "outside"]),
        (lambda: jn.Integer(1, 9, prior=2.5), ValueError, ["prior=2.5", "whole number"]),
        (lambda: jn.Float(0.0, 1.0, prior=0.5, prior_confidence="very"), ValueError,
         ["prior_confidence='very'", "low", "medium", "high"]),
        (lambda: jn.Categorical(()), ValueError, ["choices", "must not be empty"]),
        (lambda: jn.Categorical(((1, 2), 3)), ValueError, ["tuple", "all choices must be tuples"]),
        (lambda: jn.Categorical(("a", "b"), prior=2), ValueError,
         ["prior=2", "out of range", "2 choices"]),
        (lambda: jn.Categorical(("a", "b"), prior_confidence="max"), ValueError,
         ["prior_confidence='max'"]),
        (lambda: jn.Categorical("abc"), TypeError, ["choices", "list or tuple"]),
        (lambda: jn.Float(-math.inf, 1.0), ValueError, ["lower=-inf", "finite"]),
        (lambda: jn.Float(0.0, math.nan), ValueError, ["upper=nan", "finite"]),
        (lambda: jn.Integer(0.5, 3), ValueError, ["lower=0.5", "whole number"]),
        (lambda: jn.Float("0", 1.0), TypeError, ["lower='0'", "real number"]),
        (lambda: jn.IntegerFidelity(0, 10), ValueError, ["0 < lower < upper"]),
        (lambda: jn.Fidelity(1, math.inf), ValueError, ["upper=inf", "finite"]),
        (lambda: jn.Operation(42), TypeError, ["operator=42", "callable"]),
        (lambda: jn.Integer(0, 2**30), ValueError, ["upper=1073741824", "2**24"]),
        (lambda: jn.IntegerFidelity(1, 2.5), ValueError, ["upper=2.5", "whole number"]),
        (lambda: jn.Bool(prior=1), TypeError, ["prior=1", "True, False"]),
        (lambda: jn.Float(0.0, 1.0, step=0.3), ValueError,
         ["step=0.3", "upper - lower = 1.0", "whole steps", "upper=0.9"]),
        (lambda: jn.Integer(0, 10, step=3), ValueError, ["step=3", "whole steps", "upper=9"]),
        (lambda: jn.Integer(0, 10, step=2.5), ValueError, ["step=2.5", "whole number"]),
        (lambda: jn.Float(0.0, 1.0, step=0.0), ValueError, ["step=0.0", "positive"]),
        (lambda: jn.Float(0.1, 1.0, step=0.1, log=True), ValueError, ["step=0.1", "log=True"]),
        (lambda: jn.Float(0.0, 1.0, step=0.1, prior=0.25), ValueError,
         ["prior=0.25", "step=0.1", "0.2", "0.3"]),
        (lambda: jn.Integer(0, 12, step=4, prior=6), ValueError, ["prior=6", "4", "8"]),
    ],
)
def test_definition_errors(make, error, words):
    with pytest.raises(error) as info:
        make()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_by_name_to_a_missing_entry_names_the_path():
    space = {"a": jn.Float(0, 1), "model": jn.Operation(_Op, args=(jn.ByName("nope"),))}
    with pytest.raises(jn.SpaceError, match=r"model\.args\[0\].*ByName\('nope'\).*'a', 'model'"):
        jn.compile(space)


def test_value_containing_itself_is_an_error():
    space = {"x": jn.Categorical(((jn.ByName("x"),), (jn.Float(0, 1),)))}
    with pytest.raises(jn.SpaceError, match=r"x\.choices\[0\]\[0\].*contains it.*resample"):
        jn.compile(space)


def test_grammar_that_cannot_terminate_names_the_rule():
    space = {
        "ok": jn.Float(0, 1),
        "loop": jn.Categorical(((jn.ByName("loop").resample(), jn.ByName("loop").resample()),)),
    }
    with pytest.raises(jn.SpaceError, match=r"cannot terminate.*'loop'"):
        jn.compile(space)


def test_mutual_recursion_that_cannot_terminate_names_both_rules():
    space = {
        "a": jn.Operation(_Op, args=(jn.ByName("b").resample(),)),
        "b": jn.Operation(_Op, args=(jn.ByName("a").resample(),)),
    }
    with pytest.raises(jn.SpaceError, match=r"'a', 'b'"):
        jn.compile(space)


def test_fidelity_inside_an_operation_is_an_error():
    space = {"model": jn.Operation(_Op, kwargs={"epochs": jn.IntegerFidelity(1, 9)})}
    with pytest.raises(jn.SpaceError, match=r"model\.kwargs\.epochs.*inside an Operation.*direct entry"):
        jn.compile(space)


def test_fidelity_inside_a_categorical_is_an_error():
    space = {"x": jn.Categorical((jn.IntegerFidelity(1, 9), 3))}
    with pytest.raises(jn.SpaceError, match=r"x\.choices\[0\].*inside a Categorical"):
        jn.compile(space)


def test_fidelity_used_twice_is_an_error():
    epochs = jn.IntegerFidelity(1, 9)
    with pytest.raises(jn.SpaceError, match=r"'b'|b:.*used twice.*'a'"):
        jn.compile({"a": epochs, "b": epochs})


def test_two_fidelities_are_an_error():
    space = {"a": jn.IntegerFidelity(1, 9), "b": jn.FloatFidelity(0.1, 1.0)}
    with pytest.raises(jn.SpaceError, match=r"b: a second fidelity.*'a'"):
        jn.compile(space)


def test_by_name_to_a_fidelity_is_an_error():
    space = {"epochs": jn.IntegerFidelity(1, 9), "m": jn.Operation(_Op, args=(jn.ByName("epochs"),))}
    with pytest.raises(jn.SpaceError, match=r"m\.args\[0\]: ByName\('epochs'\) refers to a fidelity"):
        jn.compile(space)


def test_fidelity_cannot_be_resampled():
    with pytest.raises(TypeError, match="cannot be resampled"):
        jn.IntegerFidelity(1, 9).resample()


def test_space_above_the_slot_limit_says_what_to_lower():
    grammar = {
        "expr": jn.Categorical(
            ((jn.ByName("expr").resample(), jn.ByName("expr").resample()), (jn.Float(0, 1),))
        )
    }
    with pytest.raises(jn.SpaceError, match=r"max_slots=100.*max_nodes=64.*lower max_depth "
                                            r"\(now 8\)"):
        jn.compile(grammar, max_depth=8, max_slots=100)
    # The suggestion works: a choice per instance, and the one (shared) Float.
    assert len(jn.compile(grammar, max_nodes=16).paths) == 16 + 1


def test_resample_copies_count_towards_the_limit():
    cell = jn.Operation(_Op, kwargs={"k": jn.Integer(1, 3).resample()})
    space = {"net": [cell.resample() for _ in range(50)]}
    with pytest.raises(jn.SpaceError, match="max_slots=20"):
        jn.compile(space, max_slots=20)
    assert len(jn.compile(space, max_slots=60).paths) == 50


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_compile_arguments_are_checked(value):
    with pytest.raises(ValueError, match=f"max_depth={value!r}"):
        jn.compile({"a": jn.Float(0, 1)}, max_depth=value)


def test_space_add_and_remove_errors():
    class S(jn.Space):
        a = jn.Float(0, 1)

    with pytest.raises(ValueError, match=r"\['a'\] already exist"):
        S().add(a=jn.Float(0, 2))
    with pytest.raises(KeyError, match="no entry 'b'"):
        S().remove("b")


def test_operator_rejecting_its_arguments_names_the_path():
    class OneArg:
        def __init__(self, x):
            self.x = x

    spec = jn.compile({"layer": jn.Operation(OneArg, kwargs={"y": jn.Integer(1, 3)})})
    config = {p: 1 for p in spec.paths}
    with pytest.raises(TypeError, match=r"layer: .*OneArg rejected its arguments.*'y': 1"):
        spec.resolve(config)


def test_resolve_rejects_a_batch_and_a_bad_fidelity():
    import jax

    spec = jn.compile({"a": jn.Float(0, 1), "epochs": jn.IntegerFidelity(1, 9)})
    batch = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), 3))
    with pytest.raises(ValueError, match=r"one config.*'a' has shape \(3,\)"):
        spec.resolve(batch)
    config = spec.sample(jax.random.key(0))
    with pytest.raises(ValueError, match=r"fidelity=10.*'epochs'.*\[1, 9\]"):
        spec.resolve(config, fidelity=10)


def test_parameters_are_immutable():
    x = jn.Float(0, 1)
    with pytest.raises(AttributeError, match="immutable"):
        x.lower = 0.5


def test_a_config_missing_a_path_is_a_key_error_everywhere():
    spec = jn.compile({"a": jn.Float(0, 1), "b": jn.Integer(1, 3)})
    for method in (spec.resolve, spec.bucket, spec.log_prior, spec.to_unit):
        with pytest.raises(KeyError, match=r"lacks paths \['b'\]"):
            method({"a": 0.5})


@pytest.mark.parametrize(
    "space, words",
    [
        ({"lr": (1e-4, 1e-1)}, ["lr", "bare tuple (0.0001, 0.1)", "jn.Float(0.0001, 0.1, log=True)",
                                "jn.Constant((0.0001, 0.1))"]),
        ({"units": [16, 256]}, ["units", "bare list [16, 256]", "jn.Integer(16, 256)"]),
        ({"n": (1, 8)}, ["n", "jn.Integer(1, 8)", "never searched"]),
        ({"head": {"act": ["relu", "gelu"]}}, ["head.act", "jn.Categorical(['relu', 'gelu'])",
                                                "jn.Constant(['relu', 'gelu'])"]),
    ],
)
def test_a_bare_range_or_choice_names_the_parameter_meant(space, words):
    with pytest.raises(jn.SpaceError) as info:
        jn.compile(space)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_constants_stay_constants():
    """Bare tuples that read as no range or choice, tuples inside operations, and anything
    in `jn.Constant` pass through unchanged."""
    import jax

    space = {"betas": jn.Constant((0.9, 0.999)), "kernel": (3, 3), "milestones": [30, 60, 90],
             "down": (1.0, 0.5), "acts": jn.Constant(["relu", "gelu"]), "x": jn.Float(0.0, 1.0),
             "layer": jn.Operation(dict, kwargs={"window": (1, 5)})}
    spec = jn.compile(space)
    resolved = spec.resolve(spec.sample(jax.random.key(0)))
    assert resolved["betas"] == (0.9, 0.999) and resolved["kernel"] == (3, 3)
    assert resolved["milestones"] == [30, 60, 90] and resolved["down"] == (1.0, 0.5)
    assert resolved["acts"] == ["relu", "gelu"] and resolved["layer"] == {"window": (1, 5)}
    assert spec.paths == ("x",)
    assert jn.compile({"c": jn.Constant((1, 2))}) == jn.compile({"c": jn.Constant((1, 2))})
    with pytest.raises(TypeError, match="plain value"):
        jn.Constant(jn.Float(0.0, 1.0))
