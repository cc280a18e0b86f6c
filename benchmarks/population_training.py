"""Configurations x epochs trained per second: one vmapped bucket, one by one, and PyTorch.

What is compared: P configurations of one bucket (P = 1, 8, 64, 256), the same MLP
64 -> 128 -> relu -> 128 -> relu -> 10 on scikit-learn's handwritten digits (`load_digits`,
pixels / 16, a stratified 80/20 split: 1437 training and 360 validation rows), minibatches
of 64 (22 steps per epoch, the last partial batch dropped), AdamW with each configuration's
own sampled learning rate and weight decay, E epochs, the validation error after each epoch:
    (a) jaxnas: `jaxnas.train.BucketTrainer` over the `jn.SupervisedTask` of a jaxnas space
        (`jn.compile` of "model", an operation tree of `flax.linen` layers with fixed widths,
        so every configuration is one bucket; "learning_rate" `jn.Float(log=True)`;
        "weight_decay" `jn.Float`; "epochs" `jn.IntegerFidelity(1, E)`). All P members are
        initialised, trained and evaluated in one jit-compiled call (on a CPU, one member
        at a time on each CPU device, in one program for every P; on an accelerator, all
        of them vmapped at once); the learning rate and weight decay are traced values.
    (b) jaxnas, one by one: the same task's `init`, `train` and `evaluate` jitted once for a
        single configuration and called P times from a Python loop.
    (c) PyTorch, as NePS runs a pipeline: the same MLP (`nn.Linear`, `nn.ReLU`), data,
        minibatches, epochs and `torch.optim.AdamW` (defaults otherwise, as in optax), one
        configuration after another in a Python loop, on the CPU whatever JAX runs on;
        `torch.set_num_threads` = the usable cores, and, as a control, 1 thread (on a
        loaded machine OpenMP threads that wait on each other can be much slower).
All three train the same sampled configurations.

How it is timed: `time.perf_counter` around each call; JAX calls block on their results
(`jax.block_until_ready`), (b) after each configuration, as a loop that reads each loss
must. Compile time is excluded from the rates and reported apart: the first call at a
population size (or of (b)'s single-configuration program) minus the median steady-state
time of a call. As in `sampling.py`, each measurement repeats until `min_seconds` have
passed (at least once) and divides configuration-epochs done by the time taken: (a) calls
the trainer on the whole population again and again (P = 256 is one call); (b) and (c)
train configurations 0, 1, 2, ... of the population one after another, cycling when P is
small and stopping early when it is large: their rate does not depend on P, and the table
says how many configurations were timed. Repetition r samples its population from
`jax.random.key(r)` (trial keys from `fold_in(key, 1)`); PyTorch seeds configuration i of
repetition r with `torch.manual_seed(1_000_003 * r + i)`. Medians over repetitions are
reported, with all repetitions in the JSON.

FLOP/s of (a) are counted, not measured: 6 x parameters x training examples per epoch
(forward and backward), plus 2 x parameters x validation rows for the validation pass after
each epoch and for `evaluate`'s final one. XLA's `cost_analysis` is not used: it counts the
body of a `while`/`scan` loop once, not once per iteration. The peak is the median of a few
jitted float32 `jnp.dot`s of two n x n matrices (n = 2048 on a CPU, 8192 on an
accelerator) at the default matmul precision, the one the training uses.

Run it from the repository root:
    python benchmarks/population_training.py            # full run, ~5-8 min on 2 CPU cores
    python benchmarks/population_training.py --quick    # P = 1, 8, 2 epochs: ~1 min, mostly
                                                        # XLA compiles
    python benchmarks/population_training.py --out other.json

It prints a markdown table and writes JSON (default
`benchmarks/results/population_training.json`). On a GPU it runs unchanged: (a) and (b) run
on the GPU, PyTorch stays on the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxnas as jn
from _common import machine_info, write_results
from jaxnas.train import BucketTrainer

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "population_training.json"

FEATURES, HIDDEN, CLASSES = 64, (128, 128), 10
BATCH_SIZE = 64
VALIDATION_FRACTION = 0.2
TARGET_P = 64
TARGET_SPEEDUPS = {"a/b": 10.0, "a/c": 20.0}
TARGET_MACHINE = "2-core CPU"

FULL = {
    "repetitions": 3,
    "population_sizes": (1, 8, 64, 256),
    "epochs": 5,
    "min_seconds": 3.0,
    "peak_repetitions": 5,
}
QUICK = {
    "repetitions": 2,
    "population_sizes": (1, 8),
    "epochs": 2,
    "min_seconds": 0.5,
    "peak_repetitions": 3,
}


# ------------------------------------------------------------------------- problem


def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], split 80/20 (stratified, seed 0).

    Returns:
        `((x_train, y_train), (x_val, y_val))`: float32 `(n, 64)` inputs, int32 labels.
    """
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        (x / 16.0).astype(np.float32), y.astype(np.int32), test_size=VALIDATION_FRACTION,
        random_state=0, stratify=y)
    return (x_train, y_train), (x_val, y_val)


def space(epochs: int) -> dict[str, Any]:
    """The jaxnas space: a fixed-width MLP (one bucket) and its sampled AdamW settings.

    Args:
        epochs: The fidelity's upper bound, E.

    Returns:
        The space's entries, by name.
    """
    def dense(features: int) -> jn.Operation:
        return jn.Operation(nn.Dense, args=(features,))

    layers = []
    for width in HIDDEN:
        layers += [dense(width), jn.Operation(nn.relu)]
    return {
        "model": jn.Operation(jn.nn.Sequential, args=(layers + [dense(CLASSES)],)),
        "learning_rate": jn.Float(1e-4, 1e-2, log=True),
        "weight_decay": jn.Float(0.0, 0.1),
        "epochs": jn.IntegerFidelity(1, epochs),
    }


def torch_mlp() -> torch.nn.Sequential:
    """The same MLP in PyTorch."""
    layers, width = [], FEATURES
    for hidden in HIDDEN:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, CLASSES))


def member(tree: Any, i: int) -> Any:
    """Row `i` of every leaf."""
    return jax.tree.map(lambda a: a[i], tree)


def population(spec: jn.SearchSpace, size: int, seed: int) -> tuple[Any, jax.Array]:
    """`size` sampled configurations and their trial keys, from `jax.random.key(seed)`."""
    key = jax.random.key(seed)
    configs = jax.vmap(spec.sample)(jax.random.split(key, size))
    return configs, jax.random.split(jax.random.fold_in(key, 1), size)


# ---------------------------------------------------------------------- the three ways


def train_torch(data: Mapping[str, torch.Tensor], learning_rate: float, weight_decay: float,
                epochs: int, seed: int) -> float:
    """Trains one configuration with PyTorch as a NePS pipeline would.

    Args:
        data: "x_train", "y_train", "x_val", "y_val" tensors.
        learning_rate: AdamW's learning rate.
        weight_decay: AdamW's (decoupled) weight decay.
        epochs: Epochs to train.
        seed: Seeds the initialisation and the minibatch order.

    Returns:
        The validation error after the last epoch.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = torch_mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                  weight_decay=weight_decay)
    x_train, y_train = data["x_train"], data["y_train"]
    steps = max(len(x_train) // BATCH_SIZE, 1)
    error = float("nan")
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)[: steps * BATCH_SIZE]
        for rows in order.view(steps, BATCH_SIZE):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            predictions = model(data["x_val"]).argmax(-1)
        error = (predictions != data["y_val"]).float().mean().item()
    return error


def sequential(train_one: Callable[[int], float], size: int, epochs: int,
               min_seconds: float) -> dict:
    """Trains configurations 0, 1, ... (cycling through `size`) until `min_seconds` pass.

    Args:
        train_one: Trains configuration `i` (blocking) and returns its validation error.
        size: The population size P.
        epochs: Epochs each configuration trains.
        min_seconds: Stop after the configuration that passes this much wall time.

    Returns:
        Configuration-epochs per second, the number of configurations timed, their
        seconds per configuration and their mean validation error.
    """
    errors = []
    start = time.perf_counter()
    while True:
        errors.append(train_one(len(errors) % size))
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return {"rate": len(errors) * epochs / elapsed, "configs_timed": len(errors),
                    "seconds_per_config": elapsed / len(errors),
                    "validation_error": statistics.fmean(errors)}


def peak_flops(repetitions: int) -> dict:
    """Median FLOP/s of a jitted float32 `jnp.dot` of two square matrices.

    Args:
        repetitions: Timed calls after one warm-up call.

    Returns:
        The matrix size and the median, minimum and maximum FLOP/s.
    """
    n = 2048 if jax.default_backend() == "cpu" else 8192
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    rates = []
    for _ in range(repetitions):
        start = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return {"matrix_size": n, "flops_per_s_median": statistics.median(rates),
            "flops_per_s_min": min(rates), "flops_per_s_max": max(rates),
            "repetitions": repetitions}


# ---------------------------------------------------------------------------- run


class Bench:
    """The problem, the bucket's task and its two jaxnas programs, built once."""

    def __init__(self, epochs: int):
        train, validation = digits()
        self.epochs = epochs
        self.spec = jn.compile(space(epochs))
        task = jn.SupervisedTask(train, validation, batch_size=BATCH_SIZE)
        configs, _ = population(self.spec, 1, 0)
        self.task = task.for_bucket(self.spec, member(configs, 0))
        self.traces = {"bucket": 0, "single": 0}

        def counted(name: str) -> Callable:
            def train_fn(state, config, fidelity):
                self.traces[name] += 1  # runs only while tracing
                return self.task.train(state, config, fidelity)
            return train_fn

        self.trainer = BucketTrainer(jn.Task(self.task.init, counted("bucket"),
                                             self.task.evaluate))
        bucket_train = counted("single")

        def train_single(key, config, fidelity):
            state = bucket_train(self.task.init(key, config), config, fidelity)
            return state, self.task.evaluate(state, config)

        self.single = jax.jit(train_single)
        self.n_train, self.n_val = len(train[0]), len(validation[0])
        self.steps = max(self.n_train // BATCH_SIZE, 1)
        params = jax.eval_shape(self.task.init, jax.random.key(0), member(configs, 0)).params
        self.n_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
        self.torch_data = {
            "x_train": torch.from_numpy(train[0]), "y_train": torch.from_numpy(train[1]).long(),
            "x_val": torch.from_numpy(validation[0]),
            "y_val": torch.from_numpy(validation[1]).long(),
        }

    def flops_per_call(self, size: int) -> float:
        """Counted FLOPs of training `size` configurations for E epochs and evaluating them."""
        train = 6 * self.n_params * self.steps * BATCH_SIZE
        validation = 2 * self.n_params * self.n_val
        return size * (self.epochs * (train + validation) + validation)

    def vmapped(self, configs: Any, keys: jax.Array, min_seconds: float = 0.0) -> dict:
        """(a): BucketTrainer calls on the whole population until `min_seconds` pass."""
        size = keys.shape[0]
        fidelities = jnp.full(size, self.epochs, jnp.int32)
        calls = 0
        start = time.perf_counter()
        while True:
            _, results = jax.block_until_ready(self.trainer(keys, configs, fidelities))
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return {"rate": calls * size * self.epochs / elapsed, "calls": calls,
                        "seconds": elapsed / calls,
                        "validation_error": float(jnp.mean(results["loss"]))}

    def one_by_one(self, configs: Any, keys: jax.Array, min_seconds: float) -> dict:
        """(b): the single-configuration program, once per configuration."""
        members = jax.device_put([member(configs, i) for i in range(keys.shape[0])])
        trial_keys = list(keys)
        epochs = jnp.asarray(self.epochs, jnp.int32)

        def train_one(i: int) -> float:
            _, results = jax.block_until_ready(self.single(trial_keys[i], members[i], epochs))
            return float(results["loss"])

        return sequential(train_one, keys.shape[0], self.epochs, min_seconds)

    def pytorch(self, configs: Any, seed: int, min_seconds: float, threads: int) -> dict:
        """(c): PyTorch with `threads` intra-op threads, one configuration after another."""
        values = jax.device_get(self.spec.values(configs))
        torch.set_num_threads(threads)

        def train_one(i: int) -> float:
            return train_torch(self.torch_data, float(values["learning_rate"][i]),
                               float(values["weight_decay"][i]), self.epochs,
                               1_000_003 * seed + i)

        return sequential(train_one, len(values["learning_rate"]), self.epochs, min_seconds)


def median_of(runs: Sequence[Mapping[str, Any]], field: str) -> float:
    """The median of `field` over repetitions."""
    return statistics.median(run[field] for run in runs)


def bench_population(bench: Bench, size: int, settings: Mapping[str, Any],
                     peak: float, threads: int) -> dict:
    """Times (a), (b) and (c) at one population size, interleaved per repetition."""
    seconds = settings["min_seconds"]
    configs, keys = population(bench.spec, size, 0)
    if len(set(bench.spec.buckets(configs))) != 1:
        raise RuntimeError("the sampled configurations fall into more than one bucket.")
    first_s = bench.vmapped(configs, keys)["seconds"]  # compiles this padded size
    traces_after_first = bench.traces["bucket"]
    vmapped, single, torch_threads, torch_one = [], [], [], []
    for seed in range(settings["repetitions"]):
        configs, keys = population(bench.spec, size, seed)
        vmapped.append(bench.vmapped(configs, keys, seconds))
        single.append(bench.one_by_one(configs, keys, seconds))
        torch_threads.append(bench.pytorch(configs, seed, seconds, threads))
        torch_one.append(bench.pytorch(configs, seed, seconds, 1))
    steady_s = median_of(vmapped, "seconds")
    rates = {name: median_of(runs, "rate") for name, runs in
             (("a", vmapped), ("b", single), ("c", torch_threads), ("c1", torch_one))}
    flops = bench.flops_per_call(size) / steady_s
    return {
        "population_size": size,
        "config_epochs_per_s": rates,
        "speedups": {"a/b": rates["a"] / rates["b"], "a/c": rates["a"] / rates["c"],
                     "a/c1": rates["a"] / rates["c1"]},
        "a_flops_per_s": flops,
        "a_percent_of_peak": 100 * flops / peak,
        "a_compile_s": first_s - steady_s,
        "a_first_call_s": first_s,
        "a_steady_call_s": steady_s,
        "a_recompiled_after_first_call": bench.traces["bucket"] != traces_after_first,
        "configs_timed": {"b": [run["configs_timed"] for run in single],
                          "c": [run["configs_timed"] for run in torch_threads],
                          "c1": [run["configs_timed"] for run in torch_one]},
        "validation_error_mean": {name: median_of(runs, "validation_error") for name, runs in
                                  (("a", vmapped), ("b", single), ("c", torch_threads),
                                   ("c1", torch_one))},
        "repetitions": {"a": vmapped, "b": single, "c": torch_threads, "c1": torch_one},
    }


def run(settings: Mapping[str, Any]) -> dict:
    """Runs every population size.

    Args:
        settings: `FULL` or `QUICK`, plus the "mode" name.

    Returns:
        The results, as written to JSON.
    """
    machine = {**machine_info("flax", "optax", "torch", "scikit-learn"), "torch_device": "cpu"}
    threads = machine["cpus_usable"]
    peak = peak_flops(settings["peak_repetitions"])
    start = time.perf_counter()
    bench = Bench(settings["epochs"])
    build_s = time.perf_counter() - start
    configs, keys = population(bench.spec, 1, 0)
    start = time.perf_counter()
    jax.block_until_ready(bench.single(keys[0], member(configs, 0),
                                       jnp.asarray(bench.epochs, jnp.int32)))
    single_first_s = time.perf_counter() - start
    populations = [bench_population(bench, size, settings, peak["flops_per_s_median"], threads)
                   for size in settings["population_sizes"]]
    single_steady_s = statistics.median(
        run["seconds_per_config"] for result in populations for run in result["repetitions"]["b"])
    target = next((r for r in populations if r["population_size"] == TARGET_P), None)
    machine["load_average_at_end"] = os.getloadavg()
    return {
        "benchmark": "population_training",
        "machine": machine,
        "settings": {**settings, "population_sizes": list(settings["population_sizes"]),
                     "seeds": list(range(settings["repetitions"])), "batch_size": BATCH_SIZE,
                     "model": f"{FEATURES} -> {' -> relu -> '.join(map(str, HIDDEN))} -> relu "
                              f"-> {CLASSES}",
                     "torch_threads": threads, "statistic": "median over repetitions"},
        "problem": {"dataset": "sklearn load_digits", "train_rows": bench.n_train,
                    "validation_rows": bench.n_val, "steps_per_epoch": bench.steps,
                    "parameters": bench.n_params,
                    "flops_per_config_epoch": bench.flops_per_call(1) / bench.epochs},
        "peak": peak,
        "space_and_task_build_s": build_s,
        "b_compile_s": single_first_s - single_steady_s,
        "b_traces": bench.traces["single"],
        "a_traces": bench.traces["bucket"],
        "populations": populations,
        "targets": {
            "population_size": TARGET_P, "machine": TARGET_MACHINE,
            **{name: {"target": value,
                      "measured": None if target is None else target["speedups"][name],
                      "met_here": None if target is None
                      else target["speedups"][name] >= value}
               for name, value in TARGET_SPEEDUPS.items()},
        },
        "notes": [
            "Rates are configuration-epochs per second; compile time is excluded and "
            "reported apart (first call minus the steady-state median).",
            "Each measurement repeats until "
            f"{settings['min_seconds']} s have passed (at least once): (a) whole-population "
            "calls; (b) and (c) configurations one by one, cycling through the population "
            "when P is small and stopping early when it is large (their rate does not "
            "depend on P).",
            f"(c) PyTorch runs on the CPU whatever JAX runs on: c with {threads} threads "
            "(the usable cores), c1 with 1 thread.",
            "FLOP/s are counted (6 x parameters x training examples + 2 x parameters x "
            "validation rows per pass), not XLA's cost_analysis, which counts a loop body "
            "once.",
            "The machine may be shared: other processes compete for the cores (see the "
            "load averages), so the rates and the peak are noisy.",
        ],
    }


def _rate(value: float) -> str:
    return f"{value:,.1f}"


def print_table(results: Mapping[str, Any]) -> None:
    """Prints the results as a markdown table and the notes below it."""
    machine, settings, problem = results["machine"], results["settings"], results["problem"]
    peak = results["peak"]
    threads = settings["torch_threads"]
    print(f"\nConfigurations x epochs per second, {settings['epochs']} epochs, median of "
          f"{settings['repetitions']} repetitions, seeds {settings['seeds']}")
    print(f"machine: {machine['platform']}, {machine['cpus_usable']} usable CPUs (load "
          f"average {machine['load_average_at_start'][0]:.1f} at start, "
          f"{machine['load_average_at_end'][0]:.1f} at end), jax {machine['jax']} on "
          f"{machine['jax_devices']}, torch {machine['torch']} on the CPU with {threads} "
          f"threads (c) and 1 thread (c1), jaxnas {machine['jaxnas']} "
          f"({machine['jaxnas_revision']})")
    print(f"model {settings['model']} ({problem['parameters']:,} parameters), digits "
          f"{problem['train_rows']} train / {problem['validation_rows']} validation rows, "
          f"batch {settings['batch_size']}, {problem['steps_per_epoch']} steps per epoch, "
          f"{problem['flops_per_config_epoch'] / 1e6:.0f} MFLOP per configuration-epoch")
    print(f"peak: jitted float32 jnp.dot {peak['matrix_size']}x{peak['matrix_size']}, median "
          f"{peak['flops_per_s_median'] / 1e9:.1f} GFLOP/s (min "
          f"{peak['flops_per_s_min'] / 1e9:.1f}, max {peak['flops_per_s_max'] / 1e9:.1f})\n")
    print(f"| P | a vmapped | b one by one | c torch {threads}T | c1 torch 1T | a/b | a/c | "
          f"a/c1 | a GFLOP/s | a % peak | a compile s | timed: a calls; b,c,c1 configs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results["populations"]:
        rates, speedups = result["config_epochs_per_s"], result["speedups"]
        timed = (f"{min(run['calls'] for run in result['repetitions']['a'])}; " + ",".join(
            str(min(result["configs_timed"][name])) for name in ("b", "c", "c1")))
        print(f"| {result['population_size']} | {_rate(rates['a'])} | {_rate(rates['b'])} | "
              f"{_rate(rates['c'])} | {_rate(rates['c1'])} | {speedups['a/b']:.2f} | "
              f"{speedups['a/c']:.1f} | {speedups['a/c1']:.2f} | "
              f"{result['a_flops_per_s'] / 1e9:.1f} | {result['a_percent_of_peak']:.0f} | "
              f"{result['a_compile_s']:.1f} | {timed} |")
    print(f"\ncompile: (b)'s single-configuration program {results['b_compile_s']:.1f} s; "
          f"space and task built in {results['space_and_task_build_s']:.2f} s. "
          f"task.train traced {results['a_traces']} times by (a) (once per population "
          f"size expected) and {results['b_traces']} by (b) (1 expected).")
    errors = ", ".join(
        f"P={r['population_size']}: " + " / ".join(
            f"{r['validation_error_mean'][name]:.3f}" for name in ("a", "b", "c", "c1"))
        for r in results["populations"])
    print(f"validation error after {settings['epochs']} epochs, mean over the configurations "
          f"each trained (a / b / c / c1): {errors}")
    for name, target in results["targets"].items():
        if name == "population_size" or name == "machine":
            continue
        if target["measured"] is None:
            print(f"target {name} >= {target['target']:.0f}x at P = "
                  f"{results['targets']['population_size']}: not measured in this mode")
        else:
            met = "met" if target["met_here"] else "NOT met"
            control = ""
            if name == "a/c":  # OpenMP threads waiting on each other can slow PyTorch a lot
                at_target = next(r for r in results["populations"]
                                 if r["population_size"] == results["targets"]["population_size"])
                control = (f" (against PyTorch on 1 thread, a/c1: "
                           f"{at_target['speedups']['a/c1']:.2f}x)")
            print(f"target {name} >= {target['target']:.0f}x at P = "
                  f"{results['targets']['population_size']} on a "
                  f"{results['targets']['machine']}: {target['measured']:.2f}x, {met} here"
                  f"{control}")
    for note in results["notes"]:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke run: P = 1, 8, 2 epochs, 2 repetitions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    settings = {"mode": "quick" if args.quick else "full", **(QUICK if args.quick else FULL)}
    results = run(settings)
    print_table(results)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
