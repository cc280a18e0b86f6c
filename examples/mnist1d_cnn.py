"""Searching a 1-D CNN on MNIST-1D with PriorBand.

Run: pip install -e ".[examples]" && python examples/mnist1d_cnn.py

MNIST-1D (Greydanus, 2020) is a 40-sample, 10-class signal dataset that separates models
the way MNIST no longer does: a linear model reaches about 68% accuracy and a small CNN about
94%. The `mnist1d` package generates it from its templates (no download). The space is a
CNN whose depth, channel counts and kernel sizes are searched, with the learning rate and
weight decay; channel counts are masked, so configurations that differ only in them train
in one program (every member of a bucket holds the maximum channel counts). Each block
pools, so a shallower CNN is no prefix of a deeper one with the same shapes: the depth stays
a structure. The default budget takes about 40 s on 2 cores the first time, most of it
compiling the six structures (depth x kernel size), and about 18 s once the compiled
programs are cached.

Options: --max-fidelity-spent (the budget, in epochs), --seed, --root.
"""

import argparse
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np
from mnist1d.data import get_dataset_args, make_dataset

import jaxnas as jn

CLASSES = 10


def cnn_space() -> dict:
    """1-3 conv blocks (channels 8-32 each, ReLU, pooling by 2), then a dense head.

    The kernel size (3 or 5) is one decision shared by every block, so the space has six
    structures (depth x kernel size); the channel counts are masked within each.
    """
    kernel = jn.Categorical(((3,), (5,)), prior=1)

    def conv_block(_: int) -> jn.Operation:
        channels = jn.Integer(8, 32, log=True, prior=16)
        return jn.Operation(jn.nn.Sequential, args=(
            jn.Operation(nn.Conv, args=(channels, kernel)), jn.Operation(nn.relu),
            jn.Operation(jn.nn.MaxPool, kwargs={"window": 2})))

    body = jn.nn.Repeat(conv_block, counts=(1, 2, 3), prior=1)
    head = (jn.Operation(jn.nn.Flatten), jn.Operation(nn.Dense, args=(CLASSES,)))
    return {
        "model": jn.Operation(jn.nn.Sequential, args=(body, *head)),
        "learning_rate": jn.Float(1e-4, 1e-1, log=True, prior=3e-3),
        "weight_decay": jn.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low"),
        "epochs": jn.IntegerFidelity(1, 27),
    }


def mnist1d(seed: int) -> tuple:
    """Train / validation / test splits; signals shaped (N, 40, 1) for a channels-last conv."""
    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)
    x, y = data["x"].astype(np.float32)[..., None], data["y"].astype(np.int32)
    x_test, y_test = data["x_test"].astype(np.float32)[..., None], data["y_test"].astype(np.int32)
    return (x[:3200], y[:3200]), (x[3200:], y[3200:]), (x_test, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-fidelity-spent", type=float, default=27 * 5,
                        help="the budget in epochs (default: 5 full trainings' worth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="run directory (default: a new temp dir)")
    args = parser.parse_args()

    train, validation, test = mnist1d(seed=42)
    task = jn.SupervisedTask(train, validation, test_data=test, batch_size=100)
    root = args.root or tempfile.mkdtemp(prefix="jaxnas-mnist1d-")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; budget "
          f"{args.max_fidelity_spent:g} epochs ...")
    start = time.perf_counter()
    spec = jn.compile(cnn_space())
    result = jn.run(task, spec, optimizer="priorband", root_directory=root,
                    max_fidelity_spent=args.max_fidelity_spent, seed=args.seed)
    best = result.incumbent
    print(f"\n{len(result.trials)} trials in {time.perf_counter() - start:.0f} s; best trial "
          f"{best.trial_id}: validation error {best.loss:.4f}, test accuracy "
          f"{1 - best.metrics['test_objective']:.4f} after {best.fidelity:g} epochs")
    architecture = spec.resolve(best.values, best.fidelity, build=False)["model"]
    print(f"  architecture : {architecture}")
    print(f"  learning rate: {best.values['learning_rate']:.3g}, weight decay: "
          f"{best.values['weight_decay']:.3g}")
    print(f"results in {root}")


if __name__ == "__main__":
    main()
