"""What every optimiser shares: the `Optimizer` triple, proposals, the trial table, `tell`."""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas._shapes import pad_to_power_of_two
from jaxnas.space import Config, SearchSpace


class Optimizer(NamedTuple):
    """An optimiser as three pure, jittable functions (optax's `GradientTransformation`).

    Attributes:
        init: `init(key) -> state`, an empty state of fixed capacity.
        ask: `ask(state, key) -> (state, proposals)`, a fixed-size batch of `Proposals`.
        tell: `tell(state, trial_ids, losses) -> state`; NaN or inf losses are failures.
    """

    init: Callable[[jax.Array], Any]
    ask: Callable[[Any, jax.Array], tuple[Any, Proposals]]
    tell: Callable[[Any, jax.Array, jax.Array], Any]


class Proposals(NamedTuple):
    """A fixed-size batch of trials to evaluate; rows with `valid=False` are padding.

    Attributes:
        configs: A `Config` with leading axis `B`.
        fidelities: `(B,)` float32, the fidelity to evaluate each trial at. Single-fidelity
            optimisers use the space's maximum, or NaN for a space without a fidelity.
        trial_ids: `(B,)` int32, new and unique for every valid row; -1 for padding.
        valid: `(B,)` bool.
        parent_ids: `(B,)` int32, for a promotion the trial (same config, previous rung)
            whose training state it continues from; -1 for a new sample and for padding.
    """

    configs: Config
    fidelities: jax.Array
    trial_ids: jax.Array
    valid: jax.Array
    parent_ids: jax.Array


class Status(enum.IntEnum):
    """The state of a row of the trial table (`Trials.status`)."""

    EMPTY = 0  # no trial yet
    PENDING = 1  # asked, no result yet
    SUCCESS = 2  # told a finite loss
    FAILED = 3  # told NaN or inf: never promoted, never the incumbent


class Source(enum.IntEnum):
    """How a trial's configuration was generated (`Trials.sources`)."""

    UNIFORM = 0  # spec.sample
    PRIOR = 1  # spec.sample_prior
    INCUMBENT = 2  # a mutation of the incumbent (PriorBand)
    PROMOTION = 3  # an earlier trial's config at the next rung
    MUTATION = 4  # a mutation of one of the best configs (complex random search)
    CROSSOVER = 5  # a mix of two of the best configs (complex random search)
    MODEL = 6  # proposed by a model of the results (TPE, Bayesian optimisation)


class Trials(NamedTuple):
    """The trial table; row `i` is trial id `i`.

    Attributes:
        configs: A `Config` with leading axis `capacity`.
        fidelities: `(capacity,)` float32, fidelity of each trial; NaN in empty rows.
        rungs: `(capacity,)` int32, rung index (0 = lowest fidelity); -1 in empty rows and
            for single-fidelity optimisers.
        brackets: `(capacity,)` int32, the bracket instance a trial belongs to; -1 outside
            brackets.
        parent_ids: `(capacity,)` int32, the trial a promotion continues from; -1 otherwise.
        losses: `(capacity,)` float32, the told loss; NaN until told (and for failures
            told as NaN).
        status: `(capacity,)` int32, a `Status` per row.
        sources: `(capacity,)` int32, a `Source` per row; -1 in empty rows.
        count: `()` int32, rows in use (the next trial id).
    """

    configs: Config
    fidelities: jax.Array
    rungs: jax.Array
    brackets: jax.Array
    parent_ids: jax.Array
    losses: jax.Array
    status: jax.Array
    sources: jax.Array
    count: jax.Array


def empty_trials(spec: SearchSpace, capacity: int) -> Trials:
    """An empty trial table of `capacity` rows for configs of `spec`."""
    shapes = jax.eval_shape(spec.sample, jax.random.key(0))
    configs = jax.tree.map(lambda s: jnp.zeros((capacity, *s.shape), s.dtype), shapes)
    minus_one = jnp.full((capacity,), -1, jnp.int32)
    return Trials(
        configs=configs,
        fidelities=jnp.full((capacity,), jnp.nan, jnp.float32),
        rungs=minus_one,
        brackets=minus_one,
        parent_ids=minus_one,
        losses=jnp.full((capacity,), jnp.nan, jnp.float32),
        status=jnp.full((capacity,), Status.EMPTY, jnp.int32),
        sources=minus_one,
        count=jnp.zeros((), jnp.int32),
    )


def add_trials(trials: Trials, configs: Config, fidelities: jax.Array, valid: jax.Array, *,
               sources: jax.Array, rungs: jax.Array | int = -1,
               brackets: jax.Array | int = -1,
               parent_ids: jax.Array | int = -1) -> tuple[Trials, jax.Array]:
    """Appends the valid rows of a batch (valid rows first) as pending trials.

    Args:
        trials: The table; the caller has checked that the valid rows fit.
        configs: A `Config` with leading axis `B`.
        fidelities: `(B,)` float32.
        valid: `(B,)` bool, a prefix of True values.
        sources: `(B,)` int32 `Source` codes.
        rungs, brackets, parent_ids: `(B,)` int32 or one int for all rows.

    Returns:
        The new table and the `(B,)` int32 trial ids (-1 for invalid rows).
    """
    batch = valid.shape[0]
    capacity = trials.status.shape[0]
    ids = jnp.where(valid, trials.count + jnp.arange(batch, dtype=jnp.int32), -1)
    rows = jnp.where(valid, ids, capacity)  # out of range: the scatter drops invalid rows

    def put(column: jax.Array, values: Any) -> jax.Array:
        values = jnp.broadcast_to(jnp.asarray(values, column.dtype), (batch, *column.shape[1:]))
        return column.at[rows].set(values, mode="drop")

    new = trials._replace(
        configs=jax.tree.map(put, trials.configs, configs),
        fidelities=put(trials.fidelities, fidelities),
        rungs=put(trials.rungs, rungs),
        brackets=put(trials.brackets, brackets),
        parent_ids=put(trials.parent_ids, parent_ids),
        status=put(trials.status, Status.PENDING),
        sources=put(trials.sources, sources),
        count=trials.count + jnp.sum(valid, dtype=jnp.int32),
    )
    return new, ids


def record_results(trials: Trials, trial_ids: jax.Array, losses: jax.Array) -> Trials:
    """Writes told losses into the table (the body of every optimiser's `tell`).

    Only pending trials take a result: ids of -1 (padding), ids never asked, and trials
    already told are ignored, so a result cannot be changed once told. A non-finite loss
    marks the trial failed. With an id repeated in one batch, one of its losses is kept.
    """
    trial_ids = jnp.asarray(trial_ids, jnp.int32).reshape(-1)
    losses = jnp.asarray(losses, jnp.float32).reshape(-1)
    if trial_ids.shape != losses.shape:
        raise ValueError(f"tell: trial_ids has shape {trial_ids.shape} but losses has "
                         f"shape {losses.shape}; give one loss per trial id.")
    capacity = trials.status.shape[0]
    in_range = (trial_ids >= 0) & (trial_ids < trials.count)
    pending = trials.status[jnp.clip(trial_ids, 0, capacity - 1)] == Status.PENDING
    rows = jnp.where(in_range & pending, trial_ids, capacity)
    status = jnp.where(jnp.isfinite(losses), Status.SUCCESS, Status.FAILED).astype(jnp.int32)
    return trials._replace(
        losses=trials.losses.at[rows].set(losses, mode="drop"),
        status=trials.status.at[rows].set(status, mode="drop"),
    )


def newly_told(trials: Trials, trial_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Which of a tell's ids take their result now, for summaries kept beside the table.

    Args:
        trials: The table before `record_results`.
        trial_ids: `(B,)` int32, the ids told.

    Returns:
        `(B,)` rows (the ids clipped into the table) and `(B,)` bool: pending before this
        tell, and the first of any repeats of an id in the batch (`record_results` keeps
        one result per id).
    """
    trial_ids = jnp.asarray(trial_ids, jnp.int32).reshape(-1)
    capacity = trials.status.shape[0]
    rows = jnp.clip(trial_ids, 0, capacity - 1)
    pending = ((trial_ids >= 0) & (trial_ids < trials.count)
               & (trials.status[rows] == Status.PENDING))
    batch = trial_ids.shape[0]
    if batch > 512:  # a sort; below, B x B comparisons (cheaper than a sort per seed)
        order = jnp.argsort(trial_ids, stable=True)
        ordered = trial_ids[order]
        first = jnp.concatenate([jnp.ones((1,), bool), ordered[1:] != ordered[:-1]])
        return rows, pending & jnp.zeros_like(first).at[order].set(first)
    earlier = jnp.arange(batch)[None, :] < jnp.arange(batch)[:, None]  # (B, B): j < i
    repeat = jnp.any(earlier & (trial_ids[None, :] == trial_ids[:, None]), axis=1)
    return rows, pending & ~repeat


def keep_best(kept: jax.Array, losses: jax.Array, rows: jax.Array,
              eligible: jax.Array) -> jax.Array:
    """The best rows after new results: what a top-k of the table would give, kept up to date
    by tell so that an ask reads `k` rows instead of the table.

    Args:
        kept: `(k,)` int32 rows ordered by loss and then row, -1 past the last one.
        losses: `(capacity,)` the table's losses.
        rows: `(B,)` int32 rows just told.
        eligible: `(B,)` bool, which of them may enter (newly succeeded, of the right kind).

    Returns:
        The new `(k,)` rows, in the same order (ties to the lower row, as `lax.top_k`).
    """
    size, batch = kept.shape[0], rows.shape[0]
    if size == 0:
        return kept
    unused = jnp.iinfo(jnp.int32).max
    if batch > 512:  # a sort; below, a merge that costs what the batch does
        candidates = jnp.concatenate([kept, jnp.where(eligible, rows, -1)])
        key_rows = jnp.where(candidates >= 0, candidates, unused)
        key_losses = jnp.where(candidates >= 0, losses[jnp.clip(candidates, 0)], jnp.inf)
        _, ordered = jax.lax.sort((key_losses, key_rows), num_keys=2)
        return jnp.where(ordered[:size] == unused, -1, ordered[:size])

    def keys(at: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
        # (loss as an order-preserving int, row); the unused ones last
        value = losses[jnp.clip(at, 0)]
        # -0.0 -> 0.0, so that equal losses tie (XLA folds `value + 0.0` to `value`).
        value = jnp.where(value == 0.0, 0.0, value)
        bits = jax.lax.bitcast_convert_type(value, jnp.int32)
        bits = jnp.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
        return jnp.where(valid, bits, unused), jnp.where(valid, at, unused)

    def before(a: tuple, b: tuple) -> jax.Array:
        return (a[0] < b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))

    old, new = keys(kept, kept >= 0), keys(rows, eligible)
    # Each new row's place among the kept ones: binary search of the sorted list.
    def halve(_, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        low, high = bounds
        searching = low < high
        middle = jnp.minimum((low + high) // 2, size - 1)
        less = before((old[0][middle], old[1][middle]), new) & searching
        return jnp.where(less, middle + 1, low), jnp.where(searching & ~less, middle, high)

    low, _ = jax.lax.fori_loop(0, size.bit_length(), halve, (
        jnp.zeros((batch,), jnp.int32), jnp.full((batch,), size, jnp.int32)))
    among_new = jnp.sum(before((new[0][None, :], new[1][None, :]),
                               (new[0][:, None], new[1][:, None])), axis=1)
    place_new = jnp.where(eligible, low + among_new, size)
    shift = jnp.cumsum(jnp.zeros((size + 1,), jnp.int32).at[
        jnp.where(eligible, low, size)].add(1))[:size]  # new rows ahead of each kept one
    place_kept = jnp.where(kept >= 0, jnp.arange(size) + shift, size)
    merged = jnp.full((size,), -1, jnp.int32)
    merged = merged.at[place_kept].set(kept, mode="drop")
    return merged.at[place_new].set(rows, mode="drop")


def newest_trials(trials: Trials, size: int) -> Trials:
    """The newest `size` rows of the table (rows `[count - size, count)`, or the first
    `size` while fewer are in use), as a table of `size` rows: what a model-based optimiser
    reads when its cost must not grow with the capacity. The whole table when `size` is
    not smaller; while at most `size` trials exist, the same trials in the same order."""
    capacity = trials.status.shape[0]
    if size >= capacity:
        return trials
    start = jnp.clip(trials.count - size, 0, capacity - size)
    window = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0),
                          trials._replace(count=None))  # None: no leaf to slice
    return window._replace(count=jnp.minimum(trials.count, size))


def fidelity_spent(trials: Trials) -> jax.Array:
    """The fidelity the told trials trained, `()` float32: a promotion counts only what it
    adds to its parent's fidelity.

    The same rule as `jn.run`'s `max_fidelity_spent` budget, which the run folder's store
    applies to its trial table.
    """
    told = (trials.status == Status.SUCCESS) | (trials.status == Status.FAILED)
    parents = jnp.clip(trials.parent_ids, 0)
    parent_fidelity = jnp.where(trials.parent_ids >= 0, trials.fidelities[parents], 0.0)
    return jnp.sum(jnp.where(told, trials.fidelities - parent_fidelity, 0.0))


def no_proposals(trials: Trials, batch: int) -> tuple[Config, jax.Array]:
    """Padding configs (copies of row 0) and `(batch,)` False for an empty batch."""
    configs = jax.tree.map(lambda c: jnp.broadcast_to(c[0], (batch, *c.shape[1:])),
                           trials.configs)
    return configs, jnp.zeros((batch,), bool)


def map_rows(fn: Callable[..., Any], *rows: Any) -> Any:
    """`fn` over the leading axis of `rows`, one row at a time (`jax.lax.map`).

    For the space methods that draw random numbers (`sample`, `sample_prior`, `mutate`):
    XLA compiles them three to four times faster on CPU as a loop over rows than vmapped
    over keys, and a batch of proposals is small, so the loop costs little at run time.
    """
    return jax.lax.map(lambda args: fn(*args), rows)


def feasible_rows(spec: SearchSpace, key: jax.Array, configs: Config) -> Config:
    """A batch with each row that breaks the space's constraints (`SearchSpace.constrain`)
    replaced by a feasible local move of it, else by a feasible uniform draw; the batch
    itself on a space without constraints. For proposals made outside `sample` and
    `mutate` (a model's candidates decoded with `from_unit`, a crossover)."""
    if not spec.constrained:
        return configs
    n = jax.tree.leaves(configs)[0].shape[0]
    key_move, key_fresh = jax.random.split(key)
    ok = jax.vmap(spec.feasible)(configs)
    moved = map_rows(lambda k, c: spec.mutate(k, c, 0.5, 0.1),
                     jax.random.split(key_move, n), configs)
    fresh = map_rows(spec.sample, jax.random.split(key_fresh, n))
    choice = jnp.where(ok, 0, jnp.where(jax.vmap(spec.feasible)(moved), 1, 2))
    return select_rows(choice.astype(jnp.int32), (configs, moved, fresh))


def inverse_cdf(u: jax.Array, weights: jax.Array) -> jax.Array:
    """Indices drawn with probability proportional to `weights` (`(n,)`, >= 0) from uniforms
    `u` in [0, 1), by inverse CDF; zero-weight indices are never drawn."""
    cdf = jnp.cumsum(weights)
    index = jnp.sum(cdf[None, :] <= (u * cdf[-1])[:, None], axis=-1)
    last = jnp.max(jnp.where(weights > 0, jnp.arange(weights.shape[0]), 0))
    return jnp.minimum(index, last).astype(jnp.int32)  # guards rounding at the top end


def select_rows(index: jax.Array, options: tuple[Config, ...]) -> Config:
    """Row `i` of option `index[i]`; every option is a `Config` with leading axis B."""
    def pick(*columns: jax.Array) -> jax.Array:
        stacked = jnp.stack(columns)  # (n_options, B, ...)
        return jnp.take_along_axis(
            stacked, index.reshape(1, -1, *([1] * (stacked.ndim - 2))), axis=0)[0]
    return jax.tree.map(pick, *options)


def check(state: Any) -> None:
    """Raises if an optimiser state ran out of room (host-side; not under jit).

    An `ask` that needs more trials than the state can hold returns only padding and sets
    `state.overflow`; inside jit it cannot raise, so call this after `ask` (or at the end
    of a run) to turn the flag into an error.

    Args:
        state: A state from any `jaxnas.optimizers` optimiser (or a batch of them).

    Raises:
        ValueError: the state overflowed; the message names its capacity and what to raise.
    """
    if np.any(np.asarray(jax.device_get(state.overflow))):
        capacity = state.trials.status.shape[-1]
        count = int(np.max(np.asarray(jax.device_get(state.trials.count))))
        raise ValueError(
            f"optimizer state is full: it holds {capacity} trials ({count} used) and an ask "
            f"needed more, so it returned nothing. Raise the optimizer's max_trials (the "
            f"capacity is max_trials rounded up to a power of two), e.g. to {2 * capacity}."
        )


# ----------------------------------------------------------------- argument checks


def check_space(owner: str, spec: Any, *, needs_fidelity: bool) -> SearchSpace:
    """Returns `spec` or raises: a compiled space, with a fidelity where needed."""
    if not isinstance(spec, SearchSpace):
        raise TypeError(f"{owner}: spec must be a compiled SearchSpace (jaxnas.compile(space)), "
                        f"got {type(spec).__name__}.")
    if needs_fidelity and spec.fidelity is None:
        raise ValueError(
            f"{owner}: the space has no fidelity, but this optimiser is multi-fidelity. Add a "
            f"jn.Fidelity(lower, upper) entry (e.g. epochs) or use random_search."
        )
    return spec


def check_positive_int(owner: str, name: str, value: Any) -> int:
    """Returns `value` or raises: it must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name}={value!r} must be an integer >= 1.")
    return int(value)


def check_positive_float(owner: str, name: str, value: Any) -> float:
    """Returns `value` as a float or raises: it must be a finite number > 0."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{owner}: {name}={value!r} must be a positive, finite number.")
    return float(value)


def check_non_negative_float(owner: str, name: str, value: Any) -> float:
    """Returns `value` as a float or raises: it must be a finite number >= 0."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"{owner}: {name}={value!r} must be a finite number >= 0.")
    return float(value)


def has_priors(spec: SearchSpace) -> bool:
    """Whether any parameter of the space has a prior."""
    return any(getattr(p, "prior", None) is not None for p in spec.parameters().values())


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Returns `value` or raises: it must be a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name}={value!r} must be True or False.")
    return value


def capacity_for(max_trials: int, batch_size: int) -> int:
    """Rows of the trial table: room for `max_trials` and one batch, as a power of two.

    A power of two lets runs of similar length share compiled programs (DESIGN, fixed
    shapes).
    """
    return pad_to_power_of_two(max(max_trials, batch_size))


def max_fidelity(spec: SearchSpace) -> float:
    """The fidelity single-fidelity optimisers evaluate at: the maximum, or NaN if none."""
    return float("nan") if spec.fidelity is None else float(spec.fidelity.upper)
