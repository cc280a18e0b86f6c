"""The expander: walks a space pytree once and produces its slots, gates and IR.

Walking the space in definition order, it produces

* **slots**: one per independent decision (a `Float`, `Integer` or `Categorical` instance
  after resampling is unrolled), each with the readable path of its first occurrence;
* **gates**: boolean conditions that say when a slot is active. A gate is the root (always
  on), a choice (categorical slot `c` is active and picked choice `i`), or an alias (any of
  several gates: a shared object referenced from several places);
* an **IR tree** that mirrors the space with slots in place of parameters, used to resolve
  a concrete config back into the user's pytree.

Sharing follows NePS: every object is expanded once and shared by identity, except
`Resampled`, which expands a fresh copy of its source each time it is met. Recursion via
`ByName(...).resample()` is unrolled until a rule has been resampled `max_depth` times
inside itself; deeper copies are infeasible, and a choice that needs an infeasible copy gets
probability zero (its slots are rolled back so the config stays small).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from jaxnas.space._ir import (
    INFEASIBLE,
    NEVER_GATE,
    ROOT_GATE,
    ChoiceNode,
    Compiled,
    ConstantNode,
    DynamicNode,
    FidelityNode,
    Gate,
    MappingNode,
    OperationNode,
    Pools,
    RefNode,
    SequenceNode,
    Site,
    Slot,
    SlotNode,
    walk,
)
from jaxnas.space._parameters import (
    ByName,
    Categorical,
    Constant,
    Dynamic,
    Fidelity,
    Float,
    Integer,
    Operation,
    Parameter,
    Resampled,
)
from jaxnas.space._space import Space


class SpaceError(ValueError):
    """A space that cannot be compiled; the message names the path and the rule."""




class _Context:
    __slots__ = ("gate", "in_op", "direct", "where")

    def __init__(self, gate: int, in_op: bool, direct: bool, where: str = ""):
        self.gate, self.in_op, self.direct, self.where = gate, in_op, direct, where

    def under(self, *, gate: int | None = None, in_op: bool | None = None,
              where: str | None = None) -> _Context:
        return _Context(
            self.gate if gate is None else gate,
            self.in_op if in_op is None else in_op,
            False,
            self.where if where is None else where,
        )


class _Expander:
    """One expansion of one space (see the module docstring); `run` gives the result."""

    def __init__(self, root: Any, max_depth: int, max_slots: int,
                 max_nodes: int | None = None):
        self.root = root
        self.max_depth = max_depth
        self.max_slots = max_slots
        self.max_nodes = max_nodes
        self.entries = dict(root) if isinstance(root, Mapping) else {}
        # With a node budget, the recursive rules get pools (see `_build_pools`): their
        # values' ids, the references made so far, and the instances built.
        self.recursive = (_recursive_rules(self.entries) if max_nodes is not None else {})
        self.sites: list[Site] = []
        self.instances: list[tuple] = []  # (rule, index, gate, ir)
        self.owner = -1  # the instance whose body is being expanded
        self.holds_sites: set[int] = set()  # shared values that refer to recursive rules
        self.body: int | None = None  # id of the rule value expanded as a body, not a ref
        self.slots: list[Slot] = []
        self.gates: list[Gate] = [Gate("root"), Gate("alias")]  # root, never
        self.cache: dict[int, tuple[Any, Any, int, str]] = {}  # id -> (obj, ir, alias, path)
        self.in_progress: dict[int, str] = {}
        self.rule_stack: list[int] = []
        self.journal: list = []
        self.fidelity: FidelityNode | None = None
        self.steps = 0

    # -- transactions: a choice that turns out infeasible leaves no trace.

    def _mark(self) -> tuple[int, int, int, int]:
        return len(self.slots), len(self.gates), len(self.journal), len(self.sites)

    def _rollback(self, mark: tuple[int, int, int, int]) -> None:
        n_slots, n_gates, n_journal, n_sites = mark
        while len(self.journal) > n_journal:
            self.journal.pop()()
        del self.slots[n_slots:]
        del self.gates[n_gates:]
        del self.sites[n_sites:]

    # -- entry points

    def run(self) -> Compiled:
        ir = self.expand(self.root, "", _Context(ROOT_GATE, False, True))
        if ir is INFEASIBLE:
            raise SpaceError(self._termination_message())
        pools = self._build_pools() if self.sites else None
        seen: set[str] = set()
        for slot in self.slots:
            if slot.path in seen:
                raise SpaceError(
                    f"{slot.path}: two decisions have this path (a key containing '.' or "
                    f"'[' collides with a nested entry); rename one of them."
                )
            seen.add(slot.path)
        entries = tuple(self.entries) if isinstance(self.root, Mapping) else ()
        return Compiled(ir, tuple(self.slots), tuple(self.gates), self.fidelity, entries,
                        pools)

    def expand(self, obj: Any, path: str, ctx: _Context) -> Any:
        self.steps += 1
        if self.steps > 50 * self.max_slots:
            raise SpaceError(self._size_message())
        if isinstance(obj, Constant):
            return ConstantNode(obj.value)
        if isinstance(obj, Resampled):
            source = obj.source
            if isinstance(source, ByName):
                source = self._lookup(source, path)
            return self._expand_fresh(source, path, ctx)
        if isinstance(obj, ByName):
            target = self._lookup(obj, path)
            if id(target) not in self.cache and id(target) not in self.in_progress:
                # A forward reference: expand the entry at its own path, as the entry would be.
                return self._expand_shared(target, obj.name, ctx)
            return self._expand_shared(target, path, ctx, reference=obj)
        if isinstance(obj, Fidelity):
            return self._expand_fidelity(obj, path, ctx)
        if isinstance(obj, Dynamic):
            # A Dynamic decides nothing itself: it is evaluated afresh wherever it is used,
            # and its inputs are shared or resampled exactly as they are written.
            return self._expand_new(obj, path, ctx)
        if isinstance(obj, Parameter):
            return self._expand_shared(obj, path, ctx)
        if isinstance(obj, (Mapping, Space)):
            return self._expand_mapping(obj, path, ctx)
        if isinstance(obj, (tuple, list)):
            items = []
            for i, item in enumerate(obj):
                ir = self.expand(item, f"{path}[{i}]", ctx)
                if ir is INFEASIBLE:
                    return INFEASIBLE
                items.append(ir)
            return SequenceNode(type(obj), items)
        return ConstantNode(obj)

    def _expand_mapping(self, obj: Mapping, path: str, ctx: _Context) -> Any:
        keys, items = [], []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise SpaceError(f"{path or 'space'}: keys must be strings, got {key!r}.")
            child = f"{path}.{key}" if path else key
            if not ctx.in_op:
                _refuse_bare_range_or_choice(value, child)
            child_ctx = ctx if ctx.direct else ctx.under()
            if key.startswith("_"):
                child_ctx = _Context(NEVER_GATE, ctx.in_op, ctx.direct, ctx.where)
            ir = self.expand(value, child, child_ctx)
            if ir is INFEASIBLE:
                return INFEASIBLE
            keys.append(key)
            items.append(ir)
        return MappingNode(keys, items)

    def _lookup(self, ref: ByName, path: str) -> Any:
        if ref.name not in self.entries:
            available = ", ".join(repr(k) for k in self.entries) or "none"
            raise SpaceError(
                f"{path}: ByName({ref.name!r}) refers to no entry of the space "
                f"(top-level entries: {available})."
            )
        target = self.entries[ref.name]
        if isinstance(target, Fidelity):
            raise SpaceError(
                f"{path}: ByName({ref.name!r}) refers to a fidelity; the optimiser sets the "
                f"fidelity, so it cannot be used inside other parameters."
            )
        return target

    def _expand_shared(self, obj: Parameter, path: str, ctx: _Context,
                       reference: ByName | None = None) -> Any:
        key = id(obj)
        if key in self.in_progress:
            what = f"ByName({reference.name!r})" if reference else repr(obj)
            raise SpaceError(
                f"{path}: {what} refers to {self.in_progress[key]!r}, which contains it: a "
                f"value cannot contain itself. Use .resample() for a recursive rule."
            )
        if key in self.cache:
            _, ir, alias, _ = self.cache[key]
            if ir is INFEASIBLE:
                return INFEASIBLE
            if self.owner >= 0 and (key in self.holds_sites or isinstance(ir, RefNode)):
                raise SpaceError(self._shared_reference_message(obj, path))
            refs = self.gates[alias].refs
            refs.append(ctx.gate)
            self.journal.append(refs.pop)
            if ctx.in_op:
                self._mark_static(ir)
            return ir
        alias = len(self.gates)
        self.gates.append(Gate("alias", refs=[ctx.gate]))
        self.in_progress[key] = path
        sites = len(self.sites)
        try:
            ir = self._expand_new(obj, path, ctx.under(gate=alias))
        finally:
            del self.in_progress[key]
        if len(self.sites) > sites and not isinstance(ir, RefNode):
            # A shared value that refers to a recursive rule: one derivation for all
            # who share it, which a rule's instances cannot be.
            if self.owner >= 0:
                raise SpaceError(self._shared_reference_message(obj, path))
            self.holds_sites.add(key)
        self.cache[key] = (obj, ir, alias, path)
        self.journal.append(lambda: self.cache.pop(key, None))
        return ir

    def _expand_fresh(self, source: Parameter, path: str, ctx: _Context) -> Any:
        key = id(source)
        if self.rule_stack.count(key) >= self.max_depth:
            return INFEASIBLE
        self.rule_stack.append(key)
        try:
            return self._expand_new(source, path, ctx.under())
        finally:
            self.rule_stack.pop()

    def _expand_new(self, obj: Parameter, path: str, ctx: _Context) -> Any:
        if id(obj) in self.recursive and self.body != id(obj):
            # A recursive rule, with a node budget: a reference that the derivation
            # gives one of the rule's pool instances, not a copy unrolled here.
            self.sites.append(Site(self.recursive[id(obj)], self.owner, ctx.gate, ctx.in_op))
            return RefNode(len(self.sites) - 1, self.recursive[id(obj)])
        self.body = None
        if isinstance(obj, (Float, Integer)):
            kind = "int" if isinstance(obj, Integer) else "float"
            return SlotNode(self._new_slot(path, obj, kind, ctx, static=obj.static or ctx.in_op))
        if isinstance(obj, Categorical):
            return self._expand_categorical(obj, path, ctx)
        if isinstance(obj, Operation):
            return self._expand_operation(obj, path, ctx)
        if isinstance(obj, Dynamic):
            kwargs = {}
            for name, value in obj.params.items():
                ir = self.expand(value, f"{path}.{name}", ctx.under(where="a Dynamic"))
                if ir is INFEASIBLE:
                    return INFEASIBLE
                kwargs[name] = ir
            return DynamicNode(path, obj.fn, kwargs)
        raise SpaceError(f"{path}: cannot expand {obj!r}.")  # pragma: no cover

    def _new_slot(self, path: str, obj: Parameter, kind: str, ctx: _Context, *,
                  static: bool) -> int:
        if len(self.slots) >= self.max_slots:
            raise SpaceError(self._size_message())
        self.slots.append(Slot(path or "value", obj, kind, ctx.gate, static))
        return len(self.slots) - 1

    def _expand_categorical(self, obj: Categorical, path: str, ctx: _Context) -> Any:
        plain_numbers = all(isinstance(c, numbers.Real) for c in obj.choices)
        static = obj.static if obj.static is not None else not plain_numbers
        slot = self._new_slot(path, obj, "cat", ctx, static=static or ctx.in_op)
        branches = []
        for i, choice in enumerate(obj.choices):
            mark = self._mark()
            gate = len(self.gates)
            self.gates.append(Gate("choice", slot=slot, choice=i))
            ir = self.expand(choice, f"{path}.choices[{i}]",
                             ctx.under(gate=gate, where="a Categorical"))
            if ir is INFEASIBLE:
                self._rollback(mark)
            branches.append(ir)
        feasible = tuple(ir is not INFEASIBLE for ir in branches)
        if not any(feasible):
            return INFEASIBLE
        self.slots[slot].feasible = feasible
        return ChoiceNode(slot, branches)

    def _expand_operation(self, obj: Operation, path: str, ctx: _Context) -> Any:
        inner = ctx.under(in_op=True, where="an Operation")
        args = self.expand(obj.args, f"{path}.args", inner)
        if args is INFEASIBLE:
            return INFEASIBLE
        kwargs = {}
        for name, value in obj.kwargs.items():
            ir = self.expand(value, f"{path}.kwargs.{name}", inner)
            if ir is INFEASIBLE:
                return INFEASIBLE
            kwargs[name] = ir
        return OperationNode(path, obj.operator, args, kwargs)

    def _expand_fidelity(self, obj: Fidelity, path: str, ctx: _Context) -> Any:
        if not ctx.direct:
            raise SpaceError(
                f"{path}: {obj!r} is nested inside {ctx.where or 'another parameter'}; a "
                f"fidelity must be a direct entry of the space (the optimiser sets it)."
            )
        if self.fidelity is not None:
            if self.fidelity.fidelity is obj:
                raise SpaceError(
                    f"{path}: {obj!r} is used twice (also at {self.fidelity.path!r}); a "
                    f"fidelity may appear once."
                )
            raise SpaceError(
                f"{path}: a second fidelity {obj!r} (the first is at "
                f"{self.fidelity.path!r}); a space has at most one fidelity."
            )
        self.fidelity = FidelityNode(path, obj)
        return self.fidelity

    def _mark_static(self, ir: Any) -> None:
        for node in walk(ir):
            if isinstance(node, (SlotNode, ChoiceNode)):
                slot = self.slots[node.slot]
                if not slot.static:
                    slot.static = True
                    self.journal.append(lambda s=slot: setattr(s, "static", False))

    # -- pools (a node budget: `max_nodes`)

    def _build_pools(self) -> Pools:
        """Expands each referenced recursive rule's value once per instance a derivation
        may use (`max_nodes` of them, named `rule#k`), each under a gate of its own that
        the derivation sets; the references inside a body are sites of their own, owned
        by the instance. Rules referenced only from other rules' bodies get pools too."""
        rules: list[str] = []
        spans = []  # (rule, first slot, end slot) of each instance
        while True:
            pending = [site.rule for site in self.sites if site.rule not in rules]
            if not pending:
                break
            rule = pending[0]
            rules.append(rule)
            self._check_budget(rule)
            value = self.entries[rule]
            for k in range(self.max_nodes):
                gate = len(self.gates)
                self.gates.append(Gate("instance", slot=len(self.instances), choice=k,
                                       rule=rule))
                self.owner, self.body = len(self.instances), id(value)
                first = len(self.slots)
                ir = self._expand_new(value, f"{rule}#{k}",
                                      _Context(gate, False, False, "a rule instance"))
                self.instances.append((rule, k, gate, ir))
                spans.append((rule, first, len(self.slots)))
        self.owner = -1
        # A rule used inside an operation is structure wherever its instances are.
        static = {site.rule for site in self.sites if site.in_op}
        for rule, first, last in spans:
            if rule in static:
                for slot in self.slots[first:last]:
                    slot.static = True
        return Pools(tuple(rules), tuple(self.instances), tuple(self.sites), self.max_nodes)

    def _check_budget(self, rule: str) -> None:
        """Refuses a rule whose smallest derivation needs more instances than the budget."""
        smallest = _smallest_derivations(self.entries, self.recursive)
        need = smallest.get(rule, math.inf)
        if need == math.inf:
            raise SpaceError(self._termination_message())
        if need > self.max_nodes:
            raise SpaceError(
                f"{rule}: the smallest derivation of the recursive rule needs {need} rule "
                f"instances, more than max_nodes={self.max_nodes}; raise max_nodes.")

    # -- messages

    def _shared_reference_message(self, obj: Any, path: str) -> str:
        rules = sorted({site.rule for site in self.sites}) or ["a recursive rule"]
        return (
            f"{path}: {obj!r} is shared (not resampled) by every instance of the recursive "
            f"rule that contains it, but refers to {', '.join(repr(r) for r in rules)} "
            f"itself: a value cannot contain itself. Use .resample() on it, as for a "
            f"recursive rule.")

    def _size_message(self) -> str:
        return (
            f"The space unrolls to more than max_slots={self.max_slots} decisions (or takes "
            f"more than {50 * self.max_slots} expansion steps). For recursive rules, give "
            f"them a node budget instead of unrolling them: jaxnas.compile(space, "
            f"max_nodes=64), whose decisions grow with the budget, not exponentially with "
            f"the depth. Otherwise lower max_depth (now {self.max_depth}) to unroll "
            f"recursive rules less deeply, use fewer .resample() copies, or raise max_slots "
            f"in jaxnas.compile."
        )

    def _termination_message(self) -> str:
        never = _non_terminating_entries(self.entries)
        if never:
            return (
                f"The grammar cannot terminate: rule(s) {', '.join(repr(n) for n in never)} "
                f"have no choice that ends without referring to themselves again. Add a "
                f"choice without the recursive reference."
            )
        return (
            f"No configuration of the space terminates within max_depth={self.max_depth}: "
            f"every choice needs deeper recursion. Raise max_depth."
        )


def _refuse_bare_range_or_choice(value: Any, path: str) -> None:
    """A space entry that is a bare tuple or list read as a range (two ascending numbers)
    or a choice (several strings) is an error that names the parameter meant: jaxnas would
    keep it as a constant, and a search that never varies it is a silent surprise."""
    if not isinstance(value, (tuple, list)) or len(value) < 2:
        return
    kind = "tuple" if isinstance(value, tuple) else "list"
    numbers_ = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    if numbers_ and len(value) == 2 and value[0] < value[1]:
        lower, upper = value
        whole = all(isinstance(v, numbers.Integral) for v in value)
        meant = f"jn.{'Integer' if whole else 'Float'}({lower!r}, {upper!r}"
        if lower > 0 and upper / lower >= 100:
            meant += ", log=True"
        meant += ")"
        what = "a range to search"
    elif all(isinstance(v, str) for v in value) and len(set(value)) == len(value):
        meant, what = f"jn.Categorical({list(value)!r})", "a choice to search"
    else:
        return
    raise SpaceError(
        f"{path}: the bare {kind} {value!r} would be a constant, never searched. For "
        f"{what} write {meant}; to keep the {kind} as a constant, write "
        f"jn.Constant({value!r}).")


def _non_terminating_entries(entries: Mapping[str, Any]) -> list[str]:
    """Names of entries that cannot produce a finite value at any depth (CFG productivity)."""
    productive: set[str] = set()

    def check(obj: Any) -> bool:
        if isinstance(obj, Resampled):
            return check(obj.source)
        if isinstance(obj, ByName):
            return obj.name in productive
        if isinstance(obj, Categorical):
            return any(check(c) for c in obj.choices)
        if isinstance(obj, Operation):
            return check(obj.args) and all(check(v) for v in obj.kwargs.values())
        if isinstance(obj, Dynamic):
            return all(check(v) for v in obj.params.values())
        if isinstance(obj, (Mapping, Space)):
            return all(check(v) for v in obj.values())
        if isinstance(obj, (tuple, list)):
            return all(check(v) for v in obj)
        return True

    changed = True
    while changed:
        changed = False
        for name, value in entries.items():
            if name not in productive and check(value):
                productive.add(name)
                changed = True
    return [name for name in entries if name not in productive]


def _references(obj: Any, found: set[str], seen: set[int]) -> None:
    """Adds to `found` the entries `obj` refers to by name (`ByName`, resampled or not),
    looking through parameters, operations and containers but not into those entries."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Resampled):
        obj = obj.source
    if isinstance(obj, ByName):
        found.add(obj.name)
    elif isinstance(obj, Categorical):
        for choice in obj.choices:
            _references(choice, found, seen)
    elif isinstance(obj, Operation):
        _references(obj.args, found, seen)
        for value in obj.kwargs.values():
            _references(value, found, seen)
    elif isinstance(obj, Dynamic):
        for value in obj.params.values():
            _references(value, found, seen)
    elif isinstance(obj, (Mapping, Space)):
        for value in obj.values():
            _references(value, found, seen)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _references(item, found, seen)


def _recursive_rules(entries: Mapping[str, Any]) -> dict[int, str]:
    """`{id(value): name}` of the entries that refer to themselves through a chain of
    `ByName` references (the rules a node budget gives pools)."""
    graph = {}
    for name, value in entries.items():
        found: set[str] = set()
        _references(value, found, set())
        graph[name] = found & set(entries)
    recursive = {}
    for name in entries:
        stack, reached = list(graph[name]), set()
        while stack:
            other = stack.pop()
            if other not in reached:
                reached.add(other)
                stack.extend(graph[other])
        if name in reached and isinstance(entries[name], Parameter):
            recursive[id(entries[name])] = name
    return recursive


def _smallest_derivations(entries: Mapping[str, Any],
                          recursive: Mapping[int, str]) -> dict[str, float]:
    """The fewest rule instances a derivation from each recursive rule uses (itself
    included), by fixed-point iteration over its cheapest choices (inf: none ends)."""
    rules = {name: entries[name] for name in recursive.values()}
    smallest = dict.fromkeys(rules, math.inf)

    def cost(obj: Any, top: bool = False) -> float:
        if isinstance(obj, Resampled):
            obj = obj.source
        if isinstance(obj, ByName):
            obj = entries.get(obj.name)
        if id(obj) in recursive and not top:
            return smallest[recursive[id(obj)]]
        if isinstance(obj, Categorical):
            return min(cost(c) for c in obj.choices)
        if isinstance(obj, Operation):
            return cost(obj.args) + sum(cost(v) for v in obj.kwargs.values())
        if isinstance(obj, Dynamic):
            return sum(cost(v) for v in obj.params.values())
        if isinstance(obj, (Mapping, Space)):
            return sum(cost(v) for v in obj.values())
        if isinstance(obj, (tuple, list)):
            return sum(cost(v) for v in obj)
        return 0.0

    changed = True
    while changed:  # the sizes only fall, in whole steps, so this ends
        changed = False
        for name, value in rules.items():
            new = 1 + cost(value, top=True)
            if new < smallest[name]:
                smallest[name], changed = new, True
    return {name: (int(v) if math.isfinite(v) else v) for name, v in smallest.items()}


def expand(space: Any, *, max_depth: int, max_slots: int,
           max_nodes: int | None = None) -> Compiled:
    """Expands a space pytree into slots, gates and IR (see the module docstring)."""
    return _Expander(space, max_depth, max_slots, max_nodes).run()
