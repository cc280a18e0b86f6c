"""Configurations sampled per second: jaxnas versus NePS, side by side in one run.

What is compared:
    * NePS: `neps.space.neps_spaces.neps_space.resolve(space)` with its default
      `RandomSampler`. Each call resolves one configuration in Python.
    * jaxnas: `jax.vmap(spec.sample)` over a population of keys, under `jax.jit`, at
      several population sizes. The keys are split from one key inside the same jitted
      call, so their cost is counted. XLA compilation is done ahead of time, timed on
      its own and followed by one warm-up call; the timed calls block on their result
      (`jax.block_until_ready`).

Both libraries sample the same two spaces, built by one function per space from each
library's own `Float`, `Integer`, `Categorical`, `Operation` and `ByName`:
    * "flat": 8 hyperparameters: 3 floats (2 log-scaled), 3 integers (1 log-scaled) and
      2 categoricals of strings.
    * "hierarchical": an architecture grammar. A recursive rule `block` picks either two
      resampled `block`s or one of two terminating choices (a conv followed by an
      activation, or a conv alone); `model` is a sequential of a resampled `block` and a
      conv. Each conv resamples its kernel size and shares one `features` choice per
      configuration (the same semantics in both libraries); an `lr` float has a prior,
      which both uniform samplers ignore. `block` recurses with probability 1/3 into
      two children: 0.67 expected children per node, so NePS's unbounded recursion ends
      with probability 1. jaxnas unrolls the recursion to `max_depth` and gives zero
      probability to choices that cannot terminate within it: it samples uniformly like
      NePS above the deepest level and only the terminating choices at it, so it never
      produces the deeper configurations NePS occasionally does. The operators are
      placeholders that neither library calls while sampling.

NePS's grammar-like spaces (issue 19) get rows of their own: NePS's test-suite classes
`GrammarLike` and `GrammarLikeAlt` (`neps_grammars`) beside their jaxnas twins in
`tests/space/_grammars.py`, compiled with a node budget, `jn.compile(space, max_nodes=N)`
for each N of `--grammar-budgets`. Reported per grammar and budget: jaxnas's decisions,
the `jn.compile` time (in a fresh Python process in a full run), the first call of the
jitted, vmapped sampler (XLA compile and warm-up) and its configurations per second at a
few batch sizes; NePS's configurations per second and its `RecursionError`s (NePS's own
tests xfail on them); the derivations' sizes in `S` nodes and the share within the
budget, exactly (`exact_rule_nodes`) and among NePS's derivations; and, for contrast,
the decisions and compile time of the old unrolling (`max_depth=2` and 3; deeper is too
large). They print as a markdown table and go to the JSON under "grammars".

How it is timed: each measurement calls the sampler repeatedly until a minimum wall time
has passed (`time.perf_counter`) and divides configurations by elapsed time. It is repeated
once per seed (NePS: `random.seed(seed)`, which its sampler uses; jaxnas:
`jax.random.key(seed)`, folded with the call index) and the median is reported, with the
minimum and maximum. The best jaxnas population size is compared with NePS. Before
timing, sampled values of both libraries are checked against the space (bounds,
integrality, choices; for jaxnas every slot) so that the benchmark does not time garbage.

Run it from the repository root:
    python benchmarks/sampling.py            # full run, about three minutes on one core
    python benchmarks/sampling.py --quick    # smoke run, under 30 s
    python benchmarks/sampling.py --out other.json
    python benchmarks/sampling.py --grammar-budgets 64 128 256
    python benchmarks/sampling.py --no-grammars   # about a minute

It prints a table and writes JSON (default `benchmarks/results/sampling.json`).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from neps.space.neps_spaces import parameters as neps_parameters
from neps.space.neps_spaces.neps_space import resolve

import jaxnas as jn
from _common import machine_info, write_results


MAX_DEPTH = 4
TARGET_SPEEDUPS = {"flat": 1000.0, "hierarchical": 100.0}
TARGET_MACHINE = "2-core CPU"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sampling.json"
CHECK_CONFIGS = 200
REPO = Path(__file__).resolve().parents[1]  # for tests/space/_grammars.py

# The grammar rows: node budgets (`--grammar-budgets`) by mode, the unrolled depths shown
# for contrast (GrammarLike grows about tenfold a level: depth 4 compiles to ~77,000
# decisions), and NePS's key for a sampling of a six-way categorical (`S`).
GRAMMAR_BUDGETS = {"full": (64, 128), "quick": (64,)}
GRAMMAR_UNROLL_DEPTHS = (2, 3)
GRAMMAR_TOO_LARGE_DEPTH = 4
GRAMMAR_MAX_SLOTS = 2_000_000
NEPS_RULE_KEY = "::categorical__6"
NEPS_WARM_UP_RESOLVES = 10

FULL = {
    "repetitions": 5,
    "population_sizes": (1_000, 10_000, 100_000),
    "neps_seconds": 2.0,
    "jaxnas_seconds": 0.5,
    "grammar_population_sizes": (64, 256, 1_024, 4_096),
    "grammar_compile_in_fresh_process": True,
}
QUICK = {
    "repetitions": 3,
    "population_sizes": (1_000,),
    "neps_seconds": 0.2,
    "jaxnas_seconds": 0.05,
    "grammar_population_sizes": (256,),
    "grammar_compile_in_fresh_process": False,
}


class Conv:
    """Placeholder convolution operator; sampling never instantiates it."""

    def __init__(self, kernel_size: int, features: int):
        self.kernel_size = kernel_size
        self.features = features


class Sequential:
    """Placeholder sequential container; sampling never instantiates it."""

    def __init__(self, *layers: Any):
        self.layers = layers


def relu(x: Any) -> Any:
    """Placeholder activation; sampling never calls it."""
    return x


def tanh(x: Any) -> Any:
    """Placeholder activation; sampling never calls it."""
    return x


def flat_space(lib: ModuleType) -> dict[str, Any]:
    """Builds the flat space from a library's parameter classes.

    Args:
        lib: A module exposing `Float`, `Integer` and `Categorical` (jaxnas or NePS).

    Returns:
        The space's entries, by name.
    """
    return {
        "learning_rate": lib.Float(1e-5, 1e-1, log=True),
        "weight_decay": lib.Float(1e-6, 1e-2, log=True),
        "dropout": lib.Float(0.0, 0.5),
        "batch_size": lib.Integer(16, 512, log=True),
        "num_layers": lib.Integer(1, 8),
        "units": lib.Integer(32, 512),
        "optimizer": lib.Categorical(("adam", "sgd", "rmsprop")),
        "activation": lib.Categorical(("relu", "tanh", "gelu")),
    }


def hierarchical_space(lib: ModuleType) -> dict[str, Any]:
    """Builds the hierarchical architecture space from a library's parameter classes.

    Args:
        lib: A module exposing `Float`, `Integer`, `Categorical`, `Operation` and
            `ByName` (jaxnas or NePS).

    Returns:
        The space's entries, by name.
    """
    kernel = lib.Integer(1, 7)
    conv = lib.Operation(
        Conv,
        kwargs={"kernel_size": kernel.resample(), "features": lib.Categorical((16, 32, 64))},
    )
    act = lib.Categorical((lib.Operation(relu), lib.Operation(tanh)))
    return {
        "block": lib.Categorical(
            choices=(
                (lib.ByName("block").resample(), lib.ByName("block").resample()),
                (conv.resample(), act.resample()),
                (conv.resample(),),
            )
        ),
        "model": lib.Operation(
            Sequential, args=(lib.ByName("block").resample(), conv.resample())
        ),
        "lr": lib.Float(1e-4, 1e-1, log=True, prior=1e-3, prior_confidence="medium"),
    }


SPACES: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "flat": flat_space,
    "hierarchical": hierarchical_space,
}


def neps_pipeline(name: str, entries: Mapping[str, Any]) -> neps_parameters.PipelineSpace:
    """Wraps space entries in a NePS `PipelineSpace` subclass instance.

    Args:
        name: The class name.
        entries: NePS parameters, by name.

    Returns:
        The pipeline space.
    """
    return type(name, (neps_parameters.PipelineSpace,), dict(entries))()


def value_rules(neps_entries: Mapping[str, Any]) -> dict[str, tuple]:
    """Lists the checkable top-level values of a space: numbers and plain categoricals.

    Args:
        neps_entries: The space built from NePS parameters.

    Returns:
        name -> ("float" | "integer", lower, upper) or ("categorical", choices).
    """
    rules = {}
    for name, param in neps_entries.items():
        if isinstance(param, neps_parameters.Float):
            rules[name] = ("float", param.lower, param.upper)
        elif isinstance(param, neps_parameters.Integer):
            rules[name] = ("integer", param.lower, param.upper)
        elif isinstance(param, neps_parameters.Categorical) and all(
            isinstance(choice, (str, int, float)) for choice in param.choices
        ):
            rules[name] = ("categorical", param.choices)
    return rules


def check_neps(space: neps_parameters.PipelineSpace, rules: Mapping[str, tuple]) -> dict:
    """Resolves configurations with NePS and checks their values against `rules`.

    Args:
        space: The NePS pipeline space.
        rules: As returned by `value_rules`.

    Returns:
        The number of configurations checked and the mean number of values NePS sampled
        per configuration.

    Raises:
        RuntimeError: if a value breaks its rule.
    """
    random.seed(0)
    sampled_values = []
    for _ in range(CHECK_CONFIGS):
        resolved, context = resolve(space)
        sampled_values.append(len(context.samplings_made))
        values = resolved.get_attrs()
        for name, rule in rules.items():
            value = values[name]
            if rule[0] == "categorical":
                valid = value in rule[1]
            else:
                valid = rule[1] <= value <= rule[2] and (
                    rule[0] == "float" or isinstance(value, int)
                )
            if not valid:
                raise RuntimeError(f"NePS sampled {name}={value!r}, outside {rule}.")
        if "model" in values and not (
            isinstance(values["model"], neps_parameters.Operation)
            and values["model"].operator is Sequential
        ):
            raise RuntimeError(f"NePS resolved model to {values['model']!r}.")
    return {
        "configs_checked": CHECK_CONFIGS,
        "mean_values_sampled_per_config": statistics.fmean(sampled_values),
    }


def check_jaxnas(spec: jn.SearchSpace, configs: Mapping[str, jax.Array],
                 rules: Mapping[str, tuple]) -> dict:
    """Checks a population sampled by jaxnas.

    Every slot is checked against its parameter (categoricals as indices into their
    choices), and the top-level parameters' bounds against `rules` from the NePS space.

    Args:
        spec: The compiled jaxnas space.
        configs: path -> (n,) array, as returned by the vmapped `spec.sample`.
        rules: As returned by `value_rules`.

    Returns:
        The number of configurations and slots checked.

    Raises:
        RuntimeError: if jaxnas compiled a top-level parameter to other bounds than NePS
            has, or sampled a value that is not finite, out of bounds, or not integral
            where it must be.
    """
    bounds = {}
    for path, param in spec.parameters().items():
        if isinstance(param, jn.Categorical):
            bounds[path] = (0, len(param.choices) - 1, True)
        else:
            bounds[path] = (param.lower, param.upper, isinstance(param, jn.Integer))
    for name, rule in rules.items():
        if rule[0] == "categorical":
            expected = (0, len(rule[1]) - 1, True)
        else:
            expected = (rule[1], rule[2], rule[0] == "integer")
        if bounds.get(name) != expected:
            raise RuntimeError(
                f"jaxnas compiled {name!r} to (lower, upper, integral)={bounds.get(name)}; "
                f"NePS has {rule}."
            )
    for path, (lower, upper, integral) in bounds.items():
        values = configs[path]
        valid = jnp.isfinite(values) & (values >= lower) & (values <= upper)
        if integral:
            valid &= values == jnp.round(values)
        if not bool(valid.all()):
            bad = values[jnp.argmin(valid)]
            raise RuntimeError(
                f"jaxnas sampled {path}={bad!r}, outside [{lower}, {upper}] "
                f"(integral: {integral})."
            )
    return {"configs_checked": int(configs[spec.paths[0]].shape[0]),
            "slots_checked": len(bounds)}


def throughput(call: Callable[[int], Any], configs_per_call: int, min_seconds: float) -> float:
    """Calls `call(0)`, `call(1)`, ... until `min_seconds` have passed.

    Args:
        call: Samples `configs_per_call` configurations; gets the call index.
        configs_per_call: Configurations each call samples.
        min_seconds: Minimum wall time to measure.

    Returns:
        Configurations per second.
    """
    calls = 0
    start = time.perf_counter()
    while True:
        call(calls)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * configs_per_call / elapsed


def summarize(rates: Sequence[float]) -> dict:
    """Median, minimum, maximum and all repetitions of a list of rates."""
    return {
        "configs_per_s_median": statistics.median(rates),
        "configs_per_s_min": min(rates),
        "configs_per_s_max": max(rates),
        "configs_per_s_per_repetition": list(rates),
    }


def bench_neps(space: neps_parameters.PipelineSpace, seeds: Sequence[int],
               min_seconds: float) -> dict:
    """Times `resolve(space)`, one configuration per call, once per seed.

    Args:
        space: The NePS pipeline space.
        seeds: Seeds for Python's `random`, one repetition each.
        min_seconds: Minimum wall time per repetition.

    Returns:
        `summarize` of the rates.
    """
    rates = []
    for seed in seeds:
        random.seed(seed)
        rates.append(throughput(lambda _: resolve(space), 1, min_seconds))
    return summarize(rates)


def time_populations(spec: jn.SearchSpace, population_sizes: Sequence[int],
                     seeds: Sequence[int], min_seconds: float,
                     check: Callable[[Any], Any]) -> tuple[dict, dict]:
    """Times `jax.jit` of `jax.vmap(spec.sample)` at each population size.

    The keys are split from one key inside the jitted call, so their cost is counted.
    XLA compilation is done ahead of time and timed on its own, as is the warm-up call
    that follows it (together: what the first call of a plain `jax.jit` costs).

    Args:
        spec: The compiled jaxnas space.
        population_sizes: Configurations per jitted call.
        seeds: Seeds for `jax.random.key`, one repetition each.
        min_seconds: Minimum wall time per repetition.
        check: Called on each population size's first population (the warm-up call's),
            before that size is timed.

    Returns:
        Per population size the XLA compile time, the warm-up call's time and `summarize`
        of the rates; and per population size what `check` returned.
    """
    sample_many = jax.vmap(spec.sample)
    populations, checks = {}, {}
    for size in population_sizes:
        def sample_population(key: jax.Array, step: int, size: int = size) -> dict:
            return sample_many(jax.random.split(jax.random.fold_in(key, step), size))

        start = time.perf_counter()
        compiled = jax.jit(sample_population).lower(jax.random.key(0), 0).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = jax.block_until_ready(compiled(jax.random.key(0), 0))
        warm_up_s = time.perf_counter() - start
        checks[size] = check(warm)

        rates = []
        for seed in seeds:
            key = jax.random.key(seed)
            rates.append(throughput(
                lambda step, key=key: jax.block_until_ready(compiled(key, step)),
                size, min_seconds,
            ))
        populations[size] = {"xla_compile_s": compile_s, "warm_up_s": warm_up_s,
                             **summarize(rates)}
    return populations, checks


def bench_jaxnas(entries: Mapping[str, Any], rules: Mapping[str, tuple],
                 population_sizes: Sequence[int], seeds: Sequence[int],
                 min_seconds: float) -> dict:
    """Compiles a jaxnas space and times its batched sampler at each population size.

    Args:
        entries: The space built from jaxnas parameters.
        rules: As returned by `value_rules`, checked on each population (the first
            one's check is reported).
        population_sizes: Configurations per jitted call.
        seeds: Seeds for `jax.random.key`, one repetition each.
        min_seconds: Minimum wall time per repetition.

    Returns:
        The space compile time and slot count, per population size the XLA compile time
        and `summarize` of the rates, the best population size and its median rate, and
        the validity check.
    """
    start = time.perf_counter()
    spec = jn.compile(entries, max_depth=MAX_DEPTH)
    space_compile_s = time.perf_counter() - start
    populations, checks = time_populations(
        spec, population_sizes, seeds, min_seconds,
        lambda configs: check_jaxnas(spec, configs, rules))
    check = checks[population_sizes[0]]
    best = max(populations, key=lambda size: populations[size]["configs_per_s_median"])
    return {
        "space_compile_s": space_compile_s,
        "max_depth": MAX_DEPTH,
        "slots_sampled_per_config": len(spec.paths),
        "populations": populations,
        "best_population_size": best,
        "best_configs_per_s_median": populations[best]["configs_per_s_median"],
        "check": check,
    }


# ----------------------------------------------------------------------- grammars


def neps_grammars() -> dict[str, neps_parameters.PipelineSpace]:
    """NePS's own grammar-like spaces: its test suite's `GrammarLike` and `GrammarLikeAlt`
    (tests/test_neps_space/test_search_space__grammar_like.py), in NePS 0.17's names
    (`Resample`, `ByName("S").resample()`).

    Returns:
        The two pipeline spaces, by the name of their jaxnas twin in
        `tests/space/_grammars.py`.
    """
    from neps.space.neps_spaces.parameters import (  # noqa: PLC0415
        ByName, Categorical, Operation, PipelineSpace, Resample,
    )

    def s() -> Any:
        return ByName("S").resample()

    class GrammarLike(PipelineSpace):
        _id = Operation(operator="Identity")
        _three = Operation(operator="Conv2D-3")
        _one = Operation(operator="Conv2D-1")
        _reluconvbn = Operation(operator="ReLUConvBN")
        _O = Categorical(choices=(_three, _one, _id))
        _C0 = Operation(operator="Sequential", args=(Resample(_O),))
        _C1 = Operation(operator="Sequential", args=(Resample(_O), s(), _reluconvbn))
        _C2 = Operation(operator="Sequential", args=(Resample(_O), s()))
        _C3 = Operation(operator="Sequential", args=(s(),))
        _C = Categorical(choices=(Resample(_C0), Resample(_C1), Resample(_C2), Resample(_C3)))
        _S0 = Operation(operator="Sequential", args=(Resample(_C),))
        _S1 = Operation(operator="Sequential", args=(_reluconvbn,))
        _S2 = Operation(operator="Sequential", args=(s(),))
        _S3 = Operation(operator="Sequential", args=(s(), Resample(_C)))
        _S4 = Operation(operator="Sequential", args=(Resample(_O),) * 3)
        _S5 = Operation(operator="Sequential", args=(s(), s(), *[Resample(_O)] * 6))
        S = Categorical(choices=(Resample(_S0), Resample(_S1), Resample(_S2), Resample(_S3),
                                 Resample(_S4), Resample(_S5)))

    class GrammarLikeAlt(PipelineSpace):
        _id = Operation(operator="Identity")
        _three = Operation(operator="Conv2D-3")
        _one = Operation(operator="Conv2D-1")
        _reluconvbn = Operation(operator="ReLUConvBN")
        _O = Categorical(choices=(_three, _one, _id))
        _C_ARGS = Categorical(choices=((Resample(_O),), (Resample(_O), s(), _reluconvbn),
                                       (Resample(_O), s()), (s(),)))
        _C = Operation(operator="Sequential", args=Resample(_C_ARGS))
        _S_ARGS = Categorical(choices=((Resample(_C),), (_reluconvbn,), (s(),),
                                       (s(), Resample(_C)), (Resample(_O),) * 3,
                                       (s(), s(), *[Resample(_O)] * 6)))
        S = Operation(operator="Sequential", args=Resample(_S_ARGS))

    return {"grammar_like": GrammarLike(), "grammar_like_alt": GrammarLikeAlt()}


def neps_rule_nodes(samplings_made: Mapping[str, Any]) -> int:
    """How many `S` a NePS derivation has: its samplings of a six-way categorical (NePS
    keys each sampling `...::categorical__<choices>`; in both grammars only `S`, or its
    `_S_ARGS`, has six choices). jaxnas's node budget counts the same nodes."""
    return sum(key.endswith(NEPS_RULE_KEY) for key in samplings_made)


def bench_neps_grammar(space: neps_parameters.PipelineSpace, seeds: Sequence[int],
                       min_seconds: float, budgets: Sequence[int]) -> dict:
    """Times `resolve(space)` on a grammar, once per seed, and measures its derivations.

    A resolve that raises `RecursionError` (NePS's own tests xfail on it) is counted and
    its time kept; configurations per second count the resolves that succeed.

    Args:
        space: The NePS pipeline space.
        seeds: Seeds for Python's `random`, one repetition each.
        min_seconds: Minimum wall time per repetition.
        budgets: Node budgets at which to report the share of derivations that fit.

    Returns:
        `summarize` of the rates; the resolves and recursion errors; the values sampled
        and the `S` nodes per derivation; per budget, the share of derivations within
        it and their mean size.
    """
    rates, samplings, errors = [], [], 0
    for _ in range(NEPS_WARM_UP_RESOLVES):  # NePS's first resolves set up its caches
        try:
            resolve(space)
        except RecursionError:
            pass
    for seed in seeds:
        random.seed(seed)
        resolved, failed = [], 0
        start = time.perf_counter()
        while True:
            try:
                resolved.append(resolve(space)[1].samplings_made)
            except RecursionError:
                failed += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(len(resolved) / elapsed)
        samplings += resolved
        errors += failed
    nodes = [neps_rule_nodes(made) for made in samplings]
    return {
        **summarize(rates),
        "resolved": len(nodes),
        "recursion_errors": errors,
        "python_recursion_limit": sys.getrecursionlimit(),
        "mean_values_sampled_per_config": statistics.fmean(len(made) for made in samplings),
        "rule_nodes_mean": statistics.fmean(nodes),
        "rule_nodes_median": statistics.median(nodes),
        "rule_nodes_max": max(nodes),
        "within_budget": {
            budget: {"share": sum(n <= budget for n in nodes) / len(nodes),
                     "rule_nodes_mean": statistics.fmean(n for n in nodes if n <= budget)}
            for budget in budgets
        },
    }


def exact_rule_nodes(grammars: ModuleType, largest: int) -> np.ndarray:
    """The exact distribution of a derivation's size, in `S` nodes.

    Each `S` picks one of its productions uniformly, as do the `C`s it refers to
    (`S_CHILDREN` and `C_HAS_S` in `tests/space/_grammars.py`), so the `S` nodes form a
    Galton-Watson tree, whose size T has P(T = n) = P(X_1 + ... + X_n = n - 1) / n for
    i.i.d. children counts X_i (the hitting-time theorem; Dwass 1969, "The total progeny
    in a branching process", J. Appl. Probab. 6).

    Args:
        grammars: The module `tests.space._grammars`.
        largest: The largest size of interest.

    Returns:
        `(largest + 1,)` P(T = n) for n = 0..largest (0 at n = 0).
    """
    c_children = np.bincount(grammars.C_HAS_S, minlength=2) / len(grammars.C_HAS_S)
    children = np.zeros(max(s + c for s, c in grammars.S_CHILDREN) + 1)
    for s_count, c_count in grammars.S_CHILDREN:
        count = np.zeros(s_count + 1)
        count[s_count] = 1.0
        for _ in range(c_count):
            count = np.convolve(count, c_children)
        children[:len(count)] += count / len(grammars.S_CHILDREN)
    sizes, total = np.zeros(largest + 1), np.ones(1)  # total: X_1 + ... + X_n
    for n in range(1, largest + 1):
        total = np.convolve(total, children)[:largest]
        sizes[n] = total[n - 1] / n
    return sizes


def exact_grammar(grammars: ModuleType, budgets: Sequence[int]) -> dict:
    """The exact mean derivation size and, per budget, the share of derivations within it
    and their mean size (`exact_rule_nodes`)."""
    sizes = exact_rule_nodes(grammars, max(budgets, default=1))
    c_children = statistics.fmean(grammars.C_HAS_S)
    mean_children = statistics.fmean(s + c * c_children for s, c in grammars.S_CHILDREN)
    n = np.arange(len(sizes))
    return {
        "rule_nodes_mean": 1.0 / (1.0 - mean_children),  # a subcritical tree's mean size
        "within_budget": {
            budget: {"share": float(sizes[:budget + 1].sum()),
                     "rule_nodes_mean": float((sizes * n)[:budget + 1].sum()
                                              / sizes[:budget + 1].sum())}
            for budget in budgets
        },
    }


def grammar_compile(form: str, fresh_process: bool, **limits: int) -> tuple[float, int]:
    """Times `jn.compile(form(), **limits)` on a grammar of `tests/space/_grammars.py`.

    Args:
        form: The grammar's function name there.
        fresh_process: Compile in a new Python process (started with this interpreter,
            inheriting this one's CPU affinity), so that nothing compiled before is
            cached; else in this process.
        **limits: `max_nodes`, or `max_depth` and `max_slots`.

    Returns:
        Seconds spent in `jn.compile` (imports excluded) and the space's decisions.
    """
    if fresh_process:
        code = (f"import sys, time; sys.path.insert(0, {str(REPO)!r}); import jaxnas as jn; "
                f"from tests.space._grammars import {form}; start = time.perf_counter(); "
                f"spec = jn.compile({form}(), **{limits!r}); "
                f"print(time.perf_counter() - start, len(spec.paths))")
        out = subprocess.run((sys.executable, "-c", code), capture_output=True, text=True,
                             check=True).stdout
        seconds, decisions = out.splitlines()[-1].split()
        return float(seconds), int(decisions)
    from tests.space import _grammars  # noqa: PLC0415 - REPO is on sys.path
    start = time.perf_counter()
    spec = jn.compile(getattr(_grammars, form)(), **limits)
    return time.perf_counter() - start, len(spec.paths)


def rule_instances_used(spec: jn.SearchSpace, configs: Any) -> np.ndarray:
    """`(n,)` how many pool instances (paths `rule#k...`) each config's derivation uses:
    an instance is used when one of its decisions is active (`spec.active`)."""
    active = np.asarray(jax.vmap(spec.active)(configs).array)  # (n, decisions) bool
    instance = [re.match(r"[^.\[]+#\d+", path) for path in spec.paths]
    names = sorted({match.group() for match in instance if match})
    columns = [[j for j, match in enumerate(instance) if match and match.group() == name]
               for name in names]
    return np.stack([active[:, c].any(axis=1) for c in columns], axis=1).sum(axis=1)


def check_grammar(spec: jn.SearchSpace, configs: Any) -> dict:
    """`check_jaxnas` of every slot, plus the share of the configs whose derivation fits
    the budget (`spec.feasible`; sampling should reach 1) and their sizes."""
    feasible = np.asarray(jax.vmap(spec.feasible)(configs))
    used = rule_instances_used(spec, configs)
    active = np.asarray(jax.vmap(spec.active)(configs).array)
    return {
        **check_jaxnas(spec, configs, {}),
        "feasible_share": float(feasible.mean()),
        "rule_nodes_mean": float(used.mean()),
        "rule_nodes_max": int(used.max()),
        "active_decisions_mean": float(active.sum(axis=1).mean()),
    }


def bench_jaxnas_grammar(form: str, budget: int, population_sizes: Sequence[int],
                         seeds: Sequence[int], min_seconds: float,
                         fresh_process: bool) -> dict:
    """Compiles a grammar with a node budget and times its batched sampler.

    Args:
        form: The grammar's function name in `tests/space/_grammars.py`.
        budget: `max_nodes`.
        population_sizes, seeds, min_seconds: As for `time_populations`.
        fresh_process: Time `jn.compile` in a fresh process (`grammar_compile`).

    Returns:
        The budget, decisions and compile time; per population size as
        `time_populations`; the best population size and its median rate; the check of
        the largest population (`check_grammar`).
    """
    from tests.space import _grammars  # noqa: PLC0415 - REPO is on sys.path

    compile_s, decisions = grammar_compile(form, fresh_process, max_nodes=budget)
    spec = jn.compile(getattr(_grammars, form)(), max_nodes=budget)
    populations, checks = time_populations(spec, population_sizes, seeds, min_seconds,
                                           lambda configs: check_grammar(spec, configs))
    best = max(populations, key=lambda size: populations[size]["configs_per_s_median"])
    return {
        "max_nodes": budget,
        "decisions": decisions,
        "space_compile_s": compile_s,
        "populations": populations,
        "best_population_size": best,
        "best_configs_per_s_median": populations[best]["configs_per_s_median"],
        "check": checks[max(population_sizes)],
    }


def run_grammars(settings: Mapping[str, Any]) -> dict:
    """NePS's two grammar-like spaces: NePS's resolve against jaxnas with node budgets,
    and jaxnas's old unrolling (`max_depth`) for contrast.

    Args:
        settings: `FULL` or `QUICK`, plus "mode" and "grammar_budgets".

    Returns:
        The results, as written to JSON under "grammars".
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # tests/space/_grammars.py, as scaling.py's server
    seeds = list(range(settings["repetitions"]))
    budgets = settings["grammar_budgets"]
    fresh = settings["grammar_compile_in_fresh_process"]
    from tests.space import _grammars  # noqa: PLC0415 - REPO is on sys.path

    exact = exact_grammar(_grammars, budgets)  # both forms derive the same grammar
    spaces = {}
    for form, neps_space in neps_grammars().items():
        neps_result = bench_neps_grammar(neps_space, seeds, settings["neps_seconds"], budgets)
        jaxnas_result = {
            budget: bench_jaxnas_grammar(form, budget, settings["grammar_population_sizes"],
                                         seeds, settings["jaxnas_seconds"], fresh)
            for budget in budgets
        }
        unrolled = {}
        for depth in GRAMMAR_UNROLL_DEPTHS:
            compile_s, decisions = grammar_compile(form, fresh, max_depth=depth,
                                                   max_slots=GRAMMAR_MAX_SLOTS)
            unrolled[depth] = {"decisions": decisions, "space_compile_s": compile_s}
        spaces[form] = {
            "exact": exact,
            "neps": neps_result,
            "jaxnas": jaxnas_result,
            "jaxnas_unrolled": unrolled,
            "speedup_jaxnas_over_neps": {
                budget: result["best_configs_per_s_median"] / neps_result["configs_per_s_median"]
                for budget, result in jaxnas_result.items()
            },
        }
    where = "a fresh Python process each" if fresh else "this process"
    return {
        "spaces": spaces,
        "unrolled_depths": list(GRAMMAR_UNROLL_DEPTHS),
        "unrolled_too_large_from_depth": GRAMMAR_TOO_LARGE_DEPTH,
        "notes": [
            "NePS: its test suite's GrammarLike and GrammarLikeAlt, resolve(space) with its "
            "default RandomSampler; a RecursionError (Python's default recursion limit; "
            "NePS's own tests xfail on it) is counted and its time kept, and configs/s "
            "counts the resolves that succeed.",
            "jaxnas: tests/space/_grammars.py compiled with jn.compile(space, max_nodes=N): "
            "each recursive rule (S) gets N instances, a derivation of more than N S nodes "
            "has probability zero and spec.sample redraws it (a while loop; under vmap "
            "every config of the batch runs as many rounds as its unluckiest one).",
            "within budget: the share of derivations with at most N S nodes, i.e. of raw "
            "jaxnas derivations that fit: exact (the grammar's S nodes are a "
            "Galton-Watson tree) and among NePS's resolves (recursion errors left out). "
            "rule nodes/config: S nodes per derivation; jaxnas: pool instances used, of "
            "configs that fit, beside the exact and NePS's means within the budget.",
            f"jn.compile time: measured in {where}; first call s: XLA compile of the "
            "jitted, vmapped sampler plus its first call, excluded from the rates.",
            f"unrolled: jn.compile(space, max_depth=d, max_slots={GRAMMAR_MAX_SLOTS:,}) "
            f"for contrast (decisions and compile time only); depth "
            f"{GRAMMAR_TOO_LARGE_DEPTH} and deeper are too large (GrammarLike at depth 4: "
            "about 77,000 decisions).",
        ],
    }


def print_grammar_table(grammars: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Prints the grammar rows as a markdown table, then their notes."""
    print(f"\n### NePS's grammar-like spaces: configs/s, median (min-max) of "
          f"{settings['repetitions']} repetitions, seeds {list(range(settings['repetitions']))}"
          f"\n")
    print("| grammar | sampler | decisions | jn.compile s | batch | first call s "
          "| configs/s | rule nodes/config | within budget | jaxnas/NePS |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for form, result in grammars["spaces"].items():
        neps = result["neps"]
        rate = (f"{_rate(neps['configs_per_s_median'])} ({_rate(neps['configs_per_s_min'])}-"
                f"{_rate(neps['configs_per_s_max'])})")
        exact = result["exact"]
        print(f"| {form} | NePS resolve | {neps['mean_values_sampled_per_config']:.1f} "
              f"sampled (mean) | - | 1 | - | {rate} | {neps['rule_nodes_mean']:.1f} mean "
              f"(exact {exact['rule_nodes_mean']:.1f}), {neps['rule_nodes_max']} max; "
              f"{neps['recursion_errors']} recursion errors in "
              f"{neps['resolved'] + neps['recursion_errors']} | - | - |")
        for budget, jaxnas in result["jaxnas"].items():
            for row, (size, population) in enumerate(jaxnas["populations"].items()):
                best = size == jaxnas["best_population_size"]
                rate = (f"{_rate(population['configs_per_s_median'])} "
                        f"({_rate(population['configs_per_s_min'])}-"
                        f"{_rate(population['configs_per_s_max'])})")
                first_call = population["xla_compile_s"] + population["warm_up_s"]
                within, exactly = neps["within_budget"][budget], exact["within_budget"][budget]
                speedup = result["speedup_jaxnas_over_neps"][budget]
                # The budget's own figures once, on its first row.
                space = (f"{jaxnas['decisions']:,} | {jaxnas['space_compile_s']:.2f}"
                         if row == 0 else " | ")
                sizes = (f"{jaxnas['check']['rule_nodes_mean']:.1f} mean (exact "
                         f"{exactly['rule_nodes_mean']:.1f}, NePS "
                         f"{within['rule_nodes_mean']:.1f}) | {100 * exactly['share']:.1f}% "
                         f"exact, NePS {100 * within['share']:.1f}%" if row == 0 else " | ")
                print(f"| {form} | jaxnas max_nodes={budget} | {space} | "
                      f"{size:,}{'*' if best else ''} | {first_call:.2f} | {rate} | {sizes} | "
                      + (f"{speedup:,.0f}x |" if best else "- |"))
        for depth, unrolled in result["jaxnas_unrolled"].items():
            print(f"| {form} | jaxnas max_depth={depth} (unrolled) | "
                  f"{unrolled['decisions']:,} | {unrolled['space_compile_s']:.2f} "
                  "| - | - | - | - | - | - |")
        print(f"| {form} | jaxnas max_depth>={grammars['unrolled_too_large_from_depth']} "
              "(unrolled) | too large | - | - | - | - | - | - | - |")
    print("\n\\* best batch size, compared with NePS.")
    for note in grammars["notes"]:
        print(f"note: {note}")


def run(settings: Mapping[str, Any]) -> dict:
    """Runs both libraries on every space.

    Args:
        settings: `FULL` or `QUICK`, plus the "mode" name.

    Returns:
        The results, as written to JSON.
    """
    seeds = list(range(settings["repetitions"]))
    spaces = {}
    for name, build in SPACES.items():
        neps_entries = build(neps_parameters)
        rules = value_rules(neps_entries)
        neps_space = neps_pipeline(name, neps_entries)
        neps_result = {"check": check_neps(neps_space, rules),
                       **bench_neps(neps_space, seeds, settings["neps_seconds"])}
        jaxnas_result = bench_jaxnas(build(jn), rules, settings["population_sizes"], seeds,
                                     settings["jaxnas_seconds"])
        speedup = jaxnas_result["best_configs_per_s_median"] / neps_result["configs_per_s_median"]
        spaces[name] = {
            "neps": neps_result,
            "jaxnas": jaxnas_result,
            "speedup_jaxnas_over_neps": speedup,
            "target_speedup": TARGET_SPEEDUPS[name],
            "target_machine": TARGET_MACHINE,
            "target_met_here": speedup >= TARGET_SPEEDUPS[name],
        }
    return {
        "benchmark": "sampling",
        "machine": machine_info("neural-pipeline-search"),
        "settings": {**settings, "population_sizes": list(settings["population_sizes"]),
                     "seeds": seeds, "statistic": "median over repetitions"},
        "spaces": spaces,
        "notes": [
            "NePS: resolve(space) with its default RandomSampler (uniform; priors are "
            "ignored), one configuration per Python call.",
            "jaxnas: jax.jit(jax.vmap(spec.sample)) with the keys split inside the same "
            "jitted call; XLA compile time is reported separately and excluded.",
            f"hierarchical: jaxnas unrolls the recursive rule to max_depth={MAX_DEPTH} and "
            "gives zero probability to choices that cannot terminate within it (at the "
            "deepest level only the terminating choices remain); NePS's recursion is "
            "unbounded (it ends with probability 1), so jaxnas never produces the deeper "
            "configurations NePS occasionally samples.",
        ],
    }


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def print_table(results: Mapping[str, Any]) -> None:
    """Prints the results as a readable table."""
    machine, settings = results["machine"], results["settings"]
    print(f"\nSampling throughput (configs/s), median of {settings['repetitions']} "
          f"repetitions, seeds {settings['seeds']}")
    print(f"machine: {machine['platform']}, {machine['cpus_usable']} usable CPUs, "
          f"jax {machine['jax']} on {machine['jax_devices']}, neps {machine['neural-pipeline-search']}, "
          f"jaxnas {machine['jaxnas']} ({machine['jaxnas_revision']})\n")
    header = (f"{'space':<13}{'library':<8}{'batch':>9}{'median':>16}{'min':>16}"
              f"{'max':>16}{'compile s':>11}")
    print(header)
    print("-" * len(header))
    for name, result in results["spaces"].items():
        neps = result["neps"]
        print(f"{name:<13}{'NePS':<8}{1:>9}{_rate(neps['configs_per_s_median']):>16}"
              f"{_rate(neps['configs_per_s_min']):>16}{_rate(neps['configs_per_s_max']):>16}"
              f"{'-':>11}")
        jaxnas = result["jaxnas"]
        for size, population in jaxnas["populations"].items():
            marker = "*" if size == jaxnas["best_population_size"] else " "
            print(f"{'':<13}{'jaxnas':<8}{size:>8,}{marker}"
                  f"{_rate(population['configs_per_s_median']):>16}"
                  f"{_rate(population['configs_per_s_min']):>16}"
                  f"{_rate(population['configs_per_s_max']):>16}"
                  f"{population['xla_compile_s']:>11.2f}")
        met = "met" if result["target_met_here"] else "NOT met"
        print(f"{'':<13}jaxnas/NePS = {result['speedup_jaxnas_over_neps']:,.0f}x at batch "
              f"{jaxnas['best_population_size']:,} (target >= {result['target_speedup']:,.0f}x "
              f"on {result['target_machine']}: {met} here); jn.compile "
              f"{jaxnas['space_compile_s']:.2f} s")
        print(f"{'':<13}values sampled per config: NePS "
              f"{neps['check']['mean_values_sampled_per_config']:.1f} on average, jaxnas "
              f"{jaxnas['slots_sampled_per_config']} (every slot, active or not)\n")
    print("* best population size. compile s: XLA compile of the jitted sampler, excluded "
          "from the rates.")
    for note in results["notes"]:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke run: fewer repetitions, shorter timings")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT})")
    parser.add_argument("--grammar-budgets", type=int, nargs="+", metavar="N",
                        help="node budgets (max_nodes) of the grammar rows (default "
                             f"{' '.join(map(str, GRAMMAR_BUDGETS['full']))}; --quick "
                             f"{' '.join(map(str, GRAMMAR_BUDGETS['quick']))})")
    parser.add_argument("--no-grammars", action="store_true",
                        help="leave out the grammar rows (NePS's grammar-like spaces)")
    args = parser.parse_args(argv)
    if args.grammar_budgets and min(args.grammar_budgets) < 1:
        parser.error("--grammar-budgets must be integers >= 1")

    mode = "quick" if args.quick else "full"
    settings = {"mode": mode, **(QUICK if args.quick else FULL),
                "grammar_budgets": () if args.no_grammars
                else tuple(args.grammar_budgets or GRAMMAR_BUDGETS[mode])}
    results = run(settings)
    if not args.no_grammars:
        results["grammars"] = run_grammars(settings)
    print_table(results)
    if not args.no_grammars:
        print_grammar_table(results["grammars"], results["settings"])
    write_results(args.out, results)


if __name__ == "__main__":
    main()
