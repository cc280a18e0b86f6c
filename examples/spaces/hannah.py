"""HANNAH's example spaces written in jaxnas with Flax layers.

HANNAH writes blocks as functions over symbolic parameters. `param.new()` makes a fresh
parameter; reusing one object shares it. jaxnas has the same rules: `.resample()` is
`.new()`, and reusing an object shares its value (each layer still has its own weights).

Run `python examples/spaces/hannah.py` to sample, build and run a few of each.
"""

import flax.linen as nn

import jaxnas as jn


def conv_relu(kernel_size, out_channels, stride) -> jn.Operation:
    """HANNAH's `conv_relu` block: a convolution of searched shape followed by ReLU."""
    return jn.Operation(jn.nn.Sequential, args=(
        jn.Operation(nn.Conv, kwargs={
            "features": out_channels,
            "kernel_size": jn.Dynamic(lambda k: (k, k), k=kernel_size),
            "strides": stride,
        }),
        jn.Operation(nn.relu),
    ))


def _parameters():
    return (jn.Categorical((1, 3, 5), static=True), jn.Integer(8, 64),
            jn.Categorical((1, 2), static=True))


def conv_relu_space(*, shared: bool = True, classes: int = 10) -> dict:
    """Two `conv_relu` blocks that share their parameters, or get fresh ones (`.new()`)."""
    kernel_size, out_channels, stride = _parameters()
    if shared:
        blocks = [conv_relu(kernel_size, out_channels, stride) for _ in range(2)]
    else:
        blocks = [conv_relu(kernel_size.resample(), out_channels.resample(), stride.resample())
                  for _ in range(2)]
    return {"model": jn.Operation(jn.nn.Sequential, args=(
        *blocks, jn.Operation(jn.nn.GlobalAvgPool),
        jn.Operation(nn.Dense, kwargs={"features": classes})))}


def choice_space(classes: int = 10) -> dict:
    """HANNAH's choice block: each of three stages is an identity or a conv_relu."""
    kernel_size, out_channels, stride = _parameters()
    stem = jn.Operation(nn.Conv, kwargs={"features": 16, "kernel_size": (3, 3)})
    stage = jn.nn.Choice(
        jn.Operation(jn.nn.Identity),
        conv_relu(kernel_size.resample(), 16, stride.resample()),
    )
    del out_channels  # identity and conv must agree on width: the conv keeps 16 channels
    return {"model": jn.Operation(jn.nn.Sequential, args=(
        stem, stage.resample(), stage.resample(), stage.resample(),
        jn.Operation(jn.nn.GlobalAvgPool), jn.Operation(nn.Dense, kwargs={"features": classes})))}


def dynamic_depth_space(classes: int = 10, max_depth: int = 4) -> dict:
    """HANNAH's ChoiceOp over depth: 1..max_depth fresh conv_relu blocks."""
    kernel_size, out_channels, stride = _parameters()

    def block(step: int) -> jn.Operation:
        del step  # every block draws its own parameters
        return conv_relu(kernel_size.resample(), out_channels.resample(), 1)

    del stride
    return {"model": jn.Operation(jn.nn.Sequential, args=(
        jn.nn.Repeat(block, counts=tuple(range(1, max_depth + 1))),
        jn.Operation(jn.nn.GlobalAvgPool), jn.Operation(nn.Dense, kwargs={"features": classes})))}


SPACES = {
    "conv_relu_shared": (lambda: conv_relu_space(shared=True), (2, 16, 16, 3)),
    "conv_relu_fresh": (lambda: conv_relu_space(shared=False), (2, 16, 16, 3)),
    "choice_space": (choice_space, (2, 16, 16, 3)),
    "dynamic_depth_space": (dynamic_depth_space, (2, 16, 16, 3)),
}


if __name__ == "__main__":
    from _demo import demo  # run as a script: this folder is on sys.path

    demo(SPACES)
