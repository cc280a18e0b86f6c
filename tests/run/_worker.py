"""A `jn.run` worker process for the persistence tests: `python -m tests.run._worker ROOT ...`.

The objective is a plain callable whose loss depends only on the config and fidelity, so
that a run's trial table is a function of its seed alone; it sleeps a little so that a
test can kill the process in the middle of things.
"""

import argparse
import time

import jaxnas as jn


def space():
    return {"x": jn.Float(-2.0, 2.0, prior=0.5), "y": jn.Float(-2.0, 2.0, prior=-0.5),
            "kind": jn.Categorical(("a", "b", "c")), "epochs": jn.IntegerFidelity(1, 27)}


def objective(sleep: float):
    def evaluate(x, y, kind, epochs):
        time.sleep(sleep)
        offset = {"a": 0.0, "b": 0.3, "c": 0.6}[kind]
        return (x - 0.5) ** 2 + (y + 0.5) ** 2 + offset + 1.0 / epochs
    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--evaluations", type=int, default=120)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--optimizer", default="priorband")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--heartbeat-timeout", type=float, default=300.0)
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    kwargs = {} if args.batch_size is None else {"batch_size": args.batch_size}
    jn.run(objective(args.sleep), space(), optimizer=args.optimizer, optimizer_kwargs=kwargs,
           root_directory=args.root,
           max_evaluations=args.evaluations, seed=args.seed,
           checkpoint_every=args.checkpoint_every, progress=False,
           heartbeat_timeout=args.heartbeat_timeout, storage=args.storage)


if __name__ == "__main__":
    main()
