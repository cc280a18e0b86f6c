"""The quickstart's search in NePS 0.17 and PyTorch: the peer jaxnas is timed against.

`examples/quickstart.py` searches a digits MLP with jaxnas; this script runs the same search
the way a NePS user would write it, so `benchmarks/time_to_result.py` can time the two
side by side:

    * the space: depth 1-3 (a categorical, prior 2 layers), one width per layer (16-256, log,
      prior 128, medium), learning rate (1e-4..1e-1, log, prior 3e-3, medium), weight
      decay (1e-6..1e-2, log, prior 1e-4, low), epochs 1..27 as the fidelity. A layer's
      width is sampled at every depth and used only where the layer exists; widths are
      log floats rounded to integers, because NePS 0.17's log `Integer` has only 4 values
      here (see `quickstart_space`; `--integer-widths` uses it anyway);
    * NePS's PriorBand (`optimizer="priorband"`, its defaults: eta 3, Hyperband brackets);
    * the quickstart's data (the same split of scikit-learn's digits, seed 0) and training:
      AdamW (optax's defaults, as jaxnas's `default_optimizer`: betas 0.9 / 0.999, eps 1e-8,
      decoupled weight decay), minibatches of 64 from a fresh shuffle every epoch, the last
      partial one dropped, cross-entropy, Flax's initialisation (LeCun normal kernels, zero
      biases); the objective is the validation error, and the test accuracy is recorded;
    * a promoted configuration continues from the checkpoint its lower rung left in
      `previous_pipeline_directory` (weights, optimiser state, the shuffle's generator), so
      training to 3 epochs and then to 9 equals training to 9, as in jaxnas;
    * the budget counts epochs actually trained, as the quickstart's `--max-fidelity-spent`
      does (a promotion from 3 to 9 epochs costs 6): each trial reports its added epochs as
      its cost and the run stops at `total_cost_to_spend`. `--budget-counts fidelity` uses
      NePS's own `total_fidelities_to_spend` instead, which charges a promotion its whole
      fidelity (9), so fewer trials fit in the same number (seed 0, 1,080: 190 trials and
      900 epochs trained, against 233 trials and 1,083 epochs);
    * the incumbent is chosen as jaxnas's `result.incumbent` is: the lowest validation error
      among the trials at the highest fidelity reached.

Run from the repository root:
    python benchmarks/neps_quickstart.py                         # 1,080 epochs, seed 0
    python benchmarks/neps_quickstart.py --max-fidelity-spent 100 --seed 1

It prints the trials, the search's wall time and the incumbent in the quickstart's format,
and writes `benchmarks/results/neps_quickstart.json` (`--out`). NePS takes its randomness
from the global `random`, NumPy and torch generators, which `--seed` seeds; the training of
each configuration has its own torch generators, seeded from `--seed` and the
configuration's id. It imports neither JAX nor jaxnas, so its process time is NePS's and
PyTorch's alone. The training loop, checkpoints and reporting are `_neps_torch.py`'s.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from _neps_torch import flax_init_, neps, parser, pipeline_space, search

CLASSES = 10
INPUTS = 64
BATCH_SIZE = 64


def quickstart_space(*, integer_widths: bool) -> neps.PipelineSpace:
    """The quickstart's `mlp_space()` in NePS.

    The widths are log-scaled floats, rounded when the model is built: NePS 0.17 gives a
    log-scaled `Integer` the cardinality `round(ln(upper) - ln(lower)) + 1` (its
    `Domain.integer`), so `Integer(16, 256, log=True)` only ever takes 4 values (16, 40,
    102, 256) and its prior 128 becomes 102. `integer_widths=True` (`--integer-widths`)
    uses that as it is.
    """
    width = neps.Integer if integer_widths else neps.Float
    widths = {f"width_{i}": width(16, 256, log=True, prior=128, prior_confidence="medium")
              for i in (1, 2, 3)}
    depth = neps.Categorical((1, 2, 3), prior=1, prior_confidence="medium")
    return pipeline_space("QuickstartSpace", {"depth": depth, **widths})


def digits(seed: int) -> tuple:
    """The quickstart's train / validation / test splits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))  # a fixed split
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)
    return (x[:1100], y[:1100]), (x[1100:1450], y[1100:1450]), (x[1450:], y[1450:])


def mlp(config: dict, generator: torch.Generator) -> tuple[nn.Module, str]:
    """Dense-ReLU layers of the config's widths (the first `depth`), then 10 logits."""
    widths = [round(config[f"width_{i}"]) for i in range(1, int(config["depth"]) + 1)]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip([INPUTS, *widths], [*widths, CLASSES], strict=True):
        linear = nn.Linear(fan_in, fan_out)
        flax_init_(linear, generator)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1]), " -> ".join(map(str, [INPUTS, *widths, CLASSES]))


def main() -> None:
    options = parser(__doc__.split("\n")[0], default_budget=27 * 40, name="neps_quickstart")
    options.add_argument("--integer-widths", action="store_true",
                         help="widths as NePS Integers (4 values each in NePS 0.17) "
                              "instead of rounded log floats")
    args = options.parse_args()
    space = quickstart_space(integer_widths=args.integer_widths)
    search(args, space, mlp, digits(seed=0), batch_size=BATCH_SIZE, name="neps_quickstart",
           settings={"integer_widths": args.integer_widths})


if __name__ == "__main__":
    main()
