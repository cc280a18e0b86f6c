"""A NePS search moved to jaxnas: the same space, the same training loop, its checkpoints.

Run: pip install -e ".[examples]" && python examples/from_neps.py

The NePS version of this script (NePS 0.17) reads:

    class DigitsSpace(neps.PipelineSpace):
        learning_rate = neps.Float(1e-3, 1.0, log=True, prior=0.1, prior_confidence="medium")
        l2 = neps.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low")
        batch_size = neps.Categorical((16, 32, 64, 128), prior=2)
        epochs = neps.IntegerFidelity(1, 27)

    neps.run(evaluate_pipeline, DigitsSpace(), root_directory="results/digits",
             fidelities_to_spend=540, optimizer="priorband")

Moving it takes three changes: `neps.` becomes `jn.` in the space (`PipelineSpace` is
`jn.Space`), `neps.run` becomes `jn.run` (the budget `fidelities_to_spend` is
`max_fidelity_spent`), and that is all: `evaluate_pipeline` below is NePS's, unchanged. It
trains a softmax classifier on scikit-learn's digits with numpy, saves its weights in
`pipeline_directory`, and a promoted configuration (PriorBand trains the best ones for more
epochs) continues from the weights in `previous_pipeline_directory`, as it does under NePS.
It returns NePS's `objective_to_minimize`, which jaxnas reads as the loss.

Options: --max-fidelity-spent (the budget in epochs), --seed, --root.
"""

import argparse
import tempfile
import time

import numpy as np
from sklearn.datasets import load_digits

import jaxnas as jn


class DigitsSpace(jn.Space):
    learning_rate = jn.Float(1e-3, 1.0, log=True, prior=0.1, prior_confidence="medium")
    l2 = jn.Float(1e-6, 1e-2, log=True, prior=1e-4, prior_confidence="low")
    batch_size = jn.Categorical((16, 32, 64, 128), prior=2)
    epochs = jn.IntegerFidelity(1, 27)


def _digits() -> tuple:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order] / 16.0, y[order]
    return (x[:1300], y[:1300]), (x[1300:], y[1300:])


TRAIN, VALIDATION = _digits()


def evaluate_pipeline(learning_rate, l2, batch_size, epochs, pipeline_directory,
                      previous_pipeline_directory=None):
    """NePS's training loop: softmax regression by minibatch SGD, checkpointed per trial."""
    (x, y), (x_val, y_val) = TRAIN, VALIDATION
    weights, done = np.zeros((x.shape[1], 10)), 0
    if previous_pipeline_directory is not None:  # a promotion: continue, do not retrain
        saved = np.load(previous_pipeline_directory / "checkpoint.npz")
        weights, done = saved["weights"], int(saved["epochs"])
    rng = np.random.default_rng(done)
    for _ in range(done, epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            rows = order[start:start + batch_size]
            logits = x[rows] @ weights
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(rows)), y[rows]] -= 1.0
            weights -= learning_rate * (x[rows].T @ p / len(rows) + l2 * weights)
    np.savez(pipeline_directory / "checkpoint.npz", weights=weights, epochs=epochs)
    error = float(np.mean(np.argmax(x_val @ weights, 1) != y_val))
    return {"objective_to_minimize": error, "epochs_trained": epochs - done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-fidelity-spent", type=float, default=540)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="jaxnas-from-neps-")
    start = time.perf_counter()
    result = jn.run(evaluate_pipeline, DigitsSpace(), root_directory=root,
                    max_fidelity_spent=args.max_fidelity_spent, optimizer="priorband",
                    seed=args.seed)
    trials = jn.load_results(root)
    continued = [t for t in trials if t["parent_id"] >= 0]
    trained = sum(t["extra"]["epochs_trained"] for t in trials if t["status"] == "success")
    print(f"{len(trials)} trials in {time.perf_counter() - start:.0f} s; {len(continued)} "
          f"continued from their parent's checkpoint; {trained} epochs trained in all")
    best = result.incumbent
    print(f"best trial {best.trial_id}: validation error {best.loss:.4f} after "
          f"{best.fidelity:g} epochs; {best.config}")
    print(f"results in {root} (python -m jaxnas status {root})")


if __name__ == "__main__":
    main()
