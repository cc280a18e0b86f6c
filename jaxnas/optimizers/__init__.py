"""Functional optimisers: `Optimizer(init, ask, tell)` triples of pure, jittable functions.

Each constructor takes a compiled `SearchSpace` first and returns an `Optimizer`:

    opt = jn.optimizers.priorband(spec, eta=3)
    state = opt.init(jax.random.key(0))
    state, proposals = jax.jit(opt.ask)(state, key)      # a fixed-size batch
    state = jax.jit(opt.tell)(state, proposals.trial_ids, losses)
    jn.optimizers.check(state)                           # raises if the state overflowed

States are NamedTuples of arrays with fixed capacity (`max_trials` rounded up to a power of
two): `jax.tree` utilities, `jax.jit`, `jax.device_put` and checkpointing work on them.
"""

from collections.abc import Callable

from jaxnas.optimizers._bo import bayesian_optimization
from jaxnas.optimizers._base import Optimizer, Proposals, Source, Status, Trials, check
from jaxnas.optimizers._incumbent import IncumbentSelection, incumbent_index
from jaxnas.optimizers._brackets import BracketState, hyperband, successive_halving
from jaxnas.optimizers._evolution import regularized_evolution
from jaxnas.optimizers._grid import GridSearchState, grid_search
from jaxnas.optimizers._priorband import priorband
from jaxnas.optimizers._priorband_bo import priorband_bo
from jaxnas.optimizers._tpe import tpe
from jaxnas.optimizers._random_search import (
    RandomSearchState,
    complex_random_search,
    random_search,
)
from jaxnas.space import SearchSpace

_CONSTRUCTORS: dict[str, Callable[..., Optimizer]] = {
    "random_search": random_search,
    "complex_random_search": complex_random_search,
    "grid_search": grid_search,
    "regularized_evolution": regularized_evolution,
    "successive_halving": successive_halving,
    "hyperband": hyperband,
    "priorband": priorband,
    "priorband_bo": priorband_bo,
    "tpe": tpe,
    "bayesian_optimization": bayesian_optimization,
}
# Names in the DESIGN contract that have no implementation yet.
_PLANNED = ("asha", "nsga2")


def get(name: str, spec: SearchSpace, **kwargs) -> Optimizer:
    """Builds the optimiser called `name` (as `jn.run(optimizer=name)` accepts it).

    Args:
        name: One of the names in `_CONSTRUCTORS` (`random_search`, `tpe`, `hyperband`,
            `priorband`, ...); the error for any other lists them.
        spec: A compiled search space.
        **kwargs: Keyword arguments of that constructor.

    Returns:
        An `Optimizer`.

    Raises:
        ValueError: an unknown name, or one not implemented yet; the message lists the
            available names.
    """
    available = ", ".join(sorted(_CONSTRUCTORS))
    if name in _PLANNED:
        raise ValueError(f"optimizer {name!r} is not implemented yet; available: {available}.")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown optimizer {name!r}; available: {available}.")
    return _CONSTRUCTORS[name](spec, **kwargs)


__all__ = [
    "BracketState",
    "GridSearchState",
    "IncumbentSelection",
    "Optimizer",
    "Proposals",
    "RandomSearchState",
    "Source",
    "Status",
    "Trials",
    "bayesian_optimization",
    "check",
    "complex_random_search",
    "get",
    "grid_search",
    "hyperband",
    "incumbent_index",
    "priorband",
    "priorband_bo",
    "random_search",
    "regularized_evolution",
    "successive_halving",
    "tpe",
]
