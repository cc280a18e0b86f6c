"""Regularized (aging) evolution: tournaments over the most recent successful trials.

Real, Aggarwal, Huang and Le, "Regularized Evolution for Image Classifier Architecture
Search", AAAI 2019, Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Source, Status, Trials
from jaxnas.optimizers._random_search import RandomSearchState, _single_fidelity
from jaxnas.space import Config, Float, Integer, SearchSpace

# A mutated numeric slot moves by a normal of this sigma in the unit cube, truncated to it:
# NePS's "medium" re-sampling around a value, as complex random search uses.
_MUTATION_STD = 0.25


def regularized_evolution(spec: SearchSpace, *, population_size: int = 50,
                          sample_size: int = 10, batch_size: int = 16,
                          use_prior: bool = False, max_trials: int = 1024) -> Optimizer:
    """Regularized (aging) evolution (Real et al., AAAI 2019, Algorithm 1).

    The first `population_size` trials (trial ids `0 .. population_size - 1`) are sampled
    uniformly (from the prior with `use_prior`). Every later trial is a child: `sample_size`
    members are drawn uniformly, with replacement as in the paper, from the population, the
    `population_size` most recent successful trials by trial id, and the one with the
    lowest loss is mutated. A child joins the population once it succeeds and the oldest
    member leaves ("aging": a member dies of age however good it is).

    Mutation changes exactly one active slot of the parent, chosen uniformly among those
    that can change (the paper's one mutation per child, whether of an operation or of a
    connection): a categorical takes another feasible choice, uniformly; a float moves by a
    normal of sigma 0.25 in the unit cube (`spec.mutate`), truncated to it; an integer does
    the same, and steps by one (away from a bound) where the move rounds back to its value.
    So a child differs from its parent unless the parent has no active slot that can change
    (every active categorical has one feasible choice). Choosing another branch of a
    conditional space re-activates the slots the parent carried there unused.

    Differences from the paper, for fixed shapes and parallel workers: an ask proposes
    `batch_size` children, each from its own tournament over the population as it is at
    the ask (the paper's asynchronous workers); pending trials are not members yet; a
    failed trial never joins, so it is never a parent, and if some of the first trials
    fail the population starts smaller and fills up with successful children. With no
    successful trial at all, children are replaced by new samples.

    Trials are evaluated at the space's maximum fidelity (NaN for a space without one).

    Args:
        spec: A compiled search space (any kind: operations and other categorical structure
            are mutated like any other slot).
        population_size: Members of the population, P (HANNAH's default, 50; the paper's
            large searches use 100).
        sample_size: Tournament size, S <= P (HANNAH: 10; the paper: 25 of 100). A larger
            S exploits more: S = 1 mutates random members, a large S mostly the best.
        batch_size: Configurations per ask.
        use_prior: Sample the first population from the space's prior (`spec.sample_prior`).
        max_trials: Trials the state must hold, at least `population_size` (see
            `random_search`).

    Returns:
        An `Optimizer` whose state is a `RandomSearchState` (the trial table: the
        population is the newest successful rows).

    Raises:
        TypeError, ValueError: a bad argument; the message names it.

    Example:
        >>> opt = regularized_evolution(spec, population_size=20, sample_size=5)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))
    """
    owner = "regularized_evolution"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    population_size = _base.check_positive_int(owner, "population_size", population_size)
    sample_size = _base.check_positive_int(owner, "sample_size", sample_size)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    if sample_size > population_size:
        raise ValueError(f"{owner}: sample_size={sample_size} must not exceed "
                         f"population_size={population_size} (a tournament draws from the "
                         f"population).")
    if population_size > max_trials:
        raise ValueError(f"{owner}: population_size={population_size} exceeds "
                         f"max_trials={max_trials}: the search would end before its first "
                         f"tournament. Lower population_size or raise max_trials.")
    sample = spec.sample_prior if use_prior else spec.sample
    source = Source.PRIOR if use_prior else Source.UNIFORM
    mutate, n_mutation_draws = _one_slot_mutation(spec)

    def propose(state: RandomSearchState, key: jax.Array) -> tuple[Config, jax.Array]:
        trials = state.trials
        key_draws, key_fresh, key_children = jax.random.split(key, 3)
        # One table of uniforms for every choice: each PRNG call site costs compile time.
        draws = jax.random.uniform(key_draws, (batch_size, sample_size + n_mutation_draws))
        members, n_members = _population(trials, population_size)
        parents = _tournament_winners(trials, members, n_members, draws[:, :sample_size])
        parent_configs = jax.tree.map(lambda column: column[parents], trials.configs)
        children = _base.map_rows(mutate, jax.random.split(key_children, batch_size),
                                  parent_configs, draws[:, sample_size:])
        fresh = _base.map_rows(sample, jax.random.split(key_fresh, batch_size))
        trial_ids = trials.count + jnp.arange(batch_size, dtype=jnp.int32)
        evolve = (trial_ids >= population_size) & (n_members > 0)  # (B,)
        configs = _base.select_rows(evolve.astype(jnp.int32), (fresh, children))
        return configs, jnp.where(evolve, Source.MUTATION, source).astype(jnp.int32)

    return _single_fidelity(spec, propose, batch_size, max_trials)


# The newest rows in which evolution looks for its population first (`_population`).
POPULATION_WINDOW = 1024


def _population(trials: Trials, size: int) -> tuple[jax.Array, jax.Array]:
    """The rows of the `size` most recent successful trials (newest first) and how many
    there are, `((size,) int32, () int32)`; entries past the count are not members."""
    capacity = trials.status.shape[0]
    success = trials.status == Status.SUCCESS
    n_members = jnp.minimum(jnp.sum(success, dtype=jnp.int32), size)

    def newest_of(start: jax.Array | int, length: int) -> jax.Array:
        rows = start + jnp.arange(length, dtype=jnp.int32)
        kept = jax.lax.dynamic_slice_in_dim(success, start, length)
        # Algorithm 1: the oldest member dies first
        return jax.lax.top_k(jnp.where(kept, rows, -1), size)[1] + start

    # The members are among the newest rows unless many trials failed: those are looked
    # at first, so that an ask costs what the population does, not what the capacity does.
    window = min(capacity, max(POPULATION_WINDOW, 4 * size))
    if window == capacity:
        return newest_of(0, capacity).astype(jnp.int32), n_members
    start = jnp.clip(trials.count - window, 0, capacity - window).astype(jnp.int32)
    enough = (start == 0) | (jnp.sum(jax.lax.dynamic_slice_in_dim(success, start, window))
                             >= size)
    members = jax.lax.cond(enough, lambda: newest_of(start, window),
                           lambda: newest_of(jnp.int32(0), capacity))
    return members.astype(jnp.int32), n_members


def _tournament_winners(trials: Trials, members: jax.Array, n_members: jax.Array,
                        u: jax.Array) -> jax.Array:
    """The row of the best of `S` members drawn uniformly, with replacement, per row of
    uniforms `u` `(B, S)`: `(B,)` int32 (Algorithm 1, "parent <- highest-accuracy model in
    sample")."""
    picks = jnp.minimum(jnp.floor(u * n_members).astype(jnp.int32),
                        jnp.maximum(n_members - 1, 0))
    rows = members[picks]  # (B, S)
    best = jnp.argmin(trials.losses[rows], axis=1)
    return jnp.take_along_axis(rows, best[:, None], axis=1)[:, 0]


def _one_slot_mutation(spec: SearchSpace) -> tuple[Callable[..., Config], int]:
    """`(mutate, n_draws)`: `mutate(key, parent, u) -> child` changes one active slot of
    `parent` (see `regularized_evolution` for the rule), reading `u`, `(n_draws,)`
    uniforms: one per slot to pick the slot, one per int column for the direction of a
    forced integer step."""
    parameters = spec.parameters()
    is_float = np.asarray([isinstance(parameters[p], Float) for p in spec.paths], bool)
    int_parameters = [parameters[p] for p, f in zip(spec.paths, is_float) if not f]
    float_slots, int_slots = np.flatnonzero(is_float), np.flatnonzero(~is_float)
    # Integer columns (not categorical indices) and their bounds.
    is_integer = np.asarray([isinstance(q, Integer) for q in int_parameters], bool)
    lower = np.asarray([q.lower if isinstance(q, Integer) else 0 for q in int_parameters],
                       np.int32)
    upper = np.asarray([q.upper if isinstance(q, Integer) else 0 for q in int_parameters],
                       np.int32)
    spacing = np.asarray([q.quantum if isinstance(q, Integer) else 1 for q in int_parameters],
                         np.int32)
    n_slots = len(spec.paths)

    def step_unmoved_integers(old: jax.Array, new: jax.Array, u: jax.Array) -> jax.Array:
        """Integers the move left at their value step by one (their `step`), down or up by
        `u` and away from a bound; categorical columns stay as moved."""
        step = jnp.where(u < 0.5, -spacing, spacing).astype(jnp.int32)
        step = jnp.where(old + step < lower, spacing,
                         jnp.where(old + step > upper, -spacing, step))
        return jnp.where(is_integer & (new == old), old + step, new)

    def mutate(key: jax.Array, parent: Config, u: jax.Array) -> Config:
        moved = spec.mutate(key, parent, 1.0, _MUTATION_STD)  # every slot moved
        ints = step_unmoved_integers(parent.ints, moved.ints, u[n_slots:])
        changed = (jnp.zeros((n_slots,), bool)
                   .at[float_slots].set(moved.floats != parent.floats)
                   .at[int_slots].set(ints != parent.ints))
        candidates = changed & spec.active(parent).array
        chosen = jnp.argmax(jnp.where(candidates, u[:n_slots], -1.0))
        take = (jnp.arange(n_slots) == chosen) & jnp.any(candidates)
        child = Config(jnp.where(take[float_slots], moved.floats, parent.floats),
                       jnp.where(take[int_slots], ints, parent.ints), parent.layout)
        # A grammar's derivation keeps its tree: a changed production regrows only the
        # subtrees it newly refers to (hierarchical NAS's mutation); else `child` itself.
        return spec.carry_over(parent, child, jax.random.fold_in(key, 1))

    return mutate, n_slots + len(int_parameters)
