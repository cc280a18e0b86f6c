"""`SupervisedTask`: a model from the space trained on in-memory arrays, bucket by bucket.

The class checks its arguments and the space, and makes each bucket's `Task`: it resolves
the bucket's model, gathers the bucket's static pieces in a `SupervisedBucket` and hands
them to the training loop of its fidelity (`_supervised_loops`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import numpy as np
import optax

from jaxnas.space import SearchSpace
from jaxnas.train._protocol import BucketTask, Task
from jaxnas.train._supervised_bucket import SupervisedBucket, cross_entropy, squared_error
from jaxnas.train._supervised_loops import data_fraction_task, epochs_task, steps_task
from jaxnas.train._train_state import default_optimizer

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
        _check_choices(kind, objective, fidelity, epochs)
        _check_data(train_data, validation_data, test_data, batch_size)
        self.train_data = _on_device(train_data)
        self.validation_data = _on_device(validation_data)
        self.test_data = None if test_data is None else _on_device(test_data)
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

    def for_bucket(self, spec: SearchSpace, config: Mapping,
                   masked: bool | str = False) -> Task:
        """The pure functions for one bucket; `config` is any member (its structure counts)."""
        self.check_space(spec)
        resolved = spec.resolve(config, masked=masked)
        module = self._model(resolved)
        batch_size = (int(resolved[self.batch_size]) if isinstance(self.batch_size, str)
                      else self.batch_size)
        bucket = SupervisedBucket(
            spec=spec, module=module, masked=getattr(module, "masked", False),
            optimizer=self.optimizer, train_data=self.train_data,
            validation_data=self.validation_data, test_data=self.test_data,
            per_example=cross_entropy if self.kind == "classification" else squared_error,
            objective=self.objective, batch_size=batch_size,
            max_epochs=self._max_epochs(spec, batch_size))
        if self.fidelity == "data_fraction":
            return data_fraction_task(bucket, self.epochs)
        # A masked `jn.nn.Built` has a narrow form unless narrowing would move features.
        narrow_module = (module.narrowed() if bucket.masked and hasattr(module, "narrowed")
                         else None)
        narrow = (None if narrow_module is None
                  else dataclasses.replace(bucket, module=narrow_module))
        return (epochs_task if self.fidelity == "epochs" else steps_task)(bucket, narrow)

    def metrics(self, spec: SearchSpace) -> set[str]:
        """What `evaluate` returns: the objective as `loss`, the work done, the learning
        curves, and `test_objective` with test data."""
        del spec
        names = {"loss", "epochs", "steps", "train_curve", "val_curve"}
        return names | ({"test_objective"} if self.test_data is not None else set())

    def architecture(self, resolved: Mapping) -> tuple[nn.Module, tuple]:
        """The config's model (exact, not masked) and one example's input shape: what
        `jn.run` measures with `jn.nn.summary` for `params` and `flops` objectives and
        architecture constraints."""
        return self._model(resolved), (1, *self.train_data[0].shape[1:])

    def _model(self, resolved: Mapping) -> nn.Module:
        """The bucket's Linen model, from the resolved config's entry `model`."""
        if self.model not in resolved:
            raise ValueError(f"SupervisedTask: the space has no entry {self.model!r} for the "
                             f"model (entries: {sorted(resolved)}).")
        module = resolved[self.model]
        if not isinstance(module, nn.Module):
            raise ValueError(f"SupervisedTask: entry {self.model!r} resolves to {module!r}, "
                             f"not a Linen module; make it an Operation of a Linen layer.")
        return module

    def _max_epochs(self, spec: SearchSpace, batch_size: int) -> int:
        """`max_epochs` if given, else the fidelity's upper bound in (whole) epochs."""
        if self.max_epochs:
            return self.max_epochs
        if self.fidelity == "data_fraction":
            return self.epochs
        top = int(spec.fidelity.upper) if spec.fidelity is not None else 1
        if self.fidelity == "epochs":
            return top
        steps_per_epoch = max(len(self.train_data[0]) // batch_size, 1)
        return -(-top // steps_per_epoch)  # steps, rounded up to whole epochs


def _on_device(arrays: tuple) -> tuple:
    """The arrays on the default device, with JAX's dtypes (float64 data as float32 unless
    x64 is on). `jax.device_put` copies; `jnp.asarray` would compile a small program per
    shape in every new process."""
    return tuple(a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))
                 for a in arrays)


def _check_choices(kind: str, objective: str, fidelity: str, epochs: int | None) -> None:
    """Raises ValueError for an unknown kind, objective or fidelity, or misplaced epochs."""
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


def _check_data(train_data: tuple, validation_data: tuple, test_data: tuple | None,
                batch_size: int | str) -> None:
    """Raises ValueError for data that are not `(x, y)` pairs of rows, or a bad batch size."""
    named = [("train_data", train_data), ("validation_data", validation_data)]
    for name, data in named + ([("test_data", test_data)] if test_data else []):
        if len(data) != 2 or len(data[0]) != len(data[1]) or len(data[0]) == 0:
            raise ValueError(f"SupervisedTask: {name} must be a pair (x, y) of arrays "
                             f"with the same, nonzero number of rows.")
    if isinstance(batch_size, int) and not 1 <= batch_size <= len(train_data[0]):
        raise ValueError(f"SupervisedTask: batch_size={batch_size} must lie in "
                         f"1..{len(train_data[0])} (the training rows).")
