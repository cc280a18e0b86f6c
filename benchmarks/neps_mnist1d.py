"""`examples/mnist1d_cnn.py`'s search written with NePS 0.17 and PyTorch, for `time_to_result.py`.

The same CNN search as the jaxnas example, the way a NePS user would write it:

    * the space: 1-3 conv blocks (depth a categorical, prior 2), each with its channel
      count (8-32, log, prior 16, medium), one kernel size shared by every block (3 or 5,
      prior 5), ReLU and max pooling by 2, then a dense head to 10 classes; learning rate
      (1e-4..1e-1, log, prior 3e-3, medium), weight decay (1e-6..1e-2, log, prior 1e-4,
      low), epochs 1..27 as the fidelity. Channel counts are log floats rounded to
      integers: NePS 0.17's log `Integer(8, 32, log=True)` has only 2 values, 8 and 32 (see
      `neps_quickstart.quickstart_space`);
    * NePS's PriorBand with its defaults; MNIST-1D generated as the example does (seed 42:
      3,200 training, 800 validation and 1,000 test signals); minibatches of 100; AdamW
      as jaxnas's `default_optimizer`; Flax's initialisation ('SAME' convolutions, LeCun
      normal kernels, zero biases); promotions continue from their parent's checkpoint;
      the budget counts epochs actually trained (`_neps_torch.py` has the details).

Run from the repository root:
    python benchmarks/neps_mnist1d.py                        # 135 epochs, seed 0
    python benchmarks/neps_mnist1d.py --max-fidelity-spent 30 --seed 1

Prints the trials, the search's wall time and the incumbent, and writes
`benchmarks/results/neps_mnist1d.json` (`--out`).
"""

from __future__ import annotations

import numpy as np
import torch
from mnist1d.data import get_dataset_args, make_dataset
from torch import nn

from _neps_torch import flax_init_, neps, parser, pipeline_space, search

CLASSES = 10
LENGTH = 40
BATCH_SIZE = 100


def mnist1d_space() -> neps.PipelineSpace:
    """The example's `cnn_space()` in NePS (channels as rounded log floats, see
    `neps_quickstart.quickstart_space`)."""
    channels = {f"channels_{i}": neps.Float(8, 32, log=True, prior=16, prior_confidence="medium")
                for i in (1, 2, 3)}
    return pipeline_space("Mnist1dSpace", {
        "depth": neps.Categorical((1, 2, 3), prior=1, prior_confidence="medium"),
        "kernel_size": neps.Categorical((3, 5), prior=1, prior_confidence="medium"),
        **channels})


def mnist1d(seed: int) -> tuple:
    """The example's splits; signals shaped (N, 1, 40), channels first for `nn.Conv1d`."""
    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)
    x, y = data["x"].astype(np.float32)[:, None, :], data["y"].astype(np.int64)
    x_test = data["x_test"].astype(np.float32)[:, None, :]
    y_test = data["y_test"].astype(np.int64)
    return (x[:3200], y[:3200]), (x[3200:], y[3200:]), (x_test, y_test)


def cnn(config: dict, generator: torch.Generator) -> tuple[nn.Module, str]:
    """Conv-ReLU-MaxPool blocks of the config's channels (the first `depth`), then a head."""
    channels = [round(config[f"channels_{i}"]) for i in range(1, int(config["depth"]) + 1)]
    kernel = int(config["kernel_size"])
    layers: list[nn.Module] = []
    length = LENGTH
    for fan_in, fan_out in zip([1, *channels[:-1]], channels, strict=True):
        conv = nn.Conv1d(fan_in, fan_out, kernel, padding="same")
        flax_init_(conv, generator)
        layers += [conv, nn.ReLU(), nn.MaxPool1d(2)]
        length //= 2
    head = nn.Linear(channels[-1] * length, CLASSES)
    flax_init_(head, generator)
    description = f"conv {'-'.join(map(str, channels))} (kernel {kernel}) -> dense {CLASSES}"
    return nn.Sequential(*layers, nn.Flatten(), head), description


def main() -> None:
    args = parser(__doc__.split("\n")[0], default_budget=27 * 5, name="neps_mnist1d")
    search(args.parse_args(), mnist1d_space(), cnn, mnist1d(seed=42), batch_size=BATCH_SIZE,
           name="neps_mnist1d")


if __name__ == "__main__":
    main()
