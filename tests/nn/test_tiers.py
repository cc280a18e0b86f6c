"""Width tiers: where a bucket trains one member at a time (the CPU trainer), masked layers
multiply at their widths' tier; the members train as the full-shape, all-at-once program
trains them (up to rounding), dense and convolutional layers, widths in every tier."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas.train import BucketTrainer, SupervisedTask


def _space(layer, head):
    return {"model": jn.Operation(jn.nn.Sequential, args=([
        layer(jn.Integer(2, 64)), jn.Operation(nn.relu),
        layer(jn.Integer(2, 64)), jn.Operation(nn.relu), *head,
        jn.Operation(nn.Dense, args=(3,))],)),
        "learning_rate": jn.Float(1e-3, 1e-1, log=True), "epochs": jn.IntegerFidelity(1, 4)}


SPACES = {  # (space, input shape of one row)
    "dense": (_space(lambda w: jn.Operation(nn.Dense, args=(w,)), ()), (6,)),
    "conv": (_space(lambda w: jn.Operation(nn.Conv, args=(w, (3,))),
                    (jn.Operation(jn.nn.GlobalAvgPool),)), (5, 6)),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_one_member_at_a_time_trains_in_tiers_what_all_at_once_trains_in_full(name):
    space, shape = SPACES[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, *shape)).astype(np.float32)
    y = (x.reshape(120, -1) @ rng.normal(size=(x[0].size, 3))).argmax(1).astype(np.int32)
    spec = jn.compile(space)
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(3), 6))
    paths = spec.width_paths
    widths = np.array([[3, 60], [16, 17], [40, 5], [64, 64], [9, 33], [2, 2]], np.int32)
    configs = spec.config({p: (widths[:, paths.index(p)] if p in paths else configs[p])
                           for p in spec.paths})  # widths in every tier of 64 (16, 32, 64)
    task = SupervisedTask((x[:96], y[:96]), (x[96:], y[96:]), batch_size=16)
    bucket = task.for_bucket(spec, jax.tree.map(lambda a: a[0], configs), masked=True)
    keys = jax.random.split(jax.random.key(4), 6)
    one_at_a_time, _ = BucketTrainer(bucket, members_at_once=1)(keys, configs, np.full(6, 4))
    all_at_once, _ = BucketTrainer(bucket, members_at_once="all")(keys, configs, np.full(6, 4))
    for got, want in zip(jax.tree.leaves(one_at_a_time.params),
                         jax.tree.leaves(all_at_once.params)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert np.all((np.asarray(got) == 0) == (np.asarray(want) == 0))  # padding stays 0
