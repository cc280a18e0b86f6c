"""Time to result: the quickstart's whole process beside the same search in NePS + PyTorch.

One invocation runs, for each seed, three processes one after the other and times each
from its start to its exit (imports, data, compilation and the search included):

    * jaxnas, cold: `python examples/quickstart.py` with its persistent compilation cache
      (on by default) pointed at a fresh, empty folder (`JAXNAS_COMPILATION_CACHE`), so
      nothing compiled earlier is reused: what a first run on a new machine costs;
    * jaxnas, warm: the same command again on the same cache folder (`--no-warm` skips it):
      what every later run costs;
    * with `--uncached`, first a jaxnas run with the cache off
      (`JAXNAS_COMPILATION_CACHE=0`): the cold run's extra time over it is the cost of
      writing the cache;
    * NePS + PyTorch: `python benchmarks/neps_quickstart.py`, the same search written with
      NePS 0.17's PriorBand and a PyTorch loop (see that script for how it matches).

Both sides get the same budget (`--max-fidelity-spent`, epochs actually trained) and seed.
The trials, search time, validation error and test accuracy of each incumbent are parsed
from what the scripts print; the epochs jaxnas trained are read back from its run folder
(`jn.load_results`, after the clock has stopped).

Run from the repository root:
    python benchmarks/time_to_result.py                          # 1,080 epochs, seed 0
    python benchmarks/time_to_result.py --max-fidelity-spent 100 --seeds 0 1
    python benchmarks/time_to_result.py --example mnist1d        # the CNN example

Prints a markdown table (wall times, the ratio jaxnas / NePS, trials, test accuracy; each
process's user and system CPU time go to the JSON and the progress lines) and
writes `benchmarks/results/time_to_result.json` (`time_to_result_mnist1d.json` for the
CNN; `--out`). The issue's target: cold at most half NePS's time, warm at most a quarter,
with the same or better test accuracy.

Time it on an otherwise idle machine (the script prints the load average at the start and
the end, and records both). PyTorch is hurt more than JAX by other jobs on the same cores:
on the 2-core CI machine with a load average near 3, a training step of the quickstart's
MLPs took 1.1 ms with one torch thread and 13-32 ms with two, so a loaded machine can make
NePS look many times slower than it is; `--torch-threads 1` shows whether that happened.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# This checkout's jaxnas, in this process and in the examples it runs, even where another
# checkout is the installed one: a benchmark times the code beside it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jaxnas as jn  # noqa: E402
from _common import REPO, machine_info, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_COLD = 0.5  # jaxnas cold / NePS
TARGET_WARM = 0.25  # jaxnas warm / NePS
LOADED = 1.5  # a load average above which the timings are not worth reporting
EXAMPLES = {
    # name: (jaxnas script, NePS script, default budget in epochs)
    "quickstart": ("examples/quickstart.py", "benchmarks/neps_quickstart.py", 27 * 40),
    "mnist1d": ("examples/mnist1d_cnn.py", "benchmarks/neps_mnist1d.py", 27 * 5),
}
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE",
                   "JAXNAS_COMPILATION_CACHE")
NAMES = {"jaxnas_uncached": "jaxnas, no cache", "jaxnas_cold": "jaxnas, cold cache",
         "jaxnas_warm": "jaxnas, warm cache", "neps": "NePS + PyTorch"}
_TRIALS = re.compile(r"^(\d+) trials in ([\d.]+) s", re.MULTILINE)
_VALIDATION = re.compile(r"validation error ([\d.]+)")
_TEST = re.compile(r"test accuracy:? ([\d.]+)")


def parse(stdout: str) -> dict:
    """Trials, search seconds, validation error and test accuracy from a script's output.

    Both examples and both NePS scripts print `N trials in S s`, `validation error E` and
    `test accuracy A` (with or without a colon) for their incumbent.

    Raises:
        ValueError: a line is missing (the script's output format changed).
    """
    found = {"trials": _TRIALS.search(stdout), "validation_error": _VALIDATION.search(stdout),
             "test_accuracy": _TEST.search(stdout)}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise ValueError(f"could not find {', '.join(missing)} in the output:\n{stdout}")
    return {"trials": int(found["trials"].group(1)),
            "search_s": float(found["trials"].group(2)),
            "validation_error": float(found["validation_error"].group(1)),
            "test_accuracy": float(found["test_accuracy"].group(1))}


def timed_process(command: list[str], env: dict[str, str]) -> dict:
    """Runs `command` from the repository root; its wall time, CPU time (user and system:
    a process's system time grows with the memory it touches for the first time, which
    is slow on a VM), exit and parsed result."""
    print("$ " + " ".join(command), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the one child run since
    if done.returncode:
        raise RuntimeError(f"{command[1]} exited with {done.returncode}:\n"
                           f"{done.stdout}\n{done.stderr}")
    result = {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
              "system_s": after.ru_stime - before.ru_stime, **parse(done.stdout)}
    print(f"  {wall:.1f} s ({result['user_s']:.1f} s user, {result['system_s']:.1f} s "
          f"system); {result['trials']} trials, test accuracy "
          f"{result['test_accuracy']:.4f}", flush=True)
    return result


def epochs_trained(root: Path) -> float:
    """The epochs a jaxnas run trained: each trial's fidelity less its parent's."""
    trials = {t["trial_id"]: t for t in jn.load_results(root)}
    return sum(t["fidelity"] - (trials[t["parent_id"]]["fidelity"] if t["parent_id"] >= 0
                                else 0.0)
               for t in trials.values() if t["status"] == "success")


def jaxnas_env(mode: str, cache: Path) -> dict[str, str]:
    """The environment of a jaxnas run: its persistent cache off, or on in `cache`.

    Through jaxnas's own setting (`JAXNAS_COMPILATION_CACHE`), so that the run uses the
    cache as jaxnas sets it up by default, only in a folder of this benchmark's; JAX's own
    cache variables are removed, as jaxnas would defer to them.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in CACHE_VARIABLES and not k.startswith("JAX_PERSISTENT_CACHE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    return {**env, "JAXNAS_COMPILATION_CACHE": "0" if mode == "uncached" else str(cache)}


def run_seed(example: str, seed: int, budget: float, tmp: Path, *, modes: Sequence[str],
             neps_args: list[str]) -> dict:
    """The jaxnas runs (`modes`, in order: uncached, cold, warm) and the NePS run of a seed."""
    jaxnas_script, neps_script, _ = EXAMPLES[example]
    cache = tmp / f"jax_cache_{seed}"
    cache.mkdir()  # empty for the cold run, filled by it for the warm one
    common = ["--max-fidelity-spent", f"{budget:g}", "--seed", str(seed)]
    row: dict = {"seed": seed}
    for mode in modes:
        root = tmp / f"jaxnas_{mode}_{seed}"
        row[f"jaxnas_{mode}"] = timed_process(
            [sys.executable, jaxnas_script, *common, "--root", str(root)],
            jaxnas_env(mode, cache))
        row[f"jaxnas_{mode}"]["epochs_trained"] = epochs_trained(root)
    neps_json = tmp / f"neps_{seed}.json"
    row["neps"] = timed_process(
        [sys.executable, neps_script, *common, "--root", str(tmp / f"neps_{seed}"),
         "--out", str(neps_json), *neps_args], dict(os.environ))
    details = json.loads(neps_json.read_text())
    row["neps"].update(epochs_trained=details["epochs_trained"],
                       evaluate_pipeline_s=details["evaluate_pipeline_s"])
    for mode in modes:
        row[f"ratio_{mode}"] = row[f"jaxnas_{mode}"]["wall_s"] / row["neps"]["wall_s"]
    return row


def print_table(rows: list[dict], modes: Sequence[str]) -> None:
    print("\n| seed | run | wall time | jaxnas / NePS | search (in-process) | trials | "
          "epochs trained | validation error | test accuracy |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        for side in [*(f"jaxnas_{mode}" for mode in modes), "neps"]:
            r = row[side]
            ratio = row[side.replace("jaxnas_", "ratio_")] if side != "neps" else None
            print(f"| {row['seed']} | {NAMES[side]} | {r['wall_s']:.1f} s | "
                  f"{'1' if ratio is None else f'{ratio:.2f}'} | {r['search_s']:.1f} s | "
                  f"{r['trials']} | {r['epochs_trained']:g} | "
                  f"{r['validation_error']:.4f} | {r['test_accuracy']:.4f} |")


def summary(rows: list[dict], modes: Sequence[str]) -> dict:
    """Medians over seeds, and whether the issue's targets are met."""
    median = statistics.median
    result = {f"ratio_{mode}_median": median(r[f"ratio_{mode}"] for r in rows)
              for mode in modes}
    result.update(
        test_accuracy_jaxnas_median=median(r["jaxnas_cold"]["test_accuracy"] for r in rows),
        test_accuracy_neps_median=median(r["neps"]["test_accuracy"] for r in rows),
        target_cold=TARGET_COLD, cold_met=result["ratio_cold_median"] <= TARGET_COLD)
    result["accuracy_met"] = (result["test_accuracy_jaxnas_median"]
                              >= result["test_accuracy_neps_median"])
    if "warm" in modes:
        result.update(target_warm=TARGET_WARM,
                      warm_met=result["ratio_warm_median"] <= TARGET_WARM)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="quickstart")
    parser.add_argument("--max-fidelity-spent", type=float, default=None,
                        help="the budget in epochs (default: the example's own, 1080 for "
                             "the quickstart, 135 for mnist1d)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds, one repetition each (default: --repetitions seeds "
                             "from --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--no-warm", action="store_true",
                        help="skip the second jaxnas run on the warm cache")
    parser.add_argument("--uncached", action="store_true",
                        help="also a first jaxnas run with the persistent cache off, as "
                             "jaxnas runs today (the cold run pays for writing the cache)")
    parser.add_argument("--neps-device", default="cpu",
                        help="the NePS side's torch device: cpu (default), cuda or auto")
    parser.add_argument("--torch-threads", type=int, default=2,
                        help="the NePS side's torch threads (default 2, the CI machine's "
                             "cores)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON (default: benchmarks/results/time_to_result.json, "
                             "time_to_result_mnist1d.json for mnist1d)")
    args = parser.parse_args(argv)
    seeds = args.seeds or list(range(args.seed, args.seed + args.repetitions))
    budget = args.max_fidelity_spent or EXAMPLES[args.example][2]
    warm = not args.no_warm
    modes = [*(["uncached"] if args.uncached else []), "cold", *(["warm"] if warm else [])]
    neps_args = ["--device", args.neps_device, "--threads", str(args.torch_threads)]

    machine = {**machine_info("neural-pipeline-search", "torch"),
               "jaxnas_path": str(Path(jn.__file__).parent)}
    load = machine["load_average_at_start"][0]
    print(f"{args.example}: budget {budget:g} epochs, seeds {seeds}; load average "
          f"{load:.2f}", flush=True)
    if load > LOADED:
        print(f"warning: load average {load:.2f} > {LOADED:g}: other jobs share the cores, "
              f"so the timings are noisy (and torch's, with 2 threads, much slower).",
              flush=True)
    with tempfile.TemporaryDirectory(prefix="jaxnas_time_to_result_") as tmp:
        rows = [run_seed(args.example, seed, budget, Path(tmp), modes=modes,
                         neps_args=neps_args) for seed in seeds]
    print_table(rows, modes)
    results = {"benchmark": "time_to_result", "machine": machine,
               "load_average_at_end": os.getloadavg(),
               "settings": {"example": args.example, "max_fidelity_spent": budget,
                            "seeds": seeds, "jaxnas_runs": modes, "neps_device": args.neps_device,
                            "torch_threads": args.torch_threads,
                            "commands": {"jaxnas": EXAMPLES[args.example][0],
                                         "neps": EXAMPLES[args.example][1]}},
               "rows": rows, "summary": summary(rows, modes)}
    s = results["summary"]
    print(f"\nTarget, jaxnas cold <= {TARGET_COLD:g} x NePS: "
          f"{'met' if s['cold_met'] else 'NOT met'} (median ratio "
          f"{s['ratio_cold_median']:.2f}).")
    if warm:
        print(f"Target, jaxnas warm <= {TARGET_WARM:g} x NePS: "
              f"{'met' if s['warm_met'] else 'NOT met'} (median ratio "
              f"{s['ratio_warm_median']:.2f}).")
    print(f"Test accuracy (median): jaxnas {s['test_accuracy_jaxnas_median']:.4f}, NePS "
          f"{s['test_accuracy_neps_median']:.4f}: "
          f"{'same or better' if s['accuracy_met'] else 'WORSE'}.")
    print(f"Load average at the end: {results['load_average_at_end'][0]:.2f} (at the start "
          f"{machine['load_average_at_start'][0]:.2f}).")
    suffix = "" if args.example == "quickstart" else f"_{args.example}"
    write_results(args.out or RESULTS / f"time_to_result{suffix}.json", results)


if __name__ == "__main__":
    main()
