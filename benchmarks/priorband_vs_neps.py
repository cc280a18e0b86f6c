"""PriorBand on MF-Hartmann: jaxnas versus NePS, side by side in one run.

What is compared, on `jaxnas.problems.mf_hartmann` 3-D and 6-D (mfpbench's MF-Hartmann, z in
1..100, cost ignored), with the good, medium and bad priors (`--priors` adds at25):
    * jaxnas PriorBand (`jaxnas.optimizers.priorband`, eta 3), asks and tells jitted;
    * NePS 0.17 PriorBand (`neps.run(optimizer="priorband")`, eta 3), root directory in a
      temporary folder;
    * jaxnas Hyperband and jaxnas random search (at z = 100, batches of 10), which ignore
      the prior: they run once per problem and seed and are listed with prior "none".

Same problem, prior, budget and noise on both sides:
    * Space: x0..x{d-1} = Float(0, 1, prior=<the prior's value>) and z = IntegerFidelity(1,
      100). The prior's spread is the same: jaxnas's "medium" confidence is a normal of
      sigma 0.25 in the unit interval; NePS 0.17 maps confidence c to sigma 1 - c with
      c = 0.25 / 0.5 / 0.75 for low / medium / high, so NePS gets "high" (sigma 0.25).
    * Noise: each run has a noise key, `split(key(seed))[1]`; its k-th evaluation (k = 0,
      1, ...) draws its noise from `fold_in(noise_key, k)` on both sides, through the same
      `problem.evaluate` (jitted and vmapped over a batch for jaxnas, jitted for one config
      in the NePS objective).
    * Fidelity accounting: NePS 0.17 charges every trial its full fidelity, promotions
      included (`calculate_total_resource_usage` adds `trial.config[fidelity]`; a synthetic
      objective cannot resume, so a promotion is a fresh evaluation at the higher
      fidelity). Both sides are charged that way here. The PriorBand paper's plots instead
      charge a promotion only the fidelity it adds (mf-prior-exp, `continuations=True`).
    * Budget: `budget` full-fidelity evaluations' worth of fidelity (20 x 100 units by
      default); NePS stops via `total_fidelities_to_spend`, jaxnas after the batch that
      reaches it. Results are read at budget points (5, 10, 15, 20 by default): only
      evaluations whose cumulative fidelity is within the point count.
    * Incumbent: the lowest loss observed so far at any fidelity, as the PriorBand paper
      plots it (mf-prior-exp `plot.py`: `incumbent_value="loss"`, x axis cumulated
      fidelity over the maximum fidelity). MF-Hartmann's bias and noise only raise losses
      (the weights shrink, the noise is half-normal), so a low-fidelity loss never
      flatters its configuration. Normalised regret is `problem.regret`: (loss - optimum)
      / (f(bad prior) - optimum), the bad prior being the worst of 10^6 uniform samples.

Overhead per trial: (wall time of the run - time inside the objective) / trials. For NePS
the run is `neps.run` (its file-based state, locking, sampling and summary included); the
objective is the Python function it calls. For jaxnas the run is the host loop (ask, tell,
transfers, bookkeeping) and the objective the jitted batch evaluation; XLA compilation and
one warm-up call of each program are excluded and reported on their own (paid once per
problem and space, not per seed).

Run it from the repository root:
    python benchmarks/priorband_vs_neps.py            # 20 seeds, about 35 min on 2 CPU cores
    python benchmarks/priorband_vs_neps.py --quick    # smoke run: 2 seeds, good prior, budget 5
    python benchmarks/priorband_vs_neps.py --seeds 5 --priors good at25 --out other.json
    python benchmarks/priorband_vs_neps.py --first-seed 100 --out fresh.json  # seeds 100..119
    python benchmarks/priorband_vs_neps.py --jaxnas priorband_bo --dims 6 --no-reference \
        --first-seed 200 --out benchmarks/results/priorband_bo_vs_neps.json
        # PriorBand+BO in jaxnas PriorBand's place (seeds 200..219, never used in developing
        # it), on MF-Hartmann-6 only, without the Hyperband and random-search rows

It prints a markdown table, writes JSON (default `benchmarks/results/priorband_vs_neps.json`)
and a regret-over-budget plot next to it (same name, `.png`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxnas as jn
from _common import (machine_info, neps_hartmann_space, one_sided_p,
                     probability_of_superiority, quartiles, timed_neps_run, write_results)
from jaxnas import optimizers, problems

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "priorband_vs_neps.json"

ETA = 3
DIMS = (3, 6)
CONFIDENCE = "medium"  # jaxnas: sigma 0.25 in the unit interval
NEPS_CONFIDENCE = {"low": "medium", "medium": "high"}  # NePS 0.17 with the same sigma
RANDOM_SEARCH_BATCH = 10
MAX_TRIALS = 512  # one Hyperband cycle at z in 1..100 is ~210 trials
TARGET_OVERHEAD_RATIO = 100.0
TARGET_MACHINE = "2-core CPU"

PRIORBAND, NEPS_PRIORBAND = "jaxnas PriorBand", "NePS PriorBand"
JAXNAS_PRIORBAND = "priorband"  # the jaxnas optimiser in that row (`--jaxnas`)
HYPERBAND, RANDOM_SEARCH = "jaxnas Hyperband", "jaxnas random search"
OPTIMIZERS = (PRIORBAND, NEPS_PRIORBAND, HYPERBAND, RANDOM_SEARCH)
PRIOR_FREE = (HYPERBAND, RANDOM_SEARCH)
NO_PRIOR = "none"

FULL = {"seeds": 20, "budget": 20.0, "budget_points": (5.0, 10.0, 15.0, 20.0),
        "priors": ("good", "medium", "bad"), "preset": "good"}
QUICK = {"seeds": 2, "budget": 5.0, "budget_points": (2.5, 5.0),
         "priors": ("good",), "preset": "good"}
PLOT_STEP = 0.25  # full-fidelity evaluations between points of the plotted curves


@dataclasses.dataclass
class Run:
    """One optimiser run: every evaluation in order, and where the time went.

    Attributes:
        fidelities: Fidelity of each evaluation, in evaluation order.
        losses: Observed (biased, noisy) loss of each evaluation.
        wall_s: Wall time of the whole run.
        objective_s: Wall time inside the objective.
    """

    fidelities: list[float]
    losses: list[float]
    wall_s: float
    objective_s: float

    @property
    def trials(self) -> int:
        return len(self.losses)

    @property
    def overhead_per_trial_s(self) -> float:
        return (self.wall_s - self.objective_s) / max(self.trials, 1)


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """The optimiser key and the noise key of a seed (the same for every optimiser)."""
    optimizer_key, noise_key = jax.random.split(jax.random.key(seed))
    return optimizer_key, noise_key


# ----------------------------------------------------------------------- jaxnas side


class JaxnasDriver:
    """An optimiser compiled for one problem and space, run seed after seed.

    The loop: ask (jitted) -> evaluate the batch (jitted, vmapped; padding rows are
    evaluated too and dropped) -> tell (jitted) -> account the valid rows' fidelity.
    """

    def __init__(self, problem: problems.Problem, optimizer: optimizers.Optimizer,
                 name: str | None = None):
        start = time.perf_counter()
        # Jitted as jn.run jits optimiser `name` (its XLA options on a CPU).
        init, ask, tell = optimizers.jitted(optimizer, name)
        self.init = init.lower(jax.random.key(0)).compile()
        state = self.init(jax.random.key(0))
        self.ask = ask.lower(state, jax.random.key(0)).compile()
        state, proposals = self.ask(state, jax.random.key(0))
        batch = proposals.trial_ids.shape[0]
        losses = jnp.zeros((batch,), jnp.float32)
        self.tell = tell.lower(state, proposals.trial_ids, losses).compile()

        def evaluate_batch(configs: Any, fidelities: jax.Array, noise_key: jax.Array,
                           first: jax.Array) -> jax.Array:
            # Valid rows come first: row i is evaluation `first + i` of the run.
            keys = jax.vmap(jax.random.fold_in, (None, 0))(noise_key, first + jnp.arange(batch))
            return jax.vmap(problem.evaluate)(configs, fidelities, keys)

        warm_up = (proposals.configs, proposals.fidelities, jax.random.key(0), jnp.int32(0))
        self.evaluate = jax.jit(evaluate_batch).lower(*warm_up).compile()
        # One call of each program: the first execution pays one-off setup costs.
        jax.block_until_ready((self.evaluate(*warm_up),
                               self.tell(state, proposals.trial_ids, losses)))
        self.compile_s = time.perf_counter() - start

    def run(self, seed: int, budget: float) -> Run:
        """Runs until `budget` fidelity units are spent (the last batch may overshoot)."""
        optimizer_key, noise_key = run_keys(seed)
        init_key, ask_key = jax.random.split(optimizer_key)
        fidelities: list[float] = []
        losses: list[float] = []
        objective_s = 0.0
        start = time.perf_counter()
        state = self.init(init_key)
        spent, step = 0.0, 0
        while spent < budget:
            state, proposals = self.ask(state, jax.random.fold_in(ask_key, step))
            step += 1
            valid = np.asarray(proposals.valid)
            if not valid.any():
                optimizers.check(state)  # raises if the state is full
                raise RuntimeError("the optimiser proposed nothing before the budget was spent")
            evaluation_start = time.perf_counter()
            batch_losses = jax.block_until_ready(self.evaluate(
                proposals.configs, proposals.fidelities, noise_key, jnp.int32(len(losses))))
            objective_s += time.perf_counter() - evaluation_start
            state = self.tell(state, proposals.trial_ids, batch_losses)
            batch_fidelities = np.asarray(proposals.fidelities)[valid]
            fidelities.extend(batch_fidelities.tolist())
            losses.extend(np.asarray(batch_losses)[valid].tolist())
            spent += float(batch_fidelities.sum())
        jax.block_until_ready(state)
        return Run(fidelities, losses, time.perf_counter() - start, objective_s)


def jaxnas_optimizer(name: str, spec: jn.SearchSpace) -> tuple[optimizers.Optimizer, str]:
    """The jaxnas optimiser of row `name` (see OPTIMIZERS) on `spec`, and the name
    `optimizers.get` knows it by (which says how `jn.run` compiles it)."""
    if name == PRIORBAND:
        return (optimizers.get(JAXNAS_PRIORBAND, spec, eta=ETA, max_trials=MAX_TRIALS),
                JAXNAS_PRIORBAND)
    if name == HYPERBAND:
        return optimizers.hyperband(spec, eta=ETA, max_trials=MAX_TRIALS), "hyperband"
    return (optimizers.random_search(spec, batch_size=RANDOM_SEARCH_BATCH,
                                     max_trials=MAX_TRIALS), "random_search")


# ------------------------------------------------------------------------- NePS side


def single_evaluate(problem: problems.Problem) -> Callable[..., jax.Array]:
    """Jitted `evaluate` of one config given as a vector, with the shared noise scheme."""
    def evaluate_one(x: jax.Array, fidelity: jax.Array, noise_key: jax.Array,
                     index: jax.Array) -> jax.Array:
        config = {name: x[i] for i, name in enumerate(problem.names)}
        return problem.evaluate(config, fidelity, jax.random.fold_in(noise_key, index))
    return jax.jit(evaluate_one)


def run_neps(problem: problems.Problem, prior: str, seed: int, budget: float,
             evaluate_one: Callable[..., jax.Array]) -> Run:
    """One NePS PriorBand run in a temporary root directory."""
    _, noise_key = run_keys(seed)
    fidelities: list[float] = []
    losses: list[float] = []
    objective_s = 0.0

    def evaluate_pipeline(**values: float) -> float:
        nonlocal objective_s
        start = time.perf_counter()
        x = np.asarray([values[name] for name in problem.names], np.float32)
        fidelity = values[problems.FIDELITY_NAME]
        loss = float(evaluate_one(x, np.float32(fidelity), noise_key, np.int32(len(losses))))
        fidelities.append(float(fidelity))
        losses.append(loss)
        objective_s += time.perf_counter() - start
        return loss

    space = neps_hartmann_space(problem, prior, NEPS_CONFIDENCE[CONFIDENCE])
    wall_s = timed_neps_run(evaluate_pipeline, space, ("priorband", {"eta": ETA}), budget, seed)
    return Run(fidelities, losses, wall_s, objective_s)


# ---------------------------------------------------------------------- analysis


def incumbent_regret(problem: problems.Problem, run: Run, points: np.ndarray) -> np.ndarray:
    """Regret of the best loss seen within each budget point (full-fidelity evaluations).

    Returns:
        `(len(points),)` float64; NaN where nothing was evaluated yet.
    """
    spent = np.cumsum(run.fidelities) / problems.FIDELITY_UPPER
    best = np.minimum.accumulate(np.asarray(run.losses, np.float64))
    index = np.searchsorted(spent, points + 1e-9, side="right") - 1
    incumbent = np.where(index >= 0, best[np.maximum(index, 0)], np.nan)
    return np.asarray(problem.regret(incumbent), np.float64)


def summarize(problem: problems.Problem, runs: Sequence[Run], points: Sequence[float],
              grid: np.ndarray) -> dict:
    """Regret statistics at the budget points and on the plot grid, and the overhead."""
    at_points = np.stack([incumbent_regret(problem, run, np.asarray(points)) for run in runs])
    on_grid = np.stack([incumbent_regret(problem, run, grid) for run in runs])
    overheads = [run.overhead_per_trial_s for run in runs]
    return {
        "regret_at_budget_points": quartiles(at_points),
        "regret_at_budget_points_per_seed": at_points.tolist(),
        "regret_on_grid": quartiles(on_grid),
        "overhead_per_trial_s_median": float(np.median(overheads)),
        "overhead_per_trial_s_per_seed": overheads,
        "trials_median": float(np.median([run.trials for run in runs])),
        "wall_s_total": float(sum(run.wall_s for run in runs)),
        "runs": [{"fidelities": run.fidelities, "losses": run.losses, "wall_s": run.wall_s,
                  "objective_s": run.objective_s} for run in runs],
    }


# --------------------------------------------------------------------------- driver


def run_problem(dim: int, settings: Mapping[str, Any], seeds: Sequence[int],
                log: Callable[[str], None]) -> dict:
    """Every optimiser on one MF-Hartmann problem, with every prior and seed."""
    problem = problems.mf_hartmann(dim, settings["preset"])
    budget_units = settings["budget"] * problems.FIDELITY_UPPER
    points = settings["budget_points"]
    grid = np.arange(PLOT_STEP, settings["budget"] + 1e-9, PLOT_STEP)
    evaluate_one = single_evaluate(problem)
    results: dict[str, dict] = {}
    compile_s: dict[str, float] = {}

    def run_jaxnas(name: str, prior: str | None) -> list[Run]:
        spec = jn.compile(problem.space(prior=prior, confidence=CONFIDENCE))
        driver = JaxnasDriver(problem, *jaxnas_optimizer(name, spec))
        compile_s[f"{name} / {prior or NO_PRIOR}"] = driver.compile_s
        return [driver.run(seed, budget_units) for seed in seeds]

    for name in PRIOR_FREE:
        log(f"mfh{dim}: {name}")
        results[f"{name} / {NO_PRIOR}"] = summarize(problem, run_jaxnas(name, None), points,
                                                    grid)
    for prior in settings["priors"]:
        log(f"mfh{dim} / {prior}: {PRIORBAND}")
        results[f"{PRIORBAND} / {prior}"] = summarize(problem, run_jaxnas(PRIORBAND, prior),
                                                      points, grid)
        log(f"mfh{dim} / {prior}: {NEPS_PRIORBAND}")
        neps_runs = [run_neps(problem, prior, seed, budget_units, evaluate_one)
                     for seed in seeds]
        results[f"{NEPS_PRIORBAND} / {prior}"] = summarize(problem, neps_runs, points, grid)

    prior_regret = {name: float(problem.regret(problem.evaluate(
        problem.priors[name], problems.FIDELITY_UPPER, jax.random.key(0))))
        for name in settings["priors"]}
    return {
        "problem": problem.name,
        "optimum": problem.optimum,
        "regret_reference": problem.regret_reference,
        "priors": {name: problem.priors[name] for name in settings["priors"]},
        "prior_regret": prior_regret,
        "jaxnas_compile_s": compile_s,
        "results": results,
    }


def check_targets(problems_results: Mapping[str, dict], points: Sequence[float]) -> dict:
    """The two targets: regret no worse than NePS at every point, overhead 100x lower."""
    regret_checks = []
    ratios = []
    for problem_name, entry in problems_results.items():
        for prior in entry["priors"]:
            ours = entry["results"][f"{PRIORBAND} / {prior}"]
            theirs = entry["results"][f"{NEPS_PRIORBAND} / {prior}"]
            ours_per_seed = np.asarray(ours["regret_at_budget_points_per_seed"])
            theirs_per_seed = np.asarray(theirs["regret_at_budget_points_per_seed"])
            for i, (point, a, b) in enumerate(zip(points, ours["regret_at_budget_points"]["median"],
                                                  theirs["regret_at_budget_points"]["median"])):
                regret_checks.append({
                    "problem": problem_name, "prior": prior, "budget": point,
                    "jaxnas_median": a, "neps_median": b,
                    "p_jaxnas_better": probability_of_superiority(ours_per_seed[:, i],
                                                                  theirs_per_seed[:, i]),
                    "p_value_jaxnas_worse": one_sided_p(ours_per_seed[:, i],
                                                        theirs_per_seed[:, i], "greater"),
                    "p_value_jaxnas_better": one_sided_p(ours_per_seed[:, i],
                                                         theirs_per_seed[:, i], "less"),
                    "met": a is not None and (b is None or a <= b),
                })
            ratios.append(theirs["overhead_per_trial_s_median"]
                          / ours["overhead_per_trial_s_median"])
    return {
        "regret_no_worse_than_neps": {
            "met": sum(c["met"] for c in regret_checks), "total": len(regret_checks),
            "significantly_worse": sum(c["p_value_jaxnas_worse"] < 0.05 for c in regret_checks),
            "significantly_better": sum(c["p_value_jaxnas_better"] < 0.05
                                        for c in regret_checks),
            "checks": regret_checks,
        },
        "overhead_ratio_neps_over_jaxnas": {
            "min": min(ratios), "median": float(np.median(ratios)),
            "target": TARGET_OVERHEAD_RATIO, "target_machine": TARGET_MACHINE,
            "met_here": bool(min(ratios) >= TARGET_OVERHEAD_RATIO),
        },
    }


def run(settings: Mapping[str, Any], seeds: Sequence[int]) -> dict:
    """Runs every problem; returns the results as written to JSON."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    machine = machine_info("neural-pipeline-search")
    per_problem = {f"MF-Hartmann-{dim}": run_problem(dim, settings, seeds, log)
                   for dim in DIMS}
    return {
        "benchmark": "priorband_vs_neps",
        "machine": machine,
        "settings": {**settings, "budget_points": list(settings["budget_points"]),
                     "priors": list(settings["priors"]), "seeds": list(seeds),
                     "eta": ETA, "confidence_jaxnas": CONFIDENCE,
                     "jaxnas_optimizer": JAXNAS_PRIORBAND, "dims": list(DIMS),
                     "confidence_neps": NEPS_CONFIDENCE[CONFIDENCE],
                     "random_search_batch": RANDOM_SEARCH_BATCH, "max_trials": MAX_TRIALS,
                     "fidelity_accounting": "full fidelity per evaluation (NePS 0.17)",
                     "incumbent": "lowest observed loss at any fidelity (PriorBand paper)",
                     "statistic": "median and quartiles over seeds; one-sided Mann-Whitney "
                                  "U tests per budget point"},
        "problems": per_problem,
        "targets": check_targets(per_problem, settings["budget_points"]),
        "total_wall_s": time.perf_counter() - start,
    }


# -------------------------------------------------------------------------- output


def _cell(stats: Mapping[str, list], i: int) -> str:
    if stats["median"][i] is None:
        return "no evaluation yet"
    return f"{stats['median'][i]:.3f} [{stats['q25'][i]:.3f}, {stats['q75'][i]:.3f}]"


def print_table(results: Mapping[str, Any]) -> None:
    """Prints the results as a markdown table, then the targets."""
    settings, machine = results["settings"], results["machine"]
    points = settings["budget_points"]
    print(f"\n## PriorBand vs NePS on MF-Hartmann (preset {settings['preset']!r})\n")
    print(f"{len(settings['seeds'])} seeds: {settings['seeds']}. Budget "
          f"{settings['budget']:g} full-fidelity evaluations (x100 fidelity units, full "
          f"fidelity charged per evaluation). Normalised regret of the incumbent (lowest "
          f"loss at any fidelity): median [q25, q75] over seeds.")
    print(f"machine: {machine['platform']}, {machine['cpus_usable']} usable CPUs (load "
          f"{machine['load_average_at_start'][0]:.1f} at start), jax {machine['jax']}, "
          f"neps {machine['neural-pipeline-search']}, jaxnas {machine['jaxnas']} ({machine['jaxnas_revision']})\n")
    header = ["problem", "prior (regret)", "optimizer",
              *[f"regret @{p:g}" for p in points], "overhead/trial", "trials"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for problem_name, entry in results["problems"].items():
        for key, stats in entry["results"].items():
            name, prior = key.split(" / ")
            prior_cell = prior if prior == NO_PRIOR else \
                f"{prior} ({entry['prior_regret'][prior]:.3f})"
            cells = [problem_name, prior_cell, name,
                     *[_cell(stats["regret_at_budget_points"], i) for i in range(len(points))],
                     f"{1e3 * stats['overhead_per_trial_s_median']:.3f} ms",
                     f"{stats['trials_median']:.0f}"]
            print("| " + " | ".join(cells) + " |")
    targets = results["targets"]
    regret = targets["regret_no_worse_than_neps"]
    print(f"\nTarget 1, jaxnas PriorBand median regret <= NePS PriorBand's at every budget "
          f"point: met at {regret['met']} of {regret['total']} (problem, prior, budget) points. "
          f"P = probability that a jaxnas run beats a NePS run (0.5: no difference); p = "
          f"one-sided Mann-Whitney p-value that jaxnas is worse. Significantly worse (p < "
          f"0.05) at {regret['significantly_worse']} of {regret['total']}, significantly "
          f"better at {regret['significantly_better']}.")
    for check in regret["checks"]:
        verdict = "met" if check["met"] else "NOT met"
        print(f"  {verdict}: {check['problem']} / {check['prior']} @{check['budget']:g}: "
              f"jaxnas {check['jaxnas_median']:.4f}, NePS {check['neps_median']:.4f}, "
              f"P = {check['p_jaxnas_better']:.2f}, p = {check['p_value_jaxnas_worse']:.3f}")
    ratio = targets["overhead_ratio_neps_over_jaxnas"]
    met = "met" if ratio["met_here"] else "NOT met"
    print(f"Target 2, overhead per trial >= {ratio['target']:g}x below NePS's: NePS/jaxnas "
          f"= {ratio['min']:,.0f}x at worst, {ratio['median']:,.0f}x median over "
          f"(problem, prior) ({met} here).")
    for problem_name, entry in results["problems"].items():
        compiles = ", ".join(f"{k} {v:.1f} s" for k, v in entry["jaxnas_compile_s"].items())
        print(f"jaxnas XLA compile + warm-up (once per problem and space, not in overhead), "
              f"{problem_name}: {compiles}")
    print(f"total wall time {results['total_wall_s']:.0f} s")


def plot(results: Mapping[str, Any], path: Path) -> None:
    """Median regret over budget with the interquartile band, one panel per problem/prior."""
    import matplotlib  # noqa: PLC0415 - optional dependency (the [plot] extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    settings = results["settings"]
    grid = np.arange(PLOT_STEP, settings["budget"] + 1e-9, PLOT_STEP)
    priors = settings["priors"]
    names = list(results["problems"])
    fig, axes = plt.subplots(len(names), len(priors), squeeze=False, sharex=True,
                             figsize=(max(4.5 * len(priors), 7.0), 3.2 * len(names)))
    colors = dict(zip(OPTIMIZERS, ("tab:blue", "tab:orange", "tab:green", "tab:gray")))
    for row, problem_name in enumerate(names):
        entry = results["problems"][problem_name]
        for column, prior in enumerate(priors):
            ax = axes[row][column]
            for name in OPTIMIZERS:
                key = f"{name} / {NO_PRIOR if name in PRIOR_FREE else prior}"
                # None (no evaluation yet) becomes NaN: not drawn.
                stats = {k: np.asarray(v, float)
                         for k, v in entry["results"][key]["regret_on_grid"].items()}
                ax.step(grid, stats["median"], where="post", color=colors[name], label=name)
                ax.fill_between(grid, stats["q25"], stats["q75"], step="post", alpha=0.15,
                                color=colors[name])
            ax.set_yscale("log")
            ax.set_title(f"{problem_name}, {prior} prior")
            ax.grid(True, alpha=0.3)
            if row == len(names) - 1:
                ax.set_xlabel("full-fidelity evaluations spent")
            if column == 0:
                ax.set_ylabel("normalised regret")
    axes[0][0].legend(fontsize="small")
    fig.suptitle(f"MF-Hartmann (preset {settings['preset']!r}): median and IQR over "
                 f"{len(settings['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _choose(jaxnas: str, dims: Sequence[int] | None, no_reference: bool) -> None:
    """Sets the module's tables for the flags: which jaxnas optimiser stands in the
    PriorBand row (and its label), which problems, which reference rows."""
    global JAXNAS_PRIORBAND, PRIORBAND, OPTIMIZERS, DIMS, PRIOR_FREE  # noqa: PLW0603
    JAXNAS_PRIORBAND = jaxnas
    if jaxnas == "priorband_bo":
        PRIORBAND = "jaxnas PriorBand+BO"
    DIMS = tuple(dims) if dims else DIMS
    PRIOR_FREE = () if no_reference else PRIOR_FREE
    OPTIMIZERS = (PRIORBAND, NEPS_PRIORBAND, *PRIOR_FREE)


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, runs the benchmark, prints the table, writes JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 seeds, the good prior, budget 5")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds, 0..N-1 (default 20; --quick 2)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run seeds FIRST..FIRST+N-1 (default 0). A 20-seed median's "
                             "standard error is about a fifth of the interquartile range: "
                             "check a verdict on fresh seeds")
    parser.add_argument("--priors", nargs="+", choices=problems.PRIOR_NAMES, default=None,
                        help="priors to run (default good medium bad; --quick good)")
    parser.add_argument("--preset", choices=sorted(problems.HARTMANN_PRESETS), default=None,
                        help="MF-Hartmann bias/noise preset (default 'good')")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT}); the plot goes next "
                             f"to it as .png")
    parser.add_argument("--jaxnas", choices=("priorband", "priorband_bo"), default="priorband",
                        help="the jaxnas optimiser compared with NePS PriorBand")
    parser.add_argument("--dims", nargs="+", type=int, choices=(3, 6), default=None,
                        help="MF-Hartmann dimensions (default 3 6)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the jaxnas Hyperband and random-search rows")
    args = parser.parse_args(argv)
    _choose(args.jaxnas, args.dims, args.no_reference)

    settings = {"mode": "quick" if args.quick else "full", **(QUICK if args.quick else FULL)}
    if args.priors is not None:
        settings["priors"] = tuple(args.priors)
    if args.preset is not None:
        settings["preset"] = args.preset
    default_seeds = settings.pop("seeds")
    n_seeds = default_seeds if args.seeds is None else args.seeds
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))
    if not seeds:
        parser.error("--seeds must be at least 1")
    logging.getLogger("neps").setLevel(logging.WARNING)
    print(f"seeds: {len(seeds)} ({seeds}); priors {list(settings['priors'])}; "
          f"budget {settings['budget']:g} full-fidelity evaluations", flush=True)
    results = run(settings, seeds)
    print_table(results)
    write_results(args.out, results, indent=1)
    figure = args.out.with_suffix(".png")
    plot(results, figure)
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
