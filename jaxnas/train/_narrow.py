"""Narrow training: a member of a masked bucket whose features all fit in half the bucket's
widths trains on the bucket's model built at half its widths.

A masked bucket's program is built at its maximum widths, and on a CPU a training step
costs what those shapes cost, not what the member's network does: the optimiser's update
and the gradients run over every parameter, padding included (a one-layer, 16-wide member
of the quickstart's 256-wide bucket takes 375 us a step; AdamW's update alone about 170 us).
Where the trainer traces one member at a time (`jaxnas._tracing.branching()`: the CPU
trainer), a bucket's training is a `lax.cond` between the bucket's own training and the
same training on its narrow model (`jn.nn.Built.narrowed`: every open width's maximum
halved, rounded up), so that a narrow member's steps cost what half the shapes cost. Under
`vmap` (an accelerator's trainer) a `cond` would run both, so there the bucket trains as it
is; and a build whose features narrowing would move (a mask that reaches a flatten,
concatenation or cell) has no narrow model.

A member takes the narrow training when every feature its layers use lies inside the
narrow model's shapes, at the same place (`jn.nn.Built.narrow_fits`, checked in the program
on the masks each masked layer sows in both models, from one input row); a layer in a block
that the member's depth skips counts for nothing. The member's state is cut to the narrow
shapes (each leaf's leading block) and written back into the full state afterwards. What
lies outside the block is what the full training would also leave alone: zeros for
features past a masked width (zero parameter, gradient and optimiser moments stay zero),
and the parameters of blocks the member's depth skips, which its network never reads.
Training is the same up to float rounding (the matrix products sum over other shapes),
except that a layer drawing random numbers per feature (dropout) draws them at the
narrow shapes: other draws from the same distribution, the same for the same seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from jaxnas._tracing import branching, unbatched_widths
from jaxnas.train._supervised_bucket import SupervisedBucket
from jaxnas.train._train_state import TrainState

Train = Callable[[SupervisedBucket, TrainState, Any, Any], TrainState]


def narrowed(train: Train, full: SupervisedBucket, narrow: SupervisedBucket) -> Callable:
    """`train(bucket, state, config, fidelity)` on `full`, run on `narrow` (whose module is
    `full.module.narrowed()`) for a member that fits it (see the module's docstring);
    `(state, config, fidelity) -> state`."""
    return functools.partial(_train, train, full, narrow)


def _train(train: Train, full: SupervisedBucket, narrow: SupervisedBucket,
           state: TrainState, config: Any, fidelity: Any) -> TrainState:
    if not branching():
        return train(full, state, config, fidelity)
    shapes = jax.eval_shape(lambda c: narrow.fresh(jax.random.key(0), c, jax.random.key(0)),
                            config)
    if jax.tree.structure(shapes) != jax.tree.structure(state):
        return train(full, state, config, fidelity)
    small = jax.tree.map(_leading_block, state, shapes)
    fits = full.module.narrow_fits({"params": state.params, **state.model_state},
                                   {"params": small.params, **small.model_state},
                                   full.train_data[0][:1], config)

    def on_narrow(state: TrainState) -> TrainState:
        # Without width tiers (`jaxnas.nn._tiers`): at half the widths they save nothing
        # measurable a step, and their branches cost compile time.
        with unbatched_widths(False):
            trained = train(narrow, small, config, fidelity)
        return jax.tree.map(_write_back, state, trained)

    return jax.lax.cond(fits, on_narrow, lambda s: train(full, s, config, fidelity), state)


def _leading_block(a: jax.Array, like: Any) -> jax.Array:
    """`a`'s leading block of `like`'s shape."""
    if a.shape == like.shape:
        return a
    return a[tuple(slice(0, n) for n in like.shape)]


def _write_back(a: jax.Array, block: jax.Array) -> jax.Array:
    """`a` with its leading block replaced by `block`."""
    if a.shape == block.shape:
        return block
    return jax.lax.dynamic_update_slice(a, block, (0,) * a.ndim)
