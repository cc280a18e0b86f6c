"""Derivations of recursive rules in a space compiled with a node budget (`max_nodes`).

Each recursive rule has a pool of `max_nodes` instances, each its own copy of the rule's
decisions (`S#0`, `S#1`, ...), and each reference to a rule is a *site*. A config samples
every instance's decisions; which instances its derivation uses follows from them, in
breadth-first order: the sites outside every pool come first, and each site that is used
takes the next free instance of its rule, whose own sites are used in turn. An instance's
index is fixed before its decisions are read, so the instances a derivation uses are
independent draws of their rule, and the derivation has the grammar's distribution.
Decisions therefore grow with the derivation's size, not exponentially with its depth.

A derivation that needs more than `max_nodes` instances (over all rules) does not fit:
the config has probability zero, and the space's sampling and repairs reject it
(`SearchSpace.feasible`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.space._ir import Pools


class Derivation:
    """The tables of a space's pools, and the derivation itself (`derive`).

    Args:
        pools: the space's pools (`Compiled.pools`).
    """

    def __init__(self, pools: Pools, paths: tuple[str, ...]):
        rules = {rule: r for r, rule in enumerate(pools.rules)}
        self.max_nodes = pools.max_nodes
        self.n_instances = len(pools.instances)
        self.n_sites = len(pools.sites)
        self.rule_of = np.array([rules[rule] for rule, *_ in pools.instances], np.int32)
        self.index_of = np.array([k for _, k, *_ in pools.instances], np.int32)
        first = {}
        for g, (rule, *_) in enumerate(pools.instances):
            first.setdefault(rule, g)
        self.offset = np.array([first[rule] for rule in pools.rules], np.int32)
        self.site_rule = np.array([rules[s.rule] for s in pools.sites], np.int32)
        # Row g: the sites of instance g's body, in the order they were written; the
        # last row: the sites outside every pool (where a derivation starts).
        owned: list[list[int]] = [[] for _ in range(self.n_instances + 1)]
        for i, site in enumerate(pools.sites):
            owned[site.owner if site.owner >= 0 else self.n_instances].append(i)
        width = max(1, max(len(row) for row in owned))
        self.sites_of = np.full((self.n_instances + 1, width), -1, np.int32)
        for g, row in enumerate(owned):
            self.sites_of[g, :len(row)] = row
        self.slot_table = _slot_table(pools, paths)


    def derive(self, site_on: jax.Array,
               children: bool = False) -> tuple[jax.Array, jax.Array | None, jax.Array]:
        """The derivation of one config (pure, jittable).

        Args:
            site_on: `(n_sites,)` bool: whether each site is used, its instance's own
                gate taken as on.
            children: also say which instance each site takes (for resolving; the
                activity alone does not need it).

        Returns:
            `(instance_on, child, fits)`: `(n_instances,)` bool, the instances the
            derivation uses; `(n_sites,)` int32, the instance each used site takes (-1
            for a site not used, or one past the budget), or None without `children`;
            `()` bool, whether the derivation fits in `max_nodes` instances.
        """
        n_rules = len(self.offset)
        start = self.n_instances  # the row of the sites outside every pool
        if n_rules == 1 and not children:
            return self._derive_one_rule(site_on)
        rule_ids = jnp.arange(n_rules, dtype=jnp.int32)

        def step(carry, _):
            queue, head, tail, count, child, total, fits = carry
            live = head < tail
            sites = jnp.asarray(self.sites_of)[queue[head]]
            safe = jnp.maximum(sites, 0)
            used = live & (sites >= 0) & site_on[safe]
            targets = jnp.asarray(self.site_rule)[safe]
            of_rule = (targets[:, None] == rule_ids[None, :]) & used[:, None]
            before = jnp.sum((jnp.cumsum(of_rule, axis=0) - of_rule) * of_rule, axis=1)
            index = count[targets] + before  # the next free instances of each rule
            room = index < self.max_nodes
            number = jnp.asarray(self.offset)[targets] + index
            pushed = used & room
            at = tail + jnp.cumsum(pushed) - 1
            queue = queue.at[jnp.where(pushed, at, queue.shape[0])].set(number, mode="drop")
            if children:
                child = child.at[jnp.where(used, sites, self.n_sites)].set(
                    jnp.where(room, number, -1), mode="drop")
            total = total + jnp.sum(used)
            fits = fits & ~jnp.any(used & ~room) & (total <= self.max_nodes)
            count = count + jnp.sum(of_rule, axis=0, dtype=jnp.int32)
            return (queue, head + live, tail + jnp.sum(pushed, dtype=jnp.int32), count, child,
                    total, fits), None

        queue = jnp.zeros((self.max_nodes + 2,), jnp.int32).at[0].set(start)
        child = jnp.full((self.n_sites if children else 0,), -1, jnp.int32)
        carry = (queue, jnp.int32(0), jnp.int32(1), jnp.zeros((n_rules,), jnp.int32), child,
                 jnp.int32(0), jnp.array(True))
        # Each step expands one instance (the first, the sites outside the pools): a
        # derivation that fits expands at most `max_nodes + 1`.
        (_, _, _, count, child, _, fits), _ = jax.lax.scan(step, carry, None,
                                                           length=self.max_nodes + 1)
        instance_on = jnp.asarray(self.index_of) < count[jnp.asarray(self.rule_of)]
        return instance_on, (child if children else None), fits

    def _derive_one_rule(self, site_on: jax.Array) -> tuple[jax.Array, None, jax.Array]:
        """`derive` for a space with one recursive rule, without a loop: breadth-first,
        the instances used are a prefix, and it ends at the first instance `m` where the
        references made so far (outside the pool, and by the instances before `m`) number
        `m`: a running sum."""
        valid = self.sites_of >= 0
        used = jnp.where(valid, site_on[np.maximum(self.sites_of, 0)], False)
        outside, refs = jnp.sum(used[-1]), jnp.sum(used[:-1], axis=1)
        open_refs = outside + jnp.cumsum(refs) - jnp.arange(1, self.n_instances + 1)
        done = open_refs == 0
        size = jnp.where(outside == 0, 0,
                         jnp.where(jnp.any(done), jnp.argmax(done) + 1, self.n_instances + 1))
        return jnp.arange(self.n_instances) < size, None, size <= self.max_nodes

    def relayout(self, child_old: jax.Array, on_edited: jax.Array, on_fresh: jax.Array,
                 regrow: jax.Array, graft: tuple | None = None) -> tuple[jax.Array, jax.Array]:
        """Where each instance of an edited derivation comes from (pure, jittable).

        A config is edited instance by instance (a mutation changes some decisions of
        the instances its parent's derivation uses): read as a table again, every
        instance after one whose productions changed would move. Instead, this follows
        the parent's tree: the instance at each position keeps its (edited) decisions, a
        reference the edit newly uses, or one below a `regrow`n instance, gets a fresh
        subtree, and the result is laid out breadth-first again.

        Several parents may be given, their instances numbered one parent after another
        (parent p's instance g is `p * n_instances + g`); the tree followed is the first
        parent's, and `graft = (at, other)` puts the subtree of instance `other` (of any
        parent) where instance `at` was: a crossover.

        Args:
            child_old: `(parents * n_sites,)` the parents' derivations (`derive(...,
                children=True)`, each parent's numbers shifted to its own).
            on_edited: `(parents * n_sites,)` site use from the edited decisions.
            on_fresh: `(n_sites,)` site use from a fresh draw, by new instance.
            regrow: `(parents * n_instances,)` bool: old instances whose whole subtree is
                drawn fresh (their own decisions included).
            graft: None, or `(at, other)` old instance numbers (traced ints).

        Returns:
            `(source, fits)`: `(n_instances,)` int32, for each instance of the new layout
            the old instance it takes its decisions from, -1 for a fresh one, -2 for one
            the derivation does not use; `()` bool, whether it fits.
        """
        n = self.n_instances
        start = regrow.shape[0]  # the sites outside every pool, the first parent's
        rule_ids = jnp.arange(len(self.offset), dtype=jnp.int32)
        sites_of = jnp.asarray(self.sites_of)
        regrow = jnp.concatenate([jnp.asarray(regrow, bool), jnp.zeros((1,), bool)])
        at, other = graft if graft is not None else (-2, -2)

        def old_sites(old: jax.Array) -> jax.Array:
            """An old instance's site row, as numbers into the parents' site arrays."""
            row = jnp.where(old == start, sites_of[n], sites_of[old % n])
            return jnp.where(row >= 0, row + jnp.where(old == start, 0, old // n)
                             * self.n_sites, -1)

        def step(carry, _):
            queue, source, head, tail, count, total, fits = carry
            live = head < tail
            new = queue[head]
            old = source[new]
            old = jnp.where(old == at, other, old)
            copy = (old >= 0) & ~regrow[jnp.maximum(old, 0)]
            row_new = sites_of[new]
            row_old = old_sites(jnp.maximum(old, 0))
            used = live & (row_new >= 0) & jnp.where(
                copy, on_edited[jnp.maximum(row_old, 0)], on_fresh[jnp.maximum(row_new, 0)])
            targets = jnp.asarray(self.site_rule)[jnp.maximum(row_new, 0)]
            of_rule = (targets[:, None] == rule_ids[None, :]) & used[:, None]
            before = jnp.sum((jnp.cumsum(of_rule, axis=0) - of_rule) * of_rule, axis=1)
            index = count[targets] + before
            room = index < self.max_nodes
            number = jnp.asarray(self.offset)[targets] + index
            pushed = used & room
            place = tail + jnp.cumsum(pushed) - 1
            queue = queue.at[jnp.where(pushed, place, queue.shape[0])].set(number, mode="drop")
            from_old = jnp.where(copy & (row_old >= 0),
                                 child_old[jnp.maximum(row_old, 0)], -1)
            source = source.at[jnp.where(pushed, number, source.shape[0])].set(
                from_old, mode="drop")
            # What the instance itself takes: the (grafted) old one, or fresh decisions.
            source = source.at[new].set(jnp.where(live & (new < n), jnp.where(copy, old, -1),
                                                  source[new]))
            total = total + jnp.sum(used)
            fits = fits & ~jnp.any(used & ~room) & (total <= self.max_nodes)
            count = count + jnp.sum(of_rule, axis=0, dtype=jnp.int32)
            return (queue, source, head + live, tail + jnp.sum(pushed, dtype=jnp.int32),
                    count, total, fits), None

        queue = jnp.zeros((self.max_nodes + 2,), jnp.int32).at[0].set(n)
        source = jnp.full((n + 1,), -1, jnp.int32).at[n].set(start)
        carry = (queue, source, jnp.int32(0), jnp.int32(1),
                 jnp.zeros((len(self.offset),), jnp.int32), jnp.int32(0), jnp.array(True))
        (_, source, _, _, count, _, fits), _ = jax.lax.scan(step, carry, None,
                                                            length=self.max_nodes + 1)
        used = jnp.asarray(self.index_of) < count[jnp.asarray(self.rule_of)]
        return jnp.where(used, source[:n], -2), fits


def _slot_table(pools: Pools, paths: tuple[str, ...]) -> np.ndarray:
    """`(n_instances, width)` int32: row g holds instance g's own decisions (their slot
    numbers, -1 padding), in one order for every instance of a rule, so that column j is
    the same decision in each. A shared parameter first met inside one instance is no
    instance's own: it is left out."""
    by_instance: dict[str, dict[str, int]] = {}
    for slot, path in enumerate(paths):
        head, dot, rest = path.partition(".")
        if "#" in head:
            by_instance.setdefault(head, {})[dot + rest] = slot
    rows = []
    for rule in pools.rules:
        names = [f"{rule}#{k}" for k in range(pools.max_nodes)]
        common = [suffix for suffix in by_instance.get(names[-1], {})
                  if all(suffix in by_instance.get(n, {}) for n in names)]
        rows.extend([by_instance[n][suffix] for suffix in common] for n in names)
    width = max(1, max(len(row) for row in rows))
    table = np.full((len(rows), width), -1, np.int32)
    for g, row in enumerate(rows):
        table[g, :len(row)] = row
    return table
