"""jaxnas quickstart: joint architecture and hyperparameter search with PriorBand.

Run: pip install -e ".[examples]" && python examples/quickstart.py

The data are scikit-learn's handwritten digits (8x8 images, 10 classes, shipped with the
package: no download). The space is an MLP whose depth and layer widths are searched, with
the optimiser's learning rate and weight decay, all with priors (what an expert would try
first); the fidelity is the number of epochs. PriorBand proposes whole rungs at once; jaxnas
groups them into buckets of equal structure (widths are masked and the depth is left open,
so every MLP of the space shares one) and trains every bucket in one jit-compiled program,
continuing promoted configurations from their saved training state. It prints the best
architecture, its hyperparameters, its test accuracy and where the results are.

Options: --max-fidelity-spent (the budget, in epochs), --seed, --root.
"""

import argparse
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np
from sklearn.datasets import load_digits

import jaxnas as jn

CLASSES = 10


def mlp_space() -> dict:
    """An MLP for 64-pixel digits: 1-3 hidden ReLU layers, each width searched (16-256)."""

    def hidden_layer(_: int) -> jn.Operation:
        width = jn.Integer(16, 256, log=True, prior=128, prior_confidence="medium")
        return jn.Operation(jn.nn.Sequential, args=(jn.Operation(nn.Dense, args=(width,)),
                                                    jn.Operation(nn.relu)))

    body = jn.nn.Repeat(hidden_layer, counts=(1, 2, 3), prior=1)  # dynamic depth
    return {
        "model": jn.Operation(jn.nn.Sequential, args=(body, jn.Operation(nn.Dense,
                                                                         args=(CLASSES,)))),
        "learning_rate": jn.Float(1e-4, 1e-1, log=True, prior=3e-3, prior_confidence="medium"),
        "weight_decay": jn.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low"),
        "epochs": jn.IntegerFidelity(1, 27),
    }


def digits(seed: int) -> tuple:
    """Train / validation / test splits of the digits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))  # a fixed split, not a search draw
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
    return (x[:1100], y[:1100]), (x[1100:1450], y[1100:1450]), (x[1450:], y[1450:])


def describe(model: jn.Operation) -> str:
    """`64 -> 128 -> 57 -> 10`: the layer widths of a resolved MLP."""
    widths = []

    def walk(op):
        if isinstance(op, jn.Operation):
            if op.operator is nn.Dense:
                widths.append(op.args[0] if op.args else op.kwargs["features"])
            for value in (*op.args, *op.kwargs.values()):
                walk(value)
        elif isinstance(op, (list, tuple)):
            for value in op:
                walk(value)

    walk(model)
    return " -> ".join(str(w) for w in [64, *widths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-fidelity-spent", type=float, default=27 * 40,
                        help="the budget in epochs (default: 40 full trainings' worth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="run directory (default: a new temp dir)")
    args = parser.parse_args()

    train, validation, test = digits(seed=0)
    task = jn.SupervisedTask(train, validation, test_data=test, batch_size=64)
    root = args.root or tempfile.mkdtemp(prefix="jaxnas-quickstart-")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; searching with PriorBand, "
          f"budget {args.max_fidelity_spent:g} epochs ...")
    start = time.perf_counter()
    result = jn.run(task, mlp_space(), optimizer="priorband", root_directory=root,
                    max_fidelity_spent=args.max_fidelity_spent, seed=args.seed)
    seconds = time.perf_counter() - start

    best = result.incumbent
    spec = jn.compile(mlp_space())
    architecture = spec.resolve(best.values, best.fidelity, build=False)["model"]
    test_accuracy = 1.0 - best.metrics["test_objective"]
    print(f"\n{len(result.trials)} trials in {seconds:.0f} s (stopped by {result.stopped_by})")
    print(f"best trial {best.trial_id}: validation error {best.loss:.4f} after "
          f"{best.fidelity:g} epochs")
    print(f"  architecture : {describe(architecture)}")
    print(f"  learning rate: {best.values['learning_rate']:.3g}")
    print(f"  weight decay : {best.values['weight_decay']:.3g}")
    print(f"  test accuracy: {test_accuracy:.4f}")
    print(f"results in {root} (jn.load_results(root) reads them back; "
          f"python -m jaxnas report {root} draws them)")


if __name__ == "__main__":
    main()
