"""Drawing until a draw is feasible: how a space with constraints (`constrain`) or with a
node budget (`max_nodes`) samples and mutates."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnas.space._config import Config

# Candidates a constrained space draws at once per sample or mutation (`constrain`).
CONSTRAINT_TRIES = 32
# Draws a space with pools makes, one after another, for a derivation that fits.
DERIVATION_TRIES = 1_000


def first_feasible(draw: Callable[[jax.Array], Config], key: jax.Array,
                   feasible: Callable[[Config], jax.Array], *, pools: bool,
                   fallback: Config | None = None) -> Config:
    """The first feasible of `CONSTRAINT_TRIES` draws `draw(key)`, made at once
    (`fallback`, else the first draw, where none is).

    With pools, where most draws fit, draws are made one at a time until one is feasible,
    up to `DERIVATION_TRIES` (`CONSTRAINT_TRIES` where a `fallback` is kept: a mutation).
    """
    if pools:
        limit = CONSTRAINT_TRIES if fallback is not None else DERIVATION_TRIES

        def another(carry: tuple) -> tuple:
            tries, _, _ = carry
            candidate = draw(jax.random.fold_in(key, tries))
            return tries + 1, candidate, feasible(candidate)

        first = draw(jax.random.fold_in(key, 0))
        _, out, ok = jax.lax.while_loop(lambda c: ~c[2] & (c[0] < limit), another,
                                        (jnp.int32(1), first, feasible(first)))
        if fallback is None:
            return out
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), out, fallback)
    candidates = jax.vmap(draw)(jax.random.split(key, CONSTRAINT_TRIES))
    ok = jax.vmap(feasible)(candidates)
    first = jax.tree.map(lambda c: c[jnp.argmax(ok)], candidates)
    if fallback is None:
        return first
    return jax.tree.map(lambda a, b: jnp.where(jnp.any(ok), a, b), first, fallback)
