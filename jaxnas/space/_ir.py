"""The compiled form of a space: decision slots, the gates that activate them, and IR nodes.

`expand` (in `_expand.py`) turns the user's space into a `Compiled`: one `Slot` per
independent decision, the `Gate`s that say when each slot is active, and a tree of IR nodes
that mirrors the space with slots in place of parameters. The resolver walks that tree to
turn a concrete config back into the user's pytree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxnas.space._parameters import Fidelity, Parameter

ROOT_GATE = 0  # always on
NEVER_GATE = 1  # intermediates (`_name`) are active only where something refers to them


class _Infeasible:
    """Marks a subtree that cannot be built within `max_depth`."""

    def __repr__(self) -> str:
        return "INFEASIBLE"


INFEASIBLE = _Infeasible()


@dataclasses.dataclass(eq=False)
class ConstantNode:
    """A value written in the space as is."""

    value: Any


@dataclasses.dataclass(eq=False)
class SlotNode:
    """A `Float` or `Integer` decision: the value of slot `slot`."""

    slot: int


@dataclasses.dataclass(eq=False)
class ChoiceNode:
    """A `Categorical` decision: the branch that slot `slot` picks."""

    slot: int
    branches: list  # a node per choice, INFEASIBLE where the choice cannot terminate


@dataclasses.dataclass(eq=False)
class OperationNode:
    """An `Operation`: an operator applied to resolved arguments."""

    path: str
    operator: Any
    args: Any  # a node resolving to a tuple (or a single value, wrapped at resolve time)
    kwargs: dict


@dataclasses.dataclass(eq=False)
class SequenceNode:
    """A tuple, list or named tuple of nodes."""

    kind: type
    items: list


@dataclasses.dataclass(eq=False)
class MappingNode:
    """A dict or `Space` of nodes (keys starting with `_` are dropped when resolved)."""

    keys: list
    items: list


@dataclasses.dataclass(eq=False)
class DynamicNode:
    """A `Dynamic`: a function evaluated on its resolved keyword arguments."""

    path: str
    fn: Any
    kwargs: dict


@dataclasses.dataclass(eq=False)
class RefNode:
    """A reference to a recursive rule in a space compiled with `max_nodes`: site `site`
    of the derivation, which resolves to the instance of `rule`'s pool that the
    derivation gives it (`Pools`)."""

    site: int
    rule: str


@dataclasses.dataclass(eq=False)
class FidelityNode:
    """The space's fidelity entry, set by the optimiser rather than sampled."""

    path: str
    fidelity: Fidelity


@dataclasses.dataclass
class Slot:
    """One decision: where it is, what it samples, and the gate that activates it."""

    path: str
    param: Parameter  # the user's object (the source, for a resampled copy)
    kind: str  # "float" | "int" | "cat"
    gate: int
    static: bool
    feasible: tuple = ()  # categorical only: which choices can terminate


@dataclasses.dataclass
class Gate:
    """When slots are active: always ("root"), when a categorical picks one choice
    ("choice": slot `slot` is active and picked `choice`), when any of `refs` is on
    ("alias": an object shared by several places), or when the derivation uses instance
    `choice` of the pool of rule `rule`, number `slot` over all pools ("instance", in a
    space compiled with `max_nodes`)."""

    kind: str  # "root" | "choice" | "alias" | "instance"
    slot: int = -1
    choice: int = -1
    refs: list = dataclasses.field(default_factory=list)
    rule: str = ""


@dataclasses.dataclass
class Site:
    """Where a derivation refers to a recursive rule: `owner`, the global number of the
    pool instance whose body holds it (-1 outside every pool), and `gate`, when it is
    used within that body (the instance's own gate taken as on)."""

    rule: str
    owner: int
    gate: int
    in_op: bool = False  # inside an `Operation`: the instances it takes are structure


@dataclasses.dataclass(frozen=True)
class Pools:
    """The pools of a space compiled with `max_nodes`: each recursive rule's body
    expanded once per instance a derivation may use.

    Attributes:
        rules: the recursive rules' names, in the order their pools were made.
        instances: `(rule, index, gate, ir)` of every instance, by global number; `gate`
            is the instance's "instance" gate.
        sites: every `Site`, by number (a `RefNode`'s `site`).
        max_nodes: how many instances one derivation may use, over all rules.
    """

    rules: tuple
    instances: tuple
    sites: tuple
    max_nodes: int


@dataclasses.dataclass(frozen=True)
class Compiled:
    """Everything `SearchSpace` needs, produced by `expand`."""

    root: Any
    slots: tuple
    gates: tuple
    fidelity: FidelityNode | None
    entries: tuple  # top-level names, in order
    pools: Pools | None = None  # recursive rules' pools (`max_nodes`), else None


def walk(*roots: Any) -> Any:
    """Every node reachable from `roots`, each once, in no fixed order (an infeasible
    branch is skipped): an iterative walk, since grammars nest deeper than Python's
    recursion limit."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if id(node) in seen or node is INFEASIBLE:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, ChoiceNode):
            stack.extend(node.branches)
        elif isinstance(node, OperationNode):
            stack.extend((node.args, *node.kwargs.values()))
        elif isinstance(node, (SequenceNode, MappingNode)):
            stack.extend(node.items)
        elif isinstance(node, DynamicNode):
            stack.extend(node.kwargs.values())
