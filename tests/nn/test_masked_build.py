"""Masked builds from a space: configs that differ only in widths share one module and program.

Each network is searched over widths; the configs of one masked bucket are initialised and
trained together, vmapped over their configs, by the one module `spec.resolve(config,
masked=True)` gives. The reference for each member is its exact-width network,
`spec.resolve(config)`, started from the member's initial parameters sliced by
`jn.nn.exact_params` and trained on its own. Outputs, losses and trained parameters agree
within 1e-6 (the padded terms are exact zeros; XLA may sum in another order). The init rule
itself (the sliced draw has the exact layer's distribution) is tested in test_masked.py.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnas as jn
from jaxnas.nn import BuildError

TOLERANCE = 1e-6
STEPS = 5
N_CONFIGS = 4


def prng_key(seed):
    """An "rbg" key: XLA on the CPU compiles its draws far faster (see test_masked.py)."""
    return jax.random.key(seed, impl="rbg")


def dense(features, **kwargs):
    return jn.Operation(nn.Dense, args=(features,), kwargs=kwargs)


def conv(features, **kwargs):
    return jn.Operation(nn.Conv, args=(features, (3, 3)), kwargs=kwargs)


def relu():
    return jn.Operation(nn.relu)


def seq(*layers):
    return jn.Operation(jn.nn.Sequential, args=(list(layers),))


def mlp_space():
    shared = jn.Integer(2, 24)
    return {"model": seq(dense(shared), relu(),
                         dense(jn.Categorical([3, 8, 16])), jn.Operation(nn.sigmoid),
                         dense(shared), relu(), dense(5))}


def cnn_space():
    # A masked conv, BatchNorm and Flatten before a dense layer: the mask spreads over the
    # flattened positions, so the dense layer's active inputs are not a prefix. No conv bias
    # before BatchNorm: its gradient is zero up to rounding, which Adam would blow up to
    # full-size steps (in an exact-width network just as much).
    return {"model": seq(conv(jn.Integer(2, 6), use_bias=False), jn.Operation(nn.BatchNorm), relu(),
                         jn.Operation(jn.nn.MaxPool), jn.Operation(jn.nn.Flatten), dense(3))}


def concat_space():
    # Two branches of different searched widths, concatenated, then a residual dense layer
    # of a fixed width on their sum, then an output layer.
    branches = [seq(dense(jn.Integer(1, 6)), jn.Operation(nn.tanh)),
                seq(dense(jn.Integer(1, 5)), relu())]
    return {"model": seq(jn.Operation(jn.nn.Concat, kwargs={"branches": branches}),
                         dense(4),
                         jn.Operation(jn.nn.Residual, args=(seq(dense(4), relu()),)),
                         dense(2))}


def depth_space():
    # A searched depth (Repeat) whose blocks have searched widths and BatchNorm: one bucket
    # holds every depth; each member runs its own prefix of the blocks. (No bias before
    # BatchNorm, as in cnn_space.)
    def block(_):
        return seq(dense(jn.Integer(2, 8), use_bias=False), jn.Operation(nn.BatchNorm), relu())

    return {"model": seq(dense(jn.Integer(3, 8)), relu(),
                         jn.nn.Repeat(block, counts=(1, 2, 3)), dense(2))}


SPACES = {
    "mlp": (mlp_space, (6, 7), False),
    "depth": (depth_space, (6, 5), True),
    "cnn": (cnn_space, (4, 6, 6, 2), True),
    "concat": (concat_space, (5, 3), False),
}


def sample_configs(spec, n=N_CONFIGS, seed=0):
    return jax.vmap(spec.sample)(jax.random.split(jax.random.key(seed), n))


def member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def loss_fn(module, variables, x, y, config, train):
    kwargs = {} if config is None else {"config": config}
    if train:
        out, state = module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    else:
        out, state = module.apply(variables, x, **kwargs), {}
    return jnp.mean((out - y) ** 2), state


def train(module, variables, x, y, config, train_mode, steps=STEPS):
    """Adam on a squared error; BatchNorm statistics updated in train mode (a scan over
    the steps, so that each program compiles one step)."""
    optimizer = optax.adam(0.05)
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def step(carry, _):
        params, rest, opt_state = carry

        def objective(p):
            return loss_fn(module, {"params": p, **rest}, x, y, config, train_mode)
        (loss, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), {**rest, **state}, opt_state), loss

    (params, rest, _), losses = jax.lax.scan(step, (params, rest, optimizer.init(params)),
                                             None, length=steps)
    return {"params": params, **rest}, losses


@pytest.mark.parametrize("name", sorted(SPACES))
def test_masked_training_equals_exact_width_training(name):
    make, shape, train_mode = SPACES[name]
    spec = jn.compile(make())
    configs = sample_configs(spec)
    if spec.depth_paths:  # every depth, and the deepest twice
        depth = spec.depth_paths[0]
        configs = spec.config({p: np.array([2, 0, 1, 2], np.int32) if p == depth
                               else configs[p] for p in spec.paths})
    buckets = spec.buckets(configs, masked=True)
    assert len(set(buckets)) == 1, buckets
    assert len(set(spec.buckets(configs))) > 1  # the widths (and depths) differ

    x = jax.random.normal(jax.random.key(1), shape)
    module = spec.resolve(member(configs, 0), masked=True)["model"]
    trees = {repr(spec.resolve(member(configs, i), masked=True, build=False))
             for i in range(N_CONFIGS)}
    assert len(trees) == 1  # every member resolves to the same tree; module serves them all
    # Jitted: one program each, not op-by-op dispatch under vmap.
    variables = jax.jit(jax.vmap(lambda c: module.init(prng_key(2), x, config=c)))(configs)
    out = jax.jit(jax.vmap(lambda v, c: module.apply(v, x, config=c)))(variables, configs)
    y = jax.random.normal(jax.random.key(3), out.shape[1:])

    trained, losses = jax.jit(jax.vmap(
        lambda v, c: train(module, v, x, y, c, train_mode)))(variables, configs)

    for i in range(N_CONFIGS):
        config = member(configs, i)
        exact = spec.resolve(config)["model"]
        start = jn.nn.exact_params(module, member(variables, i), x, config)
        # The exact module initialises parameters of exactly these shapes.
        shapes = jax.eval_shape(lambda: exact.init(prng_key(2), x))
        chex.assert_trees_all_equal_shapes(shapes, start)
        np.testing.assert_allclose(exact.apply(start, x), out[i], atol=TOLERANCE, rtol=0)
        exact_trained, exact_losses = jax.jit(
            lambda v: train(exact, v, x, y, None, train_mode))(start)
        np.testing.assert_allclose(exact_losses, losses[i], atol=TOLERANCE, rtol=0)
        sliced = jn.nn.exact_params(module, member(trained, i), x, config)
        # Three BatchNorms deep, Adam's steps carry rounding a little further (seen: 2e-6).
        atol = 1e-5 if name == "depth" else TOLERANCE
        chex.assert_trees_all_close(sliced, exact_trained, atol=atol, rtol=0)


def test_depths_are_left_open_unless_masked_is_widths():
    spec = jn.compile(depth_space())
    assert spec.depth_paths == ("model.args[0][2]",)
    configs = sample_configs(spec, n=16, seed=1)
    depths = np.asarray(configs["model.args[0][2]"])
    assert len(set(spec.buckets(configs, masked=True))) == 1
    by_depth = spec.buckets(configs, masked="widths")
    assert len(set(by_depth)) == len(set(depths.tolist())) == 3
    assert all(s == (("model.args[0][2]", int(d)),) for s, d in zip(by_depth, depths))
    resolved = spec.resolve(member(configs, 0), masked=True, build=False)["model"]
    body = resolved.args[0][2]
    assert body.kwargs["depth"] == jn.nn.MaskedDepth("model.args[0][2]", (1, 2, 3))
    assert len(body.args[0]) == 3  # the longest block list
    with pytest.raises(ValueError, match="masked='depths' must be True"):
        spec.buckets(configs, masked="depths")


def test_choices_that_are_not_prefixes_are_not_depths():
    a, b = seq(dense(4), relu()), seq(dense(4), relu())
    space = {"x": seq(jn.Categorical([jn.Operation(jn.nn.Sequential, args=((a,),)),
                                      jn.Operation(jn.nn.Sequential, args=((b, a),))],
                                     static=True)),  # (a) and (b, a): not a prefix
             "y": seq(jn.nn.Repeat(lambda _: dense(4), counts=(2,))),  # one length
             "z": seq(jn.nn.Repeat(lambda _: dense(4), counts=(1, 3)))}
    assert jn.compile(space).depth_paths == ("z.args[0][0]",)


def test_masked_members_share_one_compiled_program():
    spec = jn.compile(mlp_space())
    module = spec.resolve(spec.sample(jax.random.key(0)), masked=True)["model"]
    x = jnp.ones((2, 7))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def forward(configs):
        variables = jax.vmap(lambda c: module.init(prng_key(0), x, config=c))(configs)
        return jax.vmap(lambda v, c: module.apply(v, x, config=c))(variables, configs)

    outs = [forward(sample_configs(spec, seed=seed)) for seed in range(3)]
    assert all(o.shape == (N_CONFIGS, 2, 5) for o in outs)


def test_padded_features_are_zero():
    spec = jn.compile(mlp_space())
    config = spec.sample(jax.random.key(4))
    module = spec.resolve(config, masked=True)["model"]
    x = jnp.ones((2, 7))
    _, state = module.apply(module.init(prng_key(0), x, config=config), x, config=config,
                            capture_intermediates=True, mutable=["intermediates"])
    width = int(config["model.args[0][0].args[0]"])
    hidden = state["intermediates"]["model.args[0][0]"]["__call__"][0]
    assert hidden.shape == (2, 24)
    assert np.all(np.asarray(hidden)[:, width:] == 0)


def test_width_paths():
    shared = jn.Integer(2, 24)
    space = {
        "a": dense(jn.Integer(4, 8)),  # a width
        "b": conv(jn.Categorical([4, 8])),  # a width (a choice of integers)
        "c": dense(jn.Integer(4, 8, static=True)),  # marked static: stays exact
        "d": seq(dense(shared), jn.Operation(nn.Dropout, args=(0.1,)),
                 jn.Operation(jnp.reshape, args=(shared,))),  # shared with a non-width use
        "e": jn.Operation(nn.Dense, kwargs={"features": jn.Integer(4, 8),
                                            "use_bias": jn.Categorical([True, False])}),
        "f": dense(jn.Integer(0, 8)),  # may be zero: not a width
    }
    spec = jn.compile(space)
    assert spec.width_paths == ("a.args[0]", "b.args[0]", "e.kwargs.features")


def test_masked_buckets_keep_structure_apart():
    space = {"model": seq(dense(jn.Integer(2, 9)),
                          jn.nn.Choice(jn.Operation(nn.relu), jn.Operation(nn.tanh)), dense(1))}
    spec = jn.compile(space)
    configs = sample_configs(spec, n=32)
    masked = spec.buckets(configs, masked=True)
    choice = np.asarray(configs["model.args[0][1]"])
    assert len(set(masked)) == 2
    for signature, c in zip(masked, choice):
        assert signature == (("model.args[0][1]", int(c)),)
    assert spec.bucket(member(configs, 0), masked=True) == masked[0]


def test_masked_module_needs_its_config():
    spec = jn.compile(mlp_space())
    module = spec.resolve(spec.sample(jax.random.key(0)), masked=True)["model"]
    with pytest.raises(BuildError, match="config=config"):
        module.init(prng_key(0), jnp.ones((1, 7)))


def test_feature_mixing_layer_after_a_masked_width_is_refused():
    space = {"model": seq(dense(jn.Integer(2, 8)), jn.Operation(nn.LayerNorm), dense(2))}
    spec = jn.compile(space)
    config = spec.sample(jax.random.key(0))
    module = spec.resolve(config, masked=True)["model"]
    with pytest.raises(BuildError, match=r"model.args\[0\]\[1\].*LayerNorm.*static=True"):
        module.init(prng_key(0), jnp.ones((1, 3)), config=config)
    # Before any masked width, LayerNorm is fine.
    space = {"model": seq(jn.Operation(nn.LayerNorm), dense(jn.Integer(2, 8)), dense(2))}
    spec = jn.compile(space)
    module = spec.resolve(config := spec.sample(jax.random.key(0)), masked=True)["model"]
    assert module.apply(module.init(prng_key(0), jnp.ones((1, 3)), config=config),
                        jnp.ones((1, 3)), config=config).shape == (1, 2)


def test_feature_axis_change_after_a_masked_width_is_refused():
    space = {"model": seq(dense(jn.Integer(2, 8)),
                          jn.Operation(jnp.reshape, args=((1, 4, 2),)), dense(2))}
    spec = jn.compile(space)
    config = spec.sample(jax.random.key(0))
    module = spec.resolve(config, masked=True)["model"]
    with pytest.raises(BuildError, match=r"model.args\[0\]\[1\].*feature axis"):
        module.init(prng_key(0), jnp.ones((1, 3)), config=config)


def test_summary_of_a_masked_module_counts_the_maximum_widths():
    spec = jn.compile({"model": seq(dense(jn.Integer(2, 8)), relu(), dense(3))})
    config = spec.sample(jax.random.key(0))
    module = spec.resolve(config, masked=True)["model"]
    info = jn.nn.summary(module, (1, 4), config=config)
    assert info["params"] == 4 * 8 + 8 + 8 * 3 + 3
    assert info["output_shape"] == (1, 3)


def test_init_scales_by_the_active_fan_in_after_flatten():
    # The dense layer after Flatten sees 8*8*2 = 128 active inputs of 8*8*8 = 512. Its exact
    # kernel must have lecun_normal's standard deviation at fan-in 128 (1/sqrt(128)), not at
    # 512: the relative standard error of a standard deviation over n = 4096 entries is
    # 1/sqrt(2n) = 1.1%; the tolerance is 5 of them.
    space = {"model": seq(conv(jn.Integer(1, 8), use_bias=False), jn.Operation(jn.nn.Flatten),
                          dense(jn.Integer(16, 64)))}
    spec = jn.compile(space)
    config = spec.sample(jax.random.key(0)).replace(
        {"model.args[0][0].args[0]": 2, "model.args[0][2].args[0]": 32})
    module = spec.resolve(config, masked=True)["model"]
    x = jnp.ones((1, 8, 8, 3))
    start = jn.nn.exact_params(module, module.init(prng_key(5), x, config=config), x, config)
    kernel = np.asarray(start["params"]["model.args[0][2]"]["kernel"])
    assert kernel.shape == (128, 32)
    n = kernel.size
    assert abs(kernel.std() * np.sqrt(128) - 1) < 5 / np.sqrt(2 * n)


def test_pre_norm_residual_blocks_keep_their_depth_open():
    # LayerNorm mixes features, so it may not follow a masked width; at the start of each
    # residual block (whose output width is fixed) and after the blocks, it follows none.
    def block(_):
        body = seq(jn.Operation(nn.LayerNorm), dense(jn.Integer(2, 8)), relu(), dense(6))
        return jn.Operation(jn.nn.Residual, args=(body,))

    spec = jn.compile({"model": seq(dense(6), jn.nn.Repeat(block, counts=(1, 2, 3)),
                                    jn.Operation(nn.LayerNorm), dense(3))})
    assert spec.depth_paths == ("model.args[0][1]",)
    configs = sample_configs(spec, n=6)
    assert len(set(spec.buckets(configs, masked=True))) == 1
    x = jax.random.normal(jax.random.key(1), (4, 5))
    module = spec.resolve(member(configs, 0), masked=True)["model"]
    # Jitted: one program each, not op-by-op dispatch (under vmap, or of every nn.cond).
    variables = jax.jit(jax.vmap(lambda c: module.init(prng_key(2), x, config=c)))(configs)
    batched = jax.jit(jax.vmap(lambda v, c: module.apply(v, x, config=c)))(variables, configs)
    one = jax.jit(lambda v, c: module.apply(v, x, config=c))  # one member: nn.cond branches
    for i in range(6):
        config, own = member(configs, i), member(variables, i)
        exact = spec.resolve(config)["model"]
        start = jn.nn.exact_params(module, own, x, config)
        np.testing.assert_allclose(jax.jit(exact.apply)(start, x), batched[i],
                                   atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(one(own, config), batched[i], atol=TOLERANCE, rtol=0)


def test_a_depth_is_open_only_where_every_use_sits_inside_an_operation():
    def block(_):
        return dense(jn.Integer(2, 8))

    repeat = jn.nn.Repeat(block, counts=(1, 2))
    model = seq(repeat, dense(3))
    read = jn.Dynamic(lambda r: 1, r=repeat)
    assert jn.compile({"model": model}).depth_paths == ("model.args[0][0]",)
    # read by a Dynamic (in either order of the entries), or a space entry itself: static
    assert jn.compile({"model": model, "n": read}).depth_paths == ()
    assert jn.compile({"n": read, "model": model}).depth_paths == ()
    assert jn.compile({"model": jn.nn.Repeat(block, counts=(3, 1, 2))}).depth_paths == ()


def test_a_layer_holding_another_layer_builds_masked():
    class Wrap(nn.Module):
        inner: nn.Module

        @nn.compact
        def __call__(self, x):
            return self.inner(x)

    spec = jn.compile({"model": seq(dense(6), jn.Operation(Wrap, args=(
        jn.Operation(nn.LayerNorm),)), dense(jn.Integer(2, 8)), relu(), dense(3))})
    config = spec.sample(jax.random.key(0))
    module = spec.resolve(config, masked=True)["model"]
    x = jnp.ones((2, 4))
    variables = module.init(prng_key(1), x, config=config)
    start = jn.nn.exact_params(module, variables, x, config)
    np.testing.assert_allclose(spec.resolve(config)["model"].apply(start, x),
                               module.apply(variables, x, config=config), atol=TOLERANCE)


@pytest.mark.parametrize("name, keeps", [("mlp", True), ("depth", True), ("cnn", False),
                                         ("concat", False), ("flatten_first", True)])
def test_a_masked_build_has_a_narrow_form_unless_narrowing_would_move_features(name, keeps):
    """A flatten, concatenation or cell that a mask reaches places features by the widths'
    maxima, so a narrower build of the space would move them: no narrow form there. Where
    there is one, it holds every parameter's leading block, at half the open widths."""
    spaces = {**{n: make for n, (make, *_) in SPACES.items()},
              "flatten_first": lambda: {"model": seq(jn.Operation(jn.nn.Flatten),
                                                     dense(jn.Integer(2, 8)), relu(), dense(3))}}
    spec = jn.compile(spaces[name]())
    config = spec.sample(jax.random.key(0))
    module = spec.resolve(config, masked=True)["model"]
    narrow = module.narrowed()
    assert (narrow is not None) is keeps
    if narrow is None:
        return
    x = jnp.ones((1, 6))
    full = jax.eval_shape(lambda: module.init(prng_key(0), x, config=config))
    half = jax.eval_shape(lambda: narrow.init(prng_key(0), x, config=config))
    assert jax.tree.structure(full) == jax.tree.structure(half)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(half)):
        assert b.shape[:-2] == a.shape[:-2] or b.ndim == 1
        assert all(-(-m // 2) <= n <= m for m, n in zip(a.shape, b.shape))
    assert any(a.shape != b.shape for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(half)))
