"""NSGA-II: multi-objective evolution by non-dominated sorting and crowding distance.

Deb, Pratap, Agarwal and Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm:
NSGA-II", IEEE TEC 2002; constrained domination from its Section VI. The variation follows
Optuna 5's `NSGAIISampler` defaults (`optuna/samplers/nsgaii/`): two parents, each the winner
of a binary tournament (the second drawn from the elite without the first, as Optuna
does); uniform crossover of the two with
probability `crossover_prob` (each slot from the second parent with probability
`swapping_prob`), otherwise a copy of the first; then each slot re-drawn uniformly with
probability `mutation_prob` (default `1 / slots`).

Where jaxnas differs, and why:

* The parents' population (the elite) is kept in the state and updated at every tell:
  the best `population_size` of the old elite and the newly told trials, by rank, then
  crowding distance. With generations of equal size this is Optuna's elite selection of
  the parent population and the new generation; it also lets a resumed run or a second
  worker ask without a generation's bookkeeping, and an ask costs what the elite's size
  says, whatever the state's capacity.
* A tournament compares rank, then crowding distance (the paper's crowded comparison);
  Optuna's compares only domination and otherwise keeps the first drawn. On ZDT1 (30
  floats, development seeds 0-19 of `benchmarks/multiobjective.py`) Optuna's rule gave
  P(jaxnas beats Optuna) 0.42-0.45 at 100-1000 evaluations, the crowded comparison
  0.48-0.76 (and 0.59-0.74 against 0.52-0.60 on the mixed problem).
* Crossover and copies take each slot's stored value (a categorical, an integer or a float
  exactly as a parent has it); a mutated slot is a fresh `spec.sample` value. Inactive
  slots of a conditional space are carried and mutated like any other, so a branch chosen
  later starts from values a parent had there.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Proposals, Source, Status, Trials
from jaxnas.optimizers._random_search import _merge
from jaxnas.space import Config, SearchSpace

_UNRANKED = np.iinfo(np.int32).max  # rank of a row outside the sorted population


class NSGA2State(NamedTuple):
    """State of `nsga2`.

    Attributes:
        trials: The trial table; `trials.losses` holds the first objective.
        objectives: `(capacity, n_objectives)` float32, every objective minimised; NaN
            until told.
        violations: `(capacity,)` float32, how far a trial is from feasible (0: feasible).
        elite: `(population_size,)` int32, the parents' population: trial ids by rank,
            then crowding distance, -1 where it is not full yet.
        overflow: `()` bool, set when an ask needed more rows than the table has.
    """

    trials: Trials
    objectives: jax.Array
    violations: jax.Array
    elite: jax.Array
    overflow: jax.Array


def nsga2(spec: SearchSpace, *, n_objectives: int = 2, population_size: int = 50,
          crossover_prob: float = 0.9, swapping_prob: float = 0.5,
          mutation_prob: float | None = None, batch_size: int | None = None,
          use_prior: bool = False, max_trials: int = 1024) -> Optimizer:
    """NSGA-II (Deb et al. 2002) with constrained domination; Optuna's operators.

    The first `population_size` trials are uniform samples (from the prior with
    `use_prior`). Every later trial is a child of two parents, each the winner of a binary
    tournament (lower rank, then larger crowding distance) among the elite: the best
    `population_size` successful trials by non-dominated rank, ties within the last rank
    broken by crowding distance. A feasible trial dominates an infeasible one, and of two
    infeasible trials the one with the smaller violation dominates (Deb et al., Sec. VI).

    Trials are evaluated at the space's maximum fidelity (NaN for a space without one).

    `tell(state, trial_ids, losses, violations=None)`: `losses` is `(B, n_objectives)`
    (`(B,)` when `n_objectives` is 1), every objective minimised (negate one that is
    maximised); a row with a non-finite value is a failed trial. `violations` (`(B,)`,
    default 0) is how far each trial is from satisfying its constraints, 0 when it does.

    Args:
        spec: A compiled search space.
        n_objectives: Objectives per trial (>= 1; `jn.run` sets it from its objectives).
        population_size: The elite's size and the first generation's (Optuna: 50).
        crossover_prob: Probability that a child is a crossover of its two parents
            rather than a copy of the first (Optuna: 0.9).
        swapping_prob: In a crossover, each slot's probability to come from the second
            parent (Optuna: 0.5).
        mutation_prob: Each slot's probability to be re-drawn uniformly; default
            `1 / number of slots` (Optuna's rule).
        batch_size: Configurations per ask; default `population_size` (one generation).
        use_prior: Sample the first generation from the space's prior.
        max_trials: Trials the state must hold (see `random_search`).

    Returns:
        An `Optimizer` whose state is an `NSGA2State`.

    Raises:
        TypeError, ValueError: a bad argument; the message names it.
    """
    owner = "nsga2"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    n_objectives = _base.check_positive_int(owner, "n_objectives", n_objectives)
    population_size = _base.check_positive_int(owner, "population_size", population_size)
    crossover_prob = _probability(owner, "crossover_prob", crossover_prob)
    swapping_prob = _probability(owner, "swapping_prob", swapping_prob)
    n_slots = len(spec.paths)
    if mutation_prob is None:
        mutation_prob = 1.0 / max(1, n_slots)
    mutation_prob = _probability(owner, "mutation_prob", mutation_prob)
    batch_size = population_size if batch_size is None else batch_size
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    if population_size > max_trials:
        raise ValueError(f"{owner}: population_size={population_size} exceeds "
                         f"max_trials={max_trials}: the search would end before its "
                         f"first generation. Lower population_size or raise max_trials.")
    capacity = _base.capacity_for(max_trials, batch_size)
    fidelity = _base.max_fidelity(spec)
    start = spec.sample_prior if use_prior else spec.sample
    start_source = Source.PRIOR if use_prior else Source.UNIFORM

    def init(key: jax.Array) -> NSGA2State:
        del key  # the empty state is deterministic
        return NSGA2State(_base.empty_trials(spec, capacity),
                          jnp.full((capacity, n_objectives), jnp.nan, jnp.float32),
                          jnp.zeros((capacity,), jnp.float32),
                          jnp.full((population_size,), -1, jnp.int32), jnp.zeros((), bool))

    def propose(state: NSGA2State, key: jax.Array) -> tuple[Config, jax.Array]:
        trials = state.trials
        key_draws, key_fresh, key_mutation = jax.random.split(key, 3)
        draws = jax.random.uniform(key_draws, (batch_size, 6 + 2 * n_slots))
        elite = state.elite
        n_elite = jnp.sum(elite >= 0, dtype=jnp.int32)  # the real ones come first

        rank, crowding = _rank_and_crowding(elite, state.objectives, state.violations)

        def tournament(u_first, u_second, n, skip):
            """Positions in the elite: the better of two drawn among `n` (skipping
            position `skip`, which the first parent holds) by the crowded comparison."""
            i, j = _index(u_first, n), _index(u_second, n)
            i, j = i + (i >= skip), j + (j >= skip)
            i_wins = (rank[i] < rank[j]) | ((rank[i] == rank[j]) & (crowding[i] >= crowding[j]))
            return jnp.where(i_wins, i, j)

        no_skip = jnp.full((batch_size,), population_size, jnp.int32)
        first_position = tournament(draws[:, 0], draws[:, 1], n_elite, no_skip)
        second_position = jnp.where(
            n_elite > 1,
            tournament(draws[:, 2], draws[:, 3], n_elite - 1, first_position),
            first_position)
        first = jnp.clip(elite[first_position], 0)  # (B,) rows of the table
        second = jnp.clip(elite[second_position], 0)
        crossed = draws[:, 4] < crossover_prob
        parent = lambda rows: jax.tree.map(lambda c: c[rows], trials.configs)  # noqa: E731
        take_second = crossed[:, None] & (draws[:, 6:6 + n_slots] < swapping_prob)
        children = jax.vmap(_merge)(take_second, parent(second), parent(first))
        fresh = _base.map_rows(spec.sample, jax.random.split(key_mutation, batch_size))
        mutated = draws[:, 6 + n_slots:] < mutation_prob
        children = jax.vmap(_merge)(mutated, fresh, children)
        starts = _base.map_rows(start, jax.random.split(key_fresh, batch_size))
        trial_ids = trials.count + jnp.arange(batch_size, dtype=jnp.int32)
        evolve = (trial_ids >= population_size) & (n_elite > 0)
        children = _base.feasible_rows(spec, jax.random.fold_in(key_mutation, 1), children)
        configs = _base.select_rows(evolve.astype(jnp.int32), (starts, children))
        sources = jnp.where(evolve, jnp.where(crossed, Source.CROSSOVER, Source.MUTATION),
                            start_source)
        return configs, sources.astype(jnp.int32)

    def ask(state: NSGA2State, key: jax.Array) -> tuple[NSGA2State, Proposals]:
        fits = state.trials.count + batch_size <= capacity
        configs, sources = propose(state, key)
        fidelities = jnp.full((batch_size,), fidelity, jnp.float32)
        valid = jnp.broadcast_to(fits, (batch_size,))
        trials, ids = _base.add_trials(state.trials, configs, fidelities, valid,
                                       sources=sources)
        parents = jnp.full((batch_size,), -1, jnp.int32)
        state = state._replace(trials=trials, overflow=state.overflow | ~fits)
        return state, Proposals(configs, fidelities, ids, valid, parents)

    def tell(state: NSGA2State, trial_ids: jax.Array, losses: jax.Array,
             violations: jax.Array | None = None) -> NSGA2State:
        told = vector_results("nsga2", n_objectives, state.trials, trial_ids, losses,
                              violations)
        trial_ids, losses, violations, failed, rows = told
        trials = _base.record_results(state.trials, trial_ids,
                                      jnp.where(failed, jnp.nan, losses[:, 0]))
        fresh = (rows < trials.status.shape[0]) & ~failed  # successes told just now
        objectives = state.objectives.at[rows].set(losses, mode="drop")
        violations = state.violations.at[rows].set(violations, mode="drop")
        candidates = jnp.concatenate([state.elite, jnp.where(fresh, trial_ids, -1)])
        return state._replace(
            trials=trials, objectives=objectives, violations=violations,
            elite=_select(candidates, objectives, violations, population_size))

    return Optimizer(init, ask, tell)


def vector_results(owner: str, n_objectives: int, trials: Trials, trial_ids: jax.Array,
                   losses: jax.Array, violations: jax.Array | None) -> tuple:
    """A multi-objective tell's arguments checked and shaped: `(trial_ids (B,), losses
    (B, k), violations (B,) >= 0, failed (B,), rows (B,))`, `rows` the table rows to
    write (out of range where the id is padding, unknown or already told)."""
    trial_ids = jnp.asarray(trial_ids, jnp.int32).reshape(-1)
    losses = jnp.asarray(losses, jnp.float32).reshape(trial_ids.shape[0], -1)
    if losses.shape[1] != n_objectives:
        raise ValueError(f"{owner}.tell: losses has shape {losses.shape}; give "
                         f"n_objectives={n_objectives} values per trial id.")
    if violations is None:
        violations = jnp.zeros(trial_ids.shape, jnp.float32)
    violations = jnp.maximum(jnp.asarray(violations, jnp.float32).reshape(-1), 0.0)
    failed = ~jnp.all(jnp.isfinite(losses), axis=1)
    capacity = trials.status.shape[0]
    in_range = (trial_ids >= 0) & (trial_ids < trials.count)
    pending = trials.status[jnp.clip(trial_ids, 0, capacity - 1)] == Status.PENDING
    rows = jnp.where(in_range & pending, trial_ids, capacity)
    return trial_ids, losses, violations, failed, rows


def _probability(owner: str, name: str, value: float) -> float:
    value = _base.check_non_negative_float(owner, name, value)
    if value > 1.0:
        raise ValueError(f"{owner}: {name}={value!r} must be a probability in [0, 1].")
    return value


def _index(u: jax.Array, n: jax.Array) -> jax.Array:
    """An index uniform in [0, n) from uniforms `u` in [0, 1) (0 when n < 1)."""
    n = jnp.maximum(n, 1)
    return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def constrained_domination(objectives: jax.Array, violations: jax.Array,
                           valid: jax.Array) -> jax.Array:
    """`(n, n)` bool, `[i, j]`: valid row i dominates valid row j (Deb et al., Sec. VI):
    feasible beats infeasible, the smaller violation beats the larger, and among feasible
    rows Pareto dominance (no worse everywhere, better somewhere)."""
    a, b = objectives[:, None], objectives[None]
    pareto = jnp.all(a <= b, axis=-1) & jnp.any(a < b, axis=-1)
    feasible = violations <= 0.0
    va, vb = violations[:, None], violations[None]
    fa, fb = feasible[:, None], feasible[None]
    dominates = jnp.where(fa & fb, pareto, jnp.where(fa, True, jnp.where(fb, False, va < vb)))
    return dominates & valid[:, None] & valid[None]


def _rank_and_crowding(candidates: jax.Array, objectives: jax.Array,
                       violations: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each of `candidates`' (trial ids, -1: none) non-dominated rank among them under
    constrained domination, and its crowding distance in its front."""
    valid = candidates >= 0
    rows = jnp.clip(candidates, 0)
    values = jnp.where(valid[:, None], objectives[rows], 0.0)
    rank = non_dominated_ranks(values, violations[rows], valid)
    return rank, _crowding_distance(values, rank)


def _select(candidates: jax.Array, objectives: jax.Array, violations: jax.Array,
            size: int) -> jax.Array:
    """The `size` best of `candidates` (trial ids, -1: none) by rank, then crowding
    distance, largest first: `(size,)` ids, -1 where fewer are real (those come last)."""
    rank, crowding = _rank_and_crowding(candidates, objectives, violations)
    order = jnp.lexsort((-crowding, rank))[:size]  # unranked (invalid) rows last
    return jnp.where(candidates[order] >= 0, candidates[order], -1)


def _crowding_distance(objectives: jax.Array, rank: jax.Array,
                       group: jax.Array | None = None) -> jax.Array:
    """`(n,)` each ranked row's crowding distance within its front (Deb et al., Sec.
    III-B): per objective, the gap between its neighbours over the front's range; a
    front's extreme rows get infinity. A front is the rows of one rank (and one `group`,
    e.g. a rung, where given). Unranked rows get 0."""
    n, k = objectives.shape
    ranked = rank != _UNRANKED
    key = jnp.where(ranked, rank, n).astype(jnp.int32)
    if group is not None:
        key = jnp.where(ranked, key + (n + 1) * jnp.clip(group + 1, 0), key)
    # Dense front ids 0.. (sorted keys, counted where they change): segment ops need them.
    order = jnp.argsort(key)
    changes = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                               (key[order][1:] != key[order][:-1]).astype(jnp.int32)])
    segment = jnp.zeros((n,), jnp.int32).at[order].set(jnp.cumsum(changes))
    total = jnp.zeros((n,), jnp.float32)
    for m in range(k):
        value = objectives[:, m]
        order = jnp.lexsort((value, segment))
        v, s = value[order], segment[order]
        prev_same = jnp.concatenate([jnp.array([False]), s[1:] == s[:-1]])
        next_same = jnp.concatenate([s[:-1] == s[1:], jnp.array([False])])
        lo = jax.ops.segment_min(value, segment, num_segments=n)
        hi = jax.ops.segment_max(value, segment, num_segments=n)
        span = (hi - lo)[s]
        gap = jnp.roll(v, -1) - jnp.roll(v, 1)
        interior = prev_same & next_same
        distance = jnp.where(interior, jnp.where(span > 0, gap / jnp.where(span > 0, span, 1.0),
                                                 0.0), jnp.inf)
        total = total.at[order].add(distance)
    return jnp.where(ranked, total, 0.0)


def non_dominated_ranks(objectives: jax.Array, violations: jax.Array, valid: jax.Array,
                        group: jax.Array | None = None) -> jax.Array:
    """`(n,)` int32 every valid row's non-dominated rank (0: the first front) under
    constrained domination, comparing only rows of one `group` (e.g. a rung) where
    given; `_UNRANKED` for invalid rows."""
    dominates = constrained_domination(jnp.where(valid[:, None], objectives, 0.0),
                                       violations, valid)
    if group is not None:
        dominates = dominates & (group[:, None] == group[None])

    def peel(carry):
        rank, front = carry
        left = valid & (rank == _UNRANKED)
        current = left & ~jnp.any(dominates & left[:, None], axis=0)
        return jnp.where(current, front, rank), front + 1

    def unfinished(carry):
        return jnp.any(valid & (carry[0] == _UNRANKED))

    rank0 = jnp.full(valid.shape, _UNRANKED, jnp.int32)
    return jax.lax.while_loop(unfinished, peel, (rank0, jnp.int32(0)))[0]
