"""What one ask and tell cost as an optimiser's table grows: every optimiser, capacity 1k-64k.

An optimiser's state has a fixed capacity (`max_trials`, rounded up to a power of two), and
its `ask` and `tell` are compiled for it. They should cost what the decision needs, not
what the capacity is: a long run gets a large table, most of it empty for most of the run.
For each optimiser in `jn.optimizers` (single-objective ones; `nsga2` with one objective),
on MF-Hartmann-6 with the good prior (PriorBand's and PiBO's priors in use), at capacities
1,024, 8,192 and 65,536 (`--capacities`):

    * `--warm-up` steps of ask -> evaluate (vmapped `problem.evaluate`) -> tell fill the
      table to a realistic point (not timed), then `--steps` more are timed; the figure is
      the median time of one step (ask + evaluate + tell, each jitted, results waited for);
    * ask and tell donate the state (`donate_argnums=0`), so the table is updated in place
      as in `jn.simulate`'s loop; without it every call would also copy the whole table;
    * the same trials at every capacity (same seed): only the table's size differs. The
      defaults keep every optimiser's trials under 1,024, so that the smallest table does
      not fill up (a full table makes asks empty and cheap); the `trials` column says how
      many there were, and a `!` marks a capacity whose table filled.

Target (issue 18): at 65,536 at most 2x the time at 1,024, for every optimiser (the
model-based ones bounded by their model's size).

Run it from the repository root:
    python benchmarks/capacity.py                       # about 5 min on 2 CPU cores
    python benchmarks/capacity.py --only priorband tpe --capacities 1024 65536

It prints a markdown table (milliseconds per step and the ratio to the smallest capacity)
and writes JSON (default `benchmarks/results/capacity.json`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxnas as jn
from _common import machine_info, write_results

OPTIMIZERS = ("random_search", "complex_random_search", "grid_search", "successive_halving",
              "hyperband", "priorband", "priorband_bo", "tpe", "bayesian_optimization",
              "regularized_evolution", "nsga2")
OPTIONS = {"nsga2": {"n_objectives": 1, "population_size": 20},
           "regularized_evolution": {"population_size": 20},
           "grid_search": {"points_per_float": 3}}  # 729 points: fits 1,024


def step_time(name: str, problem: Any, spec: Any, capacity: int, warm_up: int,
              steps: int) -> dict:
    """Median seconds of one ask -> evaluate -> tell step after `warm_up` steps."""
    optimizer = jn.optimizers.get(name, spec, max_trials=capacity, **OPTIONS.get(name, {}))
    key = jax.random.key(0)
    start = time.perf_counter()
    # init's constant columns may share one buffer; donated buffers must be distinct
    state = jax.tree.map(jnp.copy, jax.jit(optimizer.init)(key))
    ask = jax.jit(lambda s, k, i: optimizer.ask(s, jax.random.fold_in(k, i)),
                  donate_argnums=0)
    evaluate = jax.jit(jax.vmap(problem.evaluate))
    tell = jax.jit(optimizer.tell, donate_argnums=0)
    times = []
    for i in range(warm_up + steps):
        begin = time.perf_counter()
        state, proposals = ask(state, key, np.int32(i))
        keys = jax.random.split(jax.random.fold_in(key, 10_000 + i),
                                proposals.trial_ids.shape[0])
        losses = evaluate(proposals.configs, proposals.fidelities, keys)
        losses = jnp.where(proposals.valid, losses, jnp.nan)
        state = jax.block_until_ready(tell(state, proposals.trial_ids, losses))
        if i == 0:
            first = time.perf_counter() - start  # compiling included
        if i >= warm_up:
            times.append(time.perf_counter() - begin)
    count = int(jax.device_get(state.trials.count))
    full = bool(jax.device_get(getattr(state, "overflow", False)))
    return {"capacity": capacity, "step_ms": 1e3 * float(np.median(times)),
            "first_step_with_compile_s": first, "trials_in_table": count,
            "table_filled": full or count >= capacity}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=OPTIMIZERS, help="these optimisers")
    parser.add_argument("--capacities", type=int, nargs="+", default=[1024, 8192, 65536])
    parser.add_argument("--warm-up", type=int, default=25, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=15, help="timed steps")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/capacity.json"))
    args = parser.parse_args(argv)
    problem = jn.problems.mf_hartmann(6)
    spec = jn.compile(problem.space(prior="good"))
    results: dict[str, Any] = {"settings": {"capacities": args.capacities,
                                            "warm_up": args.warm_up, "steps": args.steps,
                                            "problem": problem.name, "prior": "good",
                                            "options": OPTIONS},
                               "machine": machine_info(), "optimizers": {}}
    for name in args.only or OPTIMIZERS:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results["optimizers"][name] = [step_time(name, problem, spec, c, args.warm_up,
                                                 args.steps) for c in args.capacities]
    print_table(results)
    write_results(args.out, results)


def print_table(results: dict) -> None:
    capacities = results["settings"]["capacities"]
    print("\n| optimiser | trials | " + " | ".join(f"{c:,} (ms)" for c in capacities)
          + f" | {capacities[-1]:,} / {capacities[0]:,} |")
    print("| --- |" + " ---: |" * (len(capacities) + 2))
    for name, rows in results["optimizers"].items():
        cells = [f"{r['step_ms']:.2f}" + ("!" if r["table_filled"] else "") for r in rows]
        ratio = rows[-1]["step_ms"] / rows[0]["step_ms"]
        print(f"| {name} | {rows[0]['trials_in_table']:,} | " + " | ".join(cells)
              + f" | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
