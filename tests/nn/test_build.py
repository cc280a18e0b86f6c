"""jn.nn.build: operation trees become Linen modules named after their space paths."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn


def _resolve(space, seed=0, **values):
    spec = jn.compile(space)
    config = spec.sample(jax.random.key(seed))
    if values:
        config = config.replace(values)
    return spec, spec.resolve(config, build=False)


def _count(params):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def test_parameter_count_matches_a_hand_count_and_names_are_paths():
    space = {"model": jn.Operation(jn.nn.Sequential, args=((
        jn.Operation(nn.Dense, kwargs={"features": jn.Integer(8, 32)}),
        jn.Operation(nn.relu),
        jn.Operation(nn.Dense, kwargs={"features": 3}),
    ),))}
    _, resolved = _resolve(space, **{"model.args[0][0].kwargs.features": 16})
    module = jn.nn.build(resolved["model"])
    params = module.init(jax.random.key(0), jnp.ones((4, 5)))["params"]
    assert set(params) == {"model.args[0][0]", "model.args[0][2]"}  # the Sequential has none
    assert _count(params) == (5 * 16 + 16) + (16 * 3 + 3)
    assert module.apply({"params": params}, jnp.ones((4, 5))).shape == (4, 3)
    info = jn.nn.summary(module, (4, 5))
    assert info["params"] == 147 and info["output_shape"] == (4, 3)
    assert info["flops"] >= 2 * 4 * (5 * 16 + 16 * 3)


def test_flax_sequential_and_functions_with_arguments():
    space = {"m": jn.Operation(nn.Sequential, args=([
        jn.Operation(nn.Dense, kwargs={"features": 4}),
        jn.Operation(jax.nn.leaky_relu, kwargs={"negative_slope": jn.Float(0.01, 0.3)}),
    ],))}
    _, resolved = _resolve(space)
    module = jn.nn.build(resolved["m"])
    x = -jnp.ones((2, 3))
    params = module.init(jax.random.key(0), x)
    dense = nn.Dense(4).apply({"params": params["params"]["m.args[0][0]"]}, x)
    slope = resolved["m"].args[0][1].kwargs["negative_slope"]
    np.testing.assert_allclose(module.apply(params, x), jax.nn.leaky_relu(dense, slope), rtol=1e-6)


def test_shared_operations_share_values_and_every_occurrence_has_its_own_weights():
    dense = jn.Operation(nn.Dense, kwargs={"features": jn.Integer(4, 9)})
    shared = {"m": jn.Operation(jn.nn.Sequential, args=((dense, jn.Operation(nn.relu), dense),))}
    # A resample is shallow (NePS): the width must itself be resampled to be drawn per copy.
    cell = jn.Operation(nn.Dense, kwargs={"features": jn.Integer(4, 9).resample()})
    fresh = {"m": jn.Operation(jn.nn.Sequential, args=((cell.resample(), jn.Operation(nn.relu),
                                                        cell.resample()),))}
    x = jnp.ones((2, 9))
    for space, n_decisions in ((shared, 1), (fresh, 2)):
        spec, resolved = _resolve(space, seed=3)
        assert len(spec.paths) == n_decisions
        params = jn.nn.build(resolved["m"]).init(jax.random.key(0), x)["params"]
        assert set(params) == {"m.args[0][0]", "m.args[0][2]"}  # NePS: one module per place
        first, second = params["m.args[0][0]"]["kernel"], params["m.args[0][2]"]["kernel"]
        if n_decisions == 1:  # one searched width, two sets of weights
            assert first.shape[1] == second.shape[1] and not np.allclose(first[0], second[0])


def test_residual_add_concat_and_pooling_blocks():
    conv = jn.Operation(nn.Conv, kwargs={"features": 8, "kernel_size": (3, 3)})
    space = {"m": jn.Operation(jn.nn.Sequential, args=((
        conv,
        jn.Operation(jn.nn.Residual, args=(jn.Operation(nn.Conv, kwargs={"features": 8, "kernel_size": (3, 3)}),)),
        jn.Operation(jn.nn.Concat, args=((jn.Operation(jn.nn.Identity), jn.Operation(jn.nn.MaxPool, kwargs={"window": 3, "strides": 1, "padding": "SAME"})),)),
        jn.Operation(jn.nn.Add, args=((jn.Operation(jn.nn.Identity), jn.Operation(jn.nn.Identity)),)),
        jn.Operation(jn.nn.AvgPool),
        jn.Operation(jn.nn.GlobalAvgPool),
    ),))}
    _, resolved = _resolve(space)
    module = jn.nn.build(resolved["m"])
    x = jnp.ones((2, 8, 8, 1))
    params = module.init(jax.random.key(0), x)
    assert module.apply(params, x).shape == (2, 16)
    assert jn.nn.summary(module, x.shape)["params"] == (9 * 1 * 8 + 8) + (9 * 8 * 8 + 8)


def test_train_switch_reaches_dropout_and_batchnorm():
    space = {"m": jn.Operation(jn.nn.Sequential, args=((
        jn.Operation(nn.Dense, kwargs={"features": 16}),
        jn.Operation(nn.BatchNorm, kwargs={"momentum": 0.9}),
        jn.Operation(nn.Dropout, kwargs={"rate": 0.5}),
    ),))}
    _, resolved = _resolve(space)
    module = jn.nn.build(resolved["m"])
    x = jax.random.normal(jax.random.key(0), (8, 4))
    variables = module.init(jax.random.key(1), x)
    assert "batch_stats" in variables
    evaluation = module.apply(variables, x)
    assert np.array_equal(evaluation, module.apply(variables, x))  # deterministic
    out, updates = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)},
                                mutable=["batch_stats"])
    assert np.mean(np.asarray(out) == 0) > 0.2  # dropout is on
    assert not np.allclose(updates["batch_stats"]["m.args[0][1]"]["mean"], 0.0)


def test_space_sugar_choice_optional_permutation_repeat():
    dense = jn.Operation(nn.Dense, kwargs={"features": jn.Integer(4, 8)})
    act = jn.nn.Choice(jn.Operation(nn.relu), jn.Operation(nn.tanh))
    block = lambda step: jn.Operation(jn.nn.Sequential, args=((  # noqa: E731
        dense.resample(),
        jn.nn.Permutation(act.resample(), jn.nn.Optional(jn.Operation(nn.LayerNorm)),
                          jn.Operation(nn.Dropout, kwargs={"rate": 0.1})),
    ),))
    space = {"m": jn.Operation(jn.nn.Sequential, args=((
        jn.nn.Repeat(block, counts=(2, 3, 4)), jn.Operation(nn.Dense, kwargs={"features": 2})),))}
    spec = jn.compile(space)
    configs = jax.jit(jax.vmap(spec.sample))(jax.random.split(jax.random.key(0), 32))
    depths = set()
    x = jnp.ones((3, 5))
    for i in range(32):
        resolved = spec.resolve(jax.tree.map(lambda v: v[i], configs), build=False)
        module = jn.nn.build(resolved["m"])
        # Shapes only (traced, not run op by op): 32 architectures.
        variables = jax.eval_shape(module.init, jax.random.key(i), x)
        assert jax.eval_shape(module.apply, variables, x).shape == (3, 2)
        depths.add(len(resolved["m"].args[0][0].args[0]))
    assert depths == {2, 3, 4}
    with pytest.raises(ValueError, match="counts must be positive"):
        jn.nn.Repeat(block, counts=(0, 2))


def test_bad_operator_is_rejected_when_built():
    class NotALayer:
        pass

    with pytest.raises(jn.nn.BuildError, match=r"m: operator .*NotALayer.* not a Linen module"):
        jn.nn.build(jn.Operation(NotALayer, name="m"))
    with pytest.raises(jn.nn.BuildError, match="takes a jn.Operation"):
        jn.nn.build(nn.Dense(3))


def test_arguments_the_operator_does_not_accept_name_the_path_and_fields():
    _, resolved = _resolve({"m": jn.Operation(nn.Dense, kwargs={"width": jn.Integer(2, 4)})})
    module = jn.nn.build(resolved["m"])
    with pytest.raises(jn.nn.BuildError, match=r"m: Dense does not accept .*\['width'\].*'features'"):
        module.init(jax.random.key(0), jnp.ones((1, 3)))


def test_shapes_that_do_not_connect_name_the_path_and_shape():
    space = {"m": jn.Operation(jn.nn.Sequential, args=((
        jn.Operation(nn.Dense, kwargs={"features": 4}),
        jn.Operation(jn.nn.Residual, args=(jn.Operation(nn.Dense, kwargs={"features": 3}),)),
    ),))}
    _, resolved = _resolve(space)
    with pytest.raises(jn.nn.BuildError, match=r"m.args\[0\]\[1\]: Residual needs equal shapes; "
                                                 r"got input: \(2, 4\), body: \(2, 3\)"):
        jn.nn.build(resolved["m"]).init(jax.random.key(0), jnp.ones((2, 5)))
    conv = {"m": jn.Operation(nn.Conv, kwargs={"features": 2, "kernel_size": (3, 3)})}
    _, resolved = _resolve(conv)
    with pytest.raises(jn.nn.BuildError, match=r"^m: cannot apply Conv to an input of shape \(3,\)"):
        jn.nn.build(resolved["m"]).init(jax.random.key(0), jnp.ones((3,)))


def _sepconv(channels, kernel):
    return jn.Operation(jn.nn.Sequential, args=((
        jn.Operation(nn.relu),
        jn.Operation(nn.Conv, kwargs={"features": channels, "kernel_size": (kernel, kernel),
                                      "feature_group_count": channels}),
        jn.Operation(nn.Conv, kwargs={"features": channels, "kernel_size": (1, 1)}),
    ),))


def test_enas_cell_chooses_inputs_and_ops_and_concatenates_loose_ends():
    channels = 4
    ops = (_sepconv(channels, 5), _sepconv(channels, 3),
           jn.Operation(jn.nn.AvgPool, kwargs={"window": 3, "strides": 1, "padding": "SAME"}),
           jn.Operation(jn.nn.MaxPool, kwargs={"window": 3, "strides": 1, "padding": "SAME"}),
           jn.Operation(jn.nn.Identity))
    spec = jn.compile({"cell": jn.nn.cell_space(4, ops)})
    input_paths = [p for p in spec.paths if p.startswith("cell.kwargs.inputs")]
    assert len(input_paths) == 8  # two inputs per node
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), 12))
    x = jnp.ones((2, 6, 6, channels))
    for i in range(12):
        config = jax.tree.map(lambda v: v[i], configs)
        resolved = spec.resolve(config, build=False)["cell"]
        inputs = resolved.kwargs["inputs"]
        for node, (left, right) in enumerate(inputs):
            assert 0 <= left < 2 + node and 0 <= right < 2 + node
        used = {j for pair in inputs for j in pair}
        loose = [j for j in range(2, 6) if j not in used]
        module = jn.nn.build(resolved)
        variables = module.init(jax.random.key(i), x)
        assert module.apply(variables, x).shape == (2, 6, 6, channels * len(loose))
        # Every side that picked a separable conv has its own two convolutions.
        n_sepconvs = sum(side.operator is jn.nn.Sequential
                         for pair in resolved.kwargs["ops"] for side in pair)
        assert len(variables["params"]) == 2 * n_sepconvs


def test_input_choice_of_several_inputs_picks_distinct_ones_uniformly_or_by_prior():
    """`InputChoice(n, num_chosen=k)`: one decision over the C(n, k) sorted subsets; a Cell
    node can read a pair of distinct states from one."""
    spec = jn.compile({"pair": jn.nn.InputChoice(4, num_chosen=2),
                       "near": jn.nn.InputChoice(4, num_chosen=3, prior=(3, 1, 0),
                                                 prior_confidence="high")})
    assert len(spec.paths) == 2
    n = 6000
    configs = jax.vmap(spec.sample_prior)(jax.random.split(jax.random.key(0), n))
    pairs = [spec.resolve(jax.tree.map(lambda v, i=i: v[i], configs))["pair"]
             for i in range(0, n, 20)]
    assert set(pairs) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    # The prior's subset (0, 1, 3) weighs 6 against 1 for each of the other three.
    near = np.asarray(configs["near"])
    assert spec.parameters()["near"].choices[1] == (0, 1, 3)
    share = np.mean(near == 1)
    assert abs(share - 6 / 9) < 5 * np.sqrt((6 / 9) * (3 / 9) / n)
    cell = jn.Operation(jn.nn.Cell, kwargs={
        "inputs": tuple(jn.nn.InputChoice(2 + i, num_chosen=2) for i in range(3)),
        "ops": tuple((jn.Operation(nn.Dense, args=(4,)), jn.Operation(nn.Dense, args=(4,)))
                     for _ in range(3))})
    spec = jn.compile({"cell": cell})
    resolved = spec.resolve(spec.sample(jax.random.key(1)), build=False)["cell"]
    assert all(left < right < 2 + node
               for node, (left, right) in enumerate(resolved.kwargs["inputs"]))
    module = jn.nn.build(resolved)
    x = jnp.ones((2, 4))
    assert module.apply(module.init(jax.random.key(0), x), x).shape[0] == 2


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_chosen=5), ["num_chosen=5", "from 1 to n_inputs"]),
    (dict(num_chosen=2, prior=(1, 1)), ["prior=(1, 1)", "2 distinct inputs from 0 to 3"]),
    (dict(num_chosen=2, prior=2), ["prior=2", "2 distinct inputs"]),
])
def test_input_choice_errors_name_the_argument(kwargs, words):
    with pytest.raises(ValueError) as info:
        jn.nn.InputChoice(4, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    with pytest.raises(ValueError, match="658,008 subsets"):
        jn.nn.InputChoice(40, num_chosen=5)


def test_cell_rejects_reading_a_later_state():
    cell = jn.Operation(jn.nn.Cell, kwargs={"inputs": ((0, 3),), "ops": (
        (jn.Operation(jn.nn.Identity), jn.Operation(jn.nn.Identity)),)}, name="cell")
    with pytest.raises(jn.nn.BuildError, match=r"cell: node 0 reads state 3; only states 0..1"):
        jn.nn.build(cell).init(jax.random.key(0), jnp.ones((1, 2, 2, 1)))


def test_resolve_builds_linen_operations_with_jn_nn_build():
    space = {"model": jn.Operation(nn.Sequential, args=([
        jn.Operation(nn.Dense, kwargs={"features": jn.Integer(2, 5)}), jn.Operation(nn.relu)],)),
        "act": jn.Operation(jax.nn.gelu)}
    spec = jn.compile(space)
    resolved = spec.resolve(spec.sample(jax.random.key(0)))
    assert isinstance(resolved["model"], jn.nn.Built)
    assert resolved["act"] is jax.nn.gelu  # a function operator without arguments stays itself
    params = resolved["model"].init(jax.random.key(0), jnp.ones((1, 3)))["params"]
    assert set(params) == {"model.args[0][0]"}


def test_operators_by_name_in_jn_nn():
    op = jn.Operation("Sequential", args=(jn.Operation("Flatten"), jn.Operation(nn.Dense, kwargs={"features": 2})))
    assert op.operator is jn.nn.Sequential and op.args[0].operator is jn.nn.Flatten
    module = jn.nn.build(jn.compile({"m": op}).resolve({}, build=False)["m"])
    assert module.apply(module.init(jax.random.key(0), jnp.ones((1, 2, 2))), jnp.ones((1, 2, 2))).shape == (1, 2)
    with pytest.raises(ValueError, match=r"operator='Sequentail'.*known blocks: \['Add'"):
        jn.Operation("Sequentail")
