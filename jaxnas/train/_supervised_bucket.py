"""One bucket of a `SupervisedTask`: its static pieces and the steps every fidelity shares.

`SupervisedBucket` holds what decides a bucket's program (the module, the data, the batch
size, the length of the learning curves); its methods are the pure pieces that the training
loops of `_supervised_loops` are made of: the forward pass, a fresh state, the validation
objective, one optimiser step, an epoch's shuffle, and `evaluate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxnas.space import SearchSpace
from jaxnas.train._train_state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy of integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example squared error; `(N,)` targets meet the model's `(N, 1)` outputs."""
    if targets.ndim == predictions.ndim - 1:
        predictions = predictions[..., 0]
    return jnp.sum(jnp.reshape((predictions - targets) ** 2, (targets.shape[0], -1)), axis=-1)


# Identity equality and hashing (eq=False): the fields hold arrays, which have neither.
@dataclasses.dataclass(frozen=True, eq=False)
class SupervisedBucket:
    """The static pieces of one bucket's program, and the pure steps built from them.

    Attributes:
        spec: the search space (its `values` feed the optimiser).
        module: the bucket's Linen model.
        masked: whether `module` takes the config (masked widths) as an argument.
        optimizer: `values -> optax.GradientTransformation`.
        train_data, validation_data: `(x, y)` arrays.
        test_data: `(x, y)` arrays or None.
        per_example: the per-example training loss (`cross_entropy` or `squared_error`).
        objective: `"error"` (error rate) or `"loss"` (mean `per_example` loss).
        batch_size: the minibatch size.
        max_epochs: the length of the learning curves, and the longest training.
    """

    spec: SearchSpace
    module: nn.Module
    masked: bool
    optimizer: Callable[[Mapping], optax.GradientTransformation]
    train_data: tuple
    validation_data: tuple
    test_data: tuple | None
    per_example: Callable[[jax.Array, jax.Array], jax.Array]
    objective: str
    batch_size: int
    max_epochs: int

    @property
    def train_rows(self) -> int:
        """The number of training rows."""
        return self.train_data[0].shape[0]

    @property
    def steps_per_epoch(self) -> int:
        """Full minibatches in one pass over the training rows (at least one)."""
        return max(self.train_rows // self.batch_size, 1)

    def apply(self, variables, x, config, train, rng=None):
        """The model's outputs and its updated non-parameter variables (`{}` if none)."""
        extra = {"config": config} if self.masked else {}
        mutable = ["batch_stats"] if train and "batch_stats" in variables else False
        out = self.module.apply(variables, x, train=train, rngs={"dropout": rng}
                                if rng is not None else None, mutable=mutable, **extra)
        return out if mutable else (out, {})

    def transformation(self, config) -> optax.GradientTransformation:
        """The optimiser of `config`, its hyperparameters traced."""
        return self.optimizer(self.spec.values(config))

    def fresh(self, key, config, kept_key) -> TrainState:
        """A new state: parameters from `split(key)[0]`; `kept_key` goes into the state."""
        init_key, _ = jax.random.split(key)
        variables = self.module.init({"params": init_key, "dropout": init_key},
                                     self.train_data[0][:1],
                                     **({"config": config} if self.masked else {}))
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        nan = jnp.full((self.max_epochs,), jnp.nan, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return TrainState(params, model_state, self.transformation(config).init(params),
                          jax.random.key_data(kept_key), zero, zero,
                          jnp.zeros((), jnp.float32), nan, nan)

    def validation(self, params, model_state, config, data=None) -> jax.Array:
        """The objective on `data` (default: the validation data)."""
        x, y = self.validation_data if data is None else data
        out, _ = self.apply({"params": params, **model_state}, x, config, train=False)
        if self.objective == "error":
            return jnp.mean(jnp.argmax(out, -1) != y).astype(jnp.float32)
        return jnp.mean(self.per_example(out, y))

    def sgd_step(self, carry, indices, step_key, tx, config, weights=None):
        """One optimiser step on the training rows at `indices`.

        `carry` is `(params, model_state, opt_state)`; `weights` masks rows out (None: all
        count). Returns the new carry and the minibatch's loss.
        """
        params, model_state, opt_state = carry
        x_train, y_train = self.train_data

        def loss_fn(p):
            out, new_state = self.apply({"params": p, **model_state}, x_train[indices], config,
                                        train=True, rng=step_key)
            losses = self.per_example(out, y_train[indices])
            if weights is None:
                return jnp.mean(losses), new_state
            return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0), new_state

        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), {**model_state, **new_state},
                opt_state), loss

    def shuffle(self, key, epoch):
        """Epoch `epoch`'s minibatches `(steps, batch_size)` and step keys `(steps,)`."""
        steps = self.steps_per_epoch
        epoch_key = jax.random.fold_in(key, epoch)
        order = jax.random.permutation(epoch_key, self.train_rows)[: steps * self.batch_size]
        return (order.reshape(steps, self.batch_size),
                jax.random.split(jax.random.fold_in(epoch_key, 1), steps))

    def evaluate(self, state: TrainState, config) -> dict[str, jax.Array]:
        """The objective as `"loss"`, the work done, the learning curves (and test score)."""
        objective = self.validation(state.params, state.model_state, config)
        metrics = {"loss": objective, "epochs": state.epoch, "steps": state.step,
                   "train_curve": state.train_curve, "val_curve": state.val_curve}
        if self.test_data is not None:
            metrics["test_objective"] = self.validation(state.params, state.model_state,
                                                        config, self.test_data)
        return metrics
