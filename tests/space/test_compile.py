"""Compiled-space semantics: paths, sharing, resampling, references, static decisions, resolve."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn


class Layer:
    """A stand-in operator that records its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(other) is Layer and (self.args, self.kwargs) == (other.args, other.kwargs)

    def __repr__(self):
        return f"Layer{self.args}{self.kwargs}"


def _config(spec, **values):
    """A config with every slot at 0 / its lower bound, then `values` by path."""
    base = {}
    for path, param in spec.parameters().items():
        base[path] = getattr(param, "lower", 0)
    base.update({k.replace("__", "."): v for k, v in values.items()})
    return {p: np.asarray(v) for p, v in base.items()}


def test_paths_read_like_the_space():
    space = {
        "model": jn.Operation(Layer, args=(jn.Operation(Layer, kwargs={"features": jn.Integer(8, 64)}),)),
        "optim": {"lr": jn.Float(1e-4, 1e-1, log=True), "betas": [jn.Float(0.8, 0.99), 0.999]},
        "act": jn.Categorical(((jn.Operation(Layer, kwargs={"slope": jn.Float(0, 1)}),), ("relu",))),
    }
    spec = jn.compile(space)
    assert spec.paths == (
        "model.args[0].kwargs.features",
        "optim.lr",
        "optim.betas[0]",
        "act",
        "act.choices[0][0].kwargs.slope",
    )


def test_space_class_sugar_add_remove_and_intermediates():
    class Base(jn.Space):
        lr = jn.Float(1e-4, 1e-1, log=True)

    class MySpace(Base):
        _width = jn.Integer(16, 64)
        model = jn.Operation(Layer, kwargs={"features": _width})
        epochs = jn.IntegerFidelity(1, 9)

    space = MySpace()
    assert list(space) == ["lr", "_width", "model", "epochs"]
    assert space.lr is Base.lr
    bigger = space.add(momentum=jn.Float(0.0, 0.9))
    assert "momentum" in bigger and "momentum" not in space  # a new space
    smaller = bigger.remove("lr")
    assert list(smaller) == ["_width", "model", "epochs", "momentum"]
    spec = jn.compile(smaller)
    assert spec.paths == ("_width", "momentum")
    resolved = spec.resolve(_config(spec, _width=32, momentum=0.5), fidelity=3)
    assert resolved == {"model": Layer(features=32), "epochs": 3, "momentum": 0.5}
    assert jn.compile(MySpace).paths == jn.compile(MySpace()).paths


def test_space_from_a_function_and_nested_pytrees():
    def make_space():
        return ({"a": jn.Float(0, 1)}, [jn.Integer(1, 3), "constant"])

    spec = jn.compile(make_space)
    assert spec.paths == ("[0].a", "[1][0]")
    resolved = spec.resolve({"[0].a": np.float32(0.5), "[1][0]": np.int32(2)})
    assert resolved == ({"a": 0.5}, [2, "constant"])


def test_shared_operation_resolves_to_one_object_and_resample_to_another():
    conv = jn.Operation(Layer, kwargs={"k": jn.Integer(1, 5)})
    spec = jn.compile({"a": conv, "b": conv, "c": conv.resample()})
    resolved = spec.resolve(_config(spec))
    assert resolved["a"] is resolved["b"]
    assert resolved["c"] is not resolved["a"]
    # NePS semantics: a resample is shallow, so the inline Integer stays shared.
    assert spec.paths == ("a.kwargs.k",)


def test_nested_resample_is_drawn_anew_in_every_copy():
    kernel = jn.Integer(3, 7)
    cell = jn.Operation(Layer, kwargs={"k": kernel.resample(), "shared": kernel})
    spec = jn.compile({"net": jn.Operation(Layer, args=(cell.resample(), cell.resample()))})
    assert spec.paths == ("net.args[0].kwargs.k", "net.args[0].kwargs.shared",
                          "net.args[1].kwargs.k")
    resolved = spec.resolve(_config(spec, **{"net.args[0].kwargs.k": 5,
                                             "net.args[1].kwargs.k": 7,
                                             "net.args[0].kwargs.shared": 4}))
    first, second = resolved["net"].args
    assert (first.kwargs["k"], second.kwargs["k"]) == (5, 7)
    assert first.kwargs["shared"] == second.kwargs["shared"] == 4


def test_by_name_forward_reference_shares_the_entry():
    spec = jn.compile({"a": jn.Operation(Layer, args=(jn.ByName("b"),)), "b": jn.Integer(1, 9)})
    assert spec.paths == ("b",)
    resolved = spec.resolve({"b": np.int32(4)})
    assert resolved == {"a": Layer(4), "b": 4}


def test_categorical_of_parameters_and_tuple_args():
    float_param, int_param = jn.Float(0.1, 1.0), jn.Integer(1, 10)

    class NN(jn.Space):
        f = float_param
        i = int_param
        either = jn.Categorical((float_param, int_param), prior=0, prior_confidence="high")
        _args = jn.Categorical(((jn.Operation(Layer), "x"), ("y",)))
        model = jn.Operation(Layer, args=_args)

    spec = jn.compile(NN)
    resolved = spec.resolve(_config(spec, f=0.5, i=3, either=1, _args=1))
    assert resolved["either"] == 3 == resolved["i"]
    assert resolved["model"] == Layer("y")
    resolved = spec.resolve(_config(spec, f=0.5, i=3, either=0, _args=0))
    assert resolved["either"] == 0.5
    assert resolved["model"] == Layer(Layer(), "x")


def test_single_parameter_args_are_wrapped_in_a_tuple():
    spec = jn.compile({"m": jn.Operation(Layer, args=jn.Integer(1, 3))})
    assert spec.resolve({"m.args": np.int32(2)}) == {"m": Layer(2)}


def test_function_operators_become_partials_and_build_false_keeps_operations():
    def scale(x, factor):
        return x * factor

    spec = jn.compile({"f": jn.Operation(scale, kwargs={"factor": jn.Float(1, 2)}),
                       "g": jn.Operation(jnp.tanh)})
    config = {"f.kwargs.factor": np.float32(1.5)}
    resolved = spec.resolve(config)
    assert isinstance(resolved["f"], functools.partial) and resolved["f"](2.0) == 3.0
    assert resolved["g"] is jnp.tanh
    raw = spec.resolve(config, build=False)
    assert isinstance(raw["f"], jn.Operation) and raw["f"].kwargs == {"factor": 1.5}


def test_dynamic_and_bool():
    units = jn.Categorical((64, 128))
    factor = jn.Categorical((1.0, 0.5))
    space = {"units": jn.Dynamic(lambda u, f: int(u * f), u=units, f=factor),
             "bn": jn.Bool(prior=True, prior_confidence="high")}
    spec = jn.compile(space)
    assert spec.paths == ("units.u", "units.f", "bn")
    assert spec.resolve({"units.u": 1, "units.f": 1, "bn": 0}) == {"units": 64, "bn": False}
    counts = np.asarray(jax.vmap(spec.sample_prior)(jax.random.split(jax.random.key(0), 800))["bn"])
    p = 6 / 7  # weight 6 against 1
    assert abs(counts.mean() - p) < 5 * np.sqrt(p * (1 - p) / 800)


def test_static_decisions():
    space = {
        "lr": jn.Float(1e-4, 1e-1, log=True),
        "batch_size": jn.Integer(16, 128, static=True),
        "dropout": jn.Categorical((0.0, 0.1, 0.2)),
        "optimizer": jn.Categorical(("adam", "sgd")),
        "layer": jn.Operation(Layer, kwargs={"rate": jn.Float(0, 1)}),
        "width": jn.Categorical((32, 64), static=True),
    }
    spec = jn.compile(space)
    assert spec.static_paths == ("batch_size", "optimizer", "layer.kwargs.rate", "width")


def test_a_shared_value_used_inside_an_operation_is_static():
    width = jn.Integer(8, 64)
    spec = jn.compile({"width": width, "layer": jn.Operation(Layer, kwargs={"features": width})})
    assert spec.static_paths == ("width",)


def test_bucket_is_the_active_static_signature():
    space = {"lr": jn.Float(0.0, 1.0),
             "arch": jn.Categorical(((jn.Operation(Layer, kwargs={"w": jn.Integer(1, 4)}),),
                                     (jn.Operation(Layer),)))}
    spec = jn.compile(space)
    a = _config(spec, lr=0.1, arch=1, **{"arch.choices[0][0].kwargs.w": 3})
    b = _config(spec, lr=0.9, arch=1, **{"arch.choices[0][0].kwargs.w": 2})
    c = _config(spec, lr=0.9, arch=0, **{"arch.choices[0][0].kwargs.w": 2})
    assert spec.bucket(a) == spec.bucket(b) == (("arch", 1),)  # inactive width ignored
    assert spec.bucket(c) == (("arch", 0), ("arch.choices[0][0].kwargs.w", 2))
    hash(spec.bucket(c))
    batch = {p: np.stack([a[p], b[p], c[p]]) for p in spec.paths}
    assert spec.buckets(batch) == [spec.bucket(a), spec.bucket(b), spec.bucket(c)]


def test_parameters_maps_copies_to_their_source():
    kernel = jn.Integer(1, 3)
    spec = jn.compile({"a": kernel, "b": kernel.resample(), "c": jn.Float(0, 1)})
    params = spec.parameters()
    assert params["a"] is kernel and params["b"] is kernel
    assert isinstance(params["c"], jn.Float)


def test_fidelity_is_not_sampled_and_resolves_to_the_given_value():
    spec = jn.compile({"lr": jn.Float(0, 1), "epochs": jn.IntegerFidelity(1, 81)})
    assert spec.paths == ("lr",)
    assert (spec.fidelity.path, spec.fidelity.lower, spec.fidelity.upper) == ("epochs", 1, 81)
    assert spec.fidelity.is_integer
    config = spec.sample(jax.random.key(0))
    assert spec.resolve(config)["epochs"] == 81
    assert spec.resolve(config, fidelity=9)["epochs"] == 9
    assert jn.compile({"frac": jn.Fidelity(0.1, 1.0)}).fidelity.is_integer is False


def test_specs_are_hashable_and_equal_by_structure():
    space = {"a": jn.Float(0, 1), "b": jn.Categorical(("x", "y"))}
    one, two = jn.compile(space), jn.compile(space)
    assert one == two and hash(one) == hash(two)
    assert one != jn.compile(space, max_depth=2)
    shared = jn.Float(0, 1)
    assert jn.compile({"a": shared, "b": shared}) != jn.compile({"a": jn.Float(0, 1),
                                                               "b": jn.Float(0, 1)})
    with pytest.raises(AttributeError):
        one.max_depth = 3


def test_recursive_grammar_paths_and_resolution():
    grammar = {
        "expr": jn.Categorical((
            (jn.ByName("expr").resample(), jn.ByName("term").resample()),
            (jn.ByName("term").resample(),),
        )),
        "term": jn.Integer(0, 9),
    }
    spec = jn.compile(grammar, max_depth=2)
    assert spec.paths[:3] == ("expr", "expr.choices[0][0]", "expr.choices[0][0].choices[0][0]")
    # Unit 0 picks the first feasible choice: recurse wherever the depth allows.
    config = spec.from_unit(jnp.zeros(len(spec.paths))).replace({"term": 7})
    infeasible = config.replace({"expr.choices[0][0].choices[0][0]": 0})
    with pytest.raises(ValueError, match="cannot terminate within max_depth"):
        spec.resolve(infeasible)
    resolved = spec.resolve(config)
    assert resolved["term"] == 7
    # depth 2 below the top: ((term,), term), term
    assert resolved["expr"] == (((0,), 0), 0)


def test_intermediates_are_active_only_where_something_uses_them():
    template = jn.Operation(Layer, kwargs={"k": jn.Integer(1, 9)})
    space = {"_unused": jn.Float(0, 1), "_template": template,
             "pick": jn.Categorical(((template.resample(),), ("none",)))}
    spec = jn.compile(space)
    assert spec.paths == ("_unused", "_template.kwargs.k", "pick")
    for pick, k_active in ((0, True), (1, False)):
        config = _config(spec, pick=pick, _unused=0.5, **{"_template.kwargs.k": 4})
        active = {p: bool(v) for p, v in spec.active(config).items()}
        assert active == {"_unused": False, "_template.kwargs.k": k_active, "pick": True}
        other = dict(config, _unused=np.float32(0.9))
        assert float(spec.log_prior(config)) == float(spec.log_prior(other))
        assert spec.bucket(config) == ((("_template.kwargs.k", 4),) if k_active else ()) + (
            ("pick", pick),)


def test_dynamic_is_transparent_to_sharing_and_resampling():
    kernel = jn.Integer(1, 9)
    square = jn.Dynamic(lambda k: (k, k), k=kernel.resample())
    cell = jn.Operation(Layer, kwargs={"kernel_size": square})
    spec = jn.compile({"net": [cell.resample() for _ in range(3)]})
    # The op is resampled shallowly, the Dynamic is evaluated per use, and the resample
    # inside it is drawn per copy: three kernel sizes, as NePS draws a nested resample.
    assert spec.paths == tuple(f"net[{i}].kwargs.kernel_size.k" for i in range(3))
    shared = jn.Dynamic(lambda k: k * 2, k=kernel)
    assert jn.compile({"a": shared, "b": shared, "c": kernel}).paths == ("a.k",)


def test_a_resolved_operation_prints_as_a_call():
    width = jn.Integer(8, 64)
    space = {"model": jn.Operation(jn.nn.Sequential, args=([
        jn.Operation(nn.Dense, args=(width,)), jn.Operation(nn.relu),
        jn.Operation(jn.nn.MaxPool, kwargs={"window": 2}),
        jn.Operation(nn.Conv, args=(4, (3,)))],))}
    spec = jn.compile(space)
    config = spec.sample(jax.random.key(0))
    model = spec.resolve(config, build=False)["model"]
    assert str(model) == (f"Sequential([Dense({int(config['model.args[0][0].args[0]'])}), "
                          f"relu, MaxPool(window=2), Conv(4, (3,))])")


def test_a_space_pickled_before_the_package_split_still_loads():
    """Run folders store their space pickled. `data/space_before_the_split.pickle` is a
    `Space` pickled by jaxnas at 4251a54, before `Space` moved within the package; it
    still loads, as the same space."""
    import pickle
    from pathlib import Path

    blob = (Path(__file__).parent / "data" / "space_before_the_split.pickle").read_bytes()
    loaded = pickle.loads(blob)  # noqa: S301 - the project's own fixture
    space = jn.Space({"x": jn.Float(0.0, 1.0), "n": jn.Integer(1, 8)})
    assert type(loaded) is jn.Space and jn.compile(loaded) == jn.compile(space)
