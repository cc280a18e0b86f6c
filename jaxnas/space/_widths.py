"""What a masked build may leave open: searched widths (`MaskedWidth`) and depths
(`MaskedDepth`).

A width is a slot used only as the `features` of width-maskable operators (those
`jaxnas.nn` registers: `nn.Dense`, `nn.Conv`). Configs that differ only in widths can share
one module built at the maximum widths, each member masking to its own.

A depth is a choice among `Sequential`s of one list of blocks and its prefixes (what
`jn.nn.Repeat` makes): configs that differ only in it can share one module holding the
longest list, each member running its own prefix (the blocks past it are skipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxnas.space import _registry
from jaxnas.space._ir import (
    INFEASIBLE,
    ChoiceNode,
    Compiled,
    DynamicNode,
    MappingNode,
    OperationNode,
    SequenceNode,
    SlotNode,
    walk,
)


@dataclasses.dataclass(frozen=True)
class MaskedWidth:
    """A searched width left open in a masked build: the config's value at `path`.

    `spec.resolve(config, masked=True)` puts one in place of each width (the `features` of a
    `nn.Dense` or `nn.Conv`) so that every config of a masked bucket resolves to the same
    module, built at `maximum`; the module reads the width from the config it is called with.

    Attributes:
        path: the width's slot.
        maximum: the largest width it can take (the parameter's upper bound).
        choices: for a `Categorical` of widths, the widths by index; None for an `Integer`.
    """

    path: str
    maximum: int
    choices: tuple[int, ...] | None = None

    def value(self, config: Mapping[str, Any]) -> jax.Array:
        """The active width in `config`, an int32 scalar (traced under jit and vmap)."""
        v = jnp.asarray(config[self.path], jnp.int32)
        if self.choices is not None:
            v = jnp.asarray(self.choices, jnp.int32)[v]
        return v


@dataclasses.dataclass(frozen=True)
class MaskedDepth:
    """A searched depth left open in a masked build: how many blocks of a sequence run.

    `spec.resolve(config, masked=True, build=False)` resolves a depth choice to the
    `Sequential` of its longest branch with `depth=MaskedDepth(...)` among its kwargs; the
    masked build runs the first `value(config)` blocks and skips the rest.

    Attributes:
        path: the choice's slot.
        lengths: the number of blocks each choice (by index) runs.
    """

    path: str
    lengths: tuple[int, ...]

    @property
    def minimum(self) -> int:
        """The blocks every choice runs."""
        return min(self.lengths)

    def value(self, config: Mapping[str, Any]) -> jax.Array:
        """The number of blocks `config` runs, an int32 scalar (traced under jit and vmap)."""
        index = jnp.asarray(config[self.path], jnp.int32)
        return jnp.asarray(self.lengths, jnp.int32)[index]


def depth_slots(compiled: Compiled, sequence: Any) -> dict[int, MaskedDepth]:
    """The categorical slots whose every choice node is a depth: `sequence` operations
    (jaxnas's `Sequential`) of one block list and its prefixes, at least two lengths.

    Every reference counts (a shared choice has several): a depth must sit inside an
    operation each time, not be a space entry itself (the module built from an entry is
    named after the chosen branch) nor be read by a `Dynamic` (it would get the open
    sequence, not the config's).
    """
    if sequence is None:
        return {}
    depths: dict[int, MaskedDepth] = {}
    refused: set[int] = set()
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(compiled.root, "entry")]
    while stack:
        node, where = stack.pop()  # where: "entry", "op" or "dynamic" (what reads it)
        if isinstance(node, ChoiceNode):  # every use is judged, seen before or not
            lengths = _prefix_lengths(node, sequence) if where == "op" else None
            if lengths is None:
                refused.add(node.slot)
            else:
                depths[node.slot] = MaskedDepth(compiled.slots[node.slot].path, lengths)
        if id(node) in seen or node is INFEASIBLE:
            continue
        seen.add(id(node))
        inner = "dynamic" if where == "dynamic" else "op"
        if isinstance(node, ChoiceNode):
            stack.extend((branch, inner) for branch in node.branches)
        elif isinstance(node, OperationNode):
            stack.extend((child, inner) for child in (node.args, *node.kwargs.values()))
        elif isinstance(node, SequenceNode):
            stack.extend((child, where) for child in node.items)
        elif isinstance(node, MappingNode):
            stack.extend((child, "dynamic" if where == "dynamic" else "entry")
                         for child in node.items)
        elif isinstance(node, DynamicNode):
            stack.extend((child, "dynamic") for child in node.kwargs.values())
    refused |= _pool_slots(compiled)
    return {slot: depth for slot, depth in depths.items() if slot not in refused}


def _pool_slots(compiled: Compiled) -> set[int]:
    """The slots that pool instances use (`max_nodes`): their widths and depths stay
    static, each derivation its own bucket."""
    if compiled.pools is None:
        return set()
    return {node.slot for node in walk(*(ir for *_, ir in compiled.pools.instances))
            if isinstance(node, (SlotNode, ChoiceNode))}


def _prefix_lengths(node: ChoiceNode, sequence: Any) -> tuple[int, ...] | None:
    """Each branch's block count if the branches are `sequence` ops of one block list's
    prefixes (the same nodes, by identity), else None."""
    lists = []
    for branch in node.branches:
        if not (isinstance(branch, OperationNode) and branch.operator is sequence
                and not branch.kwargs and isinstance(branch.args, SequenceNode)
                and len(branch.args.items) == 1
                and isinstance(branch.args.items[0], SequenceNode)):
            return None
        lists.append(branch.args.items[0].items)
    longest = max(lists, key=len)
    lengths = tuple(len(items) for items in lists)
    if min(lengths) < 1 or len(set(lengths)) < 2:
        return None
    if any(any(a is not b for a, b in zip(items, longest)) for items in lists):
        return None
    return lengths


def width_slots(compiled: Compiled) -> dict[int, MaskedWidth]:
    """The slots used only as `features` of maskable operators: what masking may open.

    Every reference to a slot is counted (a shared slot has several); a slot qualifies
    when each of them is the `features` argument of a maskable operation, it is not marked
    `static=True`, and its values are positive integers.
    """
    widths = {}
    in_pools = _pool_slots(compiled)
    for index, flags in sorted(_slot_uses(compiled).items()):
        slot = compiled.slots[index]
        if not all(flags) or getattr(slot.param, "static", None) or index in in_pools:
            continue
        if slot.kind == "int" and slot.param.lower >= 1:
            widths[index] = MaskedWidth(slot.path, int(slot.param.upper))
        elif slot.kind == "cat" and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1
                for c in slot.param.choices):
            choices = tuple(slot.param.choices)
            widths[index] = MaskedWidth(slot.path, max(choices), choices)
    return widths


def _slot_uses(compiled: Compiled) -> dict[int, list[bool]]:
    """For each slot, one flag per reference to it: whether that use is a `features`."""
    uses: dict[int, list[bool]] = {}
    seen: set[int] = set()
    stack = [compiled.root]

    def use(child: Any, is_width: bool) -> None:
        if isinstance(child, (SlotNode, ChoiceNode)):
            uses.setdefault(child.slot, []).append(is_width)
        stack.append(child)

    while stack:
        node = stack.pop()
        if id(node) in seen or node is INFEASIBLE:
            continue
        seen.add(id(node))
        if isinstance(node, ChoiceNode):
            for branch in node.branches:
                use(branch, False)
        elif isinstance(node, OperationNode):
            features = _features_node(node)
            args = node.args.items if isinstance(node.args, SequenceNode) else [node.args]
            for child in [*args, *node.kwargs.values()]:
                use(child, child is features)
        elif isinstance(node, SequenceNode):
            for child in node.items:
                use(child, False)
        elif isinstance(node, MappingNode):
            for key, child in zip(node.keys, node.items):
                if key.startswith("_"):  # an intermediate: counted where it is referenced
                    stack.append(child)
                else:
                    use(child, False)
        elif isinstance(node, DynamicNode):
            for child in node.kwargs.values():
                use(child, False)
    return uses


def _features_node(op: OperationNode) -> Any:
    """The node of a maskable operation's `features`, else None."""
    if not _registry.is_maskable(op.operator):
        return None
    if "features" in op.kwargs:
        return op.kwargs["features"]
    if isinstance(op.args, SequenceNode):
        return op.args.items[0] if op.args.items else None
    return op.args
