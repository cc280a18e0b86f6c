"""Single-fidelity optimisers: jaxnas against Optuna and against random search, side by side.

What is compared (the table `COMPARISONS`; all in this one process, on the same problems,
seeds and budgets, the optimisers alternating seed by seed):
    * `tpe`: jaxnas `tpe` (batch 1, Optuna's n_startup_trials 10 and n_ei_candidates 24, no
      prior) against Optuna `TPESampler(multivariate=True, group=True, seed=seed)`, Optuna's
      defaults otherwise. Rule: jaxnas no worse.
    * `bo`: jaxnas `bayesian_optimization` (batch 1, 10 start-up trials as GPSampler, no
      prior) against Optuna `GPSampler(seed=seed)`, Optuna's defaults. Rule: no worse.
    * `evolution`: jaxnas `regularized_evolution` (batch 1, its defaults: population 50,
      tournament 10) against jaxnas `random_search` (batch 1). Rule: evolution better at
      the last budget point (300 evaluations).
    * `grid`: jaxnas `grid_search` (batch 1, shuffled, the finest resolution whose grid
      fits in the largest budget; the coarsest one, 2 values a parameter, taken whole if
      none does) against jaxnas `random_search`; reported, no rule.
An optimiser name that `jaxnas.optimizers.get` does not build ("not implemented yet", or
an error while building it) makes its row "not available", with the reason, and the rest
runs. `--stand-in random_search` runs random search in place of such an optimiser instead,
to exercise the harness: its rows say so and carry no verdict. The table `JAXNAS_KWARGS`
holds each optimiser's keywords; a row's optimiser is one name in `COMPARISONS`.

Problems, at full fidelity (z = 100: no bias, no noise), without priors:
    * `branin`: `jaxnas.problems.mf_branin()`, 2 floats;
    * `hartmann6`: `jaxnas.problems.mf_hartmann(6)`, 6 floats in [0, 1];
    * `mixed`: `jaxnas.problems.mf_mixed()`, a categorical over three conditional branches
      (log floats, a log integer, floats), a categorical, a float and an integer.
Optuna gets the same space, read from the compiled jaxnas space (`optuna_space`): same
bounds and log scales, integers as `suggest_int`, categoricals as `suggest_categorical`
over the choice indices, and a parameter inside a branch suggested only when its branch is
chosen (the conditions are checked against `spec.active` on samples). Both sides evaluate
the same jitted `problem.evaluate`; Optuna's values are packed into a jaxnas config for it
(inactive branches get placeholder values, which the problems ignore).

Quality: regret = the incumbent's loss (the lowest loss among the first n evaluations) minus
the problem's known optimum, at budget points n = 25, 50, 100, 200 (`tpe`), 25, 50 (`bo`:
Optuna's GP takes 0.15-0.8 s a trial on 2 cores, so 100 would add 15-40 min) and 50, 100,
200, 300 (`evolution`, `grid`). Per point: median and quartiles over seeds; one-sided
Mann-Whitney U tests (scipy) that jaxnas's regrets are higher ("worse") or lower ("better")
than the peer's; P(jaxnas beats peer): the probability that a jaxnas run has the lower
regret, ties counting half.
Verdicts follow the project's rules, Holm's correction taken over every (problem, budget
point) pair that enters the verdict (all of them for "no worse", each problem's last point
for `evolution`):
    * "no worse": no point significantly worse (Holm-adjusted p < 0.05) and P(jaxnas beats
      peer) >= 0.45 at every point;
    * "better": significantly better (Holm-adjusted p < 0.05) at every point.

Seeds: seed s drives both sides of a run (`jax.random.key(s)` for jaxnas, `seed=s` for
Optuna). Development seeds are 0..N-1 (N = 20; `--quick` 3). `--verdict` runs the verdict
seeds 10000..10000+N-1 instead, which were not used while this script was developed; keep
them out of development (`--seeds` alone never reaches them). Only a `--verdict` run gives
verdicts; the others' are marked indicative.

Overhead per trial: the optimiser's own time, (wall time of the run - time inside the
objective) / trials, on `hartmann6` and `mixed`, for runs of 50, 200 and 1,000 trials for
TPE, and 25, 50 and 200 for the GP (Optuna's GP takes about 25 s for 200 trials of
`hartmann6` on 2 cores, its L-BFGS-B sequential without `greenlet`). A count equal to a
comparison's last budget point reads that comparison's regret runs (20 seeds); the others
are 3 dedicated runs (the first 3 seeds), jaxnas and Optuna alternating; medians reported.
For Optuna a run is `create_study` and the `ask` / `suggest_*` / `tell` loop (in-memory
storage); the objective is packing the values into a config and the jitted evaluation. For
jaxnas a run is `init` and the host loop of jitted `ask` and `tell` with its transfers
(`max_trials` = the trial count, the state's capacity that rounded up to a power of two);
the objective is the jitted batch evaluation. XLA compilation of init, ask and tell, with
one warm-up call of each, is timed apart: "excl. compile" leaves it out, "incl. compile"
adds it to one run (a fresh process pays it once per problem, optimiser and capacity; a
persistent compilation cache, if JAX has one set, is recorded in the JSON). Optuna runs a
short warm-up study per sampler first, so that its lazy imports (torch) are not counted.
Next to each jaxnas figure, its floor: the same loop over the same state with an ask and
a tell that compute nothing (`doing_nothing`), the least any optimiser with that state
costs a trial here; `peer / floor` bounds the ratio that any could reach.
Target: jaxnas TPE's and GP's overhead per trial at least 10x below Optuna's TPE's and
GP's at 200 trials. The programs are compiled as `jn.run` compiles them
(`jn.optimizers.jitted`, through `_common.compile_optimizer`).

Run it from the repository root:
    python benchmarks/optimizers.py                 # 20 development seeds: 16 min on 2
                                                    # busy CPU cores, over half Optuna's GP
    python benchmarks/optimizers.py --quick         # 3 seeds, small budgets: 47 s idle,
                                                    # 105 s busy
    python benchmarks/optimizers.py --quick --stand-in random_search
    python benchmarks/optimizers.py --only tpe overhead --problems mixed
    python benchmarks/optimizers.py --verdict       # the verdict seeds: verdicts

It prints markdown tables and writes JSON (default `benchmarks/results/optimizers.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optuna

import jaxnas as jn
from _common import (ALPHA, MIN_SUPERIORITY, compile_optimizer, holm, machine_info,
                     no_worse, one_sided_p, probability_of_superiority, quartiles,
                     write_results)
from jaxnas import optimizers, problems

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "optimizers.json"

DEVELOPMENT_FIRST_SEED = 0
VERDICT_FIRST_SEED = 10_000  # never used while developing: see the module docstring
MIN_VERDICT_SEEDS = 20
TARGET_OVERHEAD_RATIO = 10.0
TARGET_OVERHEAD_TRIALS = 200
NO_WORSE, BETTER = "no worse", "better"

# jaxnas optimisers by name, with the keywords they get (max_trials is added per run). To
# put an optimiser in a comparison, add or change one line here and one in COMPARISONS.
# The spaces have no priors; use_prior=False says so.
JAXNAS_KWARGS: dict[str, dict[str, Any]] = {
    "tpe": {"batch_size": 1, "n_startup_trials": 10, "n_ei_candidates": 24,
            "use_prior": False},  # Optuna's defaults
    "bayesian_optimization": {"batch_size": 1, "n_startup_trials": 10,  # GPSampler's
                              "use_prior": False},
    "regularized_evolution": {"batch_size": 1, "use_prior": False},
    "grid_search": {"batch_size": 1, "shuffle": True},  # Optuna's GridSampler order
    "random_search": {"batch_size": 1},
}
# Keywords set to the finest resolution whose grid fits in max_trials (the run's budget):
# a user who can afford B evaluations grids the space as finely as B allows. Shuffled, a
# grid stopped by a smaller budget point still covers the space evenly.
RESOLUTION = {"grid_search": ("points_per_float", "points_per_integer")}
MAX_RESOLUTION = 64
# Peers: a name -> the Optuna sampler for a seed. Any other name in COMPARISONS is a jaxnas
# optimiser of JAXNAS_KWARGS.
PEERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "Optuna TPE": lambda seed: optuna.samplers.TPESampler(multivariate=True, group=True,
                                                          seed=seed),
    "Optuna GP": lambda seed: optuna.samplers.GPSampler(seed=seed),
}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One row of the benchmark: a jaxnas optimiser against a peer.

    Attributes:
        name: Its name for `--only` and in the output.
        ours: The jaxnas optimiser (a key of JAXNAS_KWARGS).
        theirs: The peer: a key of PEERS or of JAXNAS_KWARGS.
        rule: NO_WORSE, BETTER, or None (reported without a verdict).
        last_point_only: The verdict reads only each problem's last budget point.
    """

    name: str
    ours: str
    theirs: str
    rule: str | None
    last_point_only: bool = False


COMPARISONS = (
    Comparison("tpe", "tpe", "Optuna TPE", NO_WORSE),
    Comparison("bo", "bayesian_optimization", "Optuna GP", NO_WORSE),
    Comparison("evolution", "regularized_evolution", "random_search", BETTER,
               last_point_only=True),
    Comparison("grid", "grid_search", "random_search", None),
)
# Overhead: (comparison, trial counts in the full run).
OVERHEAD = (("tpe", (50, 200, 1000)), ("bo", (25, 50, 200)))

PROBLEMS: dict[str, Callable[[], Any]] = {
    "branin": problems.mf_branin,
    "hartmann6": lambda: problems.mf_hartmann(6),
    "mixed": problems.mf_mixed,
}

# An overhead trial count equal to a comparison's last budget point reuses its regret runs.
FULL = {
    "seeds": 20,
    "budgets": {"tpe": (25, 50, 100, 200), "bo": (25, 50),
                "evolution": (50, 100, 200, 300), "grid": (50, 100, 200, 300)},
    "overhead_trials": dict(OVERHEAD),
    "overhead_problems": ("hartmann6", "mixed"),
    "overhead_repetitions": 3,
}
QUICK = {
    "seeds": 3,
    "budgets": {"tpe": (10, 25), "bo": (10, 15), "evolution": (25, 50), "grid": (25, 50)},
    "overhead_trials": {"tpe": (25, 200), "bo": (15,)},
    "overhead_problems": ("hartmann6",),
    "overhead_repetitions": 1,
}
OPTUNA_WARM_UP_TRIALS = 12  # past the samplers' 10 random start-up trials


@dataclasses.dataclass
class Run:
    """One optimiser run: its losses in evaluation order and where the time went.

    Attributes:
        losses: Loss of each evaluation, in order.
        wall_s: Wall time of the whole run (optimiser set-up included, compilation not).
        objective_s: Wall time inside the objective.
        stopped_early: The optimiser proposed nothing more before the budget (a finished
            grid); later budget points keep its last incumbent.
    """

    losses: list[float]
    wall_s: float
    objective_s: float
    stopped_early: bool = False

    @property
    def trials(self) -> int:
        return len(self.losses)

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.objective_s


# ----------------------------------------------------------------------- jaxnas side


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a jaxnas optimiser row can run, and what runs in its place."""

    name: str  # the optimiser the row is about
    runs: str | None  # the optimiser that actually runs: name, a stand-in, or None
    reason: str = ""  # why not available, or that a stand-in runs

    @property
    def label(self) -> str:
        if self.runs is None or self.runs == self.name:
            return f"jaxnas {self.name}"
        return f"jaxnas {self.runs} (standing in for {self.name})"

    @property
    def stand_in(self) -> bool:
        return self.runs is not None and self.runs != self.name


def make_optimizer(name: str, spec: jn.SearchSpace,
                   max_trials: int) -> tuple[optimizers.Optimizer, dict[str, Any]]:
    """`optimizers.get(name, ...)` with JAXNAS_KWARGS, its resolution fitted (RESOLUTION).

    Returns:
        The optimiser and the keywords it was made with.
    """
    kwargs = {**JAXNAS_KWARGS[name], "max_trials": max_trials}
    if name not in RESOLUTION:
        return optimizers.get(name, spec, **kwargs), kwargs
    fitted = None
    for points in range(2, MAX_RESOLUTION + 1):  # finer until the grid outgrows max_trials
        resolution = {**kwargs, **dict.fromkeys(RESOLUTION[name], points)}
        try:
            fitted = optimizers.get(name, spec, **resolution), resolution
        except ValueError:
            break
    if fitted is not None:
        return fitted
    # Not even the coarsest grid fits in the budget: take it whole, with room for it in
    # the state (the run stops at the budget, on a shuffled subset of it).
    for k in range(17):
        coarsest = {**kwargs, **dict.fromkeys(RESOLUTION[name], 2),
                    "max_trials": max(max_trials, 2 ** k)}
        try:
            return optimizers.get(name, spec, **coarsest), coarsest
        except ValueError:
            if k == 16:
                raise
    raise AssertionError("unreachable")


def availability(name: str, spec: jn.SearchSpace, stand_in: str | None) -> Availability:
    """Builds `name` once to see whether it can run; if not, the stand-in runs, if any.

    An optimiser that is not implemented yet (`optimizers.get` says so), or whose
    construction fails (a work in progress, or a keyword of JAXNAS_KWARGS it does not
    take), is "not available", with the error, before any run starts.
    """
    try:
        make_optimizer(name, spec, max_trials=1024)
    except Exception as error:  # noqa: BLE001 - reported in the table and the JSON
        problem = ("is not implemented yet" if "not implemented yet" in str(error) else
                   f"could not be built ({type(error).__name__}: {error})")
        if stand_in is None:
            return Availability(name, None, f"not available: jaxnas {name} {problem}")
        return Availability(name, stand_in, f"jaxnas {name} {problem}; {stand_in} runs in "
                                            f"its place (--stand-in)")
    return Availability(name, name)


class JaxnasDriver:
    """A jaxnas optimiser compiled for one problem and capacity, run seed after seed.

    The loop: ask (jitted) -> evaluate the batch (jitted, vmapped; padding rows are
    evaluated too and dropped) -> tell (jitted). Compilation and one warm-up call of each
    program happen here, timed apart from the runs (`compile_s`: init, ask and tell;
    `objective_compile_s`: the problem's batch evaluation).
    """

    def __init__(self, problem: Any, spec: jn.SearchSpace, name: str, max_trials: int,
                 floor: bool = False):
        optimizer, self.kwargs = make_optimizer(name, spec, max_trials)
        if floor:
            optimizer = doing_nothing(optimizer)
        self.init, self.ask, self.tell, self.compile_s, proposals = compile_optimizer(
            optimizer, lambda ids: jnp.zeros(ids.shape, jnp.float32), name)

        def evaluate_batch(configs: Any, fidelities: jax.Array) -> jax.Array:
            # Full fidelity: no noise, so one fixed key serves every evaluation.
            return jax.vmap(problem.evaluate, (0, 0, None))(configs, fidelities,
                                                            jax.random.key(0))

        start = time.perf_counter()
        self.evaluate = jax.jit(evaluate_batch).lower(proposals.configs,
                                                      proposals.fidelities).compile()
        jax.block_until_ready(self.evaluate(proposals.configs, proposals.fidelities))
        self.objective_compile_s = time.perf_counter() - start

    def run(self, seed: int, evaluations: int) -> Run:
        """Runs until `evaluations` trials are evaluated (a last batch may overshoot)."""
        init_key, ask_key = jax.random.split(jax.random.key(seed))
        losses: list[float] = []
        objective_s, step, stopped_early = 0.0, 0, False
        start = time.perf_counter()
        state = self.init(init_key)
        while len(losses) < evaluations:
            state, proposals = self.ask(state, ask_key, np.int32(step))
            step += 1
            valid = np.asarray(proposals.valid)  # waits for the ask
            if not valid.any():
                optimizers.check(state)  # raises if the state is full
                stopped_early = True  # e.g. a grid with no point left
                break
            evaluation_start = time.perf_counter()
            batch_losses = self.evaluate(proposals.configs, proposals.fidelities)
            host_losses = np.asarray(batch_losses)
            objective_s += time.perf_counter() - evaluation_start
            state = self.tell(state, proposals.trial_ids, batch_losses)
            losses.extend(host_losses[valid].tolist())
        jax.block_until_ready(state)
        return Run(losses, time.perf_counter() - start, objective_s, stopped_early)


def doing_nothing(optimizer: optimizers.Optimizer) -> optimizers.Optimizer:
    """`optimizer`'s state and proposals, nothing computed: the ask hands back the first
    ask's proposals again and marks their rows pending, the tell writes the losses. Run by
    `JaxnasDriver`, it is the floor of any optimiser's overhead with that state: two
    programs over it a trial, and their transfers."""
    key = jax.random.key(0)
    _, first = jax.jit(optimizer.ask)(optimizer.init(key), key)

    def ask(state: Any, key: jax.Array) -> tuple[Any, Any]:
        trials = state.trials
        pending = trials.status.at[first.trial_ids].set(optimizers.Status.PENDING)
        return state._replace(trials=trials._replace(status=pending)), first

    def tell(state: Any, trial_ids: jax.Array, losses: jax.Array) -> Any:
        trials = state.trials
        return state._replace(trials=trials._replace(
            losses=trials.losses.at[trial_ids].set(losses)))

    return optimizers.Optimizer(optimizer.init, ask, tell)


# ------------------------------------------------------------------------ Optuna side


@dataclasses.dataclass(frozen=True)
class OptunaParameter:
    """One slot of a compiled jaxnas space, as Optuna suggests it.

    Attributes:
        path: The slot's path, also Optuna's parameter name.
        kind: "float", "int" or "categorical" (suggested as its choice index).
        low, high, log: Bounds and scale of a float or int; for a categorical, 0, the
            number of choices - 1, False.
        conditions: (categorical path, choice index) pairs that must all hold for the slot
            to be active; parents come earlier in the tuple of parameters.
        placeholder: The value an inactive slot gets in the packed config.
    """

    path: str
    kind: str
    low: float
    high: float
    log: bool
    conditions: tuple[tuple[str, int], ...]
    placeholder: Any


_CHOICE = re.compile(r"\.choices\[(\d+)\]")


def optuna_space(spec: jn.SearchSpace) -> tuple[OptunaParameter, ...]:
    """The slots of `spec` (its fidelity left out) as Optuna parameters, in slot order.

    A slot below `.choices[i]` of a categorical's path is active when that categorical
    takes choice i (and its own parents are active): `check_conditions` verifies this
    reading against `spec.active`.
    """
    parameters = []
    for path, parameter in spec.parameters().items():
        conditions = tuple((path[:match.start()], int(match.group(1)))
                           for match in _CHOICE.finditer(path))
        if isinstance(parameter, jn.Categorical):
            entry = OptunaParameter(path, "categorical", 0, len(parameter.choices) - 1, False,
                                    conditions, 0)
        elif isinstance(parameter, (jn.Float, jn.Integer)):
            kind = "int" if isinstance(parameter, jn.Integer) else "float"
            entry = OptunaParameter(path, kind, parameter.lower, parameter.upper,
                                    parameter.log, conditions, parameter.lower)
        else:
            raise TypeError(f"optuna_space: {path} is a {type(parameter).__name__}, which "
                            f"this benchmark does not translate")
        parameters.append(entry)
    return tuple(parameters)


def check_conditions(spec: jn.SearchSpace, parameters: Sequence[OptunaParameter],
                     samples: int = 256) -> None:
    """Raises unless `optuna_space`'s conditions give `spec.active` on uniform samples."""
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), samples))
    active = np.asarray(jax.vmap(spec.active)(configs).array)
    values = {path: np.asarray(configs[path]) for path in spec.paths}
    for column, parameter in enumerate(parameters):
        expected = np.ones(samples, bool)
        for parent, choice in parameter.conditions:
            expected &= values[parent] == choice
        if not np.array_equal(expected, active[:, column]):
            raise ValueError(f"optuna_space: the condition read from {parameter.path!r} does "
                             f"not match spec.active")


def suggest(trial: optuna.Trial, parameters: Sequence[OptunaParameter]) -> dict[str, Any]:
    """Suggests every active parameter (define-by-run); inactive ones get placeholders."""
    values: dict[str, Any] = {}
    for p in parameters:
        if not all(values[parent] == choice for parent, choice in p.conditions):
            values[p.path] = p.placeholder
        elif p.kind == "float":
            values[p.path] = trial.suggest_float(p.path, p.low, p.high, log=p.log)
        elif p.kind == "int":
            values[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high), log=p.log)
        else:
            values[p.path] = trial.suggest_categorical(p.path, list(range(int(p.high) + 1)))
    return values


def suggest_placeholders(parameters: Sequence[OptunaParameter]) -> dict[str, Any]:
    """Every parameter at its placeholder: a valid config to warm the objective up with."""
    return {p.path: p.placeholder for p in parameters}


class OptunaDriver:
    """Optuna samplers on one problem: the ask / suggest / tell loop around the objective."""

    def __init__(self, problem: Any, spec: jn.SearchSpace, warm: set[str]):
        """`warm`: the peers that already ran in this process (shared, updated here)."""
        self.spec = spec
        self._warm = warm
        self.parameters = optuna_space(spec)
        check_conditions(spec, self.parameters)
        fidelity = jnp.float32(problems.FIDELITY_UPPER)
        self.evaluate = jax.jit(lambda config: problem.evaluate(config, fidelity,
                                                                jax.random.key(0)))
        self.objective(suggest_placeholders(self.parameters))  # traces and compiles it

    def objective(self, values: Mapping[str, Any]) -> float:
        return float(self.evaluate(self.spec.config(values)))

    def run(self, peer: str, seed: int, evaluations: int) -> Run:
        """One study of `evaluations` trials with the peer's sampler seeded by `seed`."""
        if peer not in self._warm:  # lazy imports: torch for the GP
            self._study(peer, seed, OPTUNA_WARM_UP_TRIALS)
            self._warm.add(peer)
        return self._study(peer, seed, evaluations)

    def _study(self, peer: str, seed: int, evaluations: int) -> Run:
        losses: list[float] = []
        objective_s = 0.0
        start = time.perf_counter()
        study = optuna.create_study(direction="minimize", sampler=PEERS[peer](seed))
        for _ in range(evaluations):
            trial = study.ask()
            values = suggest(trial, self.parameters)
            evaluation_start = time.perf_counter()
            loss = self.objective(values)
            objective_s += time.perf_counter() - evaluation_start
            study.tell(trial, loss)
            losses.append(loss)
        return Run(losses, time.perf_counter() - start, objective_s)


# ------------------------------------------------------------------------- statistics


def regret_at(run: Run, points: Sequence[int], optimum: float) -> np.ndarray:
    """Regret of the incumbent (lowest loss among the first n evaluations) at each n."""
    best = np.minimum.accumulate(np.asarray(run.losses, np.float64))
    index = np.minimum(np.asarray(points) - 1, len(best) - 1)  # a stopped run keeps its best
    return best[index] - optimum


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """The tests at one budget point: regrets of ours and theirs over seeds."""
    return {"p_beats": probability_of_superiority(ours, theirs),
            "p_value_worse": one_sided_p(ours, theirs, "greater"),
            "p_value_better": one_sided_p(ours, theirs, "less")}


def decide(rule: str, points: Sequence[dict]) -> dict[str, Any]:
    """Applies a rule to its family of points (Holm-adjusted p-values already in them)."""
    if rule == NO_WORSE:
        return no_worse(points, "peer", _point)
    missed = [p for p in points if p["p_better_holm"] >= ALPHA]
    why = (f"significantly better (Holm, alpha {ALPHA}) at {len(points) - len(missed)} of "
           f"{len(points)} points; not at {_where(missed)}")
    return {"met": not missed, "outcome": BETTER if not missed else "not shown better",
            "why": why}


def _point(point: dict) -> str:
    return f"{point['problem']}@{point['evaluations']}"


def _where(points: Sequence[dict]) -> str:
    return ", ".join(map(_point, points)) or "none"


def summarize_comparison(comparison: Comparison, ours: Availability, theirs_label: str,
                         per_problem: Mapping[str, dict], verdict_seeds: bool) -> dict:
    """Statistics per point, Holm over the rule's family, and the verdict."""
    points = []
    for problem_name, entry in per_problem.items():
        ours_regret = np.asarray(entry["ours"]["regret_per_seed"])
        theirs_regret = np.asarray(entry["theirs"]["regret_per_seed"])
        budgets = entry["budgets"]
        for i, evaluations in enumerate(budgets):
            points.append({"problem": problem_name, "evaluations": evaluations,
                           "in_verdict": (not comparison.last_point_only
                                          or i == len(budgets) - 1),
                           **compare(ours_regret[:, i], theirs_regret[:, i])})
    family = [p for p in points if p["in_verdict"]]
    for key in ("worse", "better"):
        for p, adjusted in zip(family, holm([p[f"p_value_{key}"] for p in family])):
            p[f"p_{key}_holm"] = adjusted
    result: dict[str, Any] = {"points": points}
    if comparison.rule is None:
        result["verdict"] = {"rule": None, "outcome": "no rule (reported only)"}
        return result
    verdict = decide(comparison.rule, family)
    if ours.stand_in:
        status = f"stand-in: {ours.runs} ran for {ours.name}; not a verdict on {ours.name}"
    elif not verdict_seeds:
        status = "indicative only: development seeds (a verdict needs --verdict)"
    else:
        status = "verdict (verdict seeds)"
    result["verdict"] = {"rule": f"{ours.label} {comparison.rule} than {theirs_label}",
                         "status": status, "family_size": len(family), **verdict}
    return result


# ---------------------------------------------------------------------------- runs


def peer_label(theirs: str) -> str:
    """A peer's name as printed: an Optuna sampler's name, or "jaxnas NAME"."""
    return theirs if theirs in PEERS else f"jaxnas {theirs}"


class Bench:
    """The problems, their spaces and drivers, built once and shared by every section."""

    def __init__(self, problem_names: Sequence[str], log: Callable[[str], None]):
        self.log = log
        self.problems = {name: PROBLEMS[name]() for name in problem_names}
        self.specs = {name: jn.compile(p.space()) for name, p in self.problems.items()}
        self.optimum = {name: p.optimum for name, p in self.problems.items()}
        self._optuna: dict[str, OptunaDriver] = {}
        self._warm_peers: set[str] = set()
        self._jaxnas: dict[tuple[str, str, int, bool], JaxnasDriver] = {}
        self.compile_s: dict[str, dict[str, float]] = {name: {} for name in problem_names}
        self.kwargs: dict[str, dict[str, dict]] = {name: {} for name in problem_names}

    def jaxnas(self, problem: str, name: str, max_trials: int,
               floor: bool = False) -> JaxnasDriver:
        """The driver of `name` on `problem` for runs of up to `max_trials` (built once);
        with `floor`, of `doing_nothing(name)`."""
        key = (problem, name, max_trials, floor)
        if key in self._jaxnas:
            return self._jaxnas[key]
        driver = JaxnasDriver(self.problems[problem], self.specs[problem], name, max_trials,
                              floor)
        if floor:
            self._jaxnas[key] = driver
            return driver
        self.compile_s[problem][f"{name} (max_trials {max_trials})"] = driver.compile_s
        self.kwargs[problem][f"{name} (max_trials {max_trials})"] = driver.kwargs
        self.log(f"{problem}: compiled jaxnas {name} {driver.kwargs} in "
                 f"{driver.compile_s:.1f} s (+{driver.objective_compile_s:.1f} s objective)")
        self._jaxnas[key] = driver
        return driver

    def optuna(self, problem: str) -> OptunaDriver:
        if problem not in self._optuna:
            self._optuna[problem] = OptunaDriver(self.problems[problem], self.specs[problem],
                                                 self._warm_peers)
        return self._optuna[problem]


def regret_runs(bench: Bench, rows: Sequence[tuple[Comparison, Availability]],
                budgets: Mapping[str, Sequence[int]], seeds: Sequence[int]) -> dict:
    """Runs every optimiser the rows need, seed by seed, on every problem.

    Returns:
        problem -> optimiser key -> {"runs": [Run per seed], "compile_s": ...}; the key
        is the jaxnas optimiser that ran, or the peer's name.
    """
    out: dict[str, dict[str, dict]] = {}
    for problem in bench.problems:
        needed: dict[str, int] = {}  # optimiser key -> evaluations
        for comparison, ours in rows:
            evaluations = max(budgets[comparison.name])
            for key in (ours.runs, comparison.theirs):
                needed[key] = max(needed.get(key, 0), evaluations)
        drivers = {key: bench.jaxnas(problem, key, evaluations)
                   for key, evaluations in needed.items() if key not in PEERS}
        runs: dict[str, list[Run]] = {key: [] for key in needed}
        for seed in seeds:
            for key, evaluations in needed.items():
                if key in PEERS:
                    runs[key].append(bench.optuna(problem).run(key, seed, evaluations))
                else:
                    runs[key].append(drivers[key].run(seed, evaluations))
            bench.log(f"{problem}: seed {seed} done (" + ", ".join(
                f"{key} {runs[key][-1].wall_s:.1f} s" for key in needed) + ")")
        out[problem] = {key: {"runs": runs[key], "evaluations": needed[key],
                              "compile_s": drivers[key].compile_s if key in drivers else None}
                        for key in needed}
    return out


def run_summary(runs: Sequence[Run], points: Sequence[int], optimum: float) -> dict:
    regret = np.stack([regret_at(run, points, optimum) for run in runs])
    return {"regret": quartiles(regret), "regret_per_seed": regret.tolist(),
            "overhead_per_trial_ms_median": float(np.median(
                [1e3 * run.overhead_s / run.trials for run in runs])),
            "trials_per_seed": [run.trials for run in runs],
            "stopped_early_seeds": int(sum(run.stopped_early for run in runs))}


def overhead_runs(bench: Bench, pairs: Sequence[tuple[Comparison, Availability, tuple]],
                  problem_names: Sequence[str], seeds: Sequence[int],
                  regret: Mapping[str, Mapping[str, dict]]) -> dict:
    """Overhead per trial of each pair at each trial count.

    Where the regret runs of both sides on this problem were exactly that many trials,
    they are the measurement (every seed); otherwise `seeds` dedicated runs of each side,
    alternating.
    """
    out: dict[str, dict] = {}
    for problem in bench.problems:
        if problem not in problem_names:
            continue
        out[problem] = {}
        for comparison, ours, counts in pairs:
            rows = []
            for trials in counts:
                driver = bench.jaxnas(problem, ours.runs, trials)
                done = regret.get(problem, {})
                if all(done.get(key, {}).get("evaluations") == trials
                       for key in (ours.runs, comparison.theirs)):
                    jaxnas_runs = done[ours.runs]["runs"]
                    peer_runs = done[comparison.theirs]["runs"]
                    source = "the regret runs"
                else:
                    jaxnas_runs, peer_runs = [], []
                    for seed in seeds:
                        jaxnas_runs.append(driver.run(seed, trials))
                        peer_runs.append(bench.optuna(problem).run(comparison.theirs, seed,
                                                                   trials))
                    source = "dedicated runs"
                floor = bench.jaxnas(problem, ours.runs, trials, floor=True)
                floor_runs = [floor.run(seed, trials) for seed in seeds]
                rows.append({"source": source, **overhead_row(
                    trials, driver.compile_s, jaxnas_runs, peer_runs, floor_runs)})
                bench.log(f"{problem}: overhead of {ours.label} and {comparison.theirs} at "
                          f"{trials} trials ({source})")
            out[problem][comparison.name] = {"ours": ours.label, "theirs": comparison.theirs,
                                             "rows": rows}
    return out


def overhead_row(trials: int, compile_s: float, ours: Sequence[Run], theirs: Sequence[Run],
                 floor: Sequence[Run]) -> dict:
    """Overhead per trial of both sides (per repetition), compile added or not, ratios;
    and of `doing_nothing` over our state (the floor), with Optuna's ratio to it."""
    def per_trial_ms(runs: Sequence[Run], extra_s: float = 0.0) -> list[float]:
        return [1e3 * (run.overhead_s + extra_s) / run.trials for run in runs]

    ours_ms, theirs_ms = per_trial_ms(ours), per_trial_ms(theirs)
    ours_with_compile = per_trial_ms(ours, compile_s)
    floor_ms = per_trial_ms(floor)
    return {"trials": trials, "repetitions": len(ours),
            "floor_ms_per_trial": floor_ms, "floor_repetitions": len(floor),
            "ratio_to_floor": float(np.median(theirs_ms) / np.median(floor_ms)),
            "ours_ms_per_trial": ours_ms, "ours_ms_per_trial_incl_compile": ours_with_compile,
            "theirs_ms_per_trial": theirs_ms, "ours_compile_s": compile_s,
            "ours_objective_ms_per_trial": [1e3 * r.objective_s / r.trials for r in ours],
            "theirs_objective_ms_per_trial": [1e3 * r.objective_s / r.trials for r in theirs],
            "ratio_excl_compile": float(np.median(theirs_ms) / np.median(ours_ms)),
            "ratio_incl_compile": float(np.median(theirs_ms) / np.median(ours_with_compile))}


def available_rows(only: Sequence[str], spec: jn.SearchSpace, stand_in: str | None,
                   log: Callable[[str], None]) -> dict[str, Availability]:
    """Each selected comparison's jaxnas side: what runs for it, or why nothing does.

    A jaxnas peer (random search) gets no stand-in: without it the row is not available.
    """
    rows = {}
    for comparison in COMPARISONS:
        if comparison.name not in only:
            continue
        ours = availability(comparison.ours, spec, stand_in)
        if comparison.theirs not in PEERS and ours.runs is not None:
            theirs = availability(comparison.theirs, spec, None)
            if theirs.runs is None:
                ours = Availability(comparison.ours, None, f"its peer: {theirs.reason}")
        if ours.runs is None:
            log(f"{comparison.name}: {ours.reason}")
        rows[comparison.name] = ours
    return rows


def summarize_regret(bench: Bench, rows: Mapping[str, Availability],
                     budgets: Mapping[str, Sequence[int]], raw: Mapping[str, dict],
                     verdict_seeds: bool) -> dict[str, Any]:
    """Every selected comparison's statistics and verdict, or why it did not run."""
    out = {}
    for comparison in COMPARISONS:
        if comparison.name not in rows:
            continue
        ours, points = rows[comparison.name], budgets[comparison.name]
        entry = {"ours": comparison.ours, "theirs": comparison.theirs,
                 "rule": comparison.rule, "last_point_only": comparison.last_point_only,
                 "budgets": list(points), "available": ours.runs is not None,
                 "ours_label": ours.label, "ours_ran": ours.runs, "note": ours.reason}
        if ours.runs is not None:
            entry["problems"] = {problem: {
                "budgets": list(points),
                "ours": run_summary(raw[problem][ours.runs]["runs"], points,
                                    bench.optimum[problem]),
                "theirs": run_summary(raw[problem][comparison.theirs]["runs"], points,
                                      bench.optimum[problem]),
            } for problem in bench.problems}
            entry.update(summarize_comparison(comparison, ours, peer_label(comparison.theirs),
                                              entry["problems"], verdict_seeds))
        out[comparison.name] = entry
    return out


def overhead_section(bench: Bench, settings: Mapping[str, Any], seeds: Sequence[int],
                     spec: jn.SearchSpace, stand_in: str | None,
                     raw: Mapping[str, dict]) -> dict[str, Any]:
    """The overhead pairs that can run, measured; the others with the reason."""
    pairs, not_available = [], {}
    for name, _ in OVERHEAD:
        comparison = next(c for c in COMPARISONS if c.name == name)
        ours = availability(comparison.ours, spec, stand_in)
        if ours.runs is None:
            not_available[name] = ours.reason
            bench.log(f"overhead of {name}: {ours.reason}")
        else:
            pairs.append((comparison, ours, settings["overhead_trials"][name]))
    repetitions = seeds[:settings["overhead_repetitions"]]
    measured = overhead_runs(bench, pairs, settings["overhead_problems"], repetitions, raw)
    stand_ins = {comparison.name: ours.label for comparison, ours, _ in pairs
                 if ours.stand_in}
    return {"problems": measured, "not_available": not_available, "stand_ins": stand_ins,
            "target": overhead_target(measured, stand_ins)}


def overhead_target(measured: Mapping[str, dict],
                    stand_ins: Mapping[str, str]) -> dict | None:
    """jaxnas TPE's and GP's overhead per trial each >= 10x below Optuna's at 200 trials?

    Returns:
        `{name: {...}}` for each of "tpe" and "bo" measured at 200 trials, or None.
    """
    out = {}
    for name in ("tpe", "bo"):
        ratios = {problem: row["ratio_excl_compile"]
                  for problem, entry in measured.items() if name in entry
                  for row in entry[name]["rows"] if row["trials"] == TARGET_OVERHEAD_TRIALS}
        if ratios:
            out[name] = {"target": TARGET_OVERHEAD_RATIO, "trials": TARGET_OVERHEAD_TRIALS,
                         "ratio_excl_compile": ratios,
                         "met": all(r >= TARGET_OVERHEAD_RATIO for r in ratios.values()),
                         "stand_in": stand_ins.get(name)}
    return out or None


def run(settings: Mapping[str, Any], seeds: Sequence[int], *, only: Sequence[str],
        problem_names: Sequence[str], stand_in: str | None, verdict_seeds: bool) -> dict:
    """Runs the selected sections; returns the results as written to JSON."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    machine = machine_info("optuna", "scipy")
    bench = Bench(problem_names, log)
    first_spec = next(iter(bench.specs.values()))
    rows = available_rows(only, first_spec, stand_in, log)
    runnable = [(next(c for c in COMPARISONS if c.name == name), ours)
                for name, ours in rows.items() if ours.runs is not None]
    raw = regret_runs(bench, runnable, settings["budgets"], seeds)
    comparisons = summarize_regret(bench, rows, settings["budgets"], raw, verdict_seeds)
    overhead = (overhead_section(bench, settings, seeds, first_spec, stand_in, raw)
                if "overhead" in only else None)
    return {
        "benchmark": "optimizers",
        "machine": machine,
        "persistent_compilation_cache": jax.config.jax_compilation_cache_dir or None,
        "settings": settings_json(settings, seeds, only=only, problem_names=problem_names,
                                  stand_in=stand_in, verdict_seeds=verdict_seeds),
        "problems": {name: {"name": p.name, "optimum": bench.optimum[name],
                            "paths": list(bench.specs[name].paths)}
                     for name, p in bench.problems.items()},
        "comparisons": comparisons,
        "overhead": overhead,
        "jaxnas_compile_s": bench.compile_s,
        "jaxnas_kwargs_used": bench.kwargs,
        "runs": {problem: {key: {"evaluations": value["evaluations"],
                                 "compile_s": value["compile_s"],
                                 "trials": [r.trials for r in value["runs"]],
                                 "wall_s": [r.wall_s for r in value["runs"]],
                                 "objective_s": [r.objective_s for r in value["runs"]]}
                           for key, value in entries.items()}
                 for problem, entries in raw.items()},
        "total_wall_s": time.perf_counter() - start,
    }


def settings_json(settings: Mapping[str, Any], seeds: Sequence[int], *, only: Sequence[str],
                  problem_names: Sequence[str], stand_in: str | None,
                  verdict_seeds: bool) -> dict[str, Any]:
    """The run's settings, seeds and methods, for the JSON."""
    return {
        **settings,
        "seeds": list(seeds),
        "seed_set": "verdict" if verdict_seeds else "development",
        "development_seeds": f"{DEVELOPMENT_FIRST_SEED}..{DEVELOPMENT_FIRST_SEED}+N-1",
        "verdict_seeds": f"{VERDICT_FIRST_SEED}..{VERDICT_FIRST_SEED}+N-1",
        "only": list(only), "problems": list(problem_names), "stand_in": stand_in,
        "jaxnas_kwargs": JAXNAS_KWARGS,
        "peers": {"Optuna TPE": "TPESampler(multivariate=True, group=True, seed=seed)",
                  "Optuna GP": "GPSampler(seed=seed)"},
        "fidelity": problems.FIDELITY_UPPER,
        "regret": "incumbent (lowest loss among the first n evaluations) - optimum",
        "statistics": f"median and quartiles over seeds; one-sided Mann-Whitney U per point; "
                      f"Holm over the verdict's points; alpha {ALPHA}; P(jaxnas beats peer) "
                      f">= {MIN_SUPERIORITY} for no worse",
        "overhead": "(wall - objective) / trials; init/ask/tell compile timed apart",
    }


# --------------------------------------------------------------------------- output


def _stats(stats: Mapping[str, list], i: int) -> str:
    return f"{stats['median'][i]:.3g} [{stats['q25'][i]:.3g}, {stats['q75'][i]:.3g}]"


def _p(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.3g}"


def print_comparison(name: str, entry: Mapping[str, Any]) -> None:
    theirs = peer_label(entry["theirs"])
    if not entry["available"]:
        print(f"\n### {name}: jaxnas {entry['ours']} vs {theirs}\n\n{entry['note']}")
        return
    ours = entry["ours_label"]
    print(f"\n### {name}: {ours} vs {theirs}\n")
    if entry["note"]:
        print(f"**{entry['note']}.**\n")
    holm_key = "p_better_holm" if entry["rule"] == BETTER else "p_worse_holm"
    holm_header = f"Holm p {holm_key.split('_')[1]}" if entry["rule"] else "Holm p"
    header = ["problem", "evals", f"{ours} regret", f"{theirs} regret", "P(jaxnas beats)",
              "p worse", "p better", holm_header]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    points = iter(entry["points"])
    for problem, stats in entry["problems"].items():
        for i, evaluations in enumerate(stats["budgets"]):
            point = next(points)
            cells = [problem, str(evaluations), _stats(stats["ours"]["regret"], i),
                     _stats(stats["theirs"]["regret"], i), f"{point['p_beats']:.2f}",
                     _p(point["p_value_worse"]), _p(point["p_value_better"]),
                     _p(point.get(holm_key)) if entry["rule"] else "-"]
            print("| " + " | ".join(cells) + " |")
    for problem, stats in entry["problems"].items():
        stopped = stats["ours"]["stopped_early_seeds"]
        if stopped:
            print(f"{problem}: {ours} proposed nothing more before the budget in {stopped} "
                  f"seeds (its last incumbent is carried forward)")
    verdict = entry["verdict"]
    if verdict["rule"] is None:
        print(f"\nNo rule: {verdict['outcome']}.")
    else:
        points = "point" if verdict["family_size"] == 1 else "points"
        print(f"\nRule: {verdict['rule']} ({verdict['family_size']} {points}, Holm). "
              f"Outcome: **{verdict['outcome']}** [{verdict['status']}]: {verdict['why']}.")


def print_overhead(overhead: Mapping[str, Any]) -> None:
    print("\n### Overhead per trial (optimiser's own time, ms; median over repetitions)")
    for name, reason in overhead["not_available"].items():
        print(f"\n{name}: {reason}")
    for name, label in overhead["stand_ins"].items():
        print(f"\n**{name}: {label}; its numbers are the stand-in's.**")
    if not overhead["problems"]:
        return
    header = ["problem", "jaxnas", "peer", "trials", "runs", "jaxnas excl. compile",
              "jaxnas incl. compile", "peer", "ratio excl.", "ratio incl.", "floor",
              "peer / floor"]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for problem, entry in overhead["problems"].items():
        for pair in entry.values():
            for row in pair["rows"]:
                cells = [problem, pair["ours"], pair["theirs"], str(row["trials"]),
                         f"{row['repetitions']} ({row['source']})",
                         f"{np.median(row['ours_ms_per_trial']):.3f}",
                         f"{np.median(row['ours_ms_per_trial_incl_compile']):.3f}",
                         f"{np.median(row['theirs_ms_per_trial']):.3f}",
                         f"{row['ratio_excl_compile']:.1f}x",
                         f"{row['ratio_incl_compile']:.2f}x",
                         f"{np.median(row['floor_ms_per_trial']):.3f}",
                         f"{row['ratio_to_floor']:.1f}x"]
                print("| " + " | ".join(cells) + " |")
    print("\nfloor: an ask and a tell over the same state that compute nothing "
          "(`doing_nothing`), run as jaxnas's are; no optimiser with that state runs a "
          "trial in less, so `peer / floor` bounds the ratio any could reach here.")
    peers = {"tpe": ("tpe", "Optuna TPE"), "bo": ("bayesian_optimization", "Optuna GP")}
    for name, target in (overhead["target"] or {}).items():
        ours, theirs = peers[name]
        ratios = ", ".join(f"{k} {v:.1f}x" for k, v in target["ratio_excl_compile"].items())
        met = "met" if target["met"] else "NOT met"
        print(f"\nTarget: jaxnas {ours}'s overhead per trial >= {target['target']:g}x below "
              f"{theirs}'s at {target['trials']} trials (excl. compile): {ratios} ({met} "
              f"here)" + (f" [stand-in: {target['stand_in']}; not a measurement of {ours}]"
                          if target["stand_in"] else "") + ".")


def print_results(results: Mapping[str, Any]) -> None:
    settings, machine = results["settings"], results["machine"]
    print("\n## Single-fidelity optimisers: jaxnas vs Optuna and random search\n")
    print(f"{len(settings['seeds'])} {settings['seed_set']} seeds: {settings['seeds']}. "
          f"Regret of the incumbent (lowest loss so far) minus the optimum at full fidelity: "
          f"median [q25, q75] over seeds. P = P(a jaxnas run beats a peer run); p worse / "
          f"better: one-sided Mann-Whitney U; Holm p: adjusted over the rule's points.")
    print(f"machine: {machine['platform']}, {machine['cpus_usable']} usable CPUs (load "
          f"{machine['load_average_at_start'][0]:.1f} at start), jax {machine['jax']}, optuna "
          f"{machine['optuna']}, jaxnas {machine['jaxnas']} ({machine['jaxnas_revision']})")
    for name, entry in results["comparisons"].items():
        print_comparison(name, entry)
    if results["overhead"] is not None:
        print_overhead(results["overhead"])
    for problem, compiles in results["jaxnas_compile_s"].items():
        if compiles:
            listed = ", ".join(f"{k} {v:.1f} s" for k, v in compiles.items())
            print(f"jaxnas compile + warm-up of init/ask/tell, {problem}: {listed}")
    print(f"total wall time {results['total_wall_s']:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, runs the benchmark, prints the tables and writes JSON."""
    sections = [c.name for c in COMPARISONS] + ["overhead"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 seeds, small budgets, TPE's overhead at 25 and 200 trials "
                             "once on hartmann6: a smoke run, about a minute")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds (default 20; --quick 3)")
    parser.add_argument("--verdict", action="store_true",
                        help=f"run the verdict seeds {VERDICT_FIRST_SEED}.. (never used "
                             f"while developing) and give verdicts")
    parser.add_argument("--verdict-first-seed", type=int, default=VERDICT_FIRST_SEED,
                        help=f"the first verdict seed (default {VERDICT_FIRST_SEED}); a "
                             f"verdict on a change that an earlier verdict prompted takes "
                             f"seeds that verdict did not use (e.g. 20000)")
    parser.add_argument("--only", nargs="+", choices=sections, default=sections,
                        metavar="NAME", help=f"sections to run, of {sections} (default all)")
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS),
                        default=list(PROBLEMS), help="problems (default all)")
    parser.add_argument("--stand-in", choices=sorted(JAXNAS_KWARGS), default=None,
                        help="run this jaxnas optimiser in place of any that is not "
                             "implemented yet or fails to build (labelled; never a verdict)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    settings = {"mode": "quick" if args.quick else "full", **(QUICK if args.quick else FULL)}
    default_seeds = settings.pop("seeds")
    n_seeds = default_seeds if args.seeds is None else args.seeds
    if n_seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.verdict and n_seeds < MIN_VERDICT_SEEDS:
        parser.error(f"--verdict needs at least {MIN_VERDICT_SEEDS} seeds (the project's "
                     f"rules); a smaller run would only spend verdict seeds")
    if args.verdict_first_seed < VERDICT_FIRST_SEED:
        parser.error(f"--verdict-first-seed must be at least {VERDICT_FIRST_SEED}")
    first = args.verdict_first_seed if args.verdict else DEVELOPMENT_FIRST_SEED
    if not args.verdict and first + n_seeds > VERDICT_FIRST_SEED:
        parser.error(f"development seeds must stay below the verdict seeds "
                     f"({VERDICT_FIRST_SEED}): use at most {VERDICT_FIRST_SEED} seeds")
    seeds = list(range(first, first + n_seeds))
    logging.getLogger("optuna").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    print(f"{'verdict' if args.verdict else 'development'} seeds: {len(seeds)} ({seeds}); "
          f"sections {args.only}; problems {args.problems}", flush=True)
    results = run(settings, seeds, only=args.only, problem_names=args.problems,
                  stand_in=args.stand_in, verdict_seeds=args.verdict)
    print_results(results)
    write_results(args.out, results, indent=1)


if __name__ == "__main__":
    main()
