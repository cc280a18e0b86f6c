"""What a member pays for training inside a masked bucket, against plain Flax at its widths.

What is compared, one MLP member at a time on one CPU device, for several layer widths:
    (a) jaxnas: the quickstart's bucket (`examples/quickstart.py`'s space: 1-3 hidden ReLU
        layers of 16-256 units, AdamW with the config's learning rate and weight decay;
        its `jn.SupervisedTask` on the digits, minibatches of 64), trained by
        `jaxnas.train.BucketTrainer` as `jn.run` trains it on a CPU: every member in the
        bucket's one program, built at the 256-wide maxima, its widths masked, its
        products at their width tiers, a member that fits half the widths on the narrow
        model (`docs/architecture.md`, "What a run compiles");
    (b) plain Flax at the member's exact widths: `nn.Dense` layers, the same data, shuffle
        size, minibatches, AdamW (`optax.inject_hyperparams(optax.adamw)`) and validation
        error after each epoch, jitted as one program per architecture.
The figure is the time of one optimiser step: each side trains the member for E and for
1 epochs, and (time(E) - time(1)) / ((E - 1) x steps per epoch) leaves out what a call
pays once (initialisation, the final evaluation, moving states). Each call is timed
`repetitions` times after a warm-up call, and the fastest kept (the machine's noise only
adds). Seeds: the member's key is `jax.random.key(0)`; the widths are set, not drawn.

Run it from the repository root:
    python benchmarks/padded_training.py            # about 2 min on 2 CPU cores
    python benchmarks/padded_training.py --quick    # two members, 5 epochs

It prints a markdown table and writes JSON (default `benchmarks/results/padded_training.json`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnas as jn
from _common import machine_info, write_results
from jaxnas.train import BucketTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import quickstart  # noqa: E402 - the example's space and data

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "padded_training.json"
BATCH_SIZE = 64
FULL = {"members": ((128, 128), (64, 64, 256), (33, 42, 129), (200, 60, 150),
                    (256, 256, 256), (64,)), "epochs": 27, "repetitions": 3}
QUICK = {"members": ((128, 128), (64, 64, 256)), "epochs": 5, "repetitions": 2}


def width_path(layer: int) -> str:
    """The config path of hidden layer `layer`'s width in the quickstart's space."""
    return f"model.args[0].choices[{layer}].args[0][{layer}].args[0].args[0]"


def config(spec: jn.SearchSpace, widths: Sequence[int]) -> dict:
    """The member with these hidden widths (its depth their count), lr 1e-3, wd 1e-4."""
    values = {"model.args[0]": len(widths) - 1, "learning_rate": 1e-3, "weight_decay": 1e-4}
    for layer in range(3):  # unused layers keep a width; the depth skips them
        values[width_path(layer)] = widths[layer] if layer < len(widths) else 16
    return spec.config(values)


def fastest(call, repetitions: int) -> float:
    """The fastest of `repetitions` timed calls, after one untimed call."""
    jax.block_until_ready(call())
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return min(times)


def masked_steps(task, spec, members, epochs, repetitions) -> dict[tuple, float]:
    """(a): seconds a step for each member in the bucket's program."""
    first = config(spec, members[0])
    trainer = BucketTrainer(task.for_bucket(spec, first, True), devices=jax.devices()[:1])
    key_data = jax.random.key_data(jax.random.key(0))[None]
    out = {}
    for widths in members:
        row = jax.tree.map(lambda a: np.asarray(a)[None], config(spec, widths))
        seconds = {e: fastest(lambda e=e: trainer(key_data, row, np.full(1, e, np.float32)),
                              repetitions) for e in (1, epochs)}
        out[widths] = (seconds[epochs] - seconds[1]) / ((epochs - 1) * steps_per_epoch(task))
    return out


def steps_per_epoch(task) -> int:
    return max(len(task.train_data[0]) // BATCH_SIZE, 1)


def plain_steps(task, members, epochs, repetitions) -> dict[tuple, float]:
    """(b): seconds a step for each member as a plain Flax MLP at its widths."""
    (x_train, y_train), (x_val, y_val) = task.train_data, task.validation_data
    x_train, y_train, x_val, y_val = map(jnp.asarray, (x_train, y_train, x_val, y_val))
    steps = steps_per_epoch(task)
    out = {}
    for widths in members:
        model = nn.Sequential([*(layer for w in widths for layer in (nn.Dense(w), nn.relu)),
                               nn.Dense(quickstart.CLASSES)])

        def train(key, trips, model=model):
            params = model.init(key, x_train[:1])
            tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)

            def epoch(e, carry):
                params, opt_state, _ = carry
                order = jax.random.permutation(jax.random.fold_in(key, e), len(x_train))
                batches = order[:steps * BATCH_SIZE].reshape(steps, BATCH_SIZE)

                def step(carry, rows):
                    params, opt_state = carry

                    def loss(p):
                        logits = model.apply(p, x_train[rows])
                        return optax.softmax_cross_entropy_with_integer_labels(
                            logits, y_train[rows]).mean()

                    grads = jax.grad(loss)(params)
                    updates, opt_state = tx.update(grads, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), None

                (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches)
                error = jnp.mean(jnp.argmax(model.apply(params, x_val), -1) != y_val)
                return params, opt_state, error

            return jax.lax.fori_loop(0, trips, epoch, (params, tx.init(params), 0.0))[2]

        run = jax.jit(train)
        key = jax.random.key(0)
        seconds = {e: fastest(lambda e=e: run(key, e), repetitions) for e in (1, epochs)}
        out[widths] = (seconds[epochs] - seconds[1]) / ((epochs - 1) * steps)
    return out


def run(settings: dict) -> dict:
    train, validation, _ = quickstart.digits(seed=0)
    task = jn.SupervisedTask(train, validation, batch_size=BATCH_SIZE)
    spec = jn.compile(quickstart.mlp_space())
    members = [tuple(m) for m in settings["members"]]
    masked = masked_steps(task, spec, members, settings["epochs"], settings["repetitions"])
    plain = plain_steps(task, members, settings["epochs"], settings["repetitions"])
    rows = [{"widths": list(m), "masked_us": masked[m] * 1e6, "plain_us": plain[m] * 1e6,
             "ratio": masked[m] / plain[m]} for m in members]
    return {"settings": {**settings, "members": [list(m) for m in members]},
            "machine": machine_info("jax", "flax", "optax"), "rows": rows}


def print_table(results: dict) -> None:
    settings = results["settings"]
    print(f"\nOne member's optimiser step, {settings['epochs']} epochs against 1, fastest of "
          f"{settings['repetitions']} calls; {results['machine']['cpus_usable']} CPUs.\n")
    print("| hidden widths | masked bucket (us) | plain Flax, exact widths (us) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for row in results["rows"]:
        print(f"| {'-'.join(map(str, row['widths']))} | {row['masked_us']:.0f} | "
              f"{row['plain_us']:.0f} | {row['ratio']:.2f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two members, 5 epochs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    results = run(dict(QUICK if args.quick else FULL))
    print_table(results)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
