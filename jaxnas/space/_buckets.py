"""Bucket signatures (`SearchSpace.bucket`, `buckets`): configs with equal signatures share
a training program. A signature is read on the host from each config's active static
slots, the activity of a whole batch computed by one jitted, vmapped program."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxnas._compiling import HELPER_OPTIONS, jit_with
from jaxnas._shapes import HELPER_MIN_ROWS, pad_to_power_of_two
from jaxnas.space._config import Config

if TYPE_CHECKING:
    from jaxnas.space._search_space import SearchSpace


def signatures(spec: SearchSpace, configs: Mapping[str, Any],
               masked: bool | str) -> list[tuple]:
    """`SearchSpace.buckets`: `(path, value)` of every active static slot of each config
    of a batch (leading axis), the slots `masked` leaves open left out."""
    widths, depths = spec._open(masked)
    paths = spec.paths
    if not paths:  # no decisions: every config has the empty signature
        n = np.shape(configs.floats)[0] if isinstance(configs, Config) else 1
        return [()] * n
    arrays = {p: np.asarray(configs[p]) for p in paths}
    if any(a.ndim != 1 for a in arrays.values()):
        raise ValueError("buckets takes a batch of configs with one leading axis.")
    active = active_rows(spec, configs)
    static = [i for i, s in enumerate(spec._static)
              if s and i not in widths and i not in depths]
    columns = [(paths[i], arrays[paths[i]].tolist()) for i in static]
    return [
        tuple((path, column[row]) for (path, column), i in zip(columns, static)
              if active[row, i])
        for row in range(len(active))
    ]


def active_rows(spec: SearchSpace, configs: Mapping[str, Any]) -> np.ndarray:
    """`(n, slots)` bool on the host: `active` of each config of a batch, computed at
    the batch padded to a power of two (copies of the first row), so that batches of
    every size share a handful of compiled programs (one per space, made on first use)."""
    if not isinstance(configs, Config):
        configs = spec.config({p: np.asarray(configs[p]) for p in spec.paths})
    n = np.shape(configs.floats)[0]
    rows = pad_to_power_of_two(n, HELPER_MIN_ROWS)
    index = np.concatenate([np.arange(n), np.zeros(rows - n, int)])
    padded = jax.tree.map(lambda a: np.asarray(a)[index], configs)
    if spec._active_program is None:
        object.__setattr__(spec, "_active_program", jit_with(
            jax.vmap(spec.active), HELPER_OPTIONS))
    return np.asarray(spec._active_program(padded).array)[:n]
