"""How a config is stored and how each slot maps to the unit interval.

Two views of one config:

* **stored** (`Config`): a float32 array of the `Float` slots and an int32 array of the
  `Integer` slots and `Categorical` indices;
* **working**: a float32 vector of the numeric slots (`Float` and `Integer`) and an int32
  vector of the categorical indices, which sampling and densities work on.

`Packing` converts between the two. The unit encoding maps each slot to [0, 1]: floats
linearly in (log-)space; integers to the centre of one of `upper - lower + 1` equal bins
(with `log=True`, value v owns [log(v - 0.5), log(v + 0.5)], rescaled), and a parameter with
a `step` (an `Integer`'s or a `Float`'s) likewise to one of its `(upper - lower) / step + 1`
bins, each value owning [v - step/2, v + step/2]; categoricals to the
centre of one of `n` bins over their *feasible* choices (choices a recursive grammar cannot
finish within `max_depth` are skipped). `NumericEncoding` and `CategoricalEncoding` hold
those maps for their slots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.space._config import Config, Layout
from jaxnas.space._ir import Slot


class Packing:
    """Where each slot sits in a stored `Config` and in the working vectors.

    Attributes:
        paths: slot paths, in slot order.
        layout: the `Layout` of this space's configs.
        numeric_slots: `(n_numeric,)` the slot of each numeric working column.
        categorical_slots: `(n_categorical,)` the slot of each categorical working column.
    """

    def __init__(self, slots: Sequence[Slot]):
        kinds = [s.kind for s in slots]
        self.paths = tuple(s.path for s in slots)
        self.layout = Layout(self.paths, tuple(k == "float" for k in kinds))
        numeric = [i for i, k in enumerate(kinds) if k != "cat"]
        categorical = [i for i, k in enumerate(kinds) if k == "cat"]
        floats = [i for i, k in enumerate(kinds) if k == "float"]
        ints = [i for i, k in enumerate(kinds) if k != "float"]
        self.numeric_slots = np.asarray(numeric, np.int32)
        self.categorical_slots = np.asarray(categorical, np.int32)
        self.n_numeric, self.n_categorical = len(numeric), len(categorical)
        self.n_float, self.n_int = len(floats), kinds.count("int")
        numeric_column = {slot: j for j, slot in enumerate(numeric)}
        categorical_column = {slot: j for j, slot in enumerate(categorical)}
        float_column = {slot: j for j, slot in enumerate(floats)}
        int_column = {slot: j for j, slot in enumerate(ints)}
        # Stored from working: floats are numeric columns; ints index [numeric, categorical].
        self._floats_from_numeric = np.array([numeric_column[i] for i in floats], np.int32)
        self._ints_from_working = np.array(
            [numeric_column[i] if kinds[i] == "int" else len(numeric) + categorical_column[i]
             for i in ints], np.int32)
        # Working from stored: numeric columns index [floats, ints]; categoricals index ints.
        self._numeric_from_stored = np.array(
            [float_column[i] if kinds[i] == "float" else len(floats) + int_column[i]
             for i in numeric], np.int32)
        self._categorical_from_ints = np.array([int_column[i] for i in categorical], np.int32)
        order = np.concatenate([self.numeric_slots, self.categorical_slots]).astype(np.int64)
        self._slot_order = np.argsort(order).astype(np.int32)

    def stored_arrays(self, values: Mapping[str, Any], xp: Any) -> tuple[Any, Any]:
        """The stored float32 and int32 arrays of `{path: value}` (paths last).

        `xp` is numpy (host values stay on the host) or jax.numpy (traced values).
        """
        columns = [xp.asarray(values[p]) for p in self.paths]
        shape = columns[0].shape if columns else ()

        def stack(is_float: bool, dtype: Any) -> Any:
            picked = [c.astype(dtype) for c, f in zip(columns, self.layout.is_float)
                      if f == is_float]
            return xp.stack(picked, axis=-1) if picked else xp.zeros((*shape, 0), dtype)

        return stack(True, xp.float32), stack(False, xp.int32)

    def pack(self, numeric: jax.Array, indices: jax.Array) -> Config:
        """The stored `Config` of working vectors `(n_numeric,)` and `(n_categorical,)`."""
        ints = jnp.concatenate([numeric.astype(jnp.int32), indices])[self._ints_from_working]
        return Config(numeric[self._floats_from_numeric], ints, self.layout)

    def unpack(self, floats: jax.Array, ints: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The working vectors (numeric float32, categorical int32) of stored arrays."""
        numeric = jnp.concatenate([floats.astype(jnp.float32), ints.astype(jnp.float32)])
        return (numeric[self._numeric_from_stored],
                ints.astype(jnp.int32)[self._categorical_from_ints])

    def to_slot_order(self, numeric: jax.Array, categorical: jax.Array) -> jax.Array:
        """One `(n_slots,)` vector from per-numeric and per-categorical columns."""
        return jnp.concatenate([numeric, categorical])[self._slot_order]

    def from_slot_order(self, values: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The numeric and categorical columns of a `(n_slots,)` vector."""
        return values[self.numeric_slots], values[self.categorical_slots]


class NumericEncoding:
    """The unit encoding of the `Float` and `Integer` slots, in working-column order.

    Attributes:
        is_log: `(n_numeric,)` bool.
        quantum: `(n_numeric,)` float64, the spacing of a discrete column's values (an
            `Integer`'s step, 1 by default, or a `Float`'s `step`); 0 for a continuous one.
        is_discrete: `(n_numeric,)` bool, `quantum > 0`: the column's values own bins.
        lower, upper: `(n_numeric,)` float64 bounds.
        scale_lower, scale_upper: `(n_numeric,)` float64, the ends of the (log-)scale that
            maps linearly onto [0, 1]; a discrete column's reach half a step past its bounds.
    """

    def __init__(self, slots: Sequence[Slot]):
        self.is_log = np.array([s.param.log for s in slots], bool)
        self.quantum = np.array([s.param.quantum for s in slots], np.float64)
        self.is_discrete = self.quantum > 0
        self.lower = np.array([s.param.lower for s in slots], np.float64)
        self.upper = np.array([s.param.upper for s in slots], np.float64)
        self._half = self.quantum / 2
        self.scale_lower = self._scale(self.lower - self._half)
        self.scale_upper = self._scale(self.upper + self._half)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.is_log, np.log(np.where(self.is_log, x, 1.0)), x)

    def unit_value(self, column: int, value: float) -> float:
        """`value`'s unit encoding in column `column`, in float64 on the host."""
        scaled = math.log(value) if self.is_log[column] else value
        return ((scaled - self.scale_lower[column])
                / (self.scale_upper[column] - self.scale_lower[column]))

    def to_unit(self, x: jax.Array) -> jax.Array:
        """Values `(n_numeric,)` to [0, 1] (clipped)."""
        scaled = jnp.where(self.is_log,
                           jnp.log(jnp.where(self.is_log, jnp.maximum(x, 1e-30), 1.0)), x)
        u = ((scaled - jnp.asarray(self.scale_lower, jnp.float32))
             / jnp.asarray(self.scale_upper - self.scale_lower, jnp.float32))
        return jnp.clip(u, 0.0, 1.0)

    def from_unit(self, u: jax.Array) -> jax.Array:
        """Unit values `(n_numeric,)` to values (discrete ones: their bin's value)."""
        scaled = (jnp.asarray(self.scale_lower, jnp.float32)
                  + u * jnp.asarray(self.scale_upper - self.scale_lower, jnp.float32))
        x = jnp.where(self.is_log, jnp.exp(scaled), scaled)
        x = self.snap(x)
        return jnp.clip(x, jnp.asarray(self.lower, jnp.float32),
                        jnp.asarray(self.upper, jnp.float32))

    def snap(self, x: jax.Array) -> jax.Array:
        """Discrete columns' values rounded to their nearest allowed value, `lower + k *
        quantum` (float32, as `Float.grid` computes it, within the float32 bounds: the last
        value of `Float(-1.0, -1.0 + 6 * 0.1, step=0.1)` computes above its upper bound by
        a rounding); continuous ones as they are."""
        lower = jnp.asarray(self.lower, jnp.float32)
        quantum = jnp.asarray(np.where(self.is_discrete, self.quantum, 1.0), jnp.float32)
        on_grid = jnp.clip(lower + jnp.round((x - lower) / quantum) * quantum, lower,
                           jnp.asarray(self.upper, jnp.float32))
        return jnp.where(self.is_discrete, on_grid, x)

    def bin_edges(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The unit interval `[a, b]` that a discrete value owns (meaningless for floats)."""
        half = jnp.asarray(self._half, jnp.float32)
        return self.to_unit(x - half), self.to_unit(x + half)


class CategoricalEncoding:
    """The unit encoding of the `Categorical` slots, in working-column order.

    Attributes:
        max_choices: the most choices of any categorical (the width of the tables).
        feasible: `(n_categorical, max_choices)` bool, the choices that can terminate.
        uniform_logits: `(n_categorical, max_choices)` float32: 0 where feasible, else -inf.
    """

    def __init__(self, slots: Sequence[Slot]):
        self.max_choices = max([len(s.feasible) for s in slots], default=1)
        feasible = np.zeros((len(slots), self.max_choices), bool)
        for column, s in enumerate(slots):
            feasible[column, : len(s.feasible)] = s.feasible
        self.feasible = feasible
        self.uniform_logits = np.where(feasible, 0.0, -np.inf).astype(np.float32)
        self._n_feasible = feasible.sum(-1).astype(np.int32)
        self._rank = (np.cumsum(feasible, -1) - 1).astype(np.int32)  # rank among feasible
        order = np.argsort(~feasible, axis=-1, kind="stable")  # feasible choices first
        self._by_rank = order.astype(np.int32)

    def to_unit(self, indices: jax.Array) -> jax.Array:
        """Choice indices `(n_categorical,)` to the centres of their bins in [0, 1]."""
        if not len(self.feasible):
            return jnp.zeros((0,), jnp.float32)
        rank = jnp.take_along_axis(jnp.asarray(self._rank), indices[:, None], axis=-1)[:, 0]
        return (rank.astype(jnp.float32) + 0.5) / jnp.asarray(self._n_feasible, jnp.float32)

    def from_unit(self, u: jax.Array) -> jax.Array:
        """Unit values `(n_categorical,)` to the feasible choice whose bin holds each."""
        if not len(self.feasible):
            return jnp.zeros((0,), jnp.int32)
        n = jnp.asarray(self._n_feasible)
        rank = jnp.clip(jnp.floor(u * n).astype(jnp.int32), 0, n - 1)
        return jnp.take_along_axis(jnp.asarray(self._by_rank), rank[:, None], axis=-1)[:, 0]
