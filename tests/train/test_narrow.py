"""On a CPU, a member of a masked bucket whose features fit in half the bucket's widths
trains on the bucket's model built at half its widths: as the full bucket would train it."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxnas as jn
from jaxnas.train import BucketTrainer, SupervisedTask

FEATURES, CLASSES = 6, 3


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(144, FEATURES)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(FEATURES, CLASSES)), axis=1).astype(np.int32)
    return (x[:96], y[:96]), (x[96:], y[96:])


def dense(width):
    return jn.Operation(nn.Dense, args=(width,))


def relu():
    return jn.Operation(nn.relu)


def deep_space():
    """One or two hidden layers, each 4-16 wide: the narrow model is 8 wide."""
    body = jn.nn.Repeat(lambda _: jn.Operation(jn.nn.Sequential, args=(
        dense(jn.Integer(4, 16)), relu())), counts=(1, 2))
    return {"model": jn.Operation(jn.nn.Sequential, args=(body, dense(CLASSES))),
            "learning_rate": jn.Float(1e-2, 1e-1, log=True),
            "weight_decay": jn.Float(1e-2, 1e-1, log=True),
            "epochs": jn.IntegerFidelity(1, 9)}


def batch_norm_space():
    """A masked width with BatchNorm after it: its statistics (model state) are cut and
    written back with the parameters."""
    hidden = (jn.Operation(nn.Dense, args=(jn.Integer(4, 16),), kwargs={"use_bias": False}),
              jn.Operation(nn.BatchNorm), relu())
    return {"model": jn.Operation(jn.nn.Sequential, args=((*hidden, dense(CLASSES)),)),
            "learning_rate": jn.Float(1e-2, 1e-1, log=True),
            "epochs": jn.IntegerFidelity(1, 9)}


def concat_space():
    """Two masked branches side by side: narrowing would move the second one's features
    (from column 16 to column 8), so no member may take it."""
    branches = (dense(jn.Integer(4, 16)), dense(jn.Integer(4, 16)))
    model = jn.Operation(jn.nn.Sequential, args=((
        jn.Operation(jn.nn.Concat, kwargs={"branches": branches}), relu(), dense(CLASSES)),))
    return {"model": model, "learning_rate": jn.Float(1e-2, 1e-1, log=True),
            "epochs": jn.IntegerFidelity(1, 9)}


def configs(spec, widths, depths=None):
    """A batch of configs with these widths (one tuple a member, in `width_paths` order)
    and depth choices; the other values at the lower bound."""
    values = {p: np.full(len(widths), getattr(q, "lower", 0))
              for p, q in spec.parameters().items()}
    for i, path in enumerate(spec.width_paths):
        values[path] = np.asarray([w[i] for w in widths])
    for path in spec.depth_paths:
        values[path] = np.asarray(depths)
    return spec.config(values)


def train_both_ways(spec, batch):
    """Trains the batch to 3 epochs, then on to 6 from there: one member at a time (the
    CPU trainer: narrow members take the narrow model) and all at once (vmapped: every
    member on the full model)."""
    task = SupervisedTask(*data(), batch_size=16)
    bucket = task.for_bucket(spec, jax.tree.map(lambda a: a[0], batch), masked=True)
    n = len(jax.tree.leaves(batch)[0])
    keys = jax.random.split(jax.random.key(7), n)
    out = []
    for trainer in (BucketTrainer(bucket, members_at_once=1),
                    BucketTrainer(bucket, members_at_once="all")):
        low, _ = trainer(keys, batch, np.full(n, 3))
        out.append(trainer(keys, batch, np.full(n, 6), parents=low))
    return out


def test_narrow_and_wide_members_train_as_on_the_full_model():
    spec = jn.compile(deep_space())
    # Narrow: (5), (8, 8), (4) with an unused 16-wide second layer. Wide: (9, 4), (16, 16).
    batch = configs(spec, [(5, 4), (8, 8), (9, 4), (4, 16), (16, 16)], depths=[0, 1, 1, 0, 1])
    (one, one_out), (full, full_out) = train_both_ways(spec, batch)
    for name in ("loss", "train_curve", "val_curve"):
        np.testing.assert_allclose(one_out[name], full_out[name], atol=2e-5, err_msg=name)
    # The first layer's parameters: the same, and zero past each member's width.
    kernel = [k for k in jax.tree.leaves(one.params) if k.shape == (5, FEATURES, 16)][0]
    reference = [k for k in jax.tree.leaves(full.params) if k.shape == (5, FEATURES, 16)][0]
    np.testing.assert_allclose(kernel, reference, atol=2e-5)
    assert not kernel[0, :, 5:].any() and not kernel[3, :, 4:].any()
    # Member 3 trained on the narrow model: its second layer, which its depth skips (4x16
    # at init), was left as it was outside the narrow model's 8x8 block, where the full
    # model's weight decay shrinks all of it. The wide members' trained in full.
    second = [k for k in jax.tree.leaves(one.params) if k.shape == (5, 16, 16)][0]
    second_full = [k for k in jax.tree.leaves(full.params) if k.shape == (5, 16, 16)][0]
    assert np.abs(second[3, :4, 8:]).min() > 0
    assert np.all(np.abs(second[3, :4, 8:]) > np.abs(second_full[3, :4, 8:]))
    np.testing.assert_allclose(second[3, :8, :8], second_full[3, :8, :8], atol=2e-5)
    for m in (2, 4):  # wide
        np.testing.assert_allclose(second[m], second_full[m], atol=2e-5)


@pytest.mark.parametrize("widths", [[(4, 4), (8, 8), (5, 7)], [(16, 4), (4, 16), (8, 9)]])
def test_a_layout_that_narrowing_would_move_keeps_the_full_model(widths):
    spec = jn.compile(concat_space())
    batch = configs(spec, widths)
    (one, one_out), (full, full_out) = train_both_ways(spec, batch)
    for name in ("loss", "train_curve", "val_curve"):
        np.testing.assert_allclose(one_out[name], full_out[name], atol=2e-5, err_msg=name)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(full.params)):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_batch_norm_statistics_of_a_narrow_member_train_as_on_the_full_model():
    spec = jn.compile(batch_norm_space())
    batch = configs(spec, [(5,), (8,), (12,)])
    (one, one_out), (full, full_out) = train_both_ways(spec, batch)
    for name in ("loss", "train_curve", "val_curve"):
        np.testing.assert_allclose(one_out[name], full_out[name], atol=2e-5, err_msg=name)
    for a, b in zip(jax.tree.leaves(one.model_state), jax.tree.leaves(full.model_state)):
        np.testing.assert_allclose(a[:, :8], b[:, :8], atol=2e-5)  # the narrow block
        np.testing.assert_allclose(a[2], b[2], atol=2e-5)  # the wide member: all of it
    # The narrow members trained on the narrow model: their statistics past its 8 features
    # were left alone (a variance of 1, as initialised), where the full model's running
    # average decays the unused features' variance.
    var = [v for path, v in jax.tree_util.tree_leaves_with_path(one.model_state)
           if "var" in jax.tree_util.keystr(path)][0]
    var_full = [v for path, v in jax.tree_util.tree_leaves_with_path(full.model_state)
                if "var" in jax.tree_util.keystr(path)][0]
    assert np.all(var[:2, 8:] == 1.0) and np.all(var_full[:2, 8:] < 1.0)
