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

import inspect
from collections.abc import Callable

from jaxnas._compiling import HELPER_OPTIONS, MODEL_OPTIONS, jit_with
from jaxnas.optimizers import gp
from jaxnas.optimizers._asha import ASHAState, asha, async_hyperband, async_priorband
from jaxnas.optimizers._bo import bayesian_optimization
from jaxnas.optimizers._base import (
    Optimizer,
    Proposals,
    Source,
    Status,
    Trials,
    check,
    has_priors,
)
from jaxnas.optimizers._incumbent import IncumbentSelection, incumbent_index
from jaxnas.optimizers._brackets import BracketState, hyperband, successive_halving
from jaxnas.optimizers._evolution import regularized_evolution
from jaxnas.optimizers._grid import GridSearchState, grid_search
from jaxnas.optimizers._multi_objective import MultiObjectiveState, multi_objective
from jaxnas.optimizers._nsga2 import NSGA2State, nsga2
from jaxnas.optimizers._priorband import priorband
from jaxnas.optimizers._priorband_bo import priorband_bo
from jaxnas.optimizers._tpe import tpe
from jaxnas.optimizers._random_search import (
    RandomSearchState,
    complex_random_search,
    random_search,
)
from jaxnas.space import Categorical, SearchSpace

_CONSTRUCTORS: dict[str, Callable[..., Optimizer]] = {
    "random_search": random_search,
    "complex_random_search": complex_random_search,
    "grid_search": grid_search,
    "regularized_evolution": regularized_evolution,
    "successive_halving": successive_halving,
    "hyperband": hyperband,
    "asha": asha,
    "async_hyperband": async_hyperband,
    "priorband": priorband,
    "async_priorband": async_priorband,
    "priorband_bo": priorband_bo,
    "tpe": tpe,
    "bayesian_optimization": bayesian_optimization,
    "nsga2": nsga2,
}
# Names in the DESIGN contract that have no implementation yet.
_PLANNED: tuple[str, ...] = ()


# Single-objective optimisers that take several objectives through `multi_objective`
# (`get(name, spec, n_objectives=k, multi_objective=mode)`), with their default mode.
_WRAPPED = {"successive_halving": "rank", "hyperband": "rank", "asha": "rank",
            "async_hyperband": "rank", "priorband": "rank", "async_priorband": "rank", "priorband_bo": "rank", "tpe": "rank",
            "bayesian_optimization": "parego"}
# Optimisers that take several objectives: `nsga2` and the wrapped ones are told every
# objective; random and grid search only read whether a trial failed, so they run with any
# number (told the first).
MULTI_OBJECTIVE = ("nsga2", *_WRAPPED, "random_search", "grid_search")


def takes_objective_vectors(optimizer: Optimizer) -> bool:
    """Whether `optimizer.tell(state, ids, losses, violations)` takes every objective
    (`losses` `(B, k)`, each minimised) and each trial's violation of the bounds on its
    outcomes (`(B,)`, 0 when feasible): a multi-objective optimiser such as `nsga2`."""
    try:
        return "violations" in inspect.signature(optimizer.tell).parameters
    except (TypeError, ValueError):
        return False


# Optimisers that ignore the space's priors unless one of these arguments is set (none:
# always); `sample_prior_first` makes the first trial the prior's mode.
_PRIOR_SWITCH = {"random_search": ("use_prior",),
                 "successive_halving": ("use_prior", "sample_prior_first"),
                 "hyperband": ("use_prior", "sample_prior_first"),
                 "asha": ("use_prior", "sample_prior_first"),
                 "async_hyperband": ("use_prior", "sample_prior_first"),
                 "regularized_evolution": ("use_prior",),
                 "nsga2": ("use_prior",),
                 "grid_search": ()}


def auto_choice(spec: SearchSpace) -> str:
    """The optimiser `"auto"` stands for, as NePS chooses by the space: PriorBand with a
    fidelity and priors, Hyperband with a fidelity alone, Bayesian optimisation without a
    fidelity (PiBO with priors), TPE for a space of categoricals only (no GP dimension)
    or where the installed JAX or optax is too old for the GP (`gp.check_supported`).

    Args:
        spec: A compiled search space.

    Returns:
        An optimiser name of `get`.
    """
    with_prior = has_priors(spec)
    if spec.fidelity is not None:
        return "priorband" if with_prior else "hyperband"
    numeric = any(not isinstance(spec.parameters()[p], Categorical) for p in spec.paths)
    return "bayesian_optimization" if numeric and gp.supported() else "tpe"


def ignores_priors(name: str, spec: SearchSpace, kwargs: dict | None = None) -> bool:
    """Whether optimiser `name` with `kwargs` would ignore priors that `spec` has."""
    if name not in _PRIOR_SWITCH or not has_priors(spec):
        return False
    return not any((kwargs or {}).get(switch, False) for switch in _PRIOR_SWITCH[name])


# Optimisers that fit or score a model at every ask, one ask per trial: their programs
# compile for speed (`jaxnas._compiling.MODEL_OPTIONS`), the others' for a short compile.
_MODELS_EVERY_TRIAL = ("tpe", "bayesian_optimization")


def jitted(optimizer: Optimizer, name: str | None = None) -> Optimizer:
    """`optimizer` with its `init`, `ask` and `tell` jitted as `jn.run` jits them.

    On a CPU, jaxnas compiles an optimiser's programs with its own XLA options (see
    `jaxnas/_compiling.py`): those of `tpe` and `bayesian_optimization`, which model every
    trial and are asked once per trial, at LLVM level 1 (their steps run about twice as
    fast as at level 0, for a compile about 1.4 times as long) and with only the matrix
    products among XLA's library (YNNPACK) fusions; every other optimiser's,
    asked a few dozen times in a run, at level 0, where they compile fastest. Time an
    optimiser through this to time what `jn.run` runs. Elsewhere, or with an optimisation
    level in `XLA_FLAGS`, it is `jax.jit`.

    Args:
        optimizer: An `Optimizer`.
        name: The name `get` made it by (after `"auto"`'s choice, `auto_choice`), or None
            for an optimiser of the user's.

    Returns:
        An `Optimizer` of jitted functions.
    """
    options = MODEL_OPTIONS if name in _MODELS_EVERY_TRIAL else HELPER_OPTIONS
    return Optimizer(*(jit_with(fn, options) for fn in optimizer))


def get(name: str, spec: SearchSpace, **kwargs) -> Optimizer:
    """Builds the optimiser called `name` (as `jn.run(optimizer=name)` accepts it).

    Args:
        name: One of the names in `_CONSTRUCTORS` (`random_search`, `tpe`, `hyperband`,
            `priorband`, ...), or `"auto"` (see `auto_choice`); the error for any other
            lists them.
        spec: A compiled search space.
        **kwargs: Keyword arguments of that constructor.

    Returns:
        An `Optimizer`.

    Raises:
        ValueError: an unknown name, or one not implemented yet (the message lists the
            available names); an option the optimiser does not have (the message lists
            its options).
    """
    if name == "auto":
        name = auto_choice(spec)
    known = options(name)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown option{'s' * (len(unknown) > 1)} "
                         f"{', '.join(map(repr, unknown))}; its options are "
                         f"{', '.join(known)}.")
    if name not in _WRAPPED:
        return _CONSTRUCTORS[name](spec, **kwargs)
    n_objectives = kwargs.pop("n_objectives", 1)
    mode = kwargs.pop("multi_objective", _WRAPPED[name])
    if isinstance(n_objectives, bool) or not isinstance(n_objectives, int) or n_objectives < 1:
        raise ValueError(f"{name}: n_objectives={n_objectives!r} must be an integer >= 1.")
    optimizer = _CONSTRUCTORS[name](spec, **kwargs)
    if n_objectives == 1:
        return optimizer
    return multi_objective(optimizer, n_objectives, mode=mode)


def options(name: str) -> list[str]:
    """The keyword arguments optimiser `name` takes (after the space).

    Raises:
        ValueError: an unknown name, or one not implemented yet (the message lists the
            available names).
    """
    available = ", ".join(sorted(_CONSTRUCTORS))
    if name in _PLANNED:
        raise ValueError(f"optimizer {name!r} is not implemented yet; available: {available}.")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown optimizer {name!r}; available: {available}.")
    own = [p for p in inspect.signature(_CONSTRUCTORS[name]).parameters if p != "spec"]
    return own + (["n_objectives", "multi_objective"] if name in _WRAPPED else [])


__all__ = [
    "ASHAState",
    "MULTI_OBJECTIVE",
    "MultiObjectiveState",
    "BracketState",
    "GridSearchState",
    "IncumbentSelection",
    "NSGA2State",
    "Optimizer",
    "Proposals",
    "RandomSearchState",
    "Source",
    "Status",
    "Trials",
    "asha",
    "async_hyperband",
    "async_priorband",
    "auto_choice",
    "bayesian_optimization",
    "check",
    "complex_random_search",
    "get",
    "grid_search",
    "hyperband",
    "ignores_priors",
    "incumbent_index",
    "jitted",
    "multi_objective",
    "nsga2",
    "options",
    "priorband",
    "priorband_bo",
    "random_search",
    "regularized_evolution",
    "successive_halving",
    "takes_objective_vectors",
    "tpe",
]
