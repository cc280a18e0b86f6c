"""Grammar-based architecture search on MNIST-1D with regularized evolution.

Run: pip install -e ".[examples]" && python examples/grammar_nas.py

The architectures come from a recursive grammar (hierarchical NAS, as NePS writes its
grammar-like spaces): a `cell` is a convolution (kernel 3 or 5), the identity, two cells in
sequence, or a residual connection around a cell. The network is a stem convolution, one
`cell` derivation, pooling and a dense head, on MNIST-1D's 40-sample signals (the `mnist1d`
package generates them: no download). `jn.compile(space, max_nodes=8)` gives the rule a
pool of 8 instances (`cell#0` ... `cell#7`): a derivation uses as many as it needs,
breadth-first, and one that needs more is never proposed. Regularized evolution mutates
one decision of a tournament's winner at a time (a production, or the learning rate); a
changed production keeps the rest of the derivation tree and grows the subtrees it
newly refers to.

Every derivation is a structure of its own, so each one the search meets compiles its own
training program, and compiling, not training, is what a search of small models costs on
a CPU: about 10 s a derivation here, against under a second of training. Mutating the
learning rate alone reuses a compiled program. The default budget (24 trials) met 13
derivations and took about 2 min 30 s with no compilation cache, data generation
included, pinned to one core of a 2-core CPU; two cores are not much faster, since each
program compiles on one; with its compiled programs cached it takes about 1 min. Its best
derivation reached 0.9125 validation and 0.904 test accuracy after 15 epochs (seed 0).

Options: --max-evaluations (the budget, in trials), --epochs, --seed, --root.
"""

import argparse
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from mnist1d.data import get_dataset_args, make_dataset

import jaxnas as jn

CLASSES = 10
CHANNELS = 16  # fixed: a residual's body must keep its input's shape
MAX_NODES = 8  # rule instances a derivation may use


class WindowConv(nn.Module):
    """A "SAME" 1-D convolution as one matrix product over the stacked shifted windows.

    It computes what `nn.Conv(features, (kernel_size,))` does. Inside a training loop
    XLA's CPU backend runs its own convolution several times slower than this form (jaxnas's
    masked convolutions use it too); on an accelerator either is fine.
    """

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        padded = jnp.pad(x, ((0, 0), (k // 2, (k - 1) // 2), (0, 0)))
        windows = [padded[:, i:i + x.shape[1]] for i in range(k)]
        return nn.Dense(self.features)(jnp.concatenate(windows, axis=-1))


def conv(kernel_size: int) -> jn.Operation:
    """A convolution to `CHANNELS` channels and a ReLU."""
    return jn.Operation(jn.nn.Sequential, args=((
        jn.Operation(WindowConv, args=(CHANNELS, kernel_size)), jn.Operation(nn.relu)),))


def architecture(cell: tuple) -> jn.Operation:
    """A derivation of the grammar (nested tuples) as a tree of jaxnas blocks."""
    production, *children = cell
    if production == "conv":
        return conv(*children)
    if production == "identity":
        return jn.Operation(jn.nn.Identity)
    if production == "sequence":
        return jn.Operation(jn.nn.Sequential, args=(tuple(map(architecture, children)),))
    return jn.Operation(jn.nn.Residual, args=(architecture(*children),))


def network(cell: tuple) -> jn.Operation:
    """Stem convolution, the cell, max pooling by 4, and a dense head."""
    return jn.Operation(jn.nn.Sequential, args=((
        conv(3), architecture(cell), jn.Operation(jn.nn.MaxPool, kwargs={"window": 4}),
        jn.Operation(jn.nn.Flatten), jn.Operation(nn.Dense, args=(CLASSES,))),))


def build_network(cell: tuple) -> nn.Module:
    return jn.nn.build(network(cell))


def grammar_space(epochs: int) -> dict:
    """The cell grammar, the network built from its derivation, and the learning rate.

    `cell` refers to itself through `jn.ByName("cell").resample()`: each reference takes
    a fresh instance of the rule. `model` refers to `cell` without resampling, so it is
    built from the very derivation the `cell` entry holds.

    The grammar derives nested tuples, which `build_network` turns into the model: with
    the productions written as `jn.Operation`s of jaxnas blocks instead, `spec.resolve`
    (and with it `jn.run`) cannot build them in this version of jaxnas.
    """
    cell = jn.ByName("cell")
    return {
        "cell": jn.Categorical((
            ("conv", 3), ("conv", 5), ("identity",),
            ("sequence", cell.resample(), cell.resample()),
            ("residual", cell.resample()),
        )),
        "model": jn.Dynamic(build_network, cell=cell),
        "learning_rate": jn.Float(1e-3, 3e-2, log=True),
        "epochs": jn.IntegerFidelity(1, epochs),  # evolution trains every trial to the top
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
    parser.add_argument("--max-evaluations", type=int, default=24,
                        help="the budget in trials (default: 24)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per trial (default: 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="run directory (default: a new temp dir)")
    args = parser.parse_args()

    start = time.perf_counter()
    train, validation, test = mnist1d(seed=42)
    task = jn.SupervisedTask(train, validation, test_data=test, batch_size=100)
    spec = jn.compile(grammar_space(args.epochs), max_nodes=MAX_NODES)
    root = args.root or tempfile.mkdtemp(prefix="jaxnas-grammar-")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {spec}; budget "
          f"{args.max_evaluations} trials of {args.epochs} epochs ...")
    result = jn.run(task, spec, optimizer="regularized_evolution", root_directory=root,
                    max_evaluations=args.max_evaluations, seed=args.seed,
                    optimizer_kwargs={"population_size": 8, "sample_size": 3,
                                      "batch_size": 4})
    seconds = time.perf_counter() - start

    best = result.incumbent
    derivations = len({spec.bucket(t.config) for t in result.trials})
    print(f"\n{len(result.trials)} trials of {derivations} derivations in {seconds:.0f} s "
          f"(stopped by {result.stopped_by})")
    print(f"best trial {best.trial_id}: validation accuracy {1 - best.loss:.4f}, test "
          f"accuracy {1 - best.metrics['test_objective']:.4f} after {best.fidelity:g} epochs")
    print(f"  derivation   : {best.config['cell']}")
    print(f"  architecture : {network(best.config['cell'])}")
    print(f"  learning rate: {best.values['learning_rate']:.3g}")
    print(f"results in {root}")


if __name__ == "__main__":
    main()
