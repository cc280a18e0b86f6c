"""Neural DSL's HPO example: an MNIST network with searched learning rate, batch size and
dropout, written in jaxnas.

Neural DSL writes `Dropout(HPO(range(0.3, 0.7)))` and `Adam(learning_rate=HPO(log_range(
1e-4, 1e-2)))` inside its network definition; jaxnas writes the same choices as parameters.

Run `python examples/spaces/neural_dsl.py` to sample, build and run a few.
"""

import flax.linen as nn

import jaxnas as jn


def mnist_space(classes: int = 10) -> dict:
    """Conv(32, 3x3)-ReLU-MaxPool-Flatten-Dense(128)-ReLU-Dropout-Dense(10), and its training."""
    return {
        "model": jn.Operation(jn.nn.Sequential, args=(
            jn.Operation(nn.Conv, kwargs={"features": 32, "kernel_size": (3, 3)}),
            jn.Operation(nn.relu),
            jn.Operation(jn.nn.MaxPool, kwargs={"window": 2}),
            jn.Operation(jn.nn.Flatten),
            jn.Operation(nn.Dense, kwargs={"features": 128}),
            jn.Operation(nn.relu),
            jn.Operation(nn.Dropout, kwargs={"rate": jn.Float(0.3, 0.7)}),
            jn.Operation(nn.Dense, kwargs={"features": classes}),
        )),
        "learning_rate": jn.Float(1e-4, 1e-2, log=True),
        "batch_size": jn.Categorical((16, 32, 64), static=True),
        "epochs": jn.IntegerFidelity(1, 10),
    }


SPACES = {"mnist_space": (mnist_space, (2, 28, 28, 1))}


if __name__ == "__main__":
    from _demo import demo  # run as a script: this folder is on sys.path

    demo(SPACES)
