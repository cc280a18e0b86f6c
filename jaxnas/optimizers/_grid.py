"""Grid search: every combination of a few values per parameter, enumerated once on the host.

The grid has the shape of Optuna's `GridSampler` with NePS's `make_grid` discretisation:
every choice of a categorical, every value of an integer (or `points_per_integer` of them),
`points_per_float` evenly spaced values of a float. In a conditional space only distinct
*active* configurations count: the slots a config's branches do not use take one canonical
value, so a branch that is not chosen does not multiply the grid.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Proposals, Source, Trials
from jaxnas.space import Categorical, Config, Float, Integer, SearchSpace

# Rows per call of the compiled activity program the enumeration uses.
_CHUNK = 256


class GridSearchState(NamedTuple):
    """State of `grid_search`.

    Attributes:
        trials: The trial table (`Trials`); trial id `i` is the `i`-th grid point asked.
        order: `(n_points,)` int32, the grid's rows in the order asks take them: `0, 1, ...`,
            or a permutation drawn from the init key with `shuffle=True`.
        overflow: `()` bool, always False: the grid fits in the table (`grid_search`
            checks), kept so that `check` reads every optimiser's state alike.
    """

    trials: Trials
    order: jax.Array
    overflow: jax.Array


def grid_search(spec: SearchSpace, *, points_per_float: int = 5,
                points_per_integer: int | None = None, shuffle: bool = False,
                batch_size: int = 16, max_trials: int = 1024) -> Optimizer:
    """Grid search: asks go through every grid point once, then propose nothing.

    The grid is every combination of one value per active slot:

    - a `Categorical`: each of its feasible choices;
    - an `Integer`: each integer in `[lower, upper]`, or with `points_per_integer=k`, `k`
      evenly spaced values on its (log-)scale, both bounds included, rounded and without
      repeats (NePS's `make_grid`), for wide or log-scaled ranges;
    - a `Float`: `points_per_float` evenly spaced values from `lower` to `upper`, both
      included, on the log scale where `log=True`;
    - a `Float` or `Integer` with a `step`: its values `lower + k * step`, all of them or
      (when its `points_per_float` / `points_per_integer` is smaller) that many evenly
      spread among them, both ends included.

    In a conditional space a slot that a config's branches do not use holds its first grid
    value, so each distinct active configuration appears once (a branch that is not chosen
    does not multiply the grid). The grid is enumerated on the host when the optimiser is
    made, in lexicographic order of the values in `spec.paths` order (the first path varies
    slowest, as `itertools.product`), and `ask` indexes it by trial count: the `i`-th
    trial is the `order[i]`-th point. Once every point was asked, asks return only padding
    (`valid` all False); `jn.run` then stops ("the optimiser has nothing more to propose").

    Trials are evaluated at the space's maximum fidelity (NaN for a space without one).
    Priors are ignored, as in NePS and Optuna.

    Args:
        spec: A compiled search space.
        points_per_float: Values per float, at least 2 (NePS's default, 5).
        points_per_integer: Values per integer, at least 2, or None for every integer.
        shuffle: Visit the points in a random order drawn from the init key (Optuna's
            `GridSampler` order) instead of the lexicographic one: a run stopped early by
            its budget then covers the grid evenly.
        batch_size: Grid points per ask.
        max_trials: Trials the state must hold, at least the grid's size (see
            `random_search`).

    Returns:
        An `Optimizer` whose state is a `GridSearchState`.

    Raises:
        TypeError, ValueError: a bad argument, or a grid with more points than
            `max_trials`; the message names it and the grid's size.

    Example:
        >>> opt = grid_search(spec, points_per_float=3)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))
    """
    owner = "grid_search"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    points_per_float = _check_points(owner, "points_per_float", points_per_float)
    if points_per_integer is not None:
        points_per_integer = _check_points(owner, "points_per_integer", points_per_integer)
    shuffle = _base.check_bool(owner, "shuffle", shuffle)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    values = _slot_values(spec, points_per_float, points_per_integer)
    for fold_leaves in (True, False):
        structures = _structures(spec, fold_leaves, max_trials)
        size = None if structures is None else sum(
            math.prod(len(values[i]) for i in structure.varying) for structure in structures)
        if size is None or size > max_trials:
            raise ValueError(_too_large(owner, spec, values, size, max_trials,
                                        points_per_float, points_per_integer))
        grid, active = _points(spec, values, structures)
        # A folded categorical was assumed to switch nothing; a shared object can make it
        # switch something under other choices: then branch on every categorical.
        if np.array_equal(_active_rows(spec, grid), active):
            break
    if spec.constrained:  # only the points that satisfy the space's constraints
        feasible = np.asarray(jax.jit(jax.vmap(spec.feasible))(grid), bool)
        grid = jax.tree.map(lambda column: column[feasible], grid)
        size = int(feasible.sum())
        if size == 0:
            raise ValueError(f"{owner}: no point of the grid satisfies the space's "
                             f"constraints; refine it (points_per_float, "
                             f"points_per_integer) or loosen them.")
    return _grid_optimizer(spec, grid, size, shuffle, batch_size, max_trials)


def _grid_optimizer(spec: SearchSpace, grid: Config, n_points: int, shuffle: bool,
                    batch_size: int, max_trials: int) -> Optimizer:
    """The `Optimizer` that asks the `n_points` rows of `grid` (host arrays) in turn."""
    capacity = _base.capacity_for(max_trials, batch_size)
    fidelity = _base.max_fidelity(spec)

    def init(key: jax.Array) -> GridSearchState:
        if shuffle:
            order = jax.random.permutation(key, n_points).astype(jnp.int32)
        else:
            del key  # the lexicographic order needs no randomness
            order = jnp.arange(n_points, dtype=jnp.int32)
        return GridSearchState(_base.empty_trials(spec, capacity), order, jnp.zeros((), bool))

    def ask(state: GridSearchState, key: jax.Array) -> tuple[GridSearchState, Proposals]:
        del key  # the order was drawn at init
        position = state.trials.count + jnp.arange(batch_size, dtype=jnp.int32)
        valid = position < n_points  # a prefix: the rest of the grid, then padding
        rows = state.order[jnp.minimum(position, n_points - 1)]
        configs = jax.tree.map(lambda column: jnp.asarray(column)[rows], grid)
        fidelities = jnp.full((batch_size,), fidelity, jnp.float32)
        trials, ids = _base.add_trials(state.trials, configs, fidelities, valid,
                                       sources=Source.UNIFORM)
        parents = jnp.full((batch_size,), -1, jnp.int32)
        return (state._replace(trials=trials),
                Proposals(configs, fidelities, ids, valid, parents))

    def tell(state: GridSearchState, trial_ids: jax.Array,
             losses: jax.Array) -> GridSearchState:
        return state._replace(trials=_base.record_results(state.trials, trial_ids, losses))

    return Optimizer(init, ask, tell)


# ------------------------------------------------------------------ the grid, on the host


def _check_points(owner: str, name: str, value: Any) -> int:
    """Returns `value` or raises: an integer >= 2 (a grid includes both bounds)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValueError(f"{owner}: {name}={value!r} must be an integer >= 2 (the grid "
                         f"includes both bounds).")
    return int(value)


def _slot_values(spec: SearchSpace, points_per_float: int,
                 points_per_integer: int | None) -> list[Sequence]:
    """Each slot's grid values (`spec.paths` order), ascending: float64 for a float, int64
    for an integer (a `range` for every integer: its length is known before it is listed),
    the feasible choice indices for a categorical."""
    parameters = spec.parameters()
    feasible = _feasible_choices(spec)
    out = []
    for path in spec.paths:
        parameter = parameters[path]
        if isinstance(parameter, Categorical):
            out.append(feasible[path])
            continue
        count = points_per_float if isinstance(parameter, Float) else points_per_integer
        if parameter.step is not None:  # a grid of its own: all of it, or `count` of it
            out.append(_stepped_values(parameter, count))
        elif isinstance(parameter, Integer) and points_per_integer is None:
            out.append(range(parameter.lower, parameter.upper + 1))
        else:
            spaced = np.geomspace if parameter.log else np.linspace
            points = spaced(parameter.lower, parameter.upper, count)  # ends exact
            if isinstance(parameter, Integer):
                out.append(np.unique(np.round(points).astype(np.int64)))
            else:  # repeats only where float32 cannot tell the points apart
                out.append(np.unique(points.astype(np.float32)).astype(np.float64))
    return out


def _stepped_values(parameter: Float | Integer, count: int | None) -> Sequence:
    """A parameter with a `step`: every value `lower + k * step` (an `Integer`'s as a
    `range`), or, when `count` is smaller than their number, `count` of them evenly spread
    (both ends included)."""
    steps = round((parameter.upper - parameter.lower) / parameter.step)
    if isinstance(parameter, Integer) and (count is None or count > steps):
        return range(parameter.lower, parameter.upper + 1, parameter.step)
    ks = np.arange(steps + 1) if count is None or count > steps else np.unique(
        np.round(np.linspace(0, steps, count)).astype(np.int64))
    values = parameter.grid(ks)
    return values if isinstance(parameter, Integer) else np.unique(values).astype(np.float64)


@functools.lru_cache(maxsize=32)
def _feasible_choices(spec: SearchSpace) -> dict[str, np.ndarray]:
    """Each categorical's feasible choices (those a recursive grammar can finish), sorted.

    `from_unit` maps `n_feasible` equal bins of [0, 1] to the feasible choices; a choice
    list of `n >= n_feasible` entries puts a point `(i + 0.5) / n` in every bin.
    """
    parameters = spec.parameters()
    sizes = [len(parameters[p].choices) if isinstance(parameters[p], Categorical) else 1
             for p in spec.paths]
    if not spec.paths:
        return {}
    rows = np.arange(max(sizes))[:, None]
    unit = (np.minimum(rows, np.asarray(sizes) - 1) + 0.5) / np.asarray(sizes)
    decoded = jax.device_get(jax.vmap(spec.from_unit)(unit.astype(np.float32)))
    return {p: np.unique(np.asarray(decoded[p])).astype(np.int64) for p in spec.paths
            if isinstance(parameters[p], Categorical)}


class _Structure(NamedTuple):
    """One branch combination of a space: its configs are every combination of values of
    the `varying` slots, with the `choices` made and every other slot at its first value.

    Attributes:
        choices: `{slot: index}`, the choices of the active categoricals that switch
            branches.
        varying: the other active slots (numbers, and categoricals that switch nothing).
        active: `(n_slots,)` bool, the active slots of each of its configs.
    """

    choices: dict
    varying: tuple
    active: np.ndarray


@functools.lru_cache(maxsize=32)
def _structures(spec: SearchSpace, fold_leaves: bool,
                limit: int) -> tuple[_Structure, ...] | None:
    """The distinct branch combinations of the space, or None if there are more than
    `limit` (each has one point at least, so the grid has more than `limit` points).

    A breadth-first walk over the categoricals only (numbers never switch branches): a
    partial combination fixes some categoricals and leaves the others at their first choice;
    its first open categorical (active, neither fixed nor folded) is fixed to each of its
    choices in turn, until none is open. With `fold_leaves`, a categorical whose choices all
    leave the same slots active (an activation, an operation without searched arguments) is
    folded: it varies like a number instead of being branched on, so that a flat space of
    many categoricals stays one combination (`grid_search` checks that assumption on the
    grid). Where a categorical comes after a slot it switches (an object shared by several
    branches) a combination may be reached twice: it is kept once, but may count twice
    towards `limit`. Cached: `jn.run` builds its optimiser more than once.
    """
    is_categorical = [isinstance(q, Categorical) for q in spec.parameters().values()]
    choices = _feasible_choices(spec)
    first = _first_values(spec, choices)
    frontier = [({}, ())]  # (fixed choices {slot: index}, folded slots)
    masks = list(_active(spec, first, [{}]))
    done: dict[tuple, _Structure] = {}
    while frontier:
        groups = []  # per open partial combination: its children, one per choice
        for (fixed, folded), mask in zip(frontier, masks):
            open_slots = [i for i, c in enumerate(is_categorical)
                          if c and mask[i] and i not in fixed and i not in folded]
            if open_slots:
                slot = open_slots[0]
                groups.append((slot, [({**fixed, slot: int(v)}, folded)
                                      for v in choices[spec.paths[slot]]]))
                continue
            key = tuple(sorted((i, v) for i, v in fixed.items() if mask[i]))
            varying = tuple(i for i, on in enumerate(mask)
                            if on and (not is_categorical[i] or i in folded))
            done.setdefault(key, _Structure(dict(key), varying, mask))
        children = [child for _, group in groups for child in group]
        child_masks = iter(_active(spec, first, [fixed for fixed, _ in children]))
        frontier, masks = [], []
        for slot, group in groups:
            group_masks = [next(child_masks) for _ in group]
            if fold_leaves and all(np.array_equal(m, group_masks[0]) for m in group_masks):
                (fixed, folded), mask = group[0], group_masks[0]
                frontier.append(({k: v for k, v in fixed.items() if k != slot},
                                 folded + (slot,)))
                masks.append(mask)
            else:
                frontier += group
                masks += group_masks
        if len(done) + len(frontier) > limit:
            return None
    return tuple(done.values())


def _first_values(spec: SearchSpace, choices: dict[str, np.ndarray]) -> dict[str, Any]:
    """A valid config (host values by path): every slot at its lower bound or first
    feasible choice."""
    parameters = spec.parameters()
    return {p: choices[p][0] if p in choices else parameters[p].lower for p in spec.paths}


def _active(spec: SearchSpace, first: dict[str, Any], fixed: list[dict]) -> np.ndarray:
    """`(len(fixed), n_slots)` bool: the active slots of `first` with each dict's choices
    (`{slot: index}`) written in."""
    columns = {p: np.full((len(fixed),), value) for p, value in first.items()}
    for row, assignment in enumerate(fixed):
        for slot, value in assignment.items():
            columns[spec.paths[slot]][row] = value
    return _active_rows(spec, spec.config(columns))


def _active_rows(spec: SearchSpace, configs: Config) -> np.ndarray:
    """`(n, n_slots)` bool: `spec.active` of a batch of host configs, in chunks of
    `_CHUNK` rows (one compiled program)."""
    n = np.shape(configs.floats)[0]
    if not spec.paths or n == 0:
        return np.zeros((n, len(spec.paths)), bool)
    program = _active_program(spec)
    out = []
    for start in range(0, n, _CHUNK):
        rows = np.minimum(np.arange(start, start + _CHUNK), n - 1)  # the last chunk padded
        out.append(np.asarray(program(jax.tree.map(lambda c: c[rows], configs)).array))
    return np.concatenate(out)[:n]


@functools.lru_cache(maxsize=32)
def _active_program(spec: SearchSpace) -> Any:
    return jax.jit(jax.vmap(spec.active))


def _points(spec: SearchSpace, values: list[Sequence],
            structures: tuple[_Structure, ...]) -> tuple[Config, np.ndarray]:
    """The grid as a `Config` of host arrays, sorted lexicographically in `spec.paths`
    order, and each point's active slots `(n, n_slots)` as its structure says; inactive
    slots hold their first value."""
    if not spec.paths:  # no decisions: one point, the empty config
        return (jax.tree.map(lambda column: column[None], spec.config({})),
                np.zeros((1, 0), bool))
    tables, masks = [], []
    for structure in structures:
        varying = list(structure.varying)
        combos = np.asarray(list(itertools.product(*(values[i] for i in varying))),
                            np.float64)  # (n, len(varying)); (1, 0) when nothing varies
        table = np.tile(np.asarray([v[0] for v in values], np.float64), (len(combos), 1))
        table[:, varying] = combos
        for slot, choice in structure.choices.items():
            table[:, slot] = choice
        tables.append(table)
        masks.append(np.broadcast_to(structure.active, table.shape))
    table, mask = np.concatenate(tables), np.concatenate(masks)
    order = np.lexsort(table.T[::-1])
    return spec.config({p: table[order, i] for i, p in enumerate(spec.paths)}), mask[order]


def _too_large(owner: str, spec: SearchSpace, values: list[Sequence], size: int | None,
               max_trials: int, points_per_float: int, points_per_integer: int | None) -> str:
    """The error for a grid with more points than `max_trials`: its size and what to do."""
    size_text = (f"more than max_trials={max_trials} points (its branch combinations alone "
                 f"number more)" if size is None
                 else f"{size} points, more than max_trials={max_trials}")
    widest = max(range(len(values)), key=lambda i: len(values[i]))
    integers = ("every integer value" if points_per_integer is None
                else f"points_per_integer={points_per_integer}")
    return (f"{owner}: the grid has {size_text}. Its widest "
            f"parameter is {spec.paths[widest]!r} with {len(values[widest])} values "
            f"(points_per_float={points_per_float}, {integers}). Coarsen the grid "
            f"(points_per_float, points_per_integer, or a Categorical of chosen values) or "
            f"raise max_trials (in jn.run: optimizer_kwargs={{'max_trials': ...}}).")
