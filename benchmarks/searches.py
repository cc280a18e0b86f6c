"""Whole searches as one program: `jn.simulate` over many seeds versus NePS, one by one.

What is compared, on MF-Hartmann-6 (`jaxnas.problems.mf_hartmann(6)`, z in 1..100), for
PriorBand (good prior, jaxnas "medium" confidence = NePS "high": the same sigma) and
Hyperband (no prior), eta 3, a budget of 20 full-fidelity evaluations (2,000 fidelity
units):
    * jaxnas: `jn.simulate(name, problem, seeds=S, max_fidelity_spent=2000)`, every seed's
      whole search (ask -> evaluate -> tell until the budget is spent) in one jit-compiled
      program, vmapped over S = 1, 64, 256 and 1,024 seeds. Searches per second count the
      program's run; its compilation (once per optimiser, problem and S) is reported
      beside it, and a second rate includes it.
    * NePS 0.17: `neps.run(evaluate, space, optimizer=(name, {"eta": 3}),
      total_fidelities_to_spend=2000)`, one search after another in temporary folders, as
      many as fit in `--neps-seconds` (at least one); its rate is measured on those and
      stated as such for larger S (extrapolated: NePS has no way to run them together).
    * Budgets differ in one way, stated in the output: jaxnas charges a promotion only the
      fidelity it adds (as `jn.run` does), NePS 0.17 its whole fidelity, so a jaxnas search
      holds more trials than a NePS one; searches per second then favour NePS, and trials
      per second are reported too.
    * Agreement with `jn.run`: for `--check-seeds` seeds the search is also run by
      `jn.run` (the problem's `evaluate` as a pure function, same seed and budget), and
      its trial table is compared with the simulated one (ids, parents, fidelities,
      losses): `jn.simulate` is meant to be that run, not a look-alike.
    * Regret: each search's best full-fidelity loss, normalised (`problem.regret`),
      median and quartiles over seeds: what the searches found, not a verdict (NePS's
      budget counting differs, see above).

Run it from the repository root (the `[bench]` extra installs NePS):
    python benchmarks/searches.py            # about 5 min on 2 CPU cores
    python benchmarks/searches.py --quick    # smoke run: S = 1 and 8, 10 s of NePS each

It prints a markdown table and writes JSON (default `benchmarks/results/searches.json`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxnas as jn
from _common import (machine_info, neps_hartmann_space, quartiles, timed_neps_run,
                     write_results)

ETA = 3
BUDGET = 20  # full-fidelity evaluations
PRIOR = "good"
NEPS_CONFIDENCE = "high"  # NePS 0.17's sigma 1 - 0.75 = jaxnas "medium"'s 0.25
OPTIMIZERS = {"priorband": PRIOR, "hyperband": None}
FULL = {"seeds": (1, 64, 256, 1024), "neps_seconds": 90.0, "check_seeds": 3}
QUICK = {"seeds": (1, 8), "neps_seconds": 10.0, "check_seeds": 1}


def jaxnas_searches(problem: Any, name: str, prior: str | None, n: int) -> dict:
    """`n` seeds' searches in one program: rates, trials and regrets."""
    sim = jn.simulate(name, problem, seeds=n, max_fidelity_spent=BUDGET * 100, prior=prior,
                      optimizer_kwargs={"eta": ETA})
    best, _ = sim.incumbents()
    return {
        "seeds": n, "compile_s": sim.compile_seconds, "run_s": sim.seconds,
        "searches_per_s": n / sim.seconds,
        "searches_per_s_with_compile": n / (sim.seconds + sim.compile_seconds),
        "trials_per_search": float(np.mean(sim.evaluations)),
        "trials_per_s": float(np.sum(sim.evaluations)) / sim.seconds,
        "regret": quartiles(sim.regret(best)[:, None]),
        "simulation": sim,
    }


def agreement(problem: Any, name: str, prior: str | None, sim: Any, seeds: int) -> dict:
    """The first `seeds` simulated searches against `jn.run`'s, trial for trial."""
    checked = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="jaxnas_searches_") as root:
            trials = jn.run(problem.evaluate, problem.space(prior=prior), optimizer=name,
                            optimizer_kwargs={"eta": ETA}, root_directory=root,
                            max_fidelity_spent=BUDGET * 100, seed=seed).trials
        n = len(trials)
        same = (n == sim.evaluations[seed]
                and sim.trial_ids[seed, :n].tolist() == [t["trial_id"] for t in trials]
                and sim.parents[seed, :n].tolist() == [t["parent_id"] for t in trials]
                and np.array_equal(sim.fidelities[seed, :n], [t["fidelity"] for t in trials]))
        gap = float(np.max(np.abs(sim.losses[seed, :n] - [t["loss"] for t in trials])))
        checked.append({"seed": seed, "trials": n, "same_trials": bool(same),
                        "max_loss_difference": gap})
    return {"seeds": checked, "all_same": all(c["same_trials"] and c["max_loss_difference"]
                                              < 1e-5 for c in checked)}


def neps_searches(problem: Any, name: str, prior: str | None, seconds: float) -> dict:
    """NePS searches one after another until `seconds` are used (at least one)."""
    evaluate = jax.jit(problem.evaluate)
    space = neps_hartmann_space(problem, prior, NEPS_CONFIDENCE)
    walls, trials, regrets = [], [], []
    start = time.perf_counter()
    seed = 0
    while seed == 0 or time.perf_counter() - start < seconds:
        noise = jax.random.fold_in(jax.random.key(seed), 1)
        losses, fidelities = [], []

        def evaluate_pipeline(**values: float) -> float:
            config = {k: np.float32(v) for k, v in values.items() if k != "z"}
            key = jax.random.fold_in(noise, len(losses))
            loss = float(evaluate(config, np.float32(values["z"]), key))
            losses.append(loss)
            fidelities.append(float(values["z"]))
            return loss

        walls.append(timed_neps_run(evaluate_pipeline, space, (name, {"eta": ETA}),
                                    BUDGET * 100, seed))
        top = [loss for loss, z in zip(losses, fidelities) if z >= 100]
        regrets.append(float(problem.regret(min(top))) if top else np.inf)
        trials.append(len(losses))
        seed += 1
    per_search = float(np.mean(walls))
    return {"searches": len(walls), "seconds_per_search": per_search,
            "searches_per_s": 1.0 / per_search, "trials_per_search": float(np.mean(trials)),
            "trials_per_s": float(np.sum(trials) / np.sum(walls)),
            "regret": quartiles(np.asarray(regrets)[:, None])}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--seeds", type=int, nargs="+", help="the S values (vmapped seeds)")
    parser.add_argument("--neps-seconds", type=float, help="NePS time per optimiser")
    parser.add_argument("--check-seeds", type=int, help="seeds compared with jn.run")
    parser.add_argument("--no-neps", action="store_true", help="the jaxnas side only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/searches.json"))
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("seeds", "neps_seconds", "check_seeds"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    problem = jn.problems.mf_hartmann(6)
    results: dict[str, Any] = {"settings": {**settings, "budget_full_evaluations": BUDGET,
                                            "eta": ETA, "problem": problem.name},
                               "machine": machine_info(
                                   *(() if args.no_neps else ("neural-pipeline-search",)))}
    for name, prior in OPTIMIZERS.items():
        print(f"{name} ({prior or 'no'} prior) ...", file=sys.stderr, flush=True)
        runs = [jaxnas_searches(problem, name, prior, n) for n in settings["seeds"]]
        widest = max(runs, key=lambda r: r["seeds"])
        checked = agreement(problem, name, prior, widest["simulation"],
                            min(settings["check_seeds"], widest["seeds"]))
        for r in runs:
            del r["simulation"]
        neps_side = None if args.no_neps else neps_searches(problem, name, prior,
                                                              settings["neps_seconds"])
        results[name] = {"prior": prior, "jaxnas": runs, "agreement_with_jn_run": checked,
                         "neps": neps_side}
    print_table(results, settings)
    write_results(args.out, results)


def print_table(results: dict, settings: dict) -> None:
    print("\n| optimiser | S seeds | jaxnas searches/s (run; with compile) | compile | "
          "NePS searches/s | ratio (run; with compile) | trials/search jaxnas / NePS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in OPTIMIZERS:
        entry = results[name]
        neps_side = entry["neps"]
        for r in entry["jaxnas"]:
            theirs = neps_side["searches_per_s"] if neps_side else float("nan")
            ratio = f"{r['searches_per_s'] / theirs:,.0f}x; " \
                    f"{r['searches_per_s_with_compile'] / theirs:,.0f}x" if neps_side else "-"
            trials = (f"{r['trials_per_search']:.0f} / {neps_side['trials_per_search']:.0f}"
                      if neps_side else f"{r['trials_per_search']:.0f}")
            print(f"| {name} | {r['seeds']} | {r['searches_per_s']:,.1f}; "
                  f"{r['searches_per_s_with_compile']:,.1f} | {r['compile_s']:.1f} s | "
                  f"{theirs:.3f} | {ratio} | {trials} |")
    print()
    for name in OPTIMIZERS:
        entry = results[name]
        widest = max(entry["jaxnas"], key=lambda r: r["seeds"])
        regret = widest["regret"]["median"][0], widest["regret"]["q25"][0], \
            widest["regret"]["q75"][0]
        line = (f"{name}: jaxnas regret over {widest['seeds']} seeds {regret[0]:.3g} "
                f"[{regret[1]:.3g}, {regret[2]:.3g}]")
        if entry["neps"]:
            theirs = entry["neps"]["regret"]
            line += (f"; NePS over {entry['neps']['searches']} searches "
                     f"{theirs['median'][0]:.3g} [{theirs['q25'][0]:.3g}, "
                     f"{theirs['q75'][0]:.3g}] (extrapolated rate: NePS ran "
                     f"{entry['neps']['searches']} searches one by one)")
        checked = entry["agreement_with_jn_run"]
        line += (f"; jn.run on seeds 0-{len(checked['seeds']) - 1}: "
                 f"{'the same trials' if checked['all_same'] else 'DIFFERENT trials'}")
        print(line)


if __name__ == "__main__":
    main()
