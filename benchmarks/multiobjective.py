"""Multi-objective optimisers: jaxnas `nsga2` against Optuna's `NSGAIISampler`, side by side.

What is compared (in this one process, on the same problems, seeds and budgets, the two
optimisers alternating seed by seed):
    * jaxnas: `jn.optimizers.nsga2(spec, n_objectives=2, population_size=50,
      max_trials=...)`, its defaults otherwise (crossover_prob 0.9, swapping_prob 0.5,
      mutation_prob 1 / slots: Optuna's).
    * Optuna: `NSGAIISampler(population_size=50, seed=seed)`, its defaults otherwise, in a
      study with directions ("minimize", "minimize") and in-memory storage.
Both get population size 50 (`--population-size` changes both). Rule: jaxnas no worse.

Problems: pure JAX functions of one configuration, `config[path] -> (2,) float32`, both
objectives minimised, deterministic; both sides evaluate the same jitted, vmapped function.
Neither space is conditional: Optuna's NSGA-II evolves only the parameters every trial
has (its intersection search space) and samples the others at random, which would compare
how the two handle conditions rather than NSGA-II.
    * `zdt1`: ZDT1 (Zitzler, Deb and Thiele, "Comparison of multiobjective evolutionary
      algorithms: empirical results", Evolutionary Computation 2000), n = 30 floats
      x1..x30 in [0, 1] (the standard n): f1 = x1, g = 1 + 9 mean(x2..x30),
      f2 = g (1 - sqrt(f1 / g)). The Pareto front is f2 = 1 - sqrt(f1), f1 in [0, 1]
      (where x2.. = 0). Reference point (1.1, 11): a uniform sample has g ~ 5.5, so the
      first generation already counts; the front's hypervolume is 12.1 - 1/3 = 11.767.
    * `mixed`: 8 parameters of every kind: a categorical `kernel` of 3 choices, an
      integer `depth` in 1..12, a log float `lr` in [1e-5, 1], a float `t` in [0, 1] and
      4 floats `s1..s4` in [0, 1]. With the kernel's exponent a_k, offset c_k, best
      log10 learning rate l_k and best depth d_k:

          g  = 1 + 9 mean(s) + ((log10 lr - l_k) / 2)^2 + ((depth - d_k) / 4)^2
          f1 = t
          f2 = c_k + g (1 - (t / g)^a_k)

      kernel     a_k  c_k   l_k  d_k   front at g = 1
      "rbf"      0.5  0.25  -3   3     1.25 - sqrt(f1)   (convex, ZDT1's)
      "linear"   1    0.1   -2   6     1.1 - f1          (linear)
      "poly"     2    0     -4   10    1 - f1^2          (concave, ZDT2's)

      Each kernel's front is reached at g = 1 (s = 0, lr = 10^l_k, depth = d_k); the
      Pareto front is their lower envelope, which takes pieces of all three: "poly" for
      f1 below 0.065 and above 0.887, "rbf" between 0.065 and 0.666, "linear" between
      0.666 and 0.887. A search that lets one kernel take over its population loses part
      of the front. Reference point (1.1, 11); the front's hypervolume, integrated
      numerically (`Problem.ideal_hypervolume`), is 11.551.

Quality: the hypervolume (`jn.metrics.hypervolume`, exact) of the first n evaluations of a
run with respect to the problem's reference point (points not dominating it add nothing),
at n = 100, 200, 500, 1000 evaluations (2, 4, 10 and 20 generations); higher is better.
Per point: median and quartiles over seeds; one-sided Mann-Whitney U tests (scipy) that
jaxnas's hypervolumes are lower ("worse") or higher ("better") than Optuna's; P(jaxnas
beats Optuna): the probability that a jaxnas run has the higher hypervolume, ties counting
half. Verdict "no worse": no point significantly worse (Holm-adjusted over all
(problem, budget) points, alpha 0.05) and P(jaxnas beats Optuna) >= 0.45 at every point.
Two diagnostics at the largest budget, without a rule: the number of distinct
non-dominated points, and of repeated evaluations (an objective vector already seen: on
these continuous problems, a configuration evaluated again, e.g. a child that crossover
and mutation left equal to a parent).

Seeds: seed s drives both sides of a run (`jax.random.key(s)` for jaxnas, `seed=s` for
Optuna). Development seeds are 0..N-1 (N = 20; `--quick` 3). `--verdict` runs the verdict
seeds 50000..50000+N-1 instead, which were not used while this script was developed; keep
them out of development (`--seeds` alone never reaches them). Only a `--verdict` run gives
a verdict; the others' are marked indicative.

How each side runs: a generation at a time. jaxnas: the host loop of jitted `ask` (one
generation of `population_size` rows), the jitted batch evaluation, jitted `tell`; its
state holds `max_trials` = the largest budget rounded up to whole generations. Optuna:
`population_size` times `study.ask()` and `suggest_*` (define-by-run; categoricals as
their choice indices), one jitted batch evaluation of the generation, then `study.tell`
for each trial. Optuna fixes a trial's generation when it is asked, from the completed
trials, and draws from its random state only while suggesting, so asking a generation
before telling it proposes exactly the trials that one-at-a-time asking and telling does.
Runs stop at the largest budget; a budget that is not a whole number of generations
counts the first n evaluations.

Overhead per trial: the optimiser's own time, (wall time of the run - time inside the
objective) / trials, at the largest budget, median over the seeds' runs. The objective is
the jitted batch evaluation and its transfer to the host (Optuna's side also stacks its
suggested values into arrays for it). For jaxnas a run is `init` and the host loop of
`ask` and `tell` with their transfers; XLA compilation of init, ask and tell, with one
warm-up call of each, is timed apart ("excl. compile" leaves it out, "incl. compile" adds
it to one run: a fresh process pays it once per problem). For Optuna a run is
`create_study` and the ask / suggest / tell loop; a short warm-up study runs first so that
its lazy imports are not counted. Target: jaxnas's overhead per trial at least 10x below
Optuna's (excl. compile) on every problem.

Run it from the repository root:
    python benchmarks/multiobjective.py               # 20 development seeds: 2.5-3.5
                                                      # min on 2 busy CPU cores (load
                                                      # 8-9), over 90% of it Optuna's
    python benchmarks/multiobjective.py --quick       # 3 seeds, budgets 100 and 200:
                                                      # 18 s, 8 s of it compilation
    python benchmarks/multiobjective.py --budgets 100 300 --problems mixed
    python benchmarks/multiobjective.py --verdict     # the verdict seeds: a verdict

It prints markdown tables and writes JSON (default
`benchmarks/results/multiobjective.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
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
from _common import (ALPHA, MIN_SUPERIORITY, add_seed_arguments, choose_seeds,
                     compile_optimizer, holm, machine_info, no_worse, one_sided_p,
                     probability_of_superiority, quartiles, write_results)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "multiobjective.json"

DEVELOPMENT_FIRST_SEED = 0
VERDICT_FIRST_SEED = 50_000  # never used while developing: see the module docstring
MIN_VERDICT_SEEDS = 20
TARGET_OVERHEAD_RATIO = 10.0
POPULATION_SIZE = 50  # both sides; Optuna's default
N_OBJECTIVES = 2

FULL = {"seeds": 20, "budgets": (100, 200, 500, 1000)}
QUICK = {"seeds": 3, "budgets": (100, 200)}


# -------------------------------------------------------------------------- problems


@dataclasses.dataclass(frozen=True)
class Problem:
    """A two-objective test function over a jaxnas space.

    Attributes:
        name: Its name for `--problems` and in the output.
        description: One line for the table.
        space: The jaxnas space (a dict for `jn.compile`).
        objectives: One config (a mapping path -> value) -> `(2,)` float32, minimised.
        reference: The hypervolume's reference point.
        front: f1 (an array in [0, 1]) -> f2 on the Pareto front.
    """

    name: str
    description: str
    space: dict[str, Any]
    objectives: Callable[[Mapping[str, jax.Array]], jax.Array]
    reference: tuple[float, float]
    front: Callable[[np.ndarray], np.ndarray]

    def ideal_hypervolume(self, points: int = 100_001) -> float:
        """The Pareto front's hypervolume: the integral of `reference[1] - front(f1)` over
        f1 in [0, 1] (trapezoids on `points` points), plus the strip f1 in [1,
        reference[0]], which the front's end point (1, 0) dominates in full."""
        f1 = np.linspace(0.0, 1.0, points)
        height = self.reference[1] - self.front(f1)
        return float(np.sum((height[1:] + height[:-1]) / 2) / (points - 1)
                     + (self.reference[0] - 1.0) * self.reference[1])


ZDT1_DIMENSIONS = 30
ZDT1_PATHS = tuple(f"x{i:02d}" for i in range(1, ZDT1_DIMENSIONS + 1))


def zdt1(config: Mapping[str, jax.Array]) -> jax.Array:
    """ZDT1 (Zitzler, Deb and Thiele 2000, their T1) of one config: `(2,)` float32."""
    x = jnp.stack([jnp.asarray(config[path], jnp.float32) for path in ZDT1_PATHS])
    f1 = x[0]
    g = 1.0 + 9.0 * jnp.mean(x[1:])
    return jnp.stack([f1, g * (1.0 - jnp.sqrt(f1 / g))])


KERNELS = ("rbf", "linear", "poly")
_KERNEL_EXPONENT = (0.5, 1.0, 2.0)  # a_k: the front's shape, convex to concave
_KERNEL_OFFSET = (0.25, 0.1, 0.0)  # c_k: lifts the front
_KERNEL_LOG_LR = (-3.0, -2.0, -4.0)  # l_k: best log10 learning rate
_KERNEL_DEPTH = (3.0, 6.0, 10.0)  # d_k: best depth
MIXED_SHAPE_PATHS = ("s1", "s2", "s3", "s4")


def mixed(config: Mapping[str, jax.Array]) -> jax.Array:
    """The mixed problem of the module docstring, of one config: `(2,)` float32."""
    def read(path: str) -> jax.Array:
        return jnp.asarray(config[path], jnp.float32)

    kernel = jnp.asarray(config["kernel"], jnp.int32)

    def per_kernel(values: tuple[float, ...]) -> jax.Array:
        return jnp.asarray(values, jnp.float32)[kernel]

    shape = jnp.stack([read(path) for path in MIXED_SHAPE_PATHS])
    g = (1.0 + 9.0 * jnp.mean(shape)
         + ((jnp.log10(read("lr")) - per_kernel(_KERNEL_LOG_LR)) / 2.0) ** 2
         + ((read("depth") - per_kernel(_KERNEL_DEPTH)) / 4.0) ** 2)
    f1 = read("t")
    f2 = per_kernel(_KERNEL_OFFSET) + g * (1.0 - (f1 / g) ** per_kernel(_KERNEL_EXPONENT))
    return jnp.stack([f1, f2])


def _mixed_front(f1: np.ndarray) -> np.ndarray:
    """The lower envelope of the three kernels' fronts at g = 1."""
    fronts = [offset + 1.0 - f1 ** exponent
              for exponent, offset in zip(_KERNEL_EXPONENT, _KERNEL_OFFSET)]
    return np.min(fronts, axis=0)


PROBLEMS: dict[str, Problem] = {
    "zdt1": Problem(
        name="zdt1",
        description=f"ZDT1, {ZDT1_DIMENSIONS} floats in [0, 1]",
        space={path: jn.Float(0.0, 1.0) for path in ZDT1_PATHS},
        objectives=zdt1,
        reference=(1.1, 11.0),
        front=lambda f1: 1.0 - np.sqrt(f1),
    ),
    "mixed": Problem(
        name="mixed",
        description="categorical kernel (3), integer depth, log float lr, 5 floats in [0, 1]",
        space={"kernel": jn.Categorical(KERNELS), "depth": jn.Integer(1, 12),
               "lr": jn.Float(1e-5, 1.0, log=True), "t": jn.Float(0.0, 1.0),
               **{path: jn.Float(0.0, 1.0) for path in MIXED_SHAPE_PATHS}},
        objectives=mixed,
        reference=(1.1, 11.0),
        front=_mixed_front,
    ),
}


def batch_objectives(problem: Problem) -> Callable[[Any], jax.Array]:
    """The problem vmapped over a batch of configs (a `Config` or a dict of columns)."""
    return jax.vmap(problem.objectives)


# ------------------------------------------------------------------------------ runs


@dataclasses.dataclass(frozen=True)
class Run:
    """One optimiser's run on one problem and seed.

    Attributes:
        objectives: `(trials, 2)` the evaluated objectives, in the order proposed.
        wall_s: The run's wall time.
        objective_s: Of it, the time inside the objective (batch evaluation and transfer).
    """

    objectives: np.ndarray
    wall_s: float
    objective_s: float

    @property
    def trials(self) -> int:
        return int(self.objectives.shape[0])

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.objective_s


class JaxnasDriver:
    """jaxnas `nsga2` compiled for one problem and capacity, run seed after seed.

    The loop: ask (jitted, one generation) -> evaluate the batch (jitted, vmapped) -> tell
    (jitted). Compilation and one warm-up call of each program happen here, timed apart
    from the runs (`compile_s`: init, ask and tell; `objective_compile_s`: the batch
    evaluation).
    """

    def __init__(self, problem: Problem, spec: jn.SearchSpace, population_size: int,
                 max_trials: int):
        self.kwargs = {"n_objectives": N_OBJECTIVES, "population_size": population_size,
                       "max_trials": max_trials}
        optimizer = jn.optimizers.nsga2(spec, **self.kwargs)
        self.init, self.ask, self.tell, self.compile_s, proposals = compile_optimizer(
            optimizer, lambda ids: jnp.zeros((ids.shape[0], N_OBJECTIVES), jnp.float32),
            "nsga2")

        start = time.perf_counter()
        self.evaluate = jax.jit(batch_objectives(problem)).lower(proposals.configs).compile()
        jax.block_until_ready(self.evaluate(proposals.configs))
        self.objective_compile_s = time.perf_counter() - start

    def run(self, seed: int, evaluations: int) -> Run:
        """Runs generations until `evaluations` trials are evaluated."""
        init_key, ask_key = jax.random.split(jax.random.key(seed))
        told: list[np.ndarray] = []
        objective_s, step, trials = 0.0, 0, 0
        start = time.perf_counter()
        state = self.init(init_key)
        while trials < evaluations:
            state, proposals = self.ask(state, ask_key, np.int32(step))
            step += 1
            valid = np.asarray(proposals.valid)  # waits for the ask
            if not valid.any():
                raise RuntimeError(f"nsga2 proposed nothing after {trials} trials: its "
                                   f"state is full (max_trials {self.kwargs['max_trials']})")
            evaluation_start = time.perf_counter()
            batch = self.evaluate(proposals.configs)
            host = np.asarray(batch)
            objective_s += time.perf_counter() - evaluation_start
            state = self.tell(state, proposals.trial_ids, batch)
            told.append(host[valid])
            trials += int(valid.sum())
        jax.block_until_ready(state)
        wall_s = time.perf_counter() - start
        return Run(np.concatenate(told)[:evaluations], wall_s, objective_s)


@dataclasses.dataclass(frozen=True)
class OptunaParameter:
    """One slot of a flat compiled jaxnas space, as Optuna suggests it.

    Attributes:
        path: The slot's path, also Optuna's parameter name.
        kind: "float", "int" or "categorical" (suggested as its choice index).
        low, high, log: Bounds and scale; for a categorical, 0, choices - 1, False.
    """

    path: str
    kind: str
    low: float
    high: float
    log: bool


def optuna_space(spec: jn.SearchSpace) -> tuple[OptunaParameter, ...]:
    """The slots of a flat `spec` as Optuna parameters, in slot order.

    Raises:
        TypeError: a slot that is not a Float, Integer or Categorical.
        ValueError: a conditional slot (the problems here have none).
    """
    parameters = []
    for path, parameter in spec.parameters().items():
        if ".choices[" in path:
            raise ValueError(f"optuna_space: {path} is conditional; this benchmark's spaces "
                             f"are flat (see the module docstring)")
        if isinstance(parameter, jn.Categorical):
            parameters.append(OptunaParameter(path, "categorical", 0,
                                              len(parameter.choices) - 1, False))
        elif isinstance(parameter, (jn.Float, jn.Integer)):
            kind = "int" if isinstance(parameter, jn.Integer) else "float"
            parameters.append(OptunaParameter(path, kind, parameter.lower, parameter.upper,
                                              parameter.log))
        else:
            raise TypeError(f"optuna_space: {path} is a {type(parameter).__name__}, which "
                            f"this benchmark does not translate")
    return tuple(parameters)


def suggest(trial: optuna.Trial, parameters: Sequence[OptunaParameter]) -> list[Any]:
    """Suggests every parameter of a flat space (define-by-run), in slot order."""
    values = []
    for p in parameters:
        if p.kind == "float":
            values.append(trial.suggest_float(p.path, p.low, p.high, log=p.log))
        elif p.kind == "int":
            values.append(trial.suggest_int(p.path, int(p.low), int(p.high), log=p.log))
        else:
            values.append(trial.suggest_categorical(p.path, list(range(int(p.high) + 1))))
    return values


class OptunaDriver:
    """Optuna's `NSGAIISampler` on one problem: ask a generation, evaluate it, tell it."""

    def __init__(self, problem: Problem, spec: jn.SearchSpace, population_size: int):
        self.population_size = population_size
        self.parameters = optuna_space(spec)
        self._dtypes = [np.float32 if p.kind == "float" else np.int32
                        for p in self.parameters]
        self._evaluate = jax.jit(batch_objectives(problem))
        placeholders = [[p.low] * population_size for p in self.parameters]
        self.objective(placeholders)  # traces and compiles it for a whole generation
        # Up to the first generation of children, so that Optuna's lazy imports and first
        # calls are not counted in the runs.
        self._study(0, 2 * population_size)

    def objective(self, columns: Sequence[Sequence[Any]]) -> np.ndarray:
        """`(B, 2)` objectives of B configs given as one column of values per slot."""
        batch = {p.path: np.asarray(column, dtype)
                 for p, column, dtype in zip(self.parameters, columns, self._dtypes)}
        return np.asarray(self._evaluate(batch))

    def run(self, seed: int, evaluations: int) -> Run:
        return self._study(seed, evaluations)

    def _study(self, seed: int, evaluations: int) -> Run:
        told: list[np.ndarray] = []
        objective_s, trials = 0.0, 0
        start = time.perf_counter()
        sampler = optuna.samplers.NSGAIISampler(population_size=self.population_size,
                                                seed=seed)
        study = optuna.create_study(directions=["minimize"] * N_OBJECTIVES, sampler=sampler)
        while trials < evaluations:
            generation = [study.ask()
                          for _ in range(min(self.population_size, evaluations - trials))]
            rows = [suggest(trial, self.parameters) for trial in generation]
            evaluation_start = time.perf_counter()
            batch = self.objective(list(zip(*rows)))
            objective_s += time.perf_counter() - evaluation_start
            for trial, values in zip(generation, batch.tolist()):
                study.tell(trial, values)
            told.append(batch)
            trials += len(generation)
        return Run(np.concatenate(told), time.perf_counter() - start, objective_s)


# ------------------------------------------------------------------------ statistics


def hypervolume_at(run: Run, budgets: Sequence[int], reference: Sequence[float]) -> np.ndarray:
    """The hypervolume of the run's first n evaluations at each budget n (failed, NaN
    rows dropped)."""
    values = []
    for n in budgets:
        points = run.objectives[:n]
        points = points[~np.isnan(points).any(axis=1)]
        values.append(jn.metrics.hypervolume(points, np.asarray(reference)))
    return np.asarray(values)


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """The tests at one budget point on hypervolumes over seeds (higher is better)."""
    # probability_of_superiority counts the lower value as the winner: negate.
    return {"p_beats": probability_of_superiority(-ours, -theirs),
            "p_value_worse": one_sided_p(ours, theirs, "less"),
            "p_value_better": one_sided_p(ours, theirs, "greater")}


def decide(points: Sequence[dict]) -> dict[str, Any]:
    """"no worse" over every point (Holm-adjusted p-values already in them)."""
    return no_worse(points, "Optuna", lambda p: f"{p['problem']}@{p['evaluations']}")


def run_summary(runs: Sequence[Run], budgets: Sequence[int],
                reference: Sequence[float]) -> dict[str, Any]:
    """Hypervolumes per seed and budget, and two diagnostics at the last budget: the
    distinct non-dominated points, and the repeated evaluations (an objective vector seen
    before: on these continuous problems, a configuration evaluated again)."""
    hypervolume = np.stack([hypervolume_at(run, budgets, reference) for run in runs])
    front, repeated = [], []
    for run in runs:
        points = run.objectives[:budgets[-1]]
        front.append(len(np.unique(points[jn.metrics.non_dominated(points)], axis=0)))
        repeated.append(len(points) - len(np.unique(points, axis=0)))
    return {"hypervolume": quartiles(hypervolume),
            "hypervolume_per_seed": hypervolume.tolist(),
            "distinct_front_size_at_last_budget": front,
            "repeated_evaluations_at_last_budget": repeated}


def summarize(problems: Mapping[str, Problem], raw: Mapping[str, dict],
              budgets: Sequence[int], verdict_seeds: bool) -> dict[str, Any]:
    """Per problem the hypervolumes, per point the tests, Holm over all points, the
    verdict."""
    per_problem, points = {}, []
    for name, problem in problems.items():
        ours = run_summary(raw[name]["jaxnas"], budgets, problem.reference)
        theirs = run_summary(raw[name]["optuna"], budgets, problem.reference)
        per_problem[name] = {"jaxnas": ours, "optuna": theirs}
        ours_hv = np.asarray(ours["hypervolume_per_seed"])
        theirs_hv = np.asarray(theirs["hypervolume_per_seed"])
        for i, evaluations in enumerate(budgets):
            points.append({"problem": name, "evaluations": evaluations,
                           **compare(ours_hv[:, i], theirs_hv[:, i])})
    for key in ("worse", "better"):
        for point, adjusted in zip(points, holm([p[f"p_value_{key}"] for p in points])):
            point[f"p_{key}_holm"] = adjusted
    status = ("verdict (verdict seeds)" if verdict_seeds else
              "indicative only: development seeds (a verdict needs --verdict)")
    verdict = {"rule": "jaxnas nsga2 no worse than Optuna NSGAIISampler", "status": status,
               "family_size": len(points), **decide(points)}
    return {"problems": per_problem, "points": points, "verdict": verdict}


def overhead(problems: Mapping[str, Problem], raw: Mapping[str, dict],
             compile_s: Mapping[str, float]) -> dict[str, Any]:
    """Overhead per trial of both sides at the largest budget (every seed's run)."""
    def per_trial_ms(runs: Sequence[Run], extra_s: float = 0.0) -> list[float]:
        return [1e3 * (run.overhead_s + extra_s) / run.trials for run in runs]

    rows = {}
    for name in problems:
        ours, theirs = raw[name]["jaxnas"], raw[name]["optuna"]
        ours_ms, theirs_ms = per_trial_ms(ours), per_trial_ms(theirs)
        ours_with_compile = per_trial_ms(ours, compile_s[name])
        rows[name] = {
            "trials": ours[0].trials, "runs": len(ours),
            "jaxnas_ms_per_trial": ours_ms,
            "jaxnas_ms_per_trial_incl_compile": ours_with_compile,
            "optuna_ms_per_trial": theirs_ms,
            "jaxnas_objective_ms_per_trial": [1e3 * r.objective_s / r.trials for r in ours],
            "optuna_objective_ms_per_trial": [1e3 * r.objective_s / r.trials for r in theirs],
            "jaxnas_compile_s": compile_s[name],
            "ratio_excl_compile": float(np.median(theirs_ms) / np.median(ours_ms)),
            "ratio_incl_compile": float(np.median(theirs_ms) / np.median(ours_with_compile)),
        }
    met = all(row["ratio_excl_compile"] >= TARGET_OVERHEAD_RATIO for row in rows.values())
    return {"problems": rows, "target": TARGET_OVERHEAD_RATIO, "met": met}


# ---------------------------------------------------------------------------- driver


def run(budgets: Sequence[int], seeds: Sequence[int], *, problem_names: Sequence[str],
        population_size: int, verdict_seeds: bool) -> dict[str, Any]:
    """Runs both optimisers on every problem and seed; returns the results for JSON."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    machine = machine_info("optuna", "scipy")
    problems = {name: PROBLEMS[name] for name in problem_names}
    evaluations = max(budgets)
    max_trials = population_size * math.ceil(evaluations / population_size)
    raw: dict[str, dict[str, list[Run]]] = {}
    compile_s: dict[str, float] = {}
    kwargs: dict[str, dict] = {}
    for name, problem in problems.items():
        spec = jn.compile(problem.space)
        ours = JaxnasDriver(problem, spec, population_size, max_trials)
        compile_s[name], kwargs[name] = ours.compile_s, ours.kwargs
        log(f"{name}: compiled jaxnas nsga2 {ours.kwargs} in {ours.compile_s:.1f} s "
            f"(+{ours.objective_compile_s:.1f} s objective)")
        theirs = OptunaDriver(problem, spec, population_size)
        raw[name] = {"jaxnas": [], "optuna": []}
        for seed in seeds:
            raw[name]["jaxnas"].append(ours.run(seed, evaluations))
            raw[name]["optuna"].append(theirs.run(seed, evaluations))
            log(f"{name}: seed {seed} done (jaxnas {raw[name]['jaxnas'][-1].wall_s:.2f} s, "
                f"Optuna {raw[name]['optuna'][-1].wall_s:.2f} s)")
    return {
        "benchmark": "multiobjective",
        "machine": machine,
        "persistent_compilation_cache": jax.config.jax_compilation_cache_dir or None,
        "settings": settings_json(budgets, seeds, problem_names=problem_names,
                                  population_size=population_size,
                                  verdict_seeds=verdict_seeds),
        "problems": {name: {"description": p.description, "paths": list(p.space),
                            "reference": list(p.reference),
                            "ideal_hypervolume": p.ideal_hypervolume()}
                     for name, p in problems.items()},
        "comparison": summarize(problems, raw, budgets, verdict_seeds),
        "overhead": overhead(problems, raw, compile_s),
        "jaxnas_kwargs_used": kwargs,
        "runs": {name: {side: {"trials": [r.trials for r in runs],
                               "wall_s": [r.wall_s for r in runs],
                               "objective_s": [r.objective_s for r in runs]}
                        for side, runs in sides.items()}
                 for name, sides in raw.items()},
        "total_wall_s": time.perf_counter() - start,
    }


def settings_json(budgets: Sequence[int], seeds: Sequence[int], *,
                  problem_names: Sequence[str], population_size: int,
                  verdict_seeds: bool) -> dict[str, Any]:
    """The run's settings, seeds and methods, for the JSON."""
    return {
        "budgets": list(budgets),
        "seeds": list(seeds),
        "seed_set": "verdict" if verdict_seeds else "development",
        "development_seeds": f"{DEVELOPMENT_FIRST_SEED}..{DEVELOPMENT_FIRST_SEED}+N-1",
        "verdict_seeds": f"{VERDICT_FIRST_SEED}..{VERDICT_FIRST_SEED}+N-1",
        "problems": list(problem_names),
        "population_size": population_size,
        "jaxnas": f"jn.optimizers.nsga2(spec, n_objectives={N_OBJECTIVES}, "
                  f"population_size={population_size}, max_trials=...)",
        "optuna": f"NSGAIISampler(population_size={population_size}, seed=seed)",
        "quality": "exact hypervolume of the first n evaluations w.r.t. the reference point",
        "statistics": f"median and quartiles over seeds; one-sided Mann-Whitney U per point; "
                      f"Holm over all points; alpha {ALPHA}; P(jaxnas beats Optuna) >= "
                      f"{MIN_SUPERIORITY} for no worse",
        "overhead": "(wall - objective) / trials at the largest budget; jaxnas "
                    "init/ask/tell compile timed apart",
    }


# ---------------------------------------------------------------------------- output


def _stats(stats: Mapping[str, list], i: int) -> str:
    return f"{stats['median'][i]:.4g} [{stats['q25'][i]:.4g}, {stats['q75'][i]:.4g}]"


def _p(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.3g}"


def print_comparison(results: Mapping[str, Any]) -> None:
    comparison, budgets = results["comparison"], results["settings"]["budgets"]
    header = ["problem", "evals", "jaxnas nsga2 HV", "Optuna NSGA-II HV", "P(jaxnas beats)",
              "p worse", "p better", "Holm p worse"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    points = iter(comparison["points"])
    for name, entry in comparison["problems"].items():
        for i, evaluations in enumerate(budgets):
            point = next(points)
            cells = [name, str(evaluations), _stats(entry["jaxnas"]["hypervolume"], i),
                     _stats(entry["optuna"]["hypervolume"], i), f"{point['p_beats']:.2f}",
                     _p(point["p_value_worse"]), _p(point["p_value_better"]),
                     _p(point["p_worse_holm"])]
            print("| " + " | ".join(cells) + " |")
    verdict = comparison["verdict"]
    print(f"\nRule: {verdict['rule']} ({verdict['family_size']} points, Holm). Outcome: "
          f"**{verdict['outcome']}** [{verdict['status']}]: {verdict['why']}.")


def print_overhead(overhead_: Mapping[str, Any]) -> None:
    print("\n### Overhead per trial at the largest budget (optimiser's own time, ms; median "
          "over seeds)\n")
    header = ["problem", "trials", "runs", "jaxnas excl. compile", "jaxnas incl. compile",
              "Optuna", "ratio excl.", "ratio incl."]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name, row in overhead_["problems"].items():
        cells = [name, str(row["trials"]), str(row["runs"]),
                 f"{np.median(row['jaxnas_ms_per_trial']):.3f}",
                 f"{np.median(row['jaxnas_ms_per_trial_incl_compile']):.3f}",
                 f"{np.median(row['optuna_ms_per_trial']):.3f}",
                 f"{row['ratio_excl_compile']:.1f}x", f"{row['ratio_incl_compile']:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    ratios = ", ".join(f"{name} {row['ratio_excl_compile']:.1f}x"
                       for name, row in overhead_["problems"].items())
    print(f"\nTarget: jaxnas's overhead per trial >= {overhead_['target']:g}x below Optuna's "
          f"(excl. compile): {ratios} ({'met' if overhead_['met'] else 'NOT met'} here).")


def print_results(results: Mapping[str, Any]) -> None:
    settings, machine = results["settings"], results["machine"]
    print("\n## Multi-objective: jaxnas nsga2 vs Optuna NSGAIISampler\n")
    print(f"{len(settings['seeds'])} {settings['seed_set']} seeds: {settings['seeds']}; "
          f"population {settings['population_size']} on both sides. Hypervolume (higher is "
          f"better) of the first n evaluations: median [q25, q75] over seeds. P = P(a jaxnas "
          f"run beats an Optuna run); p worse / better: one-sided Mann-Whitney U; Holm p: "
          f"adjusted over all points.")
    for name, problem in results["problems"].items():
        print(f"{name}: {problem['description']}; reference point {problem['reference']}; "
              f"the Pareto front's hypervolume {problem['ideal_hypervolume']:.4f}")
    print(f"machine: {machine['platform']}, {machine['cpus_usable']} usable CPUs (load "
          f"{machine['load_average_at_start'][0]:.1f} at start), jax {machine['jax']}, optuna "
          f"{machine['optuna']}, jaxnas {machine['jaxnas']} ({machine['jaxnas_revision']})\n")
    print_comparison(results)
    print_overhead(results["overhead"])
    print(f"\nAt {settings['budgets'][-1]} evaluations, median over seeds:")
    for name, entry in results["comparison"]["problems"].items():
        ours, theirs = entry["jaxnas"], entry["optuna"]
        print(f"{name}: distinct non-dominated points: jaxnas "
              f"{np.median(ours['distinct_front_size_at_last_budget']):g}, Optuna "
              f"{np.median(theirs['distinct_front_size_at_last_budget']):g}; repeated "
              f"evaluations: jaxnas {np.median(ours['repeated_evaluations_at_last_budget']):g}"
              f", Optuna {np.median(theirs['repeated_evaluations_at_last_budget']):g}")
    print(f"total wall time {results['total_wall_s']:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, runs the benchmark, prints the tables and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['seeds']} seeds, budgets {QUICK['budgets']}: a smoke "
                             f"run, under a minute")
    add_seed_arguments(parser, full_seeds=FULL["seeds"], quick_seeds=QUICK["seeds"],
                       development_first=DEVELOPMENT_FIRST_SEED,
                       verdict_first=VERDICT_FIRST_SEED)
    parser.add_argument("--budgets", type=int, nargs="+", default=None,
                        help=f"evaluation budgets (default {FULL['budgets']}; --quick "
                             f"{QUICK['budgets']})")
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS),
                        default=list(PROBLEMS), help="problems (default all)")
    parser.add_argument("--population-size", type=int, default=POPULATION_SIZE,
                        help=f"both sides' population size (default {POPULATION_SIZE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else FULL
    n_seeds = settings["seeds"] if args.seeds is None else args.seeds
    budgets = sorted(set(settings["budgets"] if args.budgets is None else args.budgets))
    if budgets[0] < 1:
        parser.error("--budgets must be positive")
    if args.population_size < 2:
        parser.error("--population-size must be at least 2 (Optuna's minimum)")
    seeds = choose_seeds(parser, n_seeds, args.first_seed, args.verdict,
                         verdict_first=VERDICT_FIRST_SEED,
                         development_first=DEVELOPMENT_FIRST_SEED,
                         min_verdict=MIN_VERDICT_SEEDS)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    print(f"{'verdict' if args.verdict else 'development'} seeds: {len(seeds)} ({seeds}); "
          f"budgets {budgets}; problems {args.problems}", flush=True)
    results = run(budgets, seeds, problem_names=args.problems,
                  population_size=args.population_size, verdict_seeds=args.verdict)
    print_results(results)
    write_results(args.out, results, indent=1)


if __name__ == "__main__":
    main()
