"""What every benchmark script records, how it writes its results, and its statistics.

The scripts run as `python benchmarks/NAME.py`, so this folder is on `sys.path` and they
import this module as `_common`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxnas as jn

REPO = Path(__file__).resolve().parents[1]  # for the git commit recorded in the JSON


def jaxnas_revision() -> str:
    """The checkout's git commit, with "+dirty" if `jaxnas/` has uncommitted changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(("git", "-C", str(REPO), *args), capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("status", "--porcelain", "--", "jaxnas").stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def machine_info(*distributions: str) -> dict[str, Any]:
    """Platform, CPUs and load, JAX devices, jaxnas, and the versions of `distributions`.

    Args:
        *distributions: distribution names to record (e.g. "neural-pipeline-search");
            one not installed is recorded as None (a peer the run left out).
    """
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "jaxnas": jn.__version__,
        "jaxnas_revision": jaxnas_revision(),
        **{name: _version(name) for name in distributions},
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_results(path: Path, results: dict[str, Any], *, indent: int = 2) -> None:
    """Writes the results as indented JSON, creating the folder, and says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=indent) + "\n")
    print(f"\nwrote {path}")


# ----------------------------------------------------------------------- statistics


def quartiles(values: np.ndarray) -> dict[str, list]:
    """Median and quartiles over seeds (axis 0); None where no seed has a value yet."""
    with warnings.catch_warnings():
        # Before an optimiser's first evaluation every seed is NaN: that point stays NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        q25, q50, q75 = np.nanpercentile(values, [25, 50, 75], axis=0)

    def listed(column: np.ndarray) -> list:
        return [None if np.isnan(v) else float(v) for v in np.atleast_1d(column)]

    return {"q25": listed(q25), "median": listed(q50), "q75": listed(q75)}


def probability_of_superiority(ours: np.ndarray, theirs: np.ndarray) -> float:
    """P(a run of ours has lower regret than a run of theirs), ties counting half.

    The Mann-Whitney U statistic over all pairs of seeds, divided by the number of pairs
    (the common-language effect size): 0.5 means no difference between the two samples.
    """
    ours, theirs = ours[:, None], theirs[None, :]
    return float(np.mean((ours < theirs) + 0.5 * (ours == theirs)))


def one_sided_p(ours: np.ndarray, theirs: np.ndarray, alternative: str) -> float:
    """One-sided Mann-Whitney U test over seeds: the p-value that our regrets tend to be
    higher (`alternative="greater"`) or lower (`"less"`) than theirs.

    Below 0.05, the difference is beyond what the spread over seeds explains. Seeds with
    no evaluation yet (NaN) are dropped.
    """
    from scipy.stats import mannwhitneyu  # noqa: PLC0415 - scipy comes with jax

    ours, theirs = ours[~np.isnan(ours)], theirs[~np.isnan(theirs)]
    if len(ours) == 0 or len(theirs) == 0:
        return float("nan")
    return float(mannwhitneyu(ours, theirs, alternative=alternative).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979).

    The i-th smallest of m p-values is multiplied by m - i (i from 0), the products are
    made non-decreasing in that order and capped at 1. An adjusted p-value below alpha
    rejects its hypothesis with a family-wise error rate of at most alpha. A NaN (a test
    that could not run) counts as 1.

    Returns:
        The adjusted p-values, in the order given.
    """
    p = np.nan_to_num(np.asarray(p_values, np.float64), nan=1.0)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum((m - np.arange(m)) * p[order], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


# ----------------------------------------------------------------------- optimisers


def compile_optimizer(optimizer: Any, zero_losses: Any,
                      name: str | None = None) -> tuple[Any, Any, Any, float, Any]:
    """A jaxnas optimiser's `init`, `ask(state, key, step)` (asking with
    `fold_in(key, step)`) and `tell`, jitted and compiled by one warm-up call each.

    They are jitted as `jn.run` jits them (`jn.optimizers.jitted`: on a CPU, with the XLA
    options `jn.run` compiles that optimiser with; until 2026-12-06 these benchmarks used
    `jax.jit`'s defaults, whose programs ran up to 2-3x faster than `jn.run`'s did then),
    and called as `jn.run` calls them: a call dispatches in C++, where an ahead-of-time
    `Compiled` object's `__call__` flattens its arguments in Python (about 0.1 ms more a
    call, counted as optimiser overhead before 2026-12-05). A later call that would trace
    again (another shape or dtype) raises instead, so that no run's time includes a
    compilation.

    Args:
        optimizer: a `jn.optimizers` `Optimizer`.
        zero_losses: `trial_ids -> losses` of the right shape for its `tell`.
        name: the name `jn.optimizers.get` made it by (None: compiled as a user's own).

    Returns:
        `(init, ask, tell, seconds spent compiling, the warm-up ask's proposals)`.
    """
    key, step = jax.random.key(0), np.int32(0)

    def ask(state: Any, ask_key: jax.Array, step: jax.Array) -> tuple[Any, Any]:
        return optimizer.ask(state, jax.random.fold_in(ask_key, step))

    start = time.perf_counter()
    init, ask, tell = jn.optimizers.jitted(jn.optimizers.Optimizer(
        *(_traced_once(f) for f in (optimizer.init, ask, optimizer.tell))), name)
    state = init(key)
    state, proposals = ask(state, key, step)
    losses = zero_losses(proposals.trial_ids)
    jax.block_until_ready(tell(state, proposals.trial_ids, losses))
    return init, ask, tell, time.perf_counter() - start, proposals


def _traced_once(fn: Any) -> Any:
    """`fn`, raising if it is traced a second time (a benchmark's call that would compile).

    Not `chex.assert_max_traces`: it counts by the function's code, so the `ask` this
    module makes for each optimiser would share one count."""
    traces = 0

    def traced(*args: Any) -> Any:
        nonlocal traces
        traces += 1
        if traces > 1:
            raise RuntimeError(f"{getattr(fn, '__name__', fn)} was traced again: a call's "
                               f"shapes or dtypes differ from the warm-up's")
        return fn(*args)

    return traced


def add_seed_arguments(parser: Any, *, full_seeds: int, quick_seeds: int,
                       development_first: int, verdict_first: int) -> None:
    """`--seeds`, `--first-seed` and `--verdict`, as `choose_seeds` reads them."""
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"number of seeds (default {full_seeds}; --quick {quick_seeds})")
    parser.add_argument("--first-seed", type=int, default=None,
                        help=f"the first seed (default {development_first}; with --verdict "
                             f"{verdict_first}); without --verdict, seeds stay below "
                             f"{verdict_first}")
    parser.add_argument("--verdict", action="store_true",
                        help=f"run the verdict seeds {verdict_first}.. (never used while "
                             f"developing) and give a verdict")


def choose_seeds(parser: Any, n_seeds: int, first_seed: int | None, verdict: bool, *,
                 verdict_first: int, development_first: int = 0,
                 min_verdict: int = 20) -> list[int]:
    """The run's seeds: development seeds below `verdict_first`, or with `verdict` at
    least `min_verdict` seeds from `verdict_first` on (the project's rules: a verdict is
    made on seeds never used while developing). Errors go through `parser.error`."""
    if n_seeds < 1:
        parser.error("--seeds must be at least 1")
    if verdict and n_seeds < min_verdict:
        parser.error(f"--verdict needs at least {min_verdict} seeds (the project's rules); "
                     f"a smaller run would only spend verdict seeds")
    if verdict:
        first = verdict_first if first_seed is None else first_seed
        if first < verdict_first:
            parser.error(f"with --verdict, --first-seed must be at least {verdict_first}")
    else:
        first = development_first if first_seed is None else first_seed
        if first < 0 or first + n_seeds > verdict_first:
            parser.error(f"development seeds must lie in 0..{verdict_first - 1}: the "
                         f"verdict seeds are reached only with --verdict")
    return list(range(first, first + n_seeds))


# The project's "no worse" rule: no point significantly worse after Holm's correction, and
# P(jaxnas beats the peer) at least MIN_SUPERIORITY at every point.
ALPHA = 0.05
MIN_SUPERIORITY = 0.45


def no_worse(points: Sequence[dict], peer: str, label: Any) -> dict[str, Any]:
    """The "no worse" verdict over a family of points, each with `p_worse_holm` (Holm-
    adjusted already) and `p_beats`; `label(point)` names a point in the explanation."""
    def where(chosen: list) -> str:
        return ", ".join(label(p) for p in chosen) or "none"

    worse = [p for p in points if p["p_worse_holm"] < ALPHA]
    behind = [p for p in points if p["p_beats"] < MIN_SUPERIORITY]
    met = not worse and not behind
    why = (f"significantly worse (Holm, alpha {ALPHA}) at {where(worse)}; "
           f"P(jaxnas beats {peer}) < {MIN_SUPERIORITY} at {where(behind)} "
           f"(of {len(points)} points)")
    return {"met": met, "outcome": "no worse" if met else "worse", "why": why}


# ------------------------------------------------------------------- NePS (the [bench] extra)

def _neps() -> Any:
    """NePS (the [bench] extra), imported only by the NePS sides of the benchmarks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch, imported by NePS, warns about torch.jit
        import neps  # noqa: PLC0415
    return neps


def neps_hartmann_space(problem: Any, prior: str | None, confidence: str) -> Any:
    """An MF-Hartmann problem's space in NePS 0.17's API: one float per dimension (with the
    problem's `prior` at NePS's `confidence`, or none), the fidelity `z` as an integer."""
    neps = _neps()

    def parameter(name: str, lower: float, upper: float) -> Any:
        if prior is None:
            return neps.Float(lower, upper)
        return neps.Float(lower, upper, prior=problem.priors[prior][name],
                          prior_confidence=confidence)

    entries: dict[str, Any] = {name: parameter(name, lo, hi) for name, lo, hi
                               in zip(problem.names, problem.lower, problem.upper)}
    entries[jn.problems.FIDELITY_NAME] = neps.IntegerFidelity(jn.problems.FIDELITY_LOWER,
                                                              jn.problems.FIDELITY_UPPER)
    return type("MFHartmannSpace", (neps.PipelineSpace,), entries)()


def timed_neps_run(evaluate_pipeline: Any, space: Any, optimizer: tuple, budget: float,
                   seed: int) -> float:
    """Seconds of one `neps.run` in a temporary root directory, with NePS's global random
    generators (Python's, numpy's and torch's, which its optimisers draw from) seeded."""
    import random  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    neps = _neps()
    import torch  # noqa: PLC0415 - installed with NePS

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="jaxnas_bench_neps_") as root:
        start = time.perf_counter()
        neps.run(evaluate_pipeline, space, root_directory=Path(root) / "run",
                 optimizer=optimizer, total_fidelities_to_spend=budget)
        return time.perf_counter() - start
