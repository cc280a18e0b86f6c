"""Hypernets' example spaces (DNN, CNN, ENAS micro) written in jaxnas with Flax layers.

Hypernets builds a search space by calling layer factories inside a `HyperSpace`; jaxnas
writes the same choices as data. The correspondence:

| Hypernets | jaxnas |
| --- | --- |
| `Choice([...])`, `Bool()`, `Real(0, 0.5, step=0.1)` | `Categorical`, `Bool`, a `Categorical` of the steps |
| `Dynamic(fn, units=..., ...)` | `jn.Dynamic(fn, units=..., ...)` |
| `Sequential`, `Optional(m, keep_link=True)`, `Or` | `jn.nn.Sequential`, `jn.nn.Optional`, `jn.nn.Choice` |
| `Permutation([...], hp_seq=...)` | a shared order choice applied by `jn.Dynamic` |
| `Repeat(fn, repeat_num_choices)` | `jn.nn.Repeat(fn, counts)` |
| ENAS `InputChoice`, `ConnectLooseEnd`, shared `hp_dict` | `jn.nn.cell_space`, one cell object reused |

Run `python examples/spaces/hypernets.py` to sample, build and run a few of each.
"""

import itertools

import flax.linen as nn

import jaxnas as jn


class SeparableConv(nn.Module):
    """Depthwise then pointwise convolution keeping the channel count (ENAS' sepconv)."""

    kernel: int = 3

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        x = nn.relu(x)
        x = nn.Conv(channels, (self.kernel, self.kernel), feature_group_count=channels)(x)
        return nn.Conv(channels, (1, 1))(x)


def _ordered(order: tuple, **layers):
    """Arranges the named layers in `order` (Hypernets' `Permutation` with a shared hp_seq)."""
    names = sorted(layers)
    return tuple(layers[names[i]] for i in order)


def dnn_space(output_units: int = 2, units_choices=(200, 500, 1000),
              reduce_factor_choices=(1.0, 0.8, 0.5), layer_num_choices=(2, 3, 4),
              activation_choices=("relu", "tanh")) -> dict:
    """Hypernets' DNN space: `Repeat`ed dense blocks whose width shrinks by a factor.

    Each block is Dense(units * factor**step) followed by a searched order of activation,
    optional batch norm and dropout. Units, factor, activation, batch norm, dropout rate and
    the order are shared by all blocks, as in Hypernets.
    """
    units = jn.Categorical(units_choices, static=True)
    reduce_factor = jn.Categorical(reduce_factor_choices, static=True)
    activation = jn.nn.Choice(*(jn.Operation(getattr(nn, a)) for a in activation_choices))
    use_bn = jn.nn.Optional(jn.Operation(nn.BatchNorm))
    dropout = jn.Operation(nn.Dropout, kwargs={
        "rate": jn.Categorical((0.0, 0.1, 0.2, 0.3, 0.4, 0.5))})
    order = jn.Categorical(tuple(itertools.permutations(range(3))), static=True)

    def block(step: int) -> jn.Operation:
        width = jn.Dynamic(lambda units, factor: max(1, int(units * factor**step)),
                           units=units, factor=reduce_factor)
        return jn.Operation(jn.nn.Sequential, args=(
            jn.Operation(nn.Dense, kwargs={"features": width}),
            jn.Dynamic(_ordered, order=order, a_act=activation, b_bn=use_bn, c_dropout=dropout),
        ))

    return {"model": jn.Operation(jn.nn.Sequential, args=(
        jn.nn.Repeat(block, counts=layer_num_choices),
        jn.Operation(nn.Dense, kwargs={"features": output_units}),
    ))}


def cnn_space(output_units: int = 10, block_num_choices=(2, 3, 4, 5, 6),
              filters_choices=(32, 64), kernel_size_choices=((1, 1), (3, 3)),
              fc_units_choices=(1024, 2048, 4096)) -> dict:
    """Hypernets' CNN space: blocks of repeated conv-BN-activation, then pooling.

    Blocks 0 and 1 repeat their conv twice with the base filters; later blocks repeat it
    3-5 times with `filters * 2**(block - 1)`. Pooling type, filters, kernel size, batch
    norm and its order with the activation are shared hyperparameters.
    """
    use_bn = jn.nn.Optional(jn.Operation(nn.BatchNorm))
    pooling = jn.nn.Choice(
        jn.Operation(jn.nn.MaxPool, kwargs={"padding": "SAME"}),
        jn.Operation(jn.nn.AvgPool, kwargs={"padding": "SAME"}),
    )
    filters = jn.Categorical(filters_choices, static=True)
    kernel_size = jn.Categorical(kernel_size_choices)
    bn_act = jn.Categorical(((0, 1), (1, 0)), static=True)
    act = jn.Operation(nn.relu)

    def conv_block(block_no: int) -> jn.Operation:
        multiplier = 1 if block_no < 2 else 2 ** (block_no - 1)
        counts = (2,) if block_no < 2 else (3, 4, 5)
        conv_filters = jn.Dynamic(lambda filters: filters * multiplier, filters=filters)

        def conv_bn(step: int) -> jn.Operation:
            del step  # every repeat shares the block's hyperparameters, as in Hypernets
            conv = jn.Operation(nn.Conv, kwargs={"features": conv_filters,
                                                 "kernel_size": kernel_size})
            return jn.Operation(jn.nn.Sequential, args=(
                conv, jn.Dynamic(_ordered, order=bn_act, a_bn=use_bn, b_act=act)))

        return jn.Operation(jn.nn.Sequential, args=(jn.nn.Repeat(conv_bn, counts), pooling))

    fc_units = jn.Categorical(fc_units_choices, static=True)
    return {"model": jn.Operation(jn.nn.Sequential, args=(
        jn.nn.Repeat(conv_block, counts=block_num_choices),
        jn.Operation(jn.nn.Flatten),
        jn.Operation(nn.Dense, kwargs={"features": fc_units}), act,
        jn.Operation(nn.Dense, kwargs={"features": fc_units}), act,
        jn.Operation(nn.Dense, kwargs={"features": output_units}),
    ))}


def enas_micro_space(arch: str = "NRNR", init_filters: int = 64, node_num: int = 4,
                     output_units: int = 10) -> dict:
    """Hypernets' ENAS micro space: normal (N) and reduction (R) cells of `node_num` nodes.

    Every node adds two operations (sepconv 5x5 / 3x3, avg / max pool 3x3, identity) on two
    chosen inputs; loose ends are concatenated. As in Hypernets' shared `hp_dict`, all
    normal cells share one set of choices and all reduction cells another: the same cell
    object is reused, so its decisions are shared while each use has its own weights. A
    reduction is a stride-2 convolution doubling the filters before its cell (Hypernets'
    FactorizedReduction); a 1x1 convolution calibrates every cell's input width.
    """
    operations = (
        jn.Operation(SeparableConv, kwargs={"kernel": 5}),
        jn.Operation(SeparableConv, kwargs={"kernel": 3}),
        jn.Operation(jn.nn.AvgPool, kwargs={"window": 3, "strides": 1, "padding": "SAME"}),
        jn.Operation(jn.nn.MaxPool, kwargs={"window": 3, "strides": 1, "padding": "SAME"}),
        jn.Operation(jn.nn.Identity),
    )
    cells = {"N": jn.nn.cell_space(node_num, operations),
             "R": jn.nn.cell_space(node_num, operations)}
    layers, filters = [], init_filters
    for kind in arch:
        if kind == "R":
            filters *= 2
            layers.append(jn.Operation(nn.Conv, kwargs={"features": filters,
                                                         "kernel_size": (3, 3),
                                                         "strides": (2, 2)}))
        elif kind != "N":
            raise ValueError(f"enas_micro_space(arch={arch!r}): cells are 'N' or 'R'.")
        layers.append(jn.Operation(nn.Conv, kwargs={"features": filters, "kernel_size": (1, 1)}))
        layers.append(cells[kind])
    layers += [jn.Operation(jn.nn.GlobalAvgPool),
               jn.Operation(nn.Dense, kwargs={"features": output_units})]
    return {"model": jn.Operation(jn.nn.Sequential, args=tuple(layers))}


SPACES = {
    "dnn_space": (lambda: dnn_space(units_choices=(16, 32, 64)), (2, 10)),
    "cnn_space": (lambda: cnn_space(block_num_choices=(2, 3), filters_choices=(4, 8),
                                    fc_units_choices=(16, 32)), (2, 16, 16, 1)),
    "enas_micro_space": (lambda: enas_micro_space(init_filters=4), (2, 8, 8, 1)),
}


if __name__ == "__main__":
    from _demo import demo  # run as a script: this folder is on sys.path

    demo(SPACES)
