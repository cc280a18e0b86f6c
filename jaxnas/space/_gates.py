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
                level[g] = 1 + max(level[d] for d in deps[g])
                stack.pop()
    return [level[g] for g in range(n_gates)]


class _CompactTable:
    """Numbers distinct conditions: 0 = root, 1 = never, then choice and alias gates."""

    def __init__(self):
        self.number: dict[_Condition, int] = {"root": 0, "never": 1}  # never stays off
        self.size = 2
        self.choices: list[tuple[int, int, int]] = []  # (gate, slot, choice)
        self.aliases: list[tuple[int, list[int]]] = []  # (gate, member gates)

    def index(self, c: _Condition) -> int:
        if c in self.number:
            return self.number[c]
        if isinstance(c, frozenset):
            members = [self.index(m) for m in sorted(c, key=repr)]
            self.number[c] = self.size
            self.aliases.append((self.size, members))
        else:
            self.number[c] = self.size
            self.choices.append((self.size, c[1], c[2]))
        self.size += 1
        return self.number[c]


class GateTable:
    """The compiled gates of a space; `evaluate` gives each slot's activity."""

    def __init__(self, compiled: Compiled, categorical_slots: Sequence[int]):
        condition = _canonical(compiled.gates)
        table = _CompactTable()
        self.slot_gate = np.array([table.index(condition(s.gate)) for s in compiled.slots],
                                  np.int32)
        self.n_gates = table.size
        deps = {g: [int(self.slot_gate[slot])] for g, slot, _ in table.choices}
        deps.update(dict(table.aliases))
        self.rounds = max(_longest_chains(self.n_gates, deps), default=0)
        categorical_column = {slot: j for j, slot in enumerate(categorical_slots)}
        self.choice_gate = np.array([g for g, _, _ in table.choices], np.int32)
        self.choice_slot = np.array([s for _, s, _ in table.choices], np.int32)
        self.choice_column = np.array([categorical_column[s] for _, s, _ in table.choices],
                                      np.int32)
        self.choice_value = np.array([v for _, _, v in table.choices], np.int32)
        self.alias_owner = np.array([g for g, members in table.aliases for _ in members],
                                    np.int32)
        self.alias_member = np.array([m for _, members in table.aliases for m in members],
                                     np.int32)

    def evaluate(self, indices: jax.Array) -> jax.Array:
        """Slot activity `(n_slots,)` bool from the categorical indices `(n_categorical,)`."""
        if self.rounds == 0:
            return jnp.asarray(self.slot_gate == 0)
        picked = (indices[self.choice_column] == self.choice_value
                  if len(self.choice_gate) else None)
        on = jnp.zeros((self.n_gates,), jnp.int32).at[0].set(1)
        for _ in range(self.rounds):
            new = jnp.zeros((self.n_gates,), jnp.int32).at[0].set(1)
            if picked is not None:
                slot_on = on[self.slot_gate[self.choice_slot]]
                new = new.at[self.choice_gate].set(slot_on * picked.astype(jnp.int32))
            if len(self.alias_owner):
                new = new.at[self.alias_owner].max(on[self.alias_member])
            on = new
        return on[self.slot_gate].astype(bool)
