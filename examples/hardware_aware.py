"""Hardware-aware NAS: validation error against parameter count, under a parameter limit.

Run: pip install -e ".[examples,plot]" && python examples/hardware_aware.py

The quickstart's digits MLP space (depth 1-3, widths 16-256, learning rate and weight decay),
searched by NSGA-II (its first generation drawn from the space's priors) for two objectives
at once: the validation error after the full 27
epochs and the model's parameter count, which `jn.run` measures on each configuration's
exact model (`jn.nn.summary`, once per architecture). A constraint on the architecture,
`jn.constraints.max_params`, refuses models over the limit before they are trained: they are
recorded `infeasible` and cost nothing. It prints the Pareto front (no model on it is both
smaller and more accurate than another) as a table and saves a plot of it with every trial.

Options: --evaluations (trained configurations), --max-params, --seed, --root, --plot.
"""

import argparse
import tempfile
import time
from pathlib import Path

import jax

import jaxnas as jn

try:  # the quickstart's space, data and printing
    from examples.quickstart import describe, digits, mlp_space
except ImportError:  # run as a script: its own folder is on sys.path
    from quickstart import describe, digits, mlp_space


def plot(trials: list, front: list, path: Path, max_params: float) -> Path | None:
    """Every trained trial and the front, error against parameters (needs matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415 - the [plot] extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    done = [t for t in trials if t["status"] == "success"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t["objectives"]["params"] for t in done],
               [t["objectives"]["loss"] for t in done], s=10, c="0.6", label="trained trials")
    ordered = sorted(front, key=lambda t: t["objectives"]["params"])
    ax.step([t["objectives"]["params"] for t in ordered],
            [t["objectives"]["loss"] for t in ordered], where="post", color="C3",
            marker="o", label="Pareto front")
    ax.axvline(max_params, color="k", linestyle=":", label="max_params")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=200,
                        help="configurations trained (default 200: 10 generations of 20)")
    parser.add_argument("--max-params", type=float, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="run directory (default: a new temp dir)")
    parser.add_argument("--plot", default=None, help="where to save the plot (default: "
                                                     "pareto_front.png in the run directory)")
    args = parser.parse_args()

    train, validation, test = digits(seed=0)
    task = jn.SupervisedTask(train, validation, test_data=test, batch_size=64)
    root = Path(args.root or tempfile.mkdtemp(prefix="jaxnas-hardware-aware-"))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; NSGA-II on validation "
          f"error and parameters, at most {args.max_params:g} parameters ...")
    start = time.perf_counter()
    result = jn.run(task, mlp_space(), root_directory=root, optimizer="nsga2",
                    objectives={"loss": "minimize", "params": "minimize"},
                    constraints=[jn.constraints.max_params(args.max_params)],
                    optimizer_kwargs={"population_size": 20, "use_prior": True},
                    max_evaluations=args.evaluations, seed=args.seed)
    seconds = time.perf_counter() - start

    trials = result.trials
    infeasible = sum(t["status"] == "infeasible" for t in trials)
    front = sorted(result.pareto_front, key=lambda t: t["objectives"]["params"])
    spec = jn.compile(mlp_space())
    print(f"\n{len(trials) - infeasible} trained and {infeasible} infeasible (over the limit, "
          f"never trained) in {seconds:.0f} s (stopped by {result.stopped_by})")
    print(f"Pareto front, {len(front)} configurations:")
    print(f"  {'params':>7}  {'val. error':>10}  {'test acc.':>9}  architecture")
    for t in front:
        architecture = spec.resolve(t["config"], t["fidelity"], build=False)["model"]
        test_accuracy = 1.0 - t["extra"]["test_objective"]
        print(f"  {t['objectives']['params']:>7.0f}  {t['objectives']['loss']:>10.4f}  "
              f"{test_accuracy:>9.4f}  {describe(architecture)}")
    saved = plot(trials, front, Path(args.plot or root / "pareto_front.png"), args.max_params)
    print(f"plot: {saved}" if saved else "plot: skipped (pip install matplotlib)")
    points = [[t["objectives"]["loss"], t["objectives"]["params"] / args.max_params]
              for t in front]
    print(f"hypervolume of the front (error and params / max_params, reference (1, 1)): "
          f"{jn.metrics.hypervolume(points, [1.0, 1.0]):.4f}")
    print(f"results in {root} (jn.load_results(root) reads them back)")


if __name__ == "__main__":
    main()
