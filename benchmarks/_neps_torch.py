"""What the NePS + PyTorch sides of `time_to_result.py` share: training, checkpoints, the run.

A NePS script (`neps_quickstart.py`, `neps_mnist1d.py`) gives its space, a function that
builds a torch model from a configuration, its data and batch size; `search` does the rest
as a NePS user would: seeds the global generators NePS samples from, runs `neps.run` with
PriorBand, trains each configuration with AdamW from the checkpoint its lower rung left in
`previous_pipeline_directory`, and prints and writes the incumbent.

It imports neither JAX nor jaxnas (`_common` does), so the NePS process's wall time is
NePS's and PyTorch's alone.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecation noise from NePS's dependencies
    import neps

CHECKPOINT = "checkpoint.pt"
RESULTS = Path(__file__).resolve().parent / "results"

# build(config, generator) -> (model, architecture): the model at Flax's initialisation and
# a one-line description of it.
Build = Callable[[dict, torch.Generator], tuple[nn.Module, str]]


def pipeline_space(name: str, entries: dict) -> neps.PipelineSpace:
    """A NePS `PipelineSpace` of `entries` plus the examples' shared hyperparameters: the
    learning rate and weight decay with the jaxnas examples' priors, and epochs 1-27 as the
    fidelity. Fresh parameter objects on every call."""
    shared = {
        "learning_rate": neps.Float(1e-4, 1e-1, log=True, prior=3e-3, prior_confidence="medium"),
        "weight_decay": neps.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low"),
        "epochs": neps.IntegerFidelity(1, 27),
    }
    return type(name, (neps.PipelineSpace,), {**entries, **shared})()


def lecun_normal_(weight: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    """Flax's default kernel initialiser: a normal truncated at 2 sigma, variance 1/fan_in."""
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    with torch.no_grad():
        nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std, generator=generator)


def flax_init_(layer: nn.Linear | nn.Conv1d, generator: torch.Generator) -> None:
    """LeCun normal kernel, zero bias (Flax's `nn.Dense` / `nn.Conv`)."""
    lecun_normal_(layer.weight, layer.weight[0].numel(), generator)
    with torch.no_grad():
        nn.init.zeros_(layer.bias)


def error_rate(model: nn.Module, data: tuple) -> float:
    with torch.no_grad():
        return (model(data[0]).argmax(-1) != data[1]).float().mean().item()


def train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer,
                 shuffler: torch.Generator, data: tuple, epochs: int, batch_size: int) -> None:
    """`epochs` passes over `data`: a fresh shuffle each, the last partial batch dropped
    (as `jn.SupervisedTask` trains)."""
    x, y = data
    steps = len(x) // batch_size
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=shuffler).to(x.device)
        for step in range(steps):
            rows = order[step * batch_size:(step + 1) * batch_size]
            loss = loss_fn(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


def make_evaluate(build: Build, data: dict, *, seed: int, batch_size: int, records: list):
    """NePS's `evaluate_pipeline`: trains one configuration to `epochs`, continuing from its
    parent's checkpoint if it was promoted, and appends what it did to `records`.

    The optimiser is AdamW with optax's defaults, as jaxnas's `default_optimizer` (betas
    0.9 / 0.999, eps 1e-8, decoupled weight decay). A configuration (all its rungs) has one
    torch generator for its initialisation and one for its shuffles, seeded from `seed` and
    its id; the shuffle generator's state is checkpointed, so training to 3 epochs and
    then to 9 equals training to 9.
    """

    def evaluate_pipeline(pipeline_directory: Path, previous_pipeline_directory: Path | None,
                          pipeline_id: str, epochs: int, learning_rate: float,
                          weight_decay: float, **config) -> dict:
        start = time.perf_counter()
        config_id = pipeline_id.rsplit("_rung_", 1)[0]  # the same for every rung
        init = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{config_id}".encode()))
        model, architecture = build(config, init)
        model = model.to(data["device"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                      weight_decay=weight_decay, betas=(0.9, 0.999),
                                      eps=1e-8)
        shuffler = torch.Generator().manual_seed(init.initial_seed() + 1)
        done = 0
        if previous_pipeline_directory is not None:
            parent = Path(previous_pipeline_directory) / CHECKPOINT
            state = torch.load(parent, map_location=data["device"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            shuffler.set_state(state["shuffler"])
            done = state["epochs"]
        added = max(int(epochs) - done, 0)
        train_epochs(model, optimizer, shuffler, data["train"], added, batch_size)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "shuffler": shuffler.get_state(), "epochs": done + added},
                   Path(pipeline_directory) / CHECKPOINT)
        validation_error = error_rate(model, data["validation"])
        test_accuracy = 1.0 - error_rate(model, data["test"])
        records.append({"trial": pipeline_id, "fidelity": int(epochs), "epochs_trained": added,
                        "continued": done > 0, "validation_error": validation_error,
                        "test_accuracy": test_accuracy, "architecture": architecture,
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


def parser(description: str, *, default_budget: float, name: str) -> argparse.ArgumentParser:
    """The options every NePS script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--max-fidelity-spent", type=float, default=default_budget,
                        help=f"the budget in epochs (default {default_budget:g}, as the "
                             f"jaxnas example's)")
    parser.add_argument("--budget-counts", choices=("trained", "fidelity"), default="trained",
                        help="'trained': epochs actually trained, as jaxnas counts them "
                             "(default); 'fidelity': NePS's total_fidelities_to_spend, "
                             "which charges a promotion its whole fidelity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, or auto (cuda if available)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch's intra-op threads (default 2, the CI machine's cores)")
    parser.add_argument("--root", default=None,
                        help="NePS's root directory, which must not exist yet (default: a "
                             "new temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / f"{name}.json")
    return parser


def search(args: argparse.Namespace, space: neps.PipelineSpace, build: Build, splits: tuple,
           *, batch_size: int, name: str, settings: dict | None = None) -> dict:
    """Runs NePS's PriorBand on `space`, prints the incumbent, writes the JSON.

    Args:
        args: from `parser(...)`.
        space: the NePS space; its fidelity is `epochs`, and it has `learning_rate` and
            `weight_decay`.
        build: config -> (torch model, description).
        splits: train, validation and test `(x, y)` NumPy arrays.
        batch_size: the minibatch size.
        name: the benchmark's name, for the JSON and the temp folder.
        settings: extra settings to record.
    """
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    logging.getLogger("neps").setLevel(logging.WARNING)
    random.seed(args.seed)  # NePS samples from the global generators
    np.random.seed(args.seed)  # noqa: NPY002
    torch.manual_seed(args.seed)
    data = {"device": device}
    for split, (x, y) in zip(("train", "validation", "test"), splits, strict=True):
        data[split] = (torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device))
    # An existing, empty root reads as a run to continue, and NePS fails: a fresh subfolder.
    root = Path(args.root or Path(tempfile.mkdtemp(prefix=f"{name}-")) / "run")
    budget = ({"total_cost_to_spend": args.max_fidelity_spent}
              if args.budget_counts == "trained"
              else {"total_fidelities_to_spend": args.max_fidelity_spent})
    version = importlib.metadata.version("neural-pipeline-search")
    print(f"neps {version}, torch {torch.__version__} on {device} ({torch.get_num_threads()} "
          f"threads); searching with PriorBand, budget {args.max_fidelity_spent:g} "
          f"epochs ...", flush=True)
    records: list = []
    evaluate = make_evaluate(build, data, seed=args.seed, batch_size=batch_size,
                             records=records)
    start = time.perf_counter()
    neps.run(evaluate, space, root_directory=root, optimizer="priorband", **budget)
    seconds = time.perf_counter() - start

    best = incumbent(records)
    trained = sum(r["epochs_trained"] for r in records)
    inside = sum(r["seconds"] for r in records)
    print(f"\n{len(records)} trials in {seconds:.1f} s ({trained} epochs trained; "
          f"{inside:.1f} s inside evaluate_pipeline)")
    print(f"best trial {best['trial']}: validation error {best['validation_error']:.4f} "
          f"after {best['fidelity']} epochs")
    print(f"  architecture : {best['architecture']}")
    print(f"  learning rate: {best['learning_rate']:.3g}")
    print(f"  weight decay : {best['weight_decay']:.3g}")
    print(f"  test accuracy: {best['test_accuracy']:.4f}")
    print(f"results in {root}")
    results = {
        "benchmark": name,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "device": device, "neural-pipeline-search": version},
        "settings": {"max_fidelity_spent": args.max_fidelity_spent,
                     "budget_counts": args.budget_counts, "seed": args.seed,
                     "batch_size": batch_size, "optimizer": "priorband", **(settings or {})},
        "trials": len(records), "search_s": seconds, "epochs_trained": trained,
        "evaluate_pipeline_s": inside, "incumbent": best,
        "best_any_fidelity": min(records, key=lambda r: r["validation_error"]),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results
