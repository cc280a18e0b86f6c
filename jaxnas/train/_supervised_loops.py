"""The training loops of `SupervisedTask`'s three fidelities: epochs, steps, data fraction.

Each builder turns a `SupervisedBucket` into the bucket's `Task`. Epochs and steps walk the
same minibatches in the same order (epoch `e` shuffles with `fold_in(key, e)`), so training
continues from a saved state, at an epoch's end or in its middle, exactly as it would have
gone on. A model trained on a smaller data fraction is no stage of one trained on a larger,
so the data-fraction loop retrains from the trial's initialisation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxnas.train._narrow import narrowed
from jaxnas.train._protocol import Task
from jaxnas.train._supervised_bucket import SupervisedBucket
from jaxnas.train._train_state import TrainState


def epochs_task(bucket: SupervisedBucket, narrow: SupervisedBucket | None = None) -> Task:
    """The fidelity counts passes over the training set. `narrow`: the bucket's narrow
    model, which a member that fits it trains on (`_narrow`)."""
    return Task(functools.partial(_init_with_shuffle_key, bucket),
                _training(train_epochs, bucket, narrow), bucket.evaluate)


def steps_task(bucket: SupervisedBucket, narrow: SupervisedBucket | None = None) -> Task:
    """The fidelity counts optimiser steps, over the minibatches the epochs would take."""
    return Task(functools.partial(_init_with_shuffle_key, bucket),
                _training(train_steps, bucket, narrow), bucket.evaluate)


def _training(train, bucket: SupervisedBucket, narrow: SupervisedBucket | None):
    if narrow is None:
        return functools.partial(train, bucket)
    return narrowed(train, bucket, narrow)


def data_fraction_task(bucket: SupervisedBucket, epochs: int) -> Task:
    """The fidelity is the fraction of the training set trained on for `epochs` epochs."""
    return Task(functools.partial(_init_with_trial_key, bucket),
                functools.partial(train_fraction, bucket, epochs), bucket.evaluate)


def _init_with_shuffle_key(bucket: SupervisedBucket, key, config) -> TrainState:
    """Parameters from `split(key)[0]`, the epochs' shuffles from `split(key)[1]`."""
    return bucket.fresh(key, config, jax.random.split(key)[1])


def _init_with_trial_key(bucket: SupervisedBucket, key, config) -> TrainState:
    """Keeps the trial's own key: data-fraction training restarts from it."""
    return bucket.fresh(key, config, key)


def train_epochs(bucket: SupervisedBucket, state: TrainState, config, fidelity) -> TrainState:
    """Whole epochs from `state.epoch` up to `fidelity` (at most `max_epochs`)."""
    target = jnp.minimum(jnp.asarray(fidelity, jnp.int32), bucket.max_epochs)
    return jax.lax.while_loop(lambda s: s.epoch < target,
                              lambda s: _whole_epoch(bucket, s, config), state)


def _whole_epoch(bucket: SupervisedBucket, state: TrainState, config) -> TrainState:
    """One pass over the training set, its mean loss and validation recorded."""
    tx = bucket.transformation(config)
    order, step_keys = bucket.shuffle(jax.random.wrap_key_data(state.key), state.epoch)
    (params, model_state, opt_state), losses = jax.lax.scan(
        lambda carry, xs: bucket.sgd_step(carry, *xs, tx, config),
        (state.params, state.model_state, state.opt_state), (order, step_keys))
    at = jnp.minimum(state.epoch, bucket.max_epochs - 1)
    return state.replace(
        params=params, model_state=model_state, opt_state=opt_state,
        epoch=state.epoch + 1, step=state.step + bucket.steps_per_epoch,
        train_curve=state.train_curve.at[at].set(jnp.mean(losses)),
        val_curve=state.val_curve.at[at].set(
            bucket.validation(params, model_state, config)))


def train_steps(bucket: SupervisedBucket, state: TrainState, config, fidelity) -> TrainState:
    """Optimiser steps from `state.step` up to `fidelity` (at most `max_epochs` epochs')."""
    target = jnp.minimum(jnp.asarray(fidelity, jnp.int32),
                         bucket.max_epochs * bucket.steps_per_epoch)
    tx = bucket.transformation(config)
    return jax.lax.while_loop(lambda s: s.step < target,
                              lambda s: _epoch_part(bucket, tx, config, target, s), state)


def _epoch_part(bucket: SupervisedBucket, tx, config, target, s: TrainState) -> TrainState:
    """The steps of the current epoch up to its end or `target`, whichever first.

    The epoch's curve points are updated in place: its training loss is the running mean
    of the steps taken in it, its validation point is taken after the last of them.
    """
    steps = bucket.steps_per_epoch
    e = s.step // steps
    order, step_keys = bucket.shuffle(jax.random.wrap_key_data(s.key), e)
    end = jnp.minimum(target, (e + 1) * steps)

    def one(s: TrainState) -> TrainState:
        k = s.step - e * steps  # steps of this epoch already taken
        (params, model_state, opt_state), loss = bucket.sgd_step(
            (s.params, s.model_state, s.opt_state), order[k], step_keys[k], tx, config)
        mean = jnp.where(k == 0, loss, s.train_curve[e] + (loss - s.train_curve[e])
                         / (k + 1).astype(jnp.float32))
        return s.replace(params=params, model_state=model_state, opt_state=opt_state,
                         step=s.step + 1, train_curve=s.train_curve.at[e].set(mean))

    s = jax.lax.while_loop(lambda s: s.step < end, one, s)
    return s.replace(epoch=s.step // steps, val_curve=s.val_curve.at[e].set(
        bucket.validation(s.params, s.model_state, config)))


def train_fraction(bucket: SupervisedBucket, epochs: int, state: TrainState, config,
                   fidelity) -> TrainState:
    """`epochs` epochs on the first `ceil(fidelity * rows)` rows of one fixed shuffle.

    Starts again from the trial's initialisation when the fraction grows (the same result
    as training on the larger subset directly); a fraction already trained on, or a smaller
    one, leaves `state` as it is.
    """
    fraction = jnp.asarray(fidelity, jnp.float32)
    subset_rows = jnp.clip(jnp.ceil(fraction * bucket.train_rows).astype(jnp.int32), 1,
                           bucket.train_rows)
    # The first rows of one fixed shuffle: the same for every trial, nested as they grow.
    subset_rank = jnp.argsort(jax.random.permutation(jax.random.key(0), bucket.train_rows))
    tx = bucket.transformation(config)
    trial_key = jax.random.wrap_key_data(state.key)
    shuffle_key = jax.random.split(trial_key)[1]
    epoch = functools.partial(_subset_epoch, bucket, tx, config, shuffle_key,
                              subset_rank < subset_rows, subset_rows)

    def retrain():
        start = bucket.fresh(trial_key, config, trial_key).replace(fraction=fraction)
        return jax.lax.fori_loop(0, min(epochs, bucket.max_epochs), epoch, start)

    return jax.lax.cond(fraction > state.fraction, retrain, lambda: state)


def _subset_epoch(bucket: SupervisedBucket, tx, config, shuffle_key, in_subset, subset_rows,
                  e, s: TrainState) -> TrainState:
    """Epoch `e` on the `subset_rows` training rows marked `in_subset`.

    The subset's rows come first in the shuffle, the rest after them: a subset smaller than
    one minibatch fills it with rows beyond the subset, which weigh zero in its loss.
    """
    batch_size = bucket.batch_size
    subset_steps = jnp.maximum(subset_rows // batch_size, 1)
    epoch_key = jax.random.fold_in(shuffle_key, e)
    order = jnp.argsort(jnp.where(
        in_subset, jax.random.uniform(epoch_key, (bucket.train_rows,)), 2.0))
    step_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), bucket.steps_per_epoch)

    def one(carry):
        k, params, model_state, opt_state, total = carry
        indices = jax.lax.dynamic_slice(order, (k * batch_size,), (batch_size,))
        weights = (k * batch_size + jnp.arange(batch_size) < subset_rows).astype(
            jnp.float32)
        (params, model_state, opt_state), loss = bucket.sgd_step(
            (params, model_state, opt_state), indices, step_keys[k], tx, config, weights)
        return k + 1, params, model_state, opt_state, total + loss

    _, params, model_state, opt_state, total = jax.lax.while_loop(
        lambda c: c[0] < subset_steps, one,
        (jnp.zeros((), jnp.int32), s.params, s.model_state, s.opt_state,
         jnp.zeros((), jnp.float32)))
    return s.replace(
        params=params, model_state=model_state, opt_state=opt_state,
        epoch=s.epoch + 1, step=s.step + subset_steps,
        train_curve=s.train_curve.at[e].set(total / subset_steps.astype(jnp.float32)),
        val_curve=s.val_curve.at[e].set(bucket.validation(params, model_state, config)))
