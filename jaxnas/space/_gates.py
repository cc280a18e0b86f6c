"""Gates compiled into tables, and evaluated to say which slots a config uses.

`expand` records gates as a graph: the root, a choice (categorical slot `s` is active and
picked choice `i`) and aliases (any of several gates, for an object shared by several
places). Compiling collapses alias chains into canonical conditions, numbers the distinct
ones in a compact table, and counts the propagation rounds the longest chain needs; evaluating
runs that many rounds of gathers and scatters on the categorical indices (pure, jittable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.space._ir import Compiled, Gate

# Canonical conditions: "root", "never", ("choice", slot, i), or a frozenset of choices.
_Condition = Any


def _canonical(gates: Sequence[Gate]) -> Callable[[int], _Condition]:
    """A function from a gate to its canonical condition (alias chains collapsed)."""
    canonical: dict[int, _Condition] = {}

    def condition(g: int) -> _Condition:
        if g in canonical:
            return canonical[g]
        gate = gates[g]
        if gate.kind == "root":
            out: _Condition = "root"
        elif gate.kind == "instance":
            out = ("instance", gate.slot)
        elif gate.kind == "choice":
            out = ("choice", gate.slot, gate.choice)
        else:
            refs: set = set()
            for r in gate.refs:
                c = condition(r)
                if c == "root":
                    refs = {"root"}
                    break
                if c != "never":
                    refs |= c if isinstance(c, frozenset) else {c}
            out = ("root" if "root" in refs else "never" if not refs else
                   next(iter(refs)) if len(refs) == 1 else frozenset(refs))
        canonical[g] = out
        return out

    return condition


def _longest_chains(n_gates: int, deps: dict[int, list[int]]) -> list[int]:
    """Length of the longest dependency chain below each gate (root and never: 0)."""
    level: dict[int, int] = {0: 0, 1: 0}
    for start in range(n_gates):
        stack = [start]
        while stack:  # iterative DFS: grammars can nest deeper than Python's recursion limit
            g = stack[-1]
            if g in level:
                stack.pop()
                continue
            pending = [d for d in deps[g] if d not in level]
            if pending:
                stack.extend(pending)
            else:
                level[g] = 1 + max((level[d] for d in deps[g]), default=-1)
                stack.pop()
    return [level[g] for g in range(n_gates)]


class _CompactTable:
    """Numbers distinct conditions: 0 = root, 1 = never, then choice and alias gates."""

    def __init__(self):
        self.number: dict[_Condition, int] = {"root": 0, "never": 1}  # never stays off
        self.size = 2
        self.choices: list[tuple[int, int, int]] = []  # (gate, slot, choice)
        self.aliases: list[tuple[int, list[int]]] = []  # (gate, member gates)
        self.instances: list[tuple[int, int]] = []  # (gate, pool instance)

    def index(self, c: _Condition) -> int:
        if c in self.number:
            return self.number[c]
        if isinstance(c, frozenset):
            members = [self.index(m) for m in sorted(c, key=repr)]
            self.number[c] = self.size
            self.aliases.append((self.size, members))
        elif c[0] == "instance":
            self.number[c] = self.size
            self.instances.append((self.size, c[1]))
        else:
            self.number[c] = self.size
            self.choices.append((self.size, c[1], c[2]))
        self.size += 1
        return self.number[c]


class GateTable:
    """The compiled gates of a space; `evaluate` gives each slot's activity.

    In a space with pools (`max_nodes`), each pool instance's gate is an input that the
    derivation sets (`evaluate_gates(indices, instance_on)`), and `site_gate` numbers
    the gates of the references to rules."""

    def __init__(self, compiled: Compiled, categorical_slots: Sequence[int]):
        condition = _canonical(compiled.gates)
        table = _CompactTable()
        self.slot_gate = np.array([table.index(condition(s.gate)) for s in compiled.slots],
                                  np.int32)
        pools = compiled.pools
        self.site_gate = np.array([table.index(condition(site.gate))
                                   for site in (pools.sites if pools else ())], np.int32)
        instance_gate = {number: table.index(condition(gate))
                         for number, (_, _, gate, _) in enumerate(pools.instances if pools
                                                                   else ())}
        self.n_gates = table.size
        # Which compact gate holds each pool instance's input (-1: none uses it).
        self.instance_gate = np.array([instance_gate.get(n, -1) for n in
                                       range(len(pools.instances) if pools else 0)], np.int32)
        deps = {g: [int(self.slot_gate[slot])] for g, slot, _ in table.choices}
        deps.update(dict(table.aliases))
        deps.update({g: [] for g, _ in table.instances})
        self.rounds = max(_longest_chains(self.n_gates, deps), default=0)
        categorical_column = {slot: j for j, slot in enumerate(categorical_slots)}
        self.choice_gate = np.array([g for g, _, _ in table.choices], np.int32)
        self.choice_slot = np.array([s for _, s, _ in table.choices], np.int32)
        self.choice_column = np.array([categorical_column[s] for _, s, _ in table.choices],
                                      np.int32)
        self.choice_value = np.array([v for _, _, v in table.choices], np.int32)
        # Each round reads every gate from one vector (root, never, the choices, the
        # aliases, the instances; `order` puts it in gate order): gathers, which XLA runs
        # faster than scatters.
        aliases = [members for _, members in table.aliases]
        width = max((len(m) for m in aliases), default=0)
        self.alias_members = np.array([m + [1] * (width - len(m)) for m in aliases],
                                      np.int32).reshape(len(aliases), width)  # 1: never
        self.instance_number = np.array([n for _, n in table.instances], np.int32)
        self.order = np.zeros((self.n_gates,), np.int32)
        self.order[1] = 1
        first = 2
        for gates in (self.choice_gate, [g for g, _ in table.aliases],
                      [g for g, _ in table.instances]):
            self.order[np.asarray(gates, np.int32)] = first + np.arange(len(gates))
            first += len(gates)

    def evaluate(self, indices: jax.Array, instance_on: jax.Array | None = None) -> jax.Array:
        """Slot activity `(n_slots,)` bool from the categorical indices `(n_categorical,)`
        (and, with pools, which instances the derivation uses)."""
        if self.rounds == 0 and not len(self.instance_gate):
            return jnp.asarray(self.slot_gate == 0)
        return self.evaluate_gates(indices, instance_on)[self.slot_gate].astype(bool)

    def site_use(self, indices: jax.Array) -> jax.Array:
        """`(n_sites,)` bool: which references to recursive rules the categorical indices
        use, each instance's seen from inside it (what `Derivation.derive` reads)."""
        return self.evaluate_gates(indices)[self.site_gate] > 0

    def evaluate_gates(self, indices: jax.Array,
                       instance_on: jax.Array | None = None) -> jax.Array:
        """Every compact gate's state `(n_gates,)` int32 (1: on).

        Args:
            indices: the categorical indices `(n_categorical,)`.
            instance_on: `(n_instances,)` bool, the pool instances the derivation uses;
                None: all of them (each instance's gates as seen from inside it).
        """
        if len(self.instance_number):
            inputs = (jnp.ones(self.instance_number.shape, jnp.int32) if instance_on is None
                      else jnp.asarray(instance_on, jnp.int32)[self.instance_number])
        else:
            inputs = jnp.zeros((0,), jnp.int32)
        picked = indices[self.choice_column] == self.choice_value
        fixed = jnp.array([1, 0], jnp.int32)
        choices = jnp.zeros(self.choice_gate.shape, jnp.int32)
        aliases = jnp.zeros(self.alias_members.shape[:1], jnp.int32)
        on = jnp.concatenate([fixed, choices, aliases, inputs])[self.order]
        for _ in range(self.rounds):
            choices = on[self.slot_gate[self.choice_slot]] * picked.astype(jnp.int32)
            if self.alias_members.size:
                aliases = jnp.max(on[self.alias_members], axis=1)
            on = jnp.concatenate([fixed, choices, aliases, inputs])[self.order]
        return on
