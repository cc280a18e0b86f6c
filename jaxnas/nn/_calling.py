"""Calling a built layer: the train/eval switch each Linen layer expects, and `BuildError`.

Every layer a build makes (a Linen module, a jaxnas block, a plain function) is called
through `call_layer`, so that `train` reaches it under whatever name it uses and a failure is
reported by the path of the layer in the space, with its input shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
from flax.errors import FlaxError


class BuildError(TypeError):
    """An operation that cannot become a layer, or layers that do not connect.

    The message names the path of the operation in the space and the shapes involved.
    """


CALL_ERRORS = (TypeError, ValueError, FlaxError)  # what a layer raises on an input it refuses


def call_layer(layer: Callable, x: Any, train: bool) -> Any:
    """Calls a built layer, passing the train/eval switch the way the layer expects it.

    Linen layers spell it differently: `deterministic` (Dropout), `use_running_average`
    (BatchNorm), or `train` (jaxnas blocks). A switch already fixed on the layer's fields
    is left alone (Linen refuses to receive it twice). An error is reported by the path of
    the innermost layer that raised it, with its input shape.
    """
    try:
        return _call(layer, x, train)
    except BuildError:
        raise
    except CALL_ERRORS as error:
        raise layer_error(layer, x, error) from error


def layer_error(layer: Callable, x: Any, error: Exception) -> BuildError:
    """The `BuildError` for a layer that refused its input: its path, kind and input shape."""
    kind = type(layer).__name__ if isinstance(layer, nn.Module) else getattr(
        getattr(layer, "fn", layer), "__name__", repr(layer))
    return BuildError(f"{layer_name(layer)}: cannot apply {kind} to an input of shape "
                      f"{getattr(x, 'shape', None)}: {error}")


def layer_name(layer: Any) -> str:
    """A built layer's path in the space (its module name), else its type's name."""
    return getattr(layer, "name", None) or type(layer).__name__


def _call(layer: Callable, x: Any, train: bool) -> Any:
    if not isinstance(layer, nn.Module):
        return layer(x)
    names = _call_parameters(type(layer))
    if "train" in names:
        return layer(x, train=train)
    for name in ("deterministic", "use_running_average"):
        if name in names and getattr(layer, name, None) is None:
            return layer(x, **{name: not train})
    return layer(x)


_SIGNATURES: dict[type, frozenset] = {}


def _call_parameters(kind: type) -> frozenset:
    if kind not in _SIGNATURES:
        _SIGNATURES[kind] = frozenset(inspect.signature(kind.__call__).parameters)
    return _SIGNATURES[kind]
