"""What the space layer needs from the architecture layer, filled in by `jaxnas.nn`.

The space layer never imports flax or `jaxnas.nn` (layers point down). Three things it
needs from above are registered here when `jaxnas.nn` is imported (`import jaxnas` does
that), as flax's `core` learns about `linen` only through what `linen` hands it:

* named blocks, so that `Operation("Sequential")` finds `jaxnas.nn.Sequential`;
* width-maskable operators (`nn.Dense`, `nn.Conv`): whose `features` a masked build may
  leave open;
* the module builder: which operators are modules, and how an operation tree of them
  becomes one module (`jaxnas.nn.build`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_blocks: dict[str, Any] = {}
_maskable: list[Any] = []
_builder: dict[str, Callable] = {}


def register_block(name: str, operator: Any) -> None:
    """Makes `Operation(name)` mean `operator`."""
    _blocks[name] = operator


def register_maskable(operator: Any) -> None:
    """Declares that `operator`'s `features` (first argument) may be left open and masked."""
    if operator not in _maskable:
        _maskable.append(operator)


def register_builder(*, is_module: Callable[[Any], bool], build: Callable[[Any], Any]) -> None:
    """Sets the module builder: `is_module(operator)` and `build(operation) -> module`."""
    _builder["is_module"], _builder["build"] = is_module, build


def block(name: str) -> Any:
    """The operator registered as `name`.

    Raises:
        ValueError: no block of that name; the message lists the known ones.
    """
    if name not in _blocks:
        hint = ("" if _blocks else " (none are registered yet: import jaxnas.nn first, or "
                                   "write jaxnas.Operation, which loads it)")
        raise ValueError(f"Operation(operator={name!r}): no block of that name in jaxnas.nn; "
                         f"known blocks: {sorted(_blocks)}{hint}.")
    return _blocks[name]


def registered_block(name: str) -> Any:
    """The operator registered as `name`, or None (nothing registered yet)."""
    return _blocks.get(name)


def is_maskable(operator: Any) -> bool:
    """Whether a masked build may leave `operator`'s `features` open."""
    return any(operator is m for m in _maskable)


def is_module(operator: Any) -> bool:
    """Whether `operator` is a module class that the builder turns into one module."""
    return "is_module" in _builder and bool(_builder["is_module"](operator))


def build(operation: Any) -> Any:
    """Builds an operation tree of modules into one module (`jaxnas.nn.build`)."""
    if "build" not in _builder:
        raise RuntimeError("no module builder is registered: import jaxnas.nn (or jaxnas).")
    return _builder["build"](operation)
