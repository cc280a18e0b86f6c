"""Single-fidelity optimisers: random search and NePS's complex random search."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Proposals, Source, Status, Trials
from jaxnas.space import Config, SearchSpace

# Complex random search draws from a pool as NePS builds it per requested config: 5 uniform
# samples, 5 prior samples, 20 mutations per top configuration (5 of each of four kinds)
# and 6 crossovers when there are two top configurations to mix.
_POOL_UNIFORM, _POOL_PRIOR, _POOL_MUTATION_PER_PARENT, _POOL_CROSSOVER = 5.0, 5.0, 20.0, 6.0
# NePS re-samples mutated values around the old one with its "medium" confidence: a normal
# of sigma 0.25 in the unit cube.
_MUTATION_STD = 0.25


class RandomSearchState(NamedTuple):
    """State of `random_search` and `complex_random_search` (and of `tpe`,
    `bayesian_optimization` and `regularized_evolution`).

    Attributes:
        trials: The trial table (`Trials`), `capacity` rows.
        overflow: `()` bool, set when an ask needed more rows than the table has.
        best: `(k,)` int32, the rows of the best successful trials by loss and then row, -1
            past them, kept by `tell` for optimisers that read them (`complex_random_search`:
            `k = n_top`; 0 for the others).
        model: what a model-based optimiser carries from ask to ask (`bayesian_optimization`:
            its GP's last fitted hyperparameters, where the next fit starts); `()` for the
            others.
    """

    trials: Trials
    overflow: jax.Array
    best: jax.Array
    model: Any = ()


def random_search(spec: SearchSpace, *, batch_size: int = 16, use_prior: bool = False,
                  max_trials: int = 1024) -> Optimizer:
    """Random search: every ask samples `batch_size` new configurations.

    Trials are evaluated at the space's maximum fidelity (NaN for a space without one).

    Args:
        spec: A compiled search space.
        batch_size: Configurations per ask.
        use_prior: Sample from the space's prior (`spec.sample_prior`) instead of uniformly.
        max_trials: Trials the state must hold; its capacity is this rounded up to a power
            of two. Asking for more sets the overflow flag (see `check`).

    Returns:
        An `Optimizer` whose state is a `RandomSearchState`.

    Raises:
        TypeError, ValueError: a bad argument; the message names it.

    Example:
        >>> opt = random_search(spec, batch_size=8)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))
    """
    owner = "random_search"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    sample = spec.sample_prior if use_prior else spec.sample
    source = Source.PRIOR if use_prior else Source.UNIFORM

    def propose(state: RandomSearchState, key: jax.Array) -> tuple[Config, jax.Array]:
        del state  # random search ignores the history
        configs = _base.map_rows(sample, jax.random.split(key, batch_size))
        return configs, jnp.full((batch_size,), source, jnp.int32)

    return _single_fidelity(spec, propose, batch_size, max_trials)


def complex_random_search(spec: SearchSpace, *, batch_size: int = 16, n_top: int = 5,
                          max_trials: int = 1024) -> Optimizer:
    """Random search that also mutates and crosses over the best configurations so far.

    Each new configuration is drawn from the mixture NePS's `complex_random_search` builds
    its candidate pool from (`neps/optimizers/neps_random_search.py`): with `T` the number
    of top configurations (the best `n_top` successful trials), weights 5 uniform, 5 prior,
    `20 T` mutation and 6 crossover (when `T >= 2`). A mutation takes one top configuration,
    picks one slot or `k ~ U{1, ..., max(1, d // 2)}` of its `d` slots, and either re-samples
    them around their value (truncated normal, sigma 0.25 in the unit cube; a categorical
    takes another value) or forgets them (uniform re-sample): four kinds, equally likely.
    A crossover takes two distinct top configurations and each slot from the second with
    probability 0.5. On a grammar (`spec.recursive_rules`), a mutation keeps the
    derivation's tree (`spec.carry_over`) and a crossover grafts a subtree of the second
    into the first (`spec.crossover`).

    Differences from NePS, for fixed shapes: NePS samples from a finite pool without
    replacement and retries a crossover that took nothing from the second parent; here
    each configuration is an independent draw from the pool's mixture.

    Args:
        spec: A compiled search space.
        batch_size: Configurations per ask.
        n_top: How many of the best configurations to mutate and cross (NePS: 5).
        max_trials: Trials the state must hold (see `random_search`).

    Returns:
        An `Optimizer` whose state is a `RandomSearchState`; trials run at the maximum
        fidelity.

    Raises:
        TypeError, ValueError: a bad argument; the message names it.
    """
    owner = "complex_random_search"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    n_top = _base.check_positive_int(owner, "n_top", n_top)
    max_trials = max(_base.check_positive_int(owner, "max_trials", max_trials), n_top)

    def propose(state: RandomSearchState, key: jax.Array) -> tuple[Config, jax.Array]:
        return _complex_batch(spec, state, key, batch_size)

    return _single_fidelity(spec, propose, batch_size, max_trials, n_best=n_top)


def _single_fidelity(spec: SearchSpace, propose, batch_size: int, max_trials: int,
                     n_best: int = 0, model: Any = ()) -> Optimizer:
    """Wraps `propose(state, key) -> (configs (B), sources (B))` into an `Optimizer` whose
    state keeps the `n_best` best rows (`RandomSearchState.best`). With a `model` (the
    initial `RandomSearchState.model`), `propose` returns the next model third."""
    capacity = _base.capacity_for(max_trials, batch_size)
    fidelity = _base.max_fidelity(spec)

    def init(key: jax.Array) -> RandomSearchState:
        del key  # the empty state is deterministic
        return RandomSearchState(_base.empty_trials(spec, capacity), jnp.zeros((), bool),
                                 jnp.full((min(n_best, capacity),), -1, jnp.int32), model)

    def ask(state: RandomSearchState, key: jax.Array) -> tuple[RandomSearchState, Proposals]:
        fits = state.trials.count + batch_size <= capacity
        if spec.constrained:  # a model's or a crossover's proposals, made feasible
            key, key_repair = jax.random.split(key)
        configs, sources, *carried = propose(state, key)
        if spec.constrained:
            configs = _base.feasible_rows(spec, key_repair, configs)
        if carried:
            state = state._replace(model=carried[0])
        fidelities = jnp.full((batch_size,), fidelity, jnp.float32)
        valid = jnp.broadcast_to(fits, (batch_size,))
        trials, ids = _base.add_trials(state.trials, configs, fidelities, valid,
                                       sources=sources)
        parents = jnp.full((batch_size,), -1, jnp.int32)
        state = state._replace(trials=trials, overflow=state.overflow | ~fits)
        return state, Proposals(configs, fidelities, ids, valid, parents)

    def tell(state: RandomSearchState, trial_ids: jax.Array,
             losses: jax.Array) -> RandomSearchState:
        trials = _base.record_results(state.trials, trial_ids, losses)
        rows, newly = _base.newly_told(state.trials, trial_ids)
        best = _base.keep_best(state.best, trials.losses, rows,
                               newly & (trials.status[rows] == Status.SUCCESS))
        return state._replace(trials=trials, best=best)

    return Optimizer(init, ask, tell)


def _complex_batch(spec: SearchSpace, state: RandomSearchState, key: jax.Array,
                   batch: int) -> tuple[Config, jax.Array]:
    """`batch` draws from complex random search's mixture (see `complex_random_search`)."""
    trials, n_slots = state.trials, len(spec.paths)
    top = jnp.maximum(state.best, 0)  # (n_top,) the best rows (tell keeps them)
    n_parents = jnp.sum(state.best >= 0, dtype=jnp.int32)
    weights = jnp.stack([
        jnp.float32(_POOL_UNIFORM),
        jnp.float32(_POOL_PRIOR),
        _POOL_MUTATION_PER_PARENT * n_parents.astype(jnp.float32),
        jnp.where(n_parents >= 2, _POOL_CROSSOVER, 0.0).astype(jnp.float32),
    ])
    key_draws, key_rows = jax.random.split(key)
    # Every choice below reads one table of uniforms: on CPU each PRNG call site costs
    # about half a second of compile time. A row uses only the columns of the option it
    # picks, so options may share columns.
    draws = jax.random.uniform(key_draws, (batch, 4 + 2 * n_slots))  # (B, 4 + 2 d)
    kind = _base.inverse_cdf(draws[:, 0], weights)  # (B,) 0..3
    first = _uniform_index(draws[:, 1], n_parents)  # (B,)
    second = _uniform_index(draws[:, 2], n_parents - 1)
    second = second + (second >= first)  # distinct from `first`
    mutation = draws[:, 3]  # (B,) which of the four mutations, and k
    slot_draws = draws[:, 4: 4 + n_slots]  # (B, d) subset to mutate; crossover mask
    if spec.constrained:  # rejection inside `sample` (`SearchSpace.constrain`)
        uniform = _base.map_rows(spec.sample, jax.random.split(key_draws, batch))
    else:
        uniform = jax.vmap(spec.from_unit)(draws[:, 4 + n_slots:])  # also "forgotten" values
    key_prior, key_centred = jax.random.split(key_rows, (2, batch))
    prior = _base.map_rows(spec.sample_prior, key_prior)

    def parent(index: jax.Array) -> Config:
        return jax.tree.map(lambda column: column[top[index]], trials.configs)

    def mutant(key: jax.Array, index: jax.Array, mutation: jax.Array, slot_draws: jax.Array,
               forgotten: Config) -> Config:
        config = parent(index)
        centred = spec.mutate(key, config, 1.0, _MUTATION_STD)
        child = _mutate_slots(mutation, slot_draws, config, centred, forgotten)
        # A grammar's tree is kept where the mutation left it (else `child` itself).
        return spec.carry_over(config, child, jax.random.fold_in(key, 1))

    def crossover(first: jax.Array, second: jax.Array, slot_draws: jax.Array) -> Config:
        return _merge(slot_draws < 0.5, parent(second), parent(first))

    def graft(key: jax.Array, first: jax.Array, second: jax.Array) -> Config:
        return spec.crossover(key, parent(first), parent(second))

    mutants = _base.map_rows(mutant, key_centred, first, mutation, slot_draws, uniform)
    if spec.recursive_rules:  # a grammar: a subtree of one parent grafted into the other
        crosses = _base.map_rows(graft, key_centred, first, second)
    else:
        crosses = jax.vmap(crossover)(first, second, slot_draws)
    configs = _base.select_rows(kind, (uniform, prior, mutants, crosses))
    codes = jnp.asarray([Source.UNIFORM, Source.PRIOR, Source.MUTATION, Source.CROSSOVER],
                        jnp.int32)
    return configs, codes[kind]


def _uniform_index(u: jax.Array, n: jax.Array) -> jax.Array:
    """An index uniform in [0, n) from uniforms `u` in [0, 1); 0 when n < 1."""
    n = jnp.maximum(n, 1)
    return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def _mutate_slots(u: jax.Array, slot_draws: jax.Array, config: Config, centred: Config,
                  forgotten: Config) -> Config:
    """One of NePS's four mutations of `config`, chosen by the uniform `u`.

    Kinds 0 and 1 re-sample around the old values (`centred`), kinds 2 and 3 forget them
    (`forgotten`, uniform); kinds 0 and 2 change one slot, kinds 1 and 3 change
    `k ~ U{1, ..., max(1, d // 2)}` slots, a uniformly random subset: the `k` smallest of
    the iid uniforms `slot_draws` (`(d,)`).
    """
    n_slots = slot_draws.shape[0]
    kind = _uniform_index(u, 4)
    k_many = 1 + _uniform_index(u * 4 - kind, max(1, n_slots // 2))  # the fraction left in u
    n_changed = jnp.where(kind % 2 == 0, 1, k_many)
    changed = jnp.argsort(jnp.argsort(slot_draws)) < n_changed
    replacement = jax.tree.map(lambda a, b: jnp.where(kind < 2, a, b), centred, forgotten)
    return _merge(changed, replacement, config)


def _merge(take_new: jax.Array, new: Config, old: Config) -> Config:
    """Slot `i` (in `spec.paths` order) from `new` where `take_new[i]`, else from `old`.

    Works on the packed columns, so kept values are bit-exact (no unit-cube round trip).
    """
    is_float = np.asarray(old.layout.is_float, bool)
    take_float = take_new[np.flatnonzero(is_float)]
    take_int = take_new[np.flatnonzero(~is_float)]
    return Config(jnp.where(take_float, new.floats, old.floats),
                  jnp.where(take_int, new.ints, old.ints), old.layout)
