"""Pickling a run's space so that `jn.load_space` reads it back.

Pickle stores a function or class by its module and name and checks, when writing, that
the name finds the same object. JAX's public activations and many `jax.numpy` functions are
wrappers (`custom_jvp` objects, jitted functions) whose `__module__` and `__qualname__`
name a private module where another object lives: `pickle.dumps(jax.nn.relu)` fails, and
with it every space that uses `flax.linen.relu`, `silu`, `sigmoid` or `jnp.tanh` (the
quickstart's among them). `dumps` stores such an object by a public name that finds it
(`jax.nn.relu`), and `attribute` is what reads it back.

A space written in a script refers to the script's own functions and classes, whose module
is `__main__`: another process (`python -m jaxnas status`, a report) has a `__main__` of its
own. Where the script keeps its work under `if __name__ == "__main__":`, `dumps` stores such
an object by the script's path and its name, and `from_script` imports the script under
another module name (that block does not run), as `multiprocessing`'s spawn start method
does. A script without that block is not imported again: reading the space back would run
its search.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import io
import os
import pickle
import sys
import types
from pathlib import Path
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


def from_script(path: str, name: str) -> Any:
    """`name` in the script at `path`: the running `__main__` where that script is it,
    else the script imported once per process as a module of its own (its folder first on
    `sys.path` meanwhile, as when it runs, so that it imports its neighbours)."""
    main = sys.modules.get("__main__")
    if _script_path(main) == path:
        return attribute("__main__", name)
    module_name = "jaxnas_script_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"the script {path!r} that defined {name!r} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, os.path.dirname(path))  # as running it does: its own imports
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        finally:
            sys.path.remove(os.path.dirname(path))
    return attribute(module_name, name)


def _script_path(module: Any) -> str | None:
    """The absolute path of the file `module` was run from, if it is one."""
    file = getattr(module, "__file__", None)
    return os.path.abspath(file) if isinstance(file, str) and file.endswith(".py") else None


@functools.lru_cache(maxsize=8)
def _guards_its_work(path: str) -> bool:
    """Whether the script at `path` has a top-level `if __name__ == "__main__":`, so that
    importing it defines its objects without running it."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Compare) and len(test.ops) == 1
                and isinstance(test.ops[0], ast.Eq)):
            sides = [test.left, *test.comparators]
            names = {s.id for s in sides if isinstance(s, ast.Name)}
            values = {s.value for s in sides if isinstance(s, ast.Constant)}
            if names == {"__name__"} and values == {"__main__"}:
                return True
    return False


def dumps(value: Any) -> bytes:
    """`pickle.dumps(value)`, with JAX's wrapped callables stored by a public name."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if not callable(obj):
            return NotImplemented
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        module = getattr(obj, "__module__", None)
        if not isinstance(name, str) or not isinstance(module, str) or "<" in name:
            return NotImplemented  # a lambda or local function: pickle says why
        if module == "__main__":
            script = _script_path(sys.modules.get("__main__"))
            if (script is not None and _guards_its_work(script)
                    and _finds("__main__", name, obj)):
                return from_script, (script, name)
            return NotImplemented
        if isinstance(obj, type):
            return NotImplemented
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
