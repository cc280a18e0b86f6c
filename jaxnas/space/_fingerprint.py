"""The structural key of a compiled space: what `SearchSpace` equality and hashing use."""

from __future__ import annotations

from typing import Any

from jaxnas.space._ir import (
    INFEASIBLE,
    ChoiceNode,
    Compiled,
    ConstantNode,
    DynamicNode,
    FidelityNode,
    MappingNode,
    OperationNode,
    RefNode,
    SequenceNode,
    SlotNode,
)


def fingerprint(compiled: Compiled, max_depth: int, max_nodes: int | None = None) -> tuple:
    """A structural key: equal for spaces that sample, encode and resolve identically."""
    slots = tuple(
        (s.path, s.kind, s.gate, s.static, s.feasible, repr(s.param)) for s in compiled.slots
    )
    gates = tuple((g.kind, g.slot, g.choice, tuple(g.refs), g.rule) for g in compiled.gates)
    pools = compiled.pools
    if pools is None:
        return (max_depth, slots, gates, _structure(compiled.root))
    sites = tuple((s.rule, s.owner, s.gate, s.in_op) for s in pools.sites)
    bodies = tuple(_structure(ir) for *_, ir in pools.instances)
    return (max_depth, max_nodes, slots, gates, _structure(compiled.root), sites, bodies)


def _structure(root: Any) -> tuple:
    """The IR's structure, with sharing and callables by identity."""
    numbering: dict[int, int] = {}
    parts: list = []
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in numbering:
            parts.append(("ref", numbering[id(node)]))
            continue
        numbering[id(node)] = len(numbering)
        if isinstance(node, ConstantNode):
            parts.append(("const", _constant_key(node.value)))
        elif isinstance(node, (SlotNode, ChoiceNode)):
            parts.append((type(node).__name__, node.slot))
            if isinstance(node, ChoiceNode):
                stack.extend(b for b in node.branches if b is not INFEASIBLE)
        elif isinstance(node, OperationNode):
            parts.append(("op", id(node.operator), tuple(node.kwargs)))
            stack.append(node.args)
            stack.extend(node.kwargs.values())
        elif isinstance(node, DynamicNode):
            parts.append(("dyn", id(node.fn), tuple(node.kwargs)))
            stack.extend(node.kwargs.values())
        elif isinstance(node, (SequenceNode, MappingNode)):
            parts.append((type(node).__name__,
                          tuple(node.keys) if isinstance(node, MappingNode) else node.kind))
            stack.extend(node.items)
        elif isinstance(node, RefNode):
            parts.append(("rule", node.site, node.rule))
        elif isinstance(node, FidelityNode):
            parts.append(("fid", node.path, repr(node.fidelity)))
    return tuple(parts)


def _constant_key(value: Any) -> Any:
    """A constant's key: its value where hashable; a list, tuple or dict (a `Constant` of
    one) by its items, so that equal spaces built from fresh lists are equal; anything
    else unhashable by identity."""
    try:
        hash(value)
    except TypeError:
        if isinstance(value, (list, tuple)):
            return (type(value), tuple(_constant_key(v) for v in value))
        if isinstance(value, dict):
            return (dict, tuple((k, _constant_key(v)) for k, v in value.items()))
        return ("unhashable", id(value))
    return (type(value), value)
