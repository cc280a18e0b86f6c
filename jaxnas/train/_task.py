"""Training tasks: what `jn.run` trains, as pure functions vmapped over a bucket.

A `Task` is three pure functions of a config (one member; jaxnas vmaps them):

* `init(key, config) -> state`: a fresh training state;
* `train(state, config, fidelity) -> state`: trains *up to* `fidelity` (epochs, steps, ...)
  from wherever `state` stands, so a configuration promoted to a higher rung continues from
  its saved state instead of starting again;
* `evaluate(state, config) -> loss or dict`: the objective (a dict carries a `"loss"` entry
  and any other metrics).

Tasks whose program depends on the config's structure (the architecture) implement
`for_bucket(spec, config, masked) -> Task` as well: `jn.run` calls it once per bucket with a
member of it, then vmaps the returned functions over the bucket's configs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxnas.space import SearchSpace
from jaxnas.train._protocol import BucketTask, Task


@struct.dataclass
class TrainState:
    """The state `SupervisedTask` carries across rungs.

    Attributes:
        params: the model's parameters.
        model_state: its other variables (BatchNorm statistics), possibly empty.
        opt_state: the optax state; hyperparameters live in it (`inject_hyperparams`).
        key: a PRNG key as raw `uint32` key data (`jax.random.key_data`), so the state is
            plain arrays on the host too. Epoch `e` draws from `fold_in(key, e)`, so training
            to fidelity b in one go or in several calls gives the same result. With the
            data-fraction fidelity it is the trial's own key, which training restarts from.
        epoch: () int32, whole epochs trained so far.
        step: () int32, optimiser steps taken so far.
        fraction: () float32, the data fraction trained on (data-fraction fidelity; else 0).
        train_curve: (max_epochs,) float32, the mean training loss of each epoch (NaN
            where not trained yet; with the steps fidelity, of the steps taken so far in a
            partly trained epoch).
        val_curve: (max_epochs,) float32, the validation objective after each epoch (after
            the last step, in a partly trained epoch).
    """

    params: Any
    model_state: Any
    opt_state: Any
    key: jax.Array
    epoch: jax.Array
    step: jax.Array
    fraction: jax.Array
    train_curve: jax.Array
    val_curve: jax.Array


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example squared error; `(N,)` targets meet the model's `(N, 1)` outputs."""
    if targets.ndim == predictions.ndim - 1:
        predictions = predictions[..., 0]
    return jnp.sum(jnp.reshape((predictions - targets) ** 2, (targets.shape[0], -1)), axis=-1)


def default_optimizer(values: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    """AdamW with `learning_rate` (1e-3) and `weight_decay` (1e-4) from the config if there.

    The hyperparameters enter through `optax.inject_hyperparams`, so they are traced
    values: configs that differ only in them share one program.
    """
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=values.get("learning_rate", 1e-3),
        weight_decay=values.get("weight_decay", 1e-4))


FIDELITIES = ("epochs", "steps", "data_fraction")


class SupervisedTask(BucketTask):
    """Classification or regression on in-memory arrays: a model from the space, trained.

    The model is the space entry `model` (an operation, built with `jn.nn.build`); the
    optimiser comes from `optimizer(values)`, `values` being the config's values by path
    (`spec.values`), traced. The objective is the validation error (classification) or loss
    after the training that the fidelity asks for, which counts one of:

    * `"epochs"`: passes over the training set (each a fresh shuffle, minibatches of
      `batch_size`, the last partial one dropped);
    * `"steps"`: optimiser steps, the same minibatches in the same order as with epochs, so
      a promotion may stop and continue in the middle of an epoch;
    * `"data_fraction"`: the fraction (0, 1] of the training set trained on, for `epochs`
      epochs: the first `ceil(fraction * rows)` rows of one fixed shuffle of the training set,
      the same for every configuration and nested as the fraction grows. A model trained
      on less data is not a stage of one trained on more, so a promotion trains again from
      its initialisation on the larger subset (the same result as training there directly).

    Args:
        train_data: `(x, y)` arrays; integer labels `y` for classification.
        validation_data: `(x, y)` arrays for the objective.
        kind: `"classification"` (cross-entropy, objective: error rate) or `"regression"`
            (squared error, objective: mean squared error).
        model: the path of the model's entry in the space.
        optimizer: `values -> optax.GradientTransformation` (default: `default_optimizer`).
        batch_size: the minibatch size, or the path of a static config entry holding it.
        fidelity: what the space's fidelity counts: `"epochs"`, `"steps"` or
            `"data_fraction"` (see above).
        epochs: with `fidelity="data_fraction"`, the epochs trained on each fraction.
        max_epochs: the length of the learning curves, and the longest training; by default
            the fidelity's upper bound in epochs (with steps, rounded up to whole epochs;
            with data fractions, `epochs`).
        objective: `"error"` or `"loss"` (classification only; regression uses the loss).
        test_data: optional `(x, y)` held out from the search: `evaluate` also reports
            `test_objective` (never used to choose), so a run can report its incumbent's
            test score.

    Raises:
        ValueError: mismatched arrays, an unknown kind, objective or fidelity, a bad batch
            size or number of epochs; from `check_space`, a space whose fidelity does not fit.
    """

    def __init__(self, train_data: tuple, validation_data: tuple, *,
                 kind: str = "classification", model: str = "model",
                 optimizer: Callable[[Mapping], optax.GradientTransformation] = default_optimizer,
                 batch_size: int | str = 64, fidelity: str = "epochs", epochs: int | None = None,
                 max_epochs: int | None = None, objective: str = "error",
                 test_data: tuple | None = None):
        if kind not in ("classification", "regression"):
            raise ValueError(f"SupervisedTask: kind={kind!r} must be 'classification' or "
                             f"'regression'.")
        if objective not in ("error", "loss"):
            raise ValueError(f"SupervisedTask: objective={objective!r} must be 'error' or "
                             f"'loss'.")
        if fidelity not in FIDELITIES:
            raise ValueError(f"SupervisedTask: fidelity={fidelity!r} must be one of "
                             f"{', '.join(map(repr, FIDELITIES))}.")
        if fidelity == "data_fraction":
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ValueError(f"SupervisedTask: epochs={epochs!r} must be a positive "
                                 f"integer with fidelity='data_fraction' (the epochs trained "
                                 f"on each fraction).")
        elif epochs is not None:
            raise ValueError(f"SupervisedTask: epochs={epochs!r} is for "
                             f"fidelity='data_fraction'; with fidelity={fidelity!r} the "
                             f"fidelity sets how long to train.")
        named = [("train_data", train_data), ("validation_data", validation_data)]
        for name, data in named + ([("test_data", test_data)] if test_data else []):
            if len(data) != 2 or len(data[0]) != len(data[1]) or len(data[0]) == 0:
                raise ValueError(f"SupervisedTask: {name} must be a pair (x, y) of arrays "
                                 f"with the same, nonzero number of rows.")
        if isinstance(batch_size, int) and not 1 <= batch_size <= len(train_data[0]):
            raise ValueError(f"SupervisedTask: batch_size={batch_size} must lie in "
                             f"1..{len(train_data[0])} (the training rows).")
        self.train_data = tuple(jnp.asarray(a) for a in train_data)
        self.validation_data = tuple(jnp.asarray(a) for a in validation_data)
        self.test_data = None if test_data is None else tuple(jnp.asarray(a) for a in test_data)
        self.kind, self.model, self.optimizer = kind, model, optimizer
        self.batch_size, self.fidelity, self.epochs = batch_size, fidelity, epochs
        self.max_epochs = max_epochs
        self.objective = "loss" if kind == "regression" else objective

    def check_space(self, spec: SearchSpace) -> None:
        """Raises ValueError if the space's fidelity cannot count what `fidelity` says.

        `jn.run` calls it before the run starts.
        """
        bounds = spec.fidelity
        if self.fidelity == "data_fraction":
            if bounds is None or not 0 < bounds.lower <= bounds.upper <= 1:
                found = "none" if bounds is None else f"[{bounds.lower}, {bounds.upper}]"
                raise ValueError(f"SupervisedTask: fidelity='data_fraction' needs a space "
                                 f"fidelity within (0, 1] (a FloatFidelity); the space's is "
                                 f"{found}.")
        elif bounds is not None and (bounds.lower < 1 or bounds.upper != int(bounds.upper)):
            raise ValueError(f"SupervisedTask: fidelity={self.fidelity!r} counts whole "
                             f"{self.fidelity}, so the space's fidelity bounds must be whole "
                             f"numbers >= 1, not [{bounds.lower}, {bounds.upper}].")

    def for_bucket(self, spec: SearchSpace, config: Mapping, masked: bool = False) -> Task:
        """The pure functions for one bucket; `config` is any member (its structure counts)."""
        self.check_space(spec)
        resolved = spec.resolve(config, masked=masked)
        if self.model not in resolved:
            raise ValueError(f"SupervisedTask: the space has no entry {self.model!r} for the "
                             f"model (entries: {sorted(resolved)}).")
        module = resolved[self.model]
        if not isinstance(module, nn.Module):
            raise ValueError(f"SupervisedTask: entry {self.model!r} resolves to {module!r}, "
                             f"not a Linen module; make it an Operation of a Linen layer.")
        batch_size = (int(resolved[self.batch_size]) if isinstance(self.batch_size, str)
                      else self.batch_size)
        steps_per_epoch = max(len(self.train_data[0]) // batch_size, 1)
        top = int(spec.fidelity.upper) if spec.fidelity is not None else 1
        max_epochs = self.max_epochs or {
            "epochs": top, "steps": -(-top // steps_per_epoch), "data_fraction": self.epochs,
        }[self.fidelity]
        return _supervised_task(self, spec, module, batch_size, max_epochs,
                                getattr(module, "masked", False))


def _supervised_task(task: SupervisedTask, spec: SearchSpace, module: nn.Module,
                     batch_size: int, max_epochs: int, masked: bool) -> Task:
    x_train, y_train = task.train_data
    x_val, y_val = task.validation_data
    n_train = x_train.shape[0]
    steps = max(n_train // batch_size, 1)  # per epoch
    per_example = _cross_entropy if task.kind == "classification" else _squared_error

    def apply(variables, x, config, train, rng=None):
        extra = {"config": config} if masked else {}
        mutable = ["batch_stats"] if train and "batch_stats" in variables else False
        out = module.apply(variables, x, train=train, rngs={"dropout": rng} if rng is not None
                           else None, mutable=mutable, **extra)
        return out if mutable else (out, {})

    def optimizer(config):
        return task.optimizer(spec.values(config))

    def fresh(key, config, kept_key):
        """A new state: parameters from `split(key)[0]`; `kept_key` goes into the state."""
        init_key, _ = jax.random.split(key)
        variables = module.init({"params": init_key, "dropout": init_key}, x_train[:1],
                                **({"config": config} if masked else {}))
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        nan = jnp.full((max_epochs,), jnp.nan, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return TrainState(params, model_state, optimizer(config).init(params),
                          jax.random.key_data(kept_key), zero, zero,
                          jnp.zeros((), jnp.float32), nan, nan)

    def init(key, config):
        if task.fidelity == "data_fraction":
            return fresh(key, config, key)  # training restarts from the trial's key
        return fresh(key, config, jax.random.split(key)[1])

    def validation(params, model_state, config, x=x_val, y=y_val):
        out, _ = apply({"params": params, **model_state}, x, config, train=False)
        if task.objective == "error":
            return jnp.mean(jnp.argmax(out, -1) != y).astype(jnp.float32)
        return jnp.mean(per_example(out, y))

    def sgd_step(carry, idx, step_key, tx, config, weights=None):
        """One optimiser step on rows `idx`; `weights` masks rows out (None: all count)."""
        params, model_state, opt_state = carry

        def loss_fn(p):
            out, new_state = apply({"params": p, **model_state}, x_train[idx], config,
                                   train=True, rng=step_key)
            losses = per_example(out, y_train[idx])
            if weights is None:
                return jnp.mean(losses), new_state
            return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0), new_state

        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), {**model_state, **new_state},
                opt_state), loss

    def shuffle(key, epoch):
        """Epoch `epoch`'s minibatches `(steps, batch_size)` and step keys `(steps,)`."""
        epoch_key = jax.random.fold_in(key, epoch)
        order = jax.random.permutation(epoch_key, n_train)[: steps * batch_size]
        return (order.reshape(steps, batch_size),
                jax.random.split(jax.random.fold_in(epoch_key, 1), steps))

    def whole_epoch(state: TrainState, config) -> TrainState:
        tx = optimizer(config)
        order, step_keys = shuffle(jax.random.wrap_key_data(state.key), state.epoch)
        (params, model_state, opt_state), losses = jax.lax.scan(
            lambda carry, xs: sgd_step(carry, *xs, tx, config),
            (state.params, state.model_state, state.opt_state), (order, step_keys))
        at = jnp.minimum(state.epoch, max_epochs - 1)
        return state.replace(
            params=params, model_state=model_state, opt_state=opt_state,
            epoch=state.epoch + 1, step=state.step + steps,
            train_curve=state.train_curve.at[at].set(jnp.mean(losses)),
            val_curve=state.val_curve.at[at].set(validation(params, model_state, config)))

    def train_epochs(state, config, fidelity):
        target = jnp.minimum(jnp.asarray(fidelity, jnp.int32), max_epochs)
        return jax.lax.while_loop(lambda s: s.epoch < target,
                                  lambda s: whole_epoch(s, config), state)

    def train_steps(state, config, fidelity):
        target = jnp.minimum(jnp.asarray(fidelity, jnp.int32), max_epochs * steps)
        tx = optimizer(config)

        def epoch_part(s: TrainState) -> TrainState:
            """The steps of the current epoch up to its end or the target, whichever first."""
            e = s.step // steps
            order, step_keys = shuffle(jax.random.wrap_key_data(s.key), e)
            end = jnp.minimum(target, (e + 1) * steps)

            def one(s: TrainState) -> TrainState:
                k = s.step - e * steps  # steps of this epoch already taken
                (params, model_state, opt_state), loss = sgd_step(
                    (s.params, s.model_state, s.opt_state), order[k], step_keys[k], tx, config)
                mean = jnp.where(k == 0, loss, s.train_curve[e] + (loss - s.train_curve[e])
                                 / (k + 1).astype(jnp.float32))
                return s.replace(params=params, model_state=model_state, opt_state=opt_state,
                                 step=s.step + 1, train_curve=s.train_curve.at[e].set(mean))

            s = jax.lax.while_loop(lambda s: s.step < end, one, s)
            return s.replace(epoch=s.step // steps, val_curve=s.val_curve.at[e].set(
                validation(s.params, s.model_state, config)))

        return jax.lax.while_loop(lambda s: s.step < target, epoch_part, state)

    def train_fraction(state, config, fidelity):
        fraction = jnp.asarray(fidelity, jnp.float32)
        rows = jnp.clip(jnp.ceil(fraction * n_train).astype(jnp.int32), 1, n_train)
        subset_steps = jnp.maximum(rows // batch_size, 1)
        # The first `rows` of one fixed shuffle: the same for every trial, nested in `rows`.
        subset_rank = jnp.argsort(jax.random.permutation(jax.random.key(0), n_train))
        in_subset = subset_rank < rows
        tx = optimizer(config)
        trial_key = jax.random.wrap_key_data(state.key)
        epoch_keys = jax.random.split(trial_key)[1]

        def epoch(e, s: TrainState) -> TrainState:
            epoch_key = jax.random.fold_in(epoch_keys, e)
            # The subset's rows first, shuffled; the rest after them.
            order = jnp.argsort(jnp.where(in_subset, jax.random.uniform(epoch_key, (n_train,)),
                                          2.0))
            step_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), steps)

            def one(carry):
                k, params, model_state, opt_state, total = carry
                idx = jax.lax.dynamic_slice(order, (k * batch_size,), (batch_size,))
                weights = (k * batch_size + jnp.arange(batch_size) < rows).astype(jnp.float32)
                (params, model_state, opt_state), loss = sgd_step(
                    (params, model_state, opt_state), idx, step_keys[k], tx, config, weights)
                return k + 1, params, model_state, opt_state, total + loss

            _, params, model_state, opt_state, total = jax.lax.while_loop(
                lambda c: c[0] < subset_steps, one,
                (jnp.zeros((), jnp.int32), s.params, s.model_state, s.opt_state,
                 jnp.zeros((), jnp.float32)))
            return s.replace(
                params=params, model_state=model_state, opt_state=opt_state,
                epoch=s.epoch + 1, step=s.step + subset_steps,
                train_curve=s.train_curve.at[e].set(total / subset_steps.astype(jnp.float32)),
                val_curve=s.val_curve.at[e].set(validation(params, model_state, config)))

        def retrain():
            start = fresh(trial_key, config, trial_key).replace(fraction=fraction)
            return jax.lax.fori_loop(0, min(task.epochs, max_epochs), epoch, start)

        # Already trained on this fraction or more (a repeated call): nothing to do.
        return jax.lax.cond(fraction > state.fraction, retrain, lambda: state)

    def evaluate(state, config):
        objective = validation(state.params, state.model_state, config)
        metrics = {"loss": objective, "epochs": state.epoch, "steps": state.step,
                   "train_curve": state.train_curve, "val_curve": state.val_curve}
        if task.test_data is not None:
            metrics["test_objective"] = validation(state.params, state.model_state, config,
                                                   *task.test_data)
        return metrics

    train = {"epochs": train_epochs, "steps": train_steps,
             "data_fraction": train_fraction}[task.fidelity]
    return Task(init, train, evaluate)
