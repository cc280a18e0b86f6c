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
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxnas.space import SearchSpace


class Task(NamedTuple):
    """Pure `init`, `train` and `evaluate` of one configuration (see the module docstring)."""

    init: Callable[[jax.Array, Any], Any]
    train: Callable[[Any, Any, Any], Any]
    evaluate: Callable[[Any, Any], Any]


@struct.dataclass
class TrainState:
    """The state `SupervisedTask` carries across rungs.

    Attributes:
        params: the model's parameters.
        model_state: its other variables (BatchNorm statistics), possibly empty.
        opt_state: the optax state; hyperparameters live in it (`inject_hyperparams`).
        key: the trial's PRNG key as raw `uint32` key data (`jax.random.key_data`), so the
            state is plain arrays on the host too; epoch `e` draws from `fold_in(key, e)`,
            so training to fidelity b in one go or in several calls gives the same result.
        epoch: () int32, epochs trained so far.
        train_curve: (max_epochs,) float32, the mean training loss of each epoch (NaN
            where not trained yet).
        val_curve: (max_epochs,) float32, the validation objective after each epoch.
    """

    params: Any
    model_state: Any
    opt_state: Any
    key: jax.Array
    epoch: jax.Array
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


class SupervisedTask:
    """Classification or regression on in-memory arrays: a model from the space, trained.

    The model is the space entry `model` (an operation, built with `jn.nn.build`); the
    optimiser comes from `optimizer(values)`, `values` being the config's values by path
    (`spec.values`), traced; the fidelity counts epochs. The objective is the validation
    error (classification) or loss, after the last epoch trained.

    Args:
        train_data: `(x, y)` arrays; integer labels `y` for classification.
        validation_data: `(x, y)` arrays for the objective.
        kind: `"classification"` (cross-entropy, objective: error rate) or `"regression"`
            (squared error, objective: mean squared error).
        model: the path of the model's entry in the space.
        optimizer: `values -> optax.GradientTransformation` (default: `default_optimizer`).
        batch_size: the minibatch size, or the path of a static config entry holding it.
        max_epochs: the longest training (the length of the learning curves); by default
            the space's fidelity upper bound.
        objective: `"error"` or `"loss"` (classification only; regression uses the loss).
        test_data: optional `(x, y)` held out from the search: `evaluate` also reports
            `test_objective` (never used to choose), so a run can report its incumbent's
            test score.

    Raises:
        ValueError: mismatched arrays, an unknown kind or objective, a bad batch size.
    """

    def __init__(self, train_data: tuple, validation_data: tuple, *,
                 kind: str = "classification", model: str = "model",
                 optimizer: Callable[[Mapping], optax.GradientTransformation] = default_optimizer,
                 batch_size: int | str = 64, max_epochs: int | None = None,
                 objective: str = "error", test_data: tuple | None = None):
        if kind not in ("classification", "regression"):
            raise ValueError(f"SupervisedTask: kind={kind!r} must be 'classification' or "
                             f"'regression'.")
        if objective not in ("error", "loss"):
            raise ValueError(f"SupervisedTask: objective={objective!r} must be 'error' or "
                             f"'loss'.")
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
        self.batch_size, self.max_epochs = batch_size, max_epochs
        self.objective = "loss" if kind == "regression" else objective

    def for_bucket(self, spec: SearchSpace, config: Mapping, masked: bool = False) -> Task:
        """The pure functions for one bucket; `config` is any member (its structure counts)."""
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
        max_epochs = self.max_epochs or (int(spec.fidelity.upper) if spec.fidelity else 1)
        return _supervised_task(self, spec, module, batch_size, max_epochs,
                                getattr(module, "masked", False))


def _supervised_task(task: SupervisedTask, spec: SearchSpace, module: nn.Module,
                     batch_size: int, max_epochs: int, masked: bool) -> Task:
    x_train, y_train = task.train_data
    x_val, y_val = task.validation_data
    n_train = x_train.shape[0]
    steps = max(n_train // batch_size, 1)
    per_example = _cross_entropy if task.kind == "classification" else _squared_error

    def apply(variables, x, config, train, rng=None):
        extra = {"config": config} if masked else {}
        mutable = ["batch_stats"] if train and "batch_stats" in variables else False
        out = module.apply(variables, x, train=train, rngs={"dropout": rng} if rng is not None
                           else None, mutable=mutable, **extra)
        return out if mutable else (out, {})

    def optimizer(config):
        return task.optimizer(spec.values(config))

    def init(key, config):
        init_key, key = jax.random.split(key)
        variables = module.init({"params": init_key, "dropout": init_key}, x_train[:1],
                                **({"config": config} if masked else {}))
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        nan = jnp.full((max_epochs,), jnp.nan, jnp.float32)
        return TrainState(params, model_state, optimizer(config).init(params),
                          jax.random.key_data(key), jnp.zeros((), jnp.int32), nan, nan)

    def validation(params, model_state, config, x=x_val, y=y_val):
        out, _ = apply({"params": params, **model_state}, x, config, train=False)
        if task.objective == "error":
            return jnp.mean(jnp.argmax(out, -1) != y).astype(jnp.float32)
        return jnp.mean(per_example(out, y))

    def epoch(state: TrainState, config) -> TrainState:
        tx = optimizer(config)
        epoch_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.epoch)
        order = jax.random.permutation(epoch_key, n_train)[: steps * batch_size]
        order = order.reshape(steps, batch_size)

        def step(carry, idx_and_key):
            params, model_state, opt_state = carry
            idx, step_key = idx_and_key

            def loss_fn(p):
                out, new_state = apply({"params": p, **model_state}, x_train[idx], config,
                                       train=True, rng=step_key)
                return jnp.mean(per_example(out, y_train[idx])), new_state

            (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), {**model_state, **new_state},
                    opt_state), loss

        step_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), steps)
        (params, model_state, opt_state), losses = jax.lax.scan(
            step, (state.params, state.model_state, state.opt_state), (order, step_keys))
        at = jnp.minimum(state.epoch, max_epochs - 1)
        return state.replace(
            params=params, model_state=model_state, opt_state=opt_state,
            epoch=state.epoch + 1,
            train_curve=state.train_curve.at[at].set(jnp.mean(losses)),
            val_curve=state.val_curve.at[at].set(validation(params, model_state, config)))

    def train(state, config, fidelity):
        target = jnp.minimum(jnp.asarray(fidelity, jnp.int32), max_epochs)
        return jax.lax.while_loop(lambda s: s.epoch < target, lambda s: epoch(s, config),
                                  state)

    def evaluate(state, config):
        objective = validation(state.params, state.model_state, config)
        metrics = {"loss": objective, "epochs": state.epoch,
                   "train_curve": state.train_curve, "val_curve": state.val_curve}
        if task.test_data is not None:
            metrics["test_objective"] = validation(state.params, state.model_state, config,
                                                   *task.test_data)
        return metrics

    return Task(init, train, evaluate)
