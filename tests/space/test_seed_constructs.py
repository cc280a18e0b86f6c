"""Every space construct shown in the NePS, Hypernets and HANNAH documents, written in jaxnas.

Each space is compiled, sampled as a population and resolved; the assertions check the
semantics the documents describe (sharing, resampling, references, derived values).
"""

import itertools

import jax
import numpy as np

import jaxnas as jn


class Module:
    """A stand-in for torch / keras layers: records how it was built."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}{self.args}{self.kwargs}"


class Conv2d(Module):
    pass


class ReLU(Module):
    pass


class Sequential(Module):
    pass


class Linear(Module):
    pass


def _resolved(spec, n=64, seed=0, method="sample"):
    configs = jax.vmap(getattr(spec, method))(jax.random.split(jax.random.key(seed), n))
    return [spec.resolve(jax.tree.map(lambda x: x[i], configs)) for i in range(n)]


def test_neps_hpo_space_with_priors():
    class PipelineSpace(jn.Space):
        float_param = jn.Float(0.1, 1.0)
        int_param = jn.Integer(1, 10)
        cat_param = jn.Categorical(("A", "B", "C"), prior=0, prior_confidence="high")
        float_or_int = jn.Categorical((float_param, int_param), prior=0, prior_confidence="high")

    for resolved in _resolved(jn.compile(PipelineSpace)):
        assert resolved["float_or_int"] in (resolved["float_param"], resolved["int_param"])
        assert resolved["cat_param"] in "ABC"


def test_neps_nn_space_with_resampled_convolutions():
    class NNSpace(jn.Space):
        _relu = jn.Operation(ReLU)
        _convolution = jn.Operation(Conv2d, kwargs={"kernel_size": jn.Integer(1, 10)})
        _model_args = jn.Categorical((
            (jn.Resampled(_convolution), _relu),
            (jn.Resampled(_convolution), jn.Resampled(_convolution)),
            (_relu,),
        ))
        model = jn.Operation(Sequential, args=_model_args)

    resolved = _resolved(jn.compile(NNSpace), n=200)
    shapes = {tuple(type(layer).__name__ for layer in r["model"].args) for r in resolved}
    assert shapes == {("Conv2d", "ReLU"), ("Conv2d", "Conv2d"), ("ReLU",)}
    assert all(set(r) == {"model"} for r in resolved)  # intermediates are not passed on


def test_neps_cnn_of_resampled_cells():
    class CNNSpace(jn.Space):
        _kernel_size = jn.Integer(5, 8)
        _cell_block = jn.Operation(Conv2d, kwargs={"kernel_size": _kernel_size.resample()})
        cnn = jn.Operation(Sequential, args=(
            _cell_block.resample(), _cell_block.resample(), _cell_block.resample()))

    resolved = _resolved(jn.compile(CNNSpace), n=200)
    kernels = np.array([[cell.kwargs["kernel_size"] for cell in r["cnn"].args] for r in resolved])
    assert kernels.min() == 5 and kernels.max() == 8
    assert np.mean(kernels[:, 0] != kernels[:, 1]) > 0.5  # each cell samples its own kernel


def test_neps_operations_with_parameter_kwargs():
    class NNSpace(jn.Space):
        _relu = jn.Operation(ReLU)
        _sigmoid = jn.Operation(Module)
        activation_function = jn.Categorical((_relu, _sigmoid))
        batch_size = jn.Categorical((16, 32, 64))
        _layer_size = jn.Integer(80, 100)
        hidden_layer = jn.Operation(Linear, kwargs={"input_size": 64, "output_size": _layer_size},
                                    args=(activation_function,))

    spec = jn.compile(NNSpace)
    for r in _resolved(spec):
        assert r["hidden_layer"].args[0] is r["activation_function"]  # shared, one object
        assert 80 <= r["hidden_layer"].kwargs["output_size"] <= 100
    assert "batch_size" not in spec.static_paths  # a choice among numbers is a traced value


def test_neps_self_and_future_references():
    class RecursiveSpace(jn.Space):
        self_reference = jn.Categorical((
            (jn.ByName("self_reference").resample(), jn.ByName("self_reference").resample()),
            (jn.ByName("future_param").resample(),),
        ))
        future_param = jn.Float(0, 5)

    def leaves(tree):
        return [tree] if isinstance(tree, float) else [x for t in tree for x in leaves(t)]

    spec = jn.compile(RecursiveSpace, max_depth=3)
    counts = [len(leaves(r["self_reference"])) for r in _resolved(spec, n=200)]
    assert min(counts) == 1 and 2 < max(counts) <= 8


def test_neps_fidelities_add_remove():
    class Space(jn.Space):
        epochs = jn.IntegerFidelity(1, 16)
        lr = jn.Float(1e-4, 1e-1, log=True)

    spec = jn.compile(Space().remove("epochs").add(subset_ratio=jn.FloatFidelity(0.1, 1.0)))
    assert spec.fidelity.path == "subset_ratio" and not spec.fidelity.is_integer
    assert _resolved(spec, n=1)[0]["subset_ratio"] == 1.0


def test_hypernets_dnn_block_parameters():
    units = jn.Categorical((200, 500, 1000))
    reduce_factor = jn.Categorical((1.0, 0.8, 0.5))
    use_bn = jn.Bool()
    dropout = jn.Categorical(tuple(np.round(np.arange(0.0, 0.51, 0.1), 1).tolist()))
    order = jn.Categorical(tuple(itertools.permutations(range(3))))
    space = {
        f"block_{step}": {
            "units": jn.Dynamic(lambda units, factor, step=step: int(units * factor**step),
                                units=units, factor=reduce_factor),
            "use_bn": use_bn, "dropout": dropout, "order": order,
        }
        for step in range(3)
    }
    spec = jn.compile(space)
    assert len(spec.paths) == 5  # shared hyperparameters: one decision each
    for r in _resolved(spec):
        factor = r["block_1"]["units"] / r["block_0"]["units"]
        assert np.isclose(r["block_2"]["units"], int(r["block_0"]["units"] * factor**2), atol=1)
        assert sorted(r["block_0"]["order"]) == [0, 1, 2]


def test_hannah_shared_versus_new_parameters():
    kernel_size = jn.Categorical((1, 3, 5))
    stride = jn.Categorical((1, 2))
    out_channels = jn.Integer(8, 64)

    def conv_relu(kernel, channels, step):
        return jn.Operation(Conv2d, kwargs={"kernel_size": kernel, "out_channels": channels,
                                            "stride": step})

    shared = jn.compile({"net": [conv_relu(kernel_size, out_channels, stride) for _ in range(2)]})
    fresh = jn.compile({"net": [conv_relu(kernel_size.resample(), out_channels.resample(),
                                          stride.resample()) for _ in range(2)]})
    assert len(shared.parameters()) == 3 and len(fresh.parameters()) == 6
    for r in _resolved(shared):
        assert r["net"][0].kwargs == r["net"][1].kwargs
    assert any(r["net"][0].kwargs != r["net"][1].kwargs for r in _resolved(fresh))
    assert sorted(fresh.parameters()) == [
        "net[0].kwargs.kernel_size", "net[0].kwargs.out_channels", "net[0].kwargs.stride",
        "net[1].kwargs.kernel_size", "net[1].kwargs.out_channels", "net[1].kwargs.stride",
    ]


def test_hannah_choice_and_dynamic_depth():
    conv = jn.Operation(Conv2d, kwargs={"out_channels": jn.Integer(8, 64)})
    block = jn.Categorical((jn.Operation(Module), conv))  # identity or conv
    # Dynamic depth (HANNAH's ChoiceOp over depths): a choice among 1, 2 or 3 fresh blocks.
    prefixes = jn.Categorical(tuple((tuple(block.resample() for _ in range(d)),)
                                    for d in (1, 2, 3)))
    spec = jn.compile({"net": jn.Operation(Sequential, args=prefixes)})
    lengths = {len(r["net"].args[0]) for r in _resolved(spec, n=100)}
    assert lengths == {1, 2, 3}
