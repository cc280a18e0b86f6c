"""The NePS Spaces documentation's example spaces, written in jaxnas with Flax layers.

Each function returns a space whose `model` entry builds (with `jn.nn.build`) into a Linen
module mapping `(N, H, W, C)` images (or `(N, D)` vectors) to `(N, classes)` logits. Where
NePS used torch layers (`Conv2d`, `ReLU`, `Linear`, `Sequential`) these use their Flax
counterparts; a small head turns the searched body into logits so that every architecture
has the same output shape.

Run `python examples/spaces/neps.py` to sample, build and run a few of each.
"""

import flax.linen as nn

import jaxnas as jn


def _square(k: int) -> tuple[int, int]:
    return (k, k)


def _head(classes: int) -> tuple:
    return (jn.Operation(jn.nn.GlobalAvgPool),
            jn.Operation(nn.Dense, kwargs={"features": classes}))


def nn_space(classes: int = 10) -> jn.Space:
    """NePS' `NN_Space`: a Sequential of conv/ReLU choices with resampled convolutions."""

    class NNSpace(jn.Space):
        _relu = jn.Operation(nn.relu)
        _convolution = jn.Operation(
            nn.Conv,
            kwargs={"features": 16,
                    "kernel_size": jn.Dynamic(_square, k=jn.Integer(1, 10))},
        )
        _model_args = jn.Categorical((
            (jn.Resampled(_convolution), _relu),
            (jn.Resampled(_convolution), jn.Resampled(_convolution)),
            (_relu,),
        ))
        model = jn.Operation(jn.nn.Sequential, args=((
            jn.Operation(jn.nn.Sequential, args=_model_args), *_head(classes)),))

    return NNSpace()


def cnn_space(classes: int = 10) -> jn.Space:
    """NePS' CNN of three resampled cells, each with its own kernel size."""

    class CNNSpace(jn.Space):
        _kernel_size = jn.Integer(5, 8)
        _cell_block = jn.Operation(
            nn.Conv,
            kwargs={"features": 16,
                    "kernel_size": jn.Dynamic(_square, k=_kernel_size.resample())},
        )
        model = jn.Operation(jn.nn.Sequential, args=((
            _cell_block.resample(), jn.Operation(nn.relu),
            _cell_block.resample(), jn.Operation(nn.relu),
            _cell_block.resample(), *_head(classes)),))

    return CNNSpace()


def activation_space(classes: int = 10) -> jn.Space:
    """NePS' activation / hidden-layer space, with a searched batch size."""

    class ActivationSpace(jn.Space):
        _relu = jn.Operation(nn.relu)
        _sigmoid = jn.Operation(nn.sigmoid)
        activation_function = jn.Categorical((_relu, _sigmoid))
        batch_size = jn.Categorical((16, 32, 64), static=True)
        _layer_size = jn.Integer(80, 100)
        hidden_layer = jn.Operation(nn.Dense, kwargs={"features": _layer_size})
        model = jn.Operation(jn.nn.Sequential, args=((
            jn.Operation(jn.nn.Flatten), hidden_layer, activation_function,
            jn.Operation(nn.Dense, kwargs={"features": classes})),))

    return ActivationSpace()


def grammar_space(classes: int = 10) -> jn.Space:
    """NePS' self-reference example as an architecture grammar.

    `block` either resamples itself twice (two blocks in sequence) or becomes one `layer`, a
    Dense of a searched width and an activation: a context-free grammar of MLP bodies.
    """

    class GrammarSpace(jn.Space):
        block = jn.Categorical((
            (jn.ByName("block").resample(), jn.ByName("block").resample()),
            (jn.ByName("layer").resample(),),
        ))
        layer = jn.Operation(jn.nn.Sequential, args=((
            jn.Operation(nn.Dense, kwargs={"features": jn.Categorical((16, 32, 64))}),
            jn.Categorical((jn.Operation(nn.relu), jn.Operation(nn.tanh))),
        ),))
        model = jn.Operation(jn.nn.Sequential, args=((
            jn.Operation(jn.nn.Flatten), jn.ByName("block").resample(),
            jn.Operation(nn.Dense, kwargs={"features": classes})),))

    return GrammarSpace()


SPACES = {
    "nn_space": (nn_space, (2, 12, 12, 3)),
    "cnn_space": (cnn_space, (2, 12, 12, 3)),
    "activation_space": (activation_space, (2, 8, 8, 1)),
    "grammar_space": (grammar_space, (2, 20)),
}


if __name__ == "__main__":
    from _demo import demo  # run as a script: this folder is on sys.path

    demo(SPACES)
