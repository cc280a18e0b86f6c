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

    def __init__(self, pools: Pools):
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
