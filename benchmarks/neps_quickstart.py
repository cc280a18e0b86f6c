"""The quickstart's search written with NePS 0.17 and PyTorch: the peer jaxnas is timed against.

`examples/quickstart.py` searches a digits MLP with jaxnas; this script runs the same search
the way a NePS user would write it, so `benchmarks/time_to_result.py` can time the two
side by side:

    * the space: depth 1-3 (a categorical, prior 2 layers), one width per layer (16-256, log,
      prior 128, medium), learning rate (1e-4..1e-1, log, prior 3e-3, medium), weight
      decay (1e-6..1e-2, log, prior 1e-4, low), epochs 1..27 as the fidelity. A layer's
      width is sampled at every depth and used only where the layer exists; widths are
      log floats rounded to integers, because NePS 0.17's log `Integer` has only 4 values
      here (see `QuickstartSpace`; `--integer-widths` uses it anyway);
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
      fidelity (9), so fewer trials fit in the same number;
    * the incumbent is chosen as jaxnas's `result.incumbent` is: the lowest validation error
      among the trials at the highest fidelity reached.

Run from the repository root:
    python benchmarks/neps_quickstart.py                         # 1,080 epochs, seed 0
    python benchmarks/neps_quickstart.py --max-fidelity-spent 100 --seed 1

It prints the trials, the search's wall time and the incumbent in the quickstart's format,
and writes `benchmarks/results/neps_quickstart.json` (`--out`). NePS takes its randomness
from the global `random`, NumPy and torch generators, which `--seed` seeds; the training of
each configuration has its own torch generator, seeded from `--seed` and the configuration's
id. It imports neither JAX nor jaxnas, so its process time is NePS's and PyTorch's alone.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecation noise from NePS's dependencies
    import neps

CLASSES = 10
INPUTS = 64
BATCH_SIZE = 64
CHECKPOINT = "checkpoint.pt"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "neps_quickstart.json"


class QuickstartSpace(neps.PipelineSpace):
    """The quickstart's `mlp_space()` in NePS's class style.

    The widths are log-scaled floats, rounded when the model is built: NePS 0.17 gives a
    log-scaled `Integer` the cardinality `round(ln(upper) - ln(lower)) + 1` (its
    `Domain.integer`), so `Integer(16, 256, log=True)` only ever takes 4 values (16, 40,
    102, 256) and its prior 128 becomes 102. `--integer-widths` uses that as it is
    (`IntegerWidthsSpace`).
    """

    depth = neps.Categorical((1, 2, 3), prior=1, prior_confidence="medium")
    width_1 = neps.Float(16, 256, log=True, prior=128, prior_confidence="medium")
    width_2 = neps.Float(16, 256, log=True, prior=128, prior_confidence="medium")
    width_3 = neps.Float(16, 256, log=True, prior=128, prior_confidence="medium")
    learning_rate = neps.Float(1e-4, 1e-1, log=True, prior=3e-3, prior_confidence="medium")
    weight_decay = neps.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low")
    epochs = neps.IntegerFidelity(1, 27)


class IntegerWidthsSpace(neps.PipelineSpace):
    """As `QuickstartSpace`, with the widths as NePS `Integer`s (4 values each, see above)."""

    depth = neps.Categorical((1, 2, 3), prior=1, prior_confidence="medium")
    width_1 = neps.Integer(16, 256, log=True, prior=128, prior_confidence="medium")
    width_2 = neps.Integer(16, 256, log=True, prior=128, prior_confidence="medium")
    width_3 = neps.Integer(16, 256, log=True, prior=128, prior_confidence="medium")
    learning_rate = neps.Float(1e-4, 1e-1, log=True, prior=3e-3, prior_confidence="medium")
    weight_decay = neps.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low")
    epochs = neps.IntegerFidelity(1, 27)


def digits(seed: int) -> tuple:
    """The quickstart's train / validation / test splits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)
    return (x[:1100], y[:1100]), (x[1100:1450], y[1100:1450]), (x[1450:], y[1450:])


def mlp(widths: list[int], generator: torch.Generator) -> nn.Sequential:
    """Dense-ReLU layers of `widths`, then 10 logits; Flax's `nn.Dense` initialisation."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip([INPUTS, *widths], [*widths, CLASSES], strict=True):
        linear = nn.Linear(fan_in, fan_out)
        # LeCun normal: a normal truncated at 2 sigma, rescaled to variance 1 / fan_in.
        std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
        with torch.no_grad():
            nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std,
                                  generator=generator)
            nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def error_rate(model: nn.Module, data: tuple) -> float:
    with torch.no_grad():
        return (model(data[0]).argmax(-1) != data[1]).float().mean().item()


def train_epochs(model, optimizer, shuffler: torch.Generator, data: tuple, epochs: int):
    """`epochs` passes over `data`: a fresh shuffle each, the last partial batch dropped."""
    x, y = data
    steps = len(x) // BATCH_SIZE
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=shuffler).to(x.device)
        for step in range(steps):
            rows = order[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]
            loss = loss_fn(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


def make_evaluate(data: dict, seed: int, records: list):
    """NePS's `evaluate_pipeline`: trains one configuration to `epochs`, from its parent's
    checkpoint if it was promoted, and appends what it did to `records`."""

    def evaluate_pipeline(pipeline_directory: Path, previous_pipeline_directory: Path | None,
                          pipeline_id: str, depth: int, width_1: float, width_2: float,
                          width_3: float, learning_rate: float, weight_decay: float,
                          epochs: int) -> dict:
        start = time.perf_counter()
        widths = [round(w) for w in (width_1, width_2, width_3)[:int(depth)]]
        # One generator per configuration (not per rung): the id without its rung.
        config_id = pipeline_id.rsplit("_rung_", 1)[0]
        init = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{config_id}".encode()))
        model = mlp(widths, init).to(data["device"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                      weight_decay=weight_decay, betas=(0.9, 0.999),
                                      eps=1e-8)
        shuffler = torch.Generator().manual_seed(init.initial_seed() + 1)
        done = 0
        parent = (Path(previous_pipeline_directory) / CHECKPOINT
                  if previous_pipeline_directory is not None else None)
        if parent is not None and parent.exists():
            state = torch.load(parent, map_location=data["device"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            shuffler.set_state(state["shuffler"])
            done = state["epochs"]
        added = max(int(epochs) - done, 0)
        train_epochs(model, optimizer, shuffler, data["train"], added)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "shuffler": shuffler.get_state(), "epochs": done + added},
                   Path(pipeline_directory) / CHECKPOINT)
        validation_error = error_rate(model, data["validation"])
        test_accuracy = 1.0 - error_rate(model, data["test"])
        records.append({"trial": pipeline_id, "fidelity": int(epochs), "epochs_trained": added,
                        "continued": done > 0, "validation_error": validation_error,
                        "test_accuracy": test_accuracy, "widths": widths,
                        "learning_rate": float(learning_rate),
                        "weight_decay": float(weight_decay),
                        "seconds": time.perf_counter() - start})
        return {"objective_to_minimize": validation_error, "cost": float(added),
                "info_dict": {"test_accuracy": test_accuracy, "epochs_trained": added}}

    return evaluate_pipeline


def incumbent(records: list) -> dict:
    """jaxnas's `result.incumbent` rule: the lowest loss at the highest fidelity reached."""
    top = max(r["fidelity"] for r in records)
    return min((r for r in records if r["fidelity"] == top),
               key=lambda r: r["validation_error"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-fidelity-spent", type=float, default=27 * 40,
                        help="the budget in epochs (default: 1080, as the quickstart's)")
    parser.add_argument("--budget-counts", choices=("trained", "fidelity"), default="trained",
                        help="'trained': epochs actually trained, as jaxnas counts them "
                             "(default); 'fidelity': NePS's total_fidelities_to_spend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--integer-widths", action="store_true",
                        help="widths as NePS Integers (4 values each in NePS 0.17) instead "
                             "of rounded log floats")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda "
                        "or auto (cuda where available)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch's intra-op threads (default 2, the CI machine's cores)")
    parser.add_argument("--root", default=None,
                        help="NePS's root directory, which must not exist yet (default: a "
                             "new temp dir)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    logging.getLogger("neps").setLevel(logging.WARNING)
    random.seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - NePS samples from the global generators
    torch.manual_seed(args.seed)

    train, validation, test = digits(seed=0)
    data = {"device": device, **{name: (torch.from_numpy(x).to(device),
                                        torch.from_numpy(y).to(device))
                                 for name, (x, y) in (("train", train),
                                                      ("validation", validation),
                                                      ("test", test))}}
    # NePS takes an existing, empty root for a run to continue and fails: a fresh subfolder.
    root = Path(args.root or Path(tempfile.mkdtemp(prefix="neps-quickstart-")) / "run")
    budget = ({"total_cost_to_spend": args.max_fidelity_spent}
              if args.budget_counts == "trained"
              else {"total_fidelities_to_spend": args.max_fidelity_spent})
    print(f"neps {importlib.metadata.version('neural-pipeline-search')}, torch "
          f"{torch.__version__} on {device} ({torch.get_num_threads()} threads); searching "
          f"with PriorBand, budget {args.max_fidelity_spent:g} epochs ...", flush=True)
    records: list = []
    start = time.perf_counter()
    space = IntegerWidthsSpace() if args.integer_widths else QuickstartSpace()
    neps.run(make_evaluate(data, args.seed, records), space, root_directory=root,
             optimizer="priorband", **budget)
    seconds = time.perf_counter() - start

    best = incumbent(records)
    trained = sum(r["epochs_trained"] for r in records)
    inside = sum(r["seconds"] for r in records)
    print(f"\n{len(records)} trials in {seconds:.1f} s ({trained} epochs trained; "
          f"{inside:.1f} s inside evaluate_pipeline)")
    print(f"best trial {best['trial']}: validation error {best['validation_error']:.4f} "
          f"after {best['fidelity']} epochs")
    print(f"  architecture : {' -> '.join(map(str, [INPUTS, *best['widths'], CLASSES]))}")
    print(f"  learning rate: {best['learning_rate']:.3g}")
    print(f"  weight decay : {best['weight_decay']:.3g}")
    print(f"  test accuracy: {best['test_accuracy']:.4f}")
    print(f"results in {root}")

    results = {
        "benchmark": "neps_quickstart",
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "device": device,
                    "neural-pipeline-search":
                        importlib.metadata.version("neural-pipeline-search")},
        "settings": {"max_fidelity_spent": args.max_fidelity_spent,
                     "budget_counts": args.budget_counts, "seed": args.seed,
                     "integer_widths": args.integer_widths,
                     "batch_size": BATCH_SIZE, "optimizer": "priorband"},
        "trials": len(records), "search_s": seconds, "epochs_trained": trained,
        "evaluate_pipeline_s": inside,
        "incumbent": best,
        "best_any_fidelity": min(records, key=lambda r: r["validation_error"]),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
