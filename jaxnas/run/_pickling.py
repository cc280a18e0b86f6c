"""Pickling a run's space so that `jn.load_space` reads it back.

Pickle stores a function or class by its module and name and checks, when writing, that
the name finds the same object. JAX's public activations and many `jax.numpy` functions are
wrappers (`custom_jvp` objects, jitted functions) whose `__module__` and `__qualname__`
name a private module where another object lives: `pickle.dumps(jax.nn.relu)` fails, and
with it every space that uses `flax.linen.relu`, `silu`, `sigmoid` or `jnp.tanh` (the
quickstart's among them). `dumps` stores such an object by a public name that finds it
(`jax.nn.relu`), and `attribute` is what reads it back.
"""

from __future__ import annotations

import importlib
import io
import pickle
import sys
import types
from typing import Any

# Public modules searched, in order, for a name that finds a wrapped callable (only those
# already imported: a space's objects come from them).
_PUBLIC_HOMES = ("jax.nn", "jax.numpy", "jax.lax", "jax.scipy.special", "jax", "flax.linen",
                 "optax")


def attribute(module: str, name: str) -> Any:
    """`module.name`, dotted names included: how a pickled callable is found again."""
    value: Any = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


def dumps(value: Any) -> bytes:
    """`pickle.dumps(value)`, with JAX's wrapped callables stored by a public name."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or not callable(obj):
            return NotImplemented
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        module = getattr(obj, "__module__", None)
        if not isinstance(name, str) or not isinstance(module, str) or "<" in name:
            return NotImplemented  # a lambda or local function: pickle says why
        plain = isinstance(obj, (types.FunctionType, types.BuiltinFunctionType))
        if plain and _finds(module, name, obj):
            return NotImplemented  # pickle's own way works
        for home in (*_PUBLIC_HOMES, module):
            if (home in sys.modules or home == module) and _finds(home, name, obj):
                return attribute, (home, name)
        return NotImplemented


def _finds(module: str, name: str, obj: Any) -> bool:
    try:
        return attribute(module, name) is obj
    except Exception:  # noqa: BLE001 - any failure means "not there"
        return False
