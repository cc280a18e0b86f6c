"""A `SearchSpace`'s derivations, in a space with pools (`max_nodes`): one config's
derivation on the host (`derived`, for `resolve`), and the edits of a derivation: the
grammar mutation, the layout of an edited config (`carry_over`) and the subtree crossover
(`graft`).

Each edit is one try, pure and jittable; `SearchSpace.mutate`, `carry_over` and
`crossover` repeat it until the derivation fits the budget (`SearchSpace._first_feasible`).
They read the space's derivation (`_pools.Derivation`), its gates and working vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas._compiling import HELPER_OPTIONS, jit_with
from jaxnas.space._config import Config

if TYPE_CHECKING:
    from jaxnas.space._search_space import SearchSpace


def derived(spec: SearchSpace, values: Mapping[str, Any]) -> tuple | None:
    """`(instances, child)` of one config's derivation, by one jitted program per space
    (made on first use); None without pools.

    Raises:
        ValueError: the derivation needs more than `max_nodes` instances.
    """
    if spec._derivation is None:
        return None
    if spec._derive_program is None:
        def child(config: Config) -> tuple[jax.Array, jax.Array]:
            _, out, fits = spec._activity(spec._split(config)[1], children=True)
            return out, fits
        object.__setattr__(spec, "_derive_program", jit_with(child, HELPER_OPTIONS))
    child, fits = spec._derive_program(spec.config(values))
    if not bool(fits):
        raise ValueError(
            f"the config's derivation needs more than max_nodes={spec.max_nodes} rule "
            f"instances and has probability zero; the config is not from this space.")
    return spec._compiled.pools.instances, np.asarray(child)


def mutate(spec: SearchSpace, key: jax.Array, config: Config, rate: float | jax.Array,
           std: float | jax.Array) -> Config:
    """`config` with each decision mutated in place (`SearchSpace._mutate`), its tree kept,
    and with probability `rate` one instance it uses, drawn uniformly, regrown with its
    whole subtree (hierarchical NAS's mutation)."""
    key_slots, key_fresh, key_pick, key_rate = jax.random.split(key, 4)
    edited = spec._mutate(key_slots, config, rate, std)
    used = instances_used(spec, config)
    pick = jnp.argmax(jnp.where(used, jax.random.uniform(key_pick, used.shape), -1.0))
    regrow = (jnp.arange(used.shape[0]) == pick) & (jax.random.uniform(key_rate) < rate)
    return carry_over(spec, config, edited, key_fresh, regrow)


def instances_used(spec: SearchSpace, config: Config) -> jax.Array:
    """`(n_instances,)` bool: the pool instances `config`'s derivation uses."""
    return spec._derivation.derive(spec._gates.site_use(spec._split(config)[1]))[0]


def carry_over(spec: SearchSpace, parent: Config, edited: Config, key: jax.Array,
               regrow: jax.Array) -> Config:
    """`SearchSpace.carry_over`, with the old instances `regrow` drawn afresh with their
    subtrees."""
    gates = spec._gates
    fresh = spec._sample(key)
    child_old = spec._activity(spec._split(parent)[1], children=True)[1]
    on_edited = gates.site_use(spec._split(edited)[1])
    on_fresh = gates.site_use(spec._split(fresh)[1])
    source, _ = spec._derivation.relayout(child_old, on_edited, on_fresh, regrow)
    return assemble(spec, source, (edited,), fresh)


def graft(spec: SearchSpace, key: jax.Array, first: Config, second: Config) -> Config:
    """One subtree crossover (see `SearchSpace.crossover`)."""
    derivation, gates = spec._derivation, spec._gates
    per = derivation.n_instances
    key_at, key_other = jax.random.split(key)
    rule_of = jnp.asarray(derivation.rule_of)
    used_first, used_second = instances_used(spec, first), instances_used(spec, second)
    at = jnp.argmax(jnp.where(used_first, jax.random.uniform(key_at, (per,)), -1.0))
    same = used_second & (rule_of == rule_of[at])
    other = jnp.argmax(jnp.where(same, jax.random.uniform(key_other, (per,)), -1.0))
    at = jnp.where(jnp.any(same), at, -2)  # nothing of that rule: the child is `first`
    child_first = spec._activity(spec._split(first)[1], children=True)[1]
    child_second = spec._activity(spec._split(second)[1], children=True)[1]
    child_old = jnp.concatenate([child_first,
                                 jnp.where(child_second >= 0, child_second + per, -1)])
    on = jnp.concatenate([gates.site_use(spec._split(c)[1]) for c in (first, second)])
    source, _ = derivation.relayout(child_old, on, on[:derivation.n_sites],
                                    jnp.zeros((2 * per,), bool), (at, other + per))
    return assemble(spec, source, (first, second), first)


def assemble(spec: SearchSpace, source: jax.Array, olds: tuple[Config, ...],
             fresh: Config) -> Config:
    """The config that `Derivation.relayout`'s `source` describes: each used instance's
    decisions from the old instance it names (of `olds`, numbered one config after
    another) or from `fresh` (-1); every other decision from `olds[0]`."""
    derivation = spec._derivation
    table = jnp.asarray(derivation.slot_table)
    n, per = len(spec.paths), derivation.n_instances
    # For each slot: -2, keep the first old config's (not an instance's own, or an
    # instance the derivation does not use); -1, fresh; else the slot it copies, in
    # the old configs' slots numbered one config after another.
    taken = jnp.where(source[:, None] >= 0,
                      table[jnp.maximum(source, 0) % per] + n * (source[:, None] // per),
                      source[:, None])
    pick = jnp.full((n,), -2, jnp.int32).at[jnp.where(table >= 0, table, n)].set(
        taken, mode="drop")
    layout = olds[0].layout
    is_float = np.asarray(layout.is_float, bool)
    column = np.array([layout.where[p][1] for p in spec.paths], np.int32)

    def merge(kind: np.ndarray, arrays: list, other: jax.Array) -> jax.Array:
        slots = np.flatnonzero(kind)
        width = len(slots)
        p = pick[slots]
        stacked = jnp.concatenate(arrays)  # the old configs' columns, one after another
        copied = stacked[jnp.asarray(column)[jnp.maximum(p, 0) % n]
                         + width * (jnp.maximum(p, 0) // n)]
        return jnp.where(p == -2, arrays[0], jnp.where(p == -1, other, copied))

    return Config(merge(is_float, [jnp.asarray(c.floats) for c in olds],
                        jnp.asarray(fresh.floats)),
                  merge(~is_float, [jnp.asarray(c.ints) for c in olds],
                        jnp.asarray(fresh.ints)), layout)
