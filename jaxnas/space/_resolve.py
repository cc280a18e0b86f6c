"""Resolving: one concrete config turned back into the user's pytree, operations built.

An operation whose operator is a module class (as `jaxnas.nn` registers it) is built into
one module by the registered builder (`jaxnas.nn.build`); any other class is instantiated
with its arguments; a function operator becomes a `functools.partial`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jaxnas.space import _registry
from jaxnas.space._ir import (
    INFEASIBLE,
    ChoiceNode,
    ConstantNode,
    DynamicNode,
    FidelityNode,
    MappingNode,
    OperationNode,
    RefNode,
    SequenceNode,
    Slot,
    SlotNode,
)
from jaxnas.space._parameters import Operation
from jaxnas.space._widths import MaskedDepth, MaskedWidth


class Resolver:
    """Resolves the IR of one config; shared nodes resolve to one Python object."""

    def __init__(self, slots: Sequence[Slot], values: Mapping[str, Any], fidelity: Any,
                 build: bool, widths: Mapping[int, MaskedWidth],
                 depths: Mapping[int, MaskedDepth] | None = None,
                 derived: tuple | None = None):
        self.slots, self.values, self.fidelity, self.build = slots, values, fidelity, build
        self.widths = widths  # {slot: MaskedWidth} left open in a masked resolve
        self.depths = depths or {}  # {slot: MaskedDepth} left open likewise
        # With pools: (the instances, the instance each reference takes).
        self.derived = derived
        self.memo: dict[int, Any] = {}

    def resolve(self, node: Any) -> Any:
        key = id(node)
        if key not in self.memo:
            self.memo[key] = self._resolve(node)
        return self.memo[key]

    def _value(self, slot: int) -> Any:
        if slot in self.widths:
            return self.widths[slot]
        s = self.slots[slot]
        v = self.values[s.path]
        return float(v) if s.kind == "float" else int(v)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, ConstantNode):
            return node.value
        if isinstance(node, SlotNode):
            return self._value(node.slot)
        if isinstance(node, ChoiceNode):
            return self._choice(node)
        if isinstance(node, SequenceNode):
            items = [self.resolve(item) for item in node.items]
            return node.kind(*items) if _is_namedtuple(node.kind) else node.kind(items)
        if isinstance(node, MappingNode):
            return {k: self.resolve(v) for k, v in zip(node.keys, node.items)
                    if not k.startswith("_")}
        if isinstance(node, FidelityNode):
            return self.fidelity
        if isinstance(node, DynamicNode):
            kwargs = {k: self.resolve(v) for k, v in node.kwargs.items()}
            try:
                return node.fn(**kwargs)
            except Exception as error:
                raise type(error)(f"{node.path}: Dynamic function failed on {kwargs}: "
                                  f"{error}") from error
        if isinstance(node, OperationNode):
            return self._operation(node)
        if isinstance(node, RefNode):
            instances, child = self.derived
            return self.resolve(instances[child[node.site]][3])
        raise TypeError(f"cannot resolve {node!r}")  # pragma: no cover

    def _choice(self, node: ChoiceNode) -> Any:
        if node.slot in self.widths:
            return self.widths[node.slot]
        if node.slot in self.depths:
            return self._open_depth(node)
        index = self._value(node.slot)
        branch = node.branches[index]
        if branch is INFEASIBLE:
            raise ValueError(
                f"{self.slots[node.slot].path}: choice {index} cannot terminate within "
                f"max_depth and has probability zero; the config is not from this space."
            )
        return self.resolve(branch)

    def _open_depth(self, node: ChoiceNode) -> Any:
        """The longest branch's `Sequential`, told which prefix to run (`MaskedDepth`)."""
        depth = self.depths[node.slot]
        longest = node.branches[depth.lengths.index(max(depth.lengths))]
        unbuilt = Resolver(self.slots, self.values, self.fidelity, False, self.widths,
                           self.depths, self.derived)
        sequence = unbuilt.resolve(longest)
        op = Operation(sequence.operator, sequence.args, {"depth": depth}, name=sequence.name)
        return _registry.build(op) if self.build else op

    def _operation(self, node: OperationNode) -> Any:
        args = self.resolve(node.args)
        args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
        kwargs = {k: self.resolve(v) for k, v in node.kwargs.items()}
        if not self.build:
            return Operation(node.operator, args, kwargs, name=node.path)
        if _registry.is_module(node.operator):
            unbuilt = Resolver(self.slots, self.values, self.fidelity, False, self.widths,
                               self.depths, self.derived)
            return _registry.build(unbuilt.resolve(node))
        return _build_operation(node.path, node.operator, args, kwargs)


def _build_operation(path: str, operator: Callable, args: tuple, kwargs: dict) -> Any:
    """Instantiates a class operator; wraps a function operator in `functools.partial`."""
    if not isinstance(operator, type):
        return functools.partial(operator, *args, **kwargs) if args or kwargs else operator
    try:
        return operator(*args, **kwargs)
    except TypeError as error:
        raise TypeError(
            f"{path}: {operator.__qualname__} rejected its arguments args={args!r}, "
            f"kwargs={kwargs!r}: {error}"
        ) from error


def _is_namedtuple(kind: type) -> bool:
    return issubclass(kind, tuple) and hasattr(kind, "_fields")
