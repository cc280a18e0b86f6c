"""The state `SupervisedTask` carries from rung to rung, and its default optimiser."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax
from flax import struct


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


def default_optimizer(values: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    """AdamW with `learning_rate` (1e-3) and `weight_decay` (1e-4) from the config if there.

    The hyperparameters enter through `optax.inject_hyperparams`, so they are traced
    values: configs that differ only in them share one program.

    Args:
        values: the config's values by path (`SearchSpace.values`).

    Returns:
        The optax transformation of one configuration.
    """
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=values.get("learning_rate", 1e-3),
        weight_decay=values.get("weight_decay", 1e-4))
