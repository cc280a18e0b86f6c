"""Multi-objective Hyperband: jaxnas against NePS 0.17's `mo_hyperband`, side by side.

What is compared (in this one process, on the same problem, seeds and budgets, the two
optimisers alternating seed by seed):
    * jaxnas: `jn.optimizers.get("hyperband", spec, n_objectives=2, eta=3,
      max_trials=...)`: Hyperband (HpBandSter's and NePS's bracket sizes) wrapped in
      `multi_objective(mode="rank")`, whose promotions take a rung's best non-dominated
      fronts (crowding distance ordering a front), as MO-ASHA's non-dominated sorting does.
    * NePS 0.17: `neps.run(optimizer=("mo_hyperband", {"eta": 3}))`, its defaults otherwise
      (`sampler="uniform"`, `mo_selector="epsnet"`: each promotion takes the first
      configuration of SyneTune's epsilon-net ordering of the rung's not yet promoted
      trials, `k = len(those) // eta`; its "nsga2" selector raises NotImplementedError).
      The pipeline returns the objectives as a list of two floats, which NePS 0.17 reads
      as a multi-objective result (`objective_to_minimize: Sequence[float]`,
      `neps/state/pipeline_eval.py`). Root directory in a temporary folder.
Both: eta 3, z in 1..27, rungs 1, 3, 9, 27; brackets 27@1 9@3 3@9 1@27; 9@3 3@9 1@27;
6@9 2@27; 4@27 (65 trials per Hyperband iteration). Rule: jaxnas no worse.

Problem `mf_zdt1`: a pure JAX function of one configuration and its fidelity, both
objectives minimised, deterministic. Six floats x1..x6 in [0, 1] and an integer fidelity
z in 1..27 (`jn.IntegerFidelity(1, 27)`; `neps.IntegerFidelity(1, 27)` on NePS's side):

    rho(z) = 1 - ln z / ln 27                  (1 at z = 1, 0 at z = 27)
    g      = 1 + 9 mean(x2..x6)
    f1     = x1
    f2     = g (1 - sqrt(f1 / g)) + rho(z) (0.75 (1 + sin(4 pi x1)) + 3 |x2 - x3|)

At z = 27 this is ZDT1 with n = 6 (Zitzler, Deb and Thiele 2000): the Pareto front is
f2 = 1 - sqrt(f1), f1 in [0, 1]. Lower fidelities overstate f2 by a bias that depends on
the configuration: up to 1.5 by where f1 lies (least near f1 = 0.375 and 0.875, which a
low rung therefore favours), and by 3 |x2 - x3|, which the full fidelity ignores. So a low
rung's fronts are informative but misleading in part, which is what a promotion rule must
cope with.

Budget: fidelity spent, counted as jaxnas counts it (`jn.run`'s `max_fidelity_spent`): a
promotion pays only the fidelity it adds to its parent's (a continuation), a new trial its
whole fidelity. jaxnas: from the trial table (`state.trials.fidelities`, `.parent_ids`,
`.status`, each told row's fidelity minus its parent's). NePS: a synthetic objective cannot
resume, and NePS 0.17 itself charges every trial its full fidelity
(`total_fidelities_to_spend`), promotions included; here the NePS pipeline charges a
configuration it has evaluated before (the same values of x1..x6, which a promotion keeps)
only its fidelity minus that earlier fidelity, so both sides get the same budget in the
same units. Its own count is reported alongside. The runs stop at the largest budget: jaxnas
after the batch that reaches it, NePS when its pipeline is called once the budget is spent
(it raises, and `neps.run`'s WorkerRaiseError is caught). Budget points are in
full-fidelity-evaluation equivalents (27 units each): 5, 10, 15, 20 (135 .. 540 units).

Quality: the hypervolume (`jn.metrics.hypervolume`, exact) of the full-fidelity (z = 27)
evaluations among those whose cumulative fidelity spent is within the budget point, with
reference point (1.1, 11) (as `benchmarks/multiobjective.py`'s ZDT1: g <= 10, so every
full-fidelity point with f1 <= 1 counts; the front's hypervolume is 12.1 - 1/3 = 11.767).
No full-fidelity evaluation yet: hypervolume 0. Per point: median and quartiles over
seeds; one-sided Mann-Whitney U tests (scipy) that jaxnas's hypervolumes are lower
("worse") or higher ("better") than NePS's; P(jaxnas beats NePS): the probability that a
jaxnas run has the higher hypervolume, ties counting half. Verdict "no worse": no point
significantly worse (Holm-adjusted over the budget points, alpha 0.05) and P(jaxnas beats
NePS) >= 0.45 at every point. Diagnostics at each point: full-fidelity evaluations made.

Seeds: seed s drives both sides (`jax.random.key(s)` for jaxnas; `random`, `numpy` and
`torch`'s global generators seeded with s for NePS, which samples from them). Development
seeds are 0..N-1 (N = 20; `--quick` 3). `--verdict` runs the verdict seeds
60000..60000+N-1 instead, which were not used while this script was developed; keep them
out of development (`--seeds` alone never reaches them). Only a `--verdict` run gives a
verdict; the others' are marked indicative.

Overhead per trial: the optimiser's own time, (wall time of the run - time inside the
objective) / trials, median over seeds. jaxnas: the run is `init` and the host loop of
jitted `ask`, `tell` and the fidelity count, with their transfers; the objective is the
jitted, vmapped batch evaluation and its transfer; XLA compilation and one warm-up call of
each program are timed apart. NePS: the run is `neps.run` (file-based state, locking,
sampling, and the one extra trial it samples before the pipeline stops it); the objective
is the pipeline function (a jitted evaluation of one configuration and the bookkeeping);
a short warm-up run first absorbs NePS's lazy imports.

Run it from the repository root:
    python benchmarks/multiobjective_neps.py              # 20 development seeds: about
                                                          # 1.5 min on 2 busy CPU cores
                                                          # (10 seeds: 45 s), 99% NePS's
    python benchmarks/multiobjective_neps.py --quick      # 3 seeds, budgets 5 and 10: 15 s
    python benchmarks/multiobjective_neps.py --seeds 10 --budgets 5 10 20
    python benchmarks/multiobjective_neps.py --verdict    # the verdict seeds: a verdict

It prints markdown tables and writes JSON (default
`benchmarks/results/multiobjective_neps.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import random
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxnas as jn
from _common import (ALPHA, MIN_SUPERIORITY, add_seed_arguments, choose_seeds,
                     compile_optimizer, holm, machine_info, no_worse, one_sided_p,
                     probability_of_superiority, quartiles, write_results)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch, imported by NePS, warns about torch.jit
    import neps
    import torch
    from neps.exceptions import WorkerRaiseError

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "multiobjective_neps.json"

DEVELOPMENT_FIRST_SEED = 0
VERDICT_FIRST_SEED = 60_000  # never used while developing: see the module docstring
MIN_VERDICT_SEEDS = 20
N_OBJECTIVES = 2
ETA = 3

PATHS = tuple(f"x{i}" for i in range(1, 7))
FIDELITY = "z"
FIDELITY_LOWER, FIDELITY_UPPER = 1, 27
REFERENCE = (1.1, 11.0)
IDEAL_HYPERVOLUME = REFERENCE[0] * REFERENCE[1] - 1.0 / 3.0  # under f2 = 1 - sqrt(f1)
# Trials a jaxnas state holds: 65 per Hyperband iteration of 342 units (12.7 full
# evaluations), so 20 full evaluations take about 105; room for larger --budgets.
TRIALS_PER_FULL_EVALUATION = 6

FULL = {"seeds": 20, "budgets": (5, 10, 15, 20)}
QUICK = {"seeds": 3, "budgets": (5, 10)}


# --------------------------------------------------------------------------- problem


SPACE = {**{path: jn.Float(0.0, 1.0) for path in PATHS},
         FIDELITY: jn.IntegerFidelity(FIDELITY_LOWER, FIDELITY_UPPER)}


def mf_zdt1(config: Mapping[str, jax.Array], fidelity: jax.Array) -> jax.Array:
    """The module docstring's problem of one config at `fidelity`: `(2,)` float32."""
    x = jnp.stack([jnp.asarray(config[path], jnp.float32) for path in PATHS])
    rho = 1.0 - jnp.log(jnp.asarray(fidelity, jnp.float32)) / jnp.log(float(FIDELITY_UPPER))
    f1 = x[0]
    g = 1.0 + 9.0 * jnp.mean(x[1:])
    bias = 0.75 * (1.0 + jnp.sin(4.0 * jnp.pi * f1)) + 3.0 * jnp.abs(x[1] - x[2])
    return jnp.stack([f1, g * (1.0 - jnp.sqrt(f1 / g)) + rho * bias])


# ------------------------------------------------------------------------------ runs


@dataclasses.dataclass(frozen=True)
class Run:
    """One optimiser's run on one seed, evaluations in the order made.

    Attributes:
        objectives: `(trials, 2)` the evaluated objectives.
        fidelities: `(trials,)` each evaluation's fidelity.
        costs: `(trials,)` the fidelity each evaluation was charged (a promotion: what it
            adds to its parent's).
        wall_s: The run's wall time.
        objective_s: Of it, the time inside the objective.
        own_fidelity_count: NePS only: the fidelity NePS 0.17 itself counts (every
            trial's full fidelity); None for jaxnas.
    """

    objectives: np.ndarray
    fidelities: np.ndarray
    costs: np.ndarray
    wall_s: float
    objective_s: float
    own_fidelity_count: float | None = None

    @property
    def trials(self) -> int:
        return int(self.objectives.shape[0])

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.objective_s


def fidelity_spent(trials: Any) -> jax.Array:
    """The fidelity the told trials trained, `()` float32: each told row's fidelity minus
    its parent's (0 for a new configuration), from the trial table's public fields."""
    told = ((trials.status == jn.optimizers.Status.SUCCESS)
            | (trials.status == jn.optimizers.Status.FAILED))
    parents = jnp.clip(trials.parent_ids, 0)
    parent_fidelity = jnp.where(trials.parent_ids >= 0, trials.fidelities[parents], 0.0)
    return jnp.sum(jnp.where(told, trials.fidelities - parent_fidelity, 0.0))


class JaxnasDriver:
    """jaxnas multi-objective Hyperband compiled once, run seed after seed.

    The loop: ask (jitted) -> evaluate the batch (jitted, vmapped; padding rows are
    evaluated too and dropped) -> tell (jitted) -> fidelity spent (jitted) until the
    budget is spent. Compilation and one warm-up call of each program happen here, timed
    apart from the runs.
    """

    def __init__(self, spec: jn.SearchSpace, max_trials: int):
        self.kwargs = {"n_objectives": N_OBJECTIVES, "eta": ETA, "max_trials": max_trials}
        optimizer = jn.optimizers.get("hyperband", spec, **self.kwargs)
        self.init, self.ask, self.tell, self.compile_s, proposals = compile_optimizer(
            optimizer, lambda ids: jnp.zeros((ids.shape[0], N_OBJECTIVES), jnp.float32),
            "hyperband")
        start = time.perf_counter()
        self.evaluate = jax.jit(jax.vmap(mf_zdt1)).lower(
            proposals.configs, proposals.fidelities).compile()
        jax.block_until_ready(self.evaluate(proposals.configs, proposals.fidelities))
        state = self.init(jax.random.key(0))
        self.spent = jax.jit(fidelity_spent).lower(state.trials).compile()
        jax.block_until_ready(self.spent(state.trials))
        self.other_compile_s = time.perf_counter() - start

    def run(self, seed: int, budget: float) -> Run:
        """Runs until `budget` fidelity units are spent (the last batch may overshoot)."""
        init_key, ask_key = jax.random.split(jax.random.key(seed))
        ids, objectives = [], []
        objective_s, spent, step = 0.0, 0.0, 0
        start = time.perf_counter()
        state = self.init(init_key)
        while spent < budget:
            state, proposals = self.ask(state, ask_key, np.int32(step))
            step += 1
            valid = np.asarray(proposals.valid)  # waits for the ask
            if not valid.any():
                raise RuntimeError(f"hyperband proposed nothing after {spent:g} units: its "
                                   f"state is full (max_trials {self.kwargs['max_trials']})")
            evaluation_start = time.perf_counter()
            batch = self.evaluate(proposals.configs, proposals.fidelities)
            host = np.asarray(batch)
            objective_s += time.perf_counter() - evaluation_start
            state = self.tell(state, proposals.trial_ids, batch)
            spent = float(self.spent(state.trials))
            ids.append(np.asarray(proposals.trial_ids)[valid])
            objectives.append(host[valid])
        jax.block_until_ready(state)
        wall_s = time.perf_counter() - start
        # Per evaluation, from the trial table: its fidelity and what it added.
        ids_ = np.concatenate(ids)
        fidelities = np.asarray(state.trials.fidelities, np.float64)
        parents = np.asarray(state.trials.parent_ids)
        parent_fidelity = np.where(parents >= 0, fidelities[np.clip(parents, 0, None)], 0.0)
        costs = (fidelities - parent_fidelity)[ids_]
        if not math.isclose(costs.sum(), spent, rel_tol=1e-6):
            raise AssertionError(f"fidelity spent {spent} != per-trial sum {costs.sum()}")
        return Run(np.concatenate(objectives), fidelities[ids_], costs, wall_s, objective_s)


class _BudgetSpent(Exception):
    """Raised by the NePS pipeline when it is called after the budget is spent."""


class NepsDriver:
    """NePS 0.17 `mo_hyperband` on the problem, one `neps.run` per seed."""

    def __init__(self):
        entries: dict[str, Any] = {path: neps.Float(0.0, 1.0) for path in PATHS}
        entries[FIDELITY] = neps.IntegerFidelity(FIDELITY_LOWER, FIDELITY_UPPER)
        self.space_type = type("MFZDT1Space", (neps.PipelineSpace,), entries)
        self._evaluate = jax.jit(lambda x, z: mf_zdt1(dict(zip(PATHS, x)), z))
        self._evaluate(np.zeros(len(PATHS), np.float32), np.float32(1.0)).block_until_ready()
        self.run(0, 2 * FIDELITY_UPPER)  # a warm-up run: NePS's lazy imports and first calls

    def run(self, seed: int, budget: float) -> Run:
        seen: dict[tuple[float, ...], float] = {}  # config -> fidelity it was evaluated at
        objectives, fidelities, costs = [], [], []
        objective_s, spent = 0.0, 0.0

        def evaluate_pipeline(**values: float) -> list[float]:
            nonlocal objective_s, spent
            if spent >= budget:
                raise _BudgetSpent
            start = time.perf_counter()
            x = np.asarray([values[path] for path in PATHS], np.float32)
            fidelity = float(values[FIDELITY])
            result = np.asarray(self._evaluate(x, np.float32(fidelity)))
            key = tuple(x.tolist())
            cost = fidelity - seen.get(key, 0.0)
            seen[key] = fidelity
            spent += cost
            objectives.append(result)
            fidelities.append(fidelity)
            costs.append(cost)
            objective_s += time.perf_counter() - start
            return [float(v) for v in result]

        # NePS's samplers draw from the global random, numpy and torch generators.
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        with tempfile.TemporaryDirectory(prefix="neps_mo_hyperband_") as root:
            start = time.perf_counter()
            try:
                neps.run(evaluate_pipeline, self.space_type(),
                         root_directory=Path(root) / "run",
                         optimizer=("mo_hyperband", {"eta": ETA}))
            except WorkerRaiseError as error:
                if not isinstance(error.__cause__, _BudgetSpent):
                    raise
            wall_s = time.perf_counter() - start
        if spent < budget:
            raise RuntimeError(f"NePS stopped after {spent:g} of {budget:g} units")
        return Run(np.stack(objectives), np.asarray(fidelities), np.asarray(costs), wall_s,
                   objective_s, own_fidelity_count=float(np.sum(fidelities)))


# ------------------------------------------------------------------------ statistics


def within(run: Run, units: float) -> np.ndarray:
    """`(trials,)` whether each evaluation's cumulative fidelity spent is within `units`."""
    return np.cumsum(run.costs) <= units + 1e-6


def hypervolume_at(run: Run, budgets: Sequence[int]) -> np.ndarray:
    """The hypervolume of the full-fidelity evaluations within each budget point."""
    values = []
    for budget in budgets:
        mask = within(run, budget * FIDELITY_UPPER) & (run.fidelities == FIDELITY_UPPER)
        points = run.objectives[mask]
        points = points[~np.isnan(points).any(axis=1)]
        values.append(jn.metrics.hypervolume(points, np.asarray(REFERENCE)))
    return np.asarray(values)


def full_evaluations_at(run: Run, budgets: Sequence[int]) -> list[int]:
    return [int(np.sum(within(run, b * FIDELITY_UPPER) & (run.fidelities == FIDELITY_UPPER)))
            for b in budgets]


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """The tests at one budget point on hypervolumes over seeds (higher is better)."""
    # probability_of_superiority counts the lower value as the winner: negate.
    return {"p_beats": probability_of_superiority(-ours, -theirs),
            "p_value_worse": one_sided_p(ours, theirs, "less"),
            "p_value_better": one_sided_p(ours, theirs, "greater")}


def run_summary(runs: Sequence[Run], budgets: Sequence[int]) -> dict[str, Any]:
    hypervolume = np.stack([hypervolume_at(run, budgets) for run in runs])
    full = np.asarray([full_evaluations_at(run, budgets) for run in runs])
    return {"hypervolume": quartiles(hypervolume),
            "hypervolume_per_seed": hypervolume.tolist(),
            "full_fidelity_evaluations": quartiles(full.astype(np.float64)),
            "full_fidelity_evaluations_per_seed": full.tolist()}


def summarize(raw: Mapping[str, list[Run]], budgets: Sequence[int],
              verdict_seeds: bool) -> dict[str, Any]:
    """Per side the hypervolumes, per budget point the tests, Holm, the verdict."""
    ours, theirs = run_summary(raw["jaxnas"], budgets), run_summary(raw["neps"], budgets)
    ours_hv = np.asarray(ours["hypervolume_per_seed"])
    theirs_hv = np.asarray(theirs["hypervolume_per_seed"])
    points = [{"budget": b, **compare(ours_hv[:, i], theirs_hv[:, i])}
              for i, b in enumerate(budgets)]
    for key in ("worse", "better"):
        for point, adjusted in zip(points, holm([p[f"p_value_{key}"] for p in points])):
            point[f"p_{key}_holm"] = adjusted
    status = ("verdict (verdict seeds)" if verdict_seeds else
              "indicative only: development seeds (a verdict needs --verdict)")
    verdict = {
        "rule": "jaxnas multi-objective hyperband no worse than NePS mo_hyperband",
        "status": status, "family_size": len(points),
        **no_worse(points, "NePS", lambda p: f"budget {p['budget']}"),
    }
    return {"jaxnas": ours, "neps": theirs, "points": points, "verdict": verdict}


def overhead(raw: Mapping[str, list[Run]], compile_s: float) -> dict[str, Any]:
    """Overhead per trial of both sides over every seed's run."""
    def per_trial_ms(runs: Sequence[Run], extra_s: float = 0.0) -> list[float]:
        return [1e3 * (run.overhead_s + extra_s) / run.trials for run in runs]

    ours, theirs = per_trial_ms(raw["jaxnas"]), per_trial_ms(raw["neps"])
    return {
        "jaxnas_ms_per_trial": ours,
        "jaxnas_ms_per_trial_incl_compile": per_trial_ms(raw["jaxnas"], compile_s),
        "neps_ms_per_trial": theirs,
        "jaxnas_objective_ms_per_trial": [1e3 * r.objective_s / r.trials
                                          for r in raw["jaxnas"]],
        "neps_objective_ms_per_trial": [1e3 * r.objective_s / r.trials for r in raw["neps"]],
        "jaxnas_compile_s": compile_s,
        "ratio_excl_compile": float(np.median(theirs) / np.median(ours)),
    }


# ---------------------------------------------------------------------------- driver


def run(budgets: Sequence[int], seeds: Sequence[int], *, verdict_seeds: bool) -> dict:
    """Runs both optimisers on every seed; returns the results for JSON."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    machine = machine_info("neural-pipeline-search", "scipy")
    units = max(budgets) * FIDELITY_UPPER
    max_trials = 64 + TRIALS_PER_FULL_EVALUATION * max(budgets)
    ours = JaxnasDriver(jn.compile(SPACE), max_trials)
    log(f"compiled jaxnas hyperband {ours.kwargs} in {ours.compile_s:.1f} s "
        f"(+{ours.other_compile_s:.1f} s objective and fidelity count)")
    theirs = NepsDriver()
    log("NePS warmed up")
    raw: dict[str, list[Run]] = {"jaxnas": [], "neps": []}
    for seed in seeds:
        raw["jaxnas"].append(ours.run(seed, units))
        raw["neps"].append(theirs.run(seed, units))
        log(f"seed {seed} done (jaxnas {raw['jaxnas'][-1].trials} trials "
            f"{raw['jaxnas'][-1].wall_s:.2f} s, NePS {raw['neps'][-1].trials} trials "
            f"{raw['neps'][-1].wall_s:.2f} s)")
    return {
        "benchmark": "multiobjective_neps",
        "machine": machine,
        "persistent_compilation_cache": jax.config.jax_compilation_cache_dir or None,
        "settings": {
            "budgets_full_fidelity_evaluations": list(budgets),
            "budget_units_per_full_evaluation": FIDELITY_UPPER,
            "seeds": list(seeds),
            "seed_set": "verdict" if verdict_seeds else "development",
            "development_seeds": f"{DEVELOPMENT_FIRST_SEED}..{DEVELOPMENT_FIRST_SEED}+N-1",
            "verdict_seeds": f"{VERDICT_FIRST_SEED}..{VERDICT_FIRST_SEED}+N-1",
            "jaxnas": f"jn.optimizers.get('hyperband', spec, n_objectives={N_OBJECTIVES}, "
                      f"eta={ETA}, max_trials={max_trials})",
            "neps": f"neps.run(..., optimizer=('mo_hyperband', {{'eta': {ETA}}})), pipeline "
                    f"returning [f1, f2]",
            "fidelity_accounting": "a promotion pays only the fidelity it adds (both sides)",
            "quality": "exact hypervolume of the z = 27 evaluations within the budget",
            "reference": list(REFERENCE),
            "ideal_hypervolume": IDEAL_HYPERVOLUME,
            "statistics": f"median and quartiles over seeds; one-sided Mann-Whitney U per "
                          f"point; Holm over the points; alpha {ALPHA}; P(jaxnas beats "
                          f"NePS) >= {MIN_SUPERIORITY} for no worse",
        },
        "comparison": summarize(raw, budgets, verdict_seeds),
        "overhead": overhead(raw, ours.compile_s),
        "runs": {side: {"trials": [r.trials for r in runs],
                        "wall_s": [r.wall_s for r in runs],
                        "objective_s": [r.objective_s for r in runs],
                        "fidelity_spent": [float(r.costs.sum()) for r in runs],
                        "neps_own_fidelity_count": [r.own_fidelity_count for r in runs]}
                 for side, runs in raw.items()},
        "total_wall_s": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------- output


def _stats(stats: Mapping[str, list], i: int, fmt: str = ".4g") -> str:
    return (f"{stats['median'][i]:{fmt}} [{stats['q25'][i]:{fmt}}, "
            f"{stats['q75'][i]:{fmt}}]")


def _p(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.3g}"


def print_results(results: Mapping[str, Any]) -> None:
    settings, machine = results["settings"], results["machine"]
    comparison = results["comparison"]
    print("\n## Multi-objective Hyperband: jaxnas vs NePS 0.17 mo_hyperband (mf_zdt1)\n")
    print(f"{len(settings['seeds'])} {settings['seed_set']} seeds: {settings['seeds']}; eta "
          f"{ETA}, z in 1..27. Hypervolume (reference {tuple(REFERENCE)}, front "
          f"{IDEAL_HYPERVOLUME:.4f}; higher is better) of the z = 27 evaluations within the "
          f"budget (full-fidelity-evaluation equivalents, a promotion paying what it adds): "
          f"median [q25, q75] over seeds. P = P(a jaxnas run beats a NePS run); p worse / "
          f"better: one-sided Mann-Whitney U; Holm p: adjusted over the budget points.")
    print(f"machine: {machine['platform']}, {machine['cpus_usable']} usable CPUs (load "
          f"{machine['load_average_at_start'][0]:.1f} at start), jax {machine['jax']}, neps "
          f"{machine['neural-pipeline-search']}, jaxnas {machine['jaxnas']} "
          f"({machine['jaxnas_revision']})\n")
    header = ["budget", "jaxnas HV", "NePS HV", "jaxnas z=27 evals", "NePS z=27 evals",
              "P(jaxnas beats)", "p worse", "p better", "Holm p worse"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    ours, theirs = comparison["jaxnas"], comparison["neps"]
    for i, point in enumerate(comparison["points"]):
        cells = [str(point["budget"]), _stats(ours["hypervolume"], i),
                 _stats(theirs["hypervolume"], i),
                 _stats(ours["full_fidelity_evaluations"], i, "g"),
                 _stats(theirs["full_fidelity_evaluations"], i, "g"),
                 f"{point['p_beats']:.2f}", _p(point["p_value_worse"]),
                 _p(point["p_value_better"]), _p(point["p_worse_holm"])]
        print("| " + " | ".join(cells) + " |")
    verdict = comparison["verdict"]
    print(f"\nRule: {verdict['rule']} ({verdict['family_size']} points, Holm). Outcome: "
          f"**{verdict['outcome']}** [{verdict['status']}]: {verdict['why']}.")
    row, runs = results["overhead"], results["runs"]
    print(f"\nOverhead per trial (optimiser's own time, median over seeds): jaxnas "
          f"{np.median(row['jaxnas_ms_per_trial']):.3f} ms excl. compile "
          f"({np.median(row['jaxnas_ms_per_trial_incl_compile']):.1f} ms incl. "
          f"{row['jaxnas_compile_s']:.1f} s compile in one run), NePS "
          f"{np.median(row['neps_ms_per_trial']):.1f} ms: {row['ratio_excl_compile']:.0f}x. "
          f"Trials per run (median): jaxnas {np.median(runs['jaxnas']['trials']):g}, NePS "
          f"{np.median(runs['neps']['trials']):g}; fidelity spent (median): jaxnas "
          f"{np.median(runs['jaxnas']['fidelity_spent']):g}, NePS "
          f"{np.median(runs['neps']['fidelity_spent']):g} (NePS's own count, every trial "
          f"at its full fidelity: {np.median(runs['neps']['neps_own_fidelity_count']):g}).")
    print(f"total wall time {results['total_wall_s']:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, runs the benchmark, prints the tables and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['seeds']} seeds, budgets {QUICK['budgets']}: a smoke run")
    add_seed_arguments(parser, full_seeds=FULL["seeds"], quick_seeds=QUICK["seeds"],
                       development_first=DEVELOPMENT_FIRST_SEED,
                       verdict_first=VERDICT_FIRST_SEED)
    parser.add_argument("--budgets", type=int, nargs="+", default=None,
                        help=f"budget points in full-fidelity evaluations (default "
                             f"{FULL['budgets']}; --quick {QUICK['budgets']})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else FULL
    n_seeds = settings["seeds"] if args.seeds is None else args.seeds
    budgets = sorted(set(settings["budgets"] if args.budgets is None else args.budgets))
    if budgets[0] < 1:
        parser.error("--budgets must be positive")
    seeds = choose_seeds(parser, n_seeds, args.first_seed, args.verdict,
                         verdict_first=VERDICT_FIRST_SEED,
                         development_first=DEVELOPMENT_FIRST_SEED,
                         min_verdict=MIN_VERDICT_SEEDS)
    logging.getLogger("neps").setLevel(logging.CRITICAL)  # the stop's traceback included
    # neps.run warns that no stopping criterion is set: the pipeline stops it (docstring).
    warnings.filterwarnings("ignore", message="None of the following were set")
    print(f"{'verdict' if args.verdict else 'development'} seeds: {len(seeds)} ({seeds}); "
          f"budgets {budgets} full-fidelity evaluations", flush=True)
    results = run(budgets, seeds, verdict_seeds=args.verdict)
    print_results(results)
    write_results(args.out, results, indent=1)


if __name__ == "__main__":
    main()
