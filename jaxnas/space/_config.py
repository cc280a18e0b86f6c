"""`Config`: a read-only mapping `path -> value`, stored as two packed arrays.

A config behaves like a flat dict of scalars (`config["optim.lr"]`), and under `vmap` each
value gets the leading axis. It is stored as one float32 array (the `Float` slots) and one
int32 array (the `Integer` slots and the `Categorical` indices) so that a config of hundreds
of decisions is two leaves: XLA compiles it fast and an optimiser can store a population
as two matrices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class Layout:
    """Which packed array and column hold each path. Hashable: it is pytree aux data."""

    __slots__ = ("paths", "is_float", "where", "_key")

    def __init__(self, paths: tuple[str, ...], is_float: tuple[bool, ...]):
        self.paths, self.is_float = paths, is_float
        where, counts = {}, [0, 0]
        for path, flt in zip(paths, is_float):
            where[path] = (flt, counts[flt])
            counts[flt] += 1
        self.where = where
        self._key = (paths, is_float)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Layout) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"Layout({len(self.paths)} paths)"


@jax.tree_util.register_pytree_node_class
class Config(Mapping):
    """One configuration (or a batch, with leading axes): a mapping `path -> value`.

    `config[path]` is a float32 value for a `Float`, an int32 value for an `Integer` and
    the chosen index (int32) for a `Categorical`. Configs are pytrees of two arrays:
    `jax.tree.map(lambda x: x[i], configs)` picks member `i` of a batch.

    Attributes:
        floats: `(..., n_float)` float32, the `Float` slots in path order.
        ints: `(..., n_int)` int32, the `Integer` and `Categorical` slots in path order.
    """

    __slots__ = ("floats", "ints", "layout")

    def __init__(self, floats: Any, ints: Any, layout: Layout):
        self.floats, self.ints, self.layout = floats, ints, layout

    def tree_flatten(self):
        return (self.floats, self.ints), self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, children) -> Config:
        return cls(*children, layout)

    def replace(self, updates: Mapping[str, Any]) -> Config:
        """Returns a new config with `updates` (`{path: value}`) written in.

        Raises:
            KeyError: a path that is not in the config.
        """
        for path in updates:
            if path not in self.layout.where:
                raise KeyError(f"no path {path!r} in this config")
        traced = any(isinstance(a, jax.core.Tracer)
                     for a in (self.floats, self.ints, *updates.values()))
        # Traced values scatter in the program; concrete ones are written on the host and
        # moved once (a path each would be an eager device op).
        xp = jnp if traced else np
        arrays = [xp.array(self.floats), xp.array(self.ints)]
        for path, value in updates.items():
            is_float, col = self.layout.where[path]
            i = 0 if is_float else 1
            value = xp.asarray(value, arrays[i].dtype)
            if traced:
                arrays[i] = arrays[i].at[..., col].set(value)
            else:
                arrays[i][..., col] = value
        return Config(jnp.asarray(arrays[0]), jnp.asarray(arrays[1]), self.layout)

    def __getitem__(self, path: str) -> Any:
        try:
            is_float, col = self.layout.where[path]
        except KeyError:
            raise KeyError(f"no path {path!r} in this config") from None
        return (self.floats if is_float else self.ints)[..., col]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.paths)

    def __len__(self) -> int:
        return len(self.layout.paths)

    def __contains__(self, path: object) -> bool:
        return path in self.layout.where

    __eq__ = object.__eq__  # element-wise array comparison has no single truth value
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        def show(value: Any) -> str:
            try:
                array = np.asarray(value)
            except Exception:  # a tracer: show its abstract value
                return str(getattr(value, "aval", value))
            return str(array.item()) if array.ndim == 0 else f"array{array.shape}"

        body = ", ".join(f"{p!r}: {show(self[p])}" for p in self.layout.paths)
        return f"Config({{{body}}})"


@jax.tree_util.register_pytree_node_class
class PathValues(Mapping):
    """A read-only mapping `path -> value` backed by one array (`.array`, paths last).

    Returned by `SearchSpace.active` (booleans).
    """

    __slots__ = ("array", "paths", "_index")

    def __init__(self, array: Any, paths: tuple[str, ...]):
        self.array, self.paths = array, paths
        self._index = {p: i for i, p in enumerate(paths)}

    def tree_flatten(self):
        return (self.array,), self.paths

    @classmethod
    def tree_unflatten(cls, paths, children) -> PathValues:
        return cls(children[0], paths)

    def __getitem__(self, path: str) -> Any:
        return self.array[..., self._index[path]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    __eq__ = object.__eq__
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        try:
            return f"PathValues({dict(zip(self.paths, np.asarray(self.array).tolist()))})"
        except Exception:  # a tracer
            return f"PathValues({len(self.paths)} paths, {getattr(self.array, 'aval', '')})"
