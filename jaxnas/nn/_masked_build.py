"""Masked builds: one module for every configuration of a masked bucket.

`spec.resolve(config, masked=True, build=False)` leaves each searched width open as a
`MaskedWidth`. Building such a tree makes every `nn.Dense` / `nn.Conv` a `MaskedDense` /
`MaskedConv` at the width's maximum, and the module reads the widths from the config it is
called with (`module.apply(params, x, config=config)`), so configurations that differ only
in widths run one compiled program, vmapped over their configs.

The interpreter carries, next to every activation, which of its features are active: `None`
when all are, else a `(features,)` boolean mask (traced: it depends on the widths). A masked
layer's output is active up to its width; a layer after it ignores the inactive inputs and
scales its init by the active count (`_masked.py`'s rule), so the active block of every
layer is the exact-width network's, parameters and outputs alike:

* elementwise and per-channel layers (activations, `BatchNorm`, `Dropout`, pooling,
  `GlobalAvgPool`) keep the mask, and their inactive outputs are set to zero again (an
  activation need not map zero to zero);
* `Flatten` spreads the channel mask over the flattened positions, `Concat` concatenates the
  masks, `Add`, `Residual` and `Cell` nodes take their union;
* a layer that mixes features (`LayerNorm`, `GroupNorm`, attention, `softmax`) would see the
  padding, and one that changes the feature axis cannot be followed; after a masked width
  either is a `BuildError` naming the path (mark that width `static=True` to keep it exact).

`exact_params(module, variables, x, config)` slices one member's masked variables to the
variables of its exact-width network (`spec.resolve(config)`), e.g. to export an incumbent.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.errors import FlaxError

from jaxnas.nn import _blocks
from jaxnas.nn._blocks import BuildError
from jaxnas.nn._masked import MaskedConv, MaskedDense, _active
from jaxnas.space import MaskedWidth, Operation

MASKS = "width_masks"  # the collection `exact_params` reads the active features from

_MASKED = {nn.Dense: MaskedDense, nn.Conv: MaskedConv}
_BLOCKS = (_blocks.Sequential, _blocks.Residual, _blocks.Add, _blocks.Concat, _blocks.Cell,
           _blocks.Identity, _blocks.Flatten)
_MIXING = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.InstanceNorm,
           nn.MultiHeadDotProductAttention, nn.SelfAttention, nn.softmax, nn.log_softmax,
           jax.nn.softmax, jax.nn.log_softmax, nn.standardize)

_SUFFIX = ":mask"
Mask = Any  # None (every feature active) or a (features,) bool array


def holds_widths(value: Any, seen: set | None = None) -> bool:
    """Whether an operation tree has a `MaskedWidth` anywhere in its arguments."""
    seen = set() if seen is None else seen
    if isinstance(value, MaskedWidth):
        return True
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, Operation):
        return any(holds_widths(v, seen) for v in (*value.args, *value.kwargs.values()))
    if isinstance(value, (list, tuple)):
        return any(holds_widths(v, seen) for v in value)
    return False


# ----------------------------------------------------------------------- making


@dataclasses.dataclass(frozen=True)
class _Block:
    """A jaxnas block, interpreted here rather than called, so that masks flow through it."""

    kind: type
    fields: dict
    path: str


@dataclasses.dataclass(frozen=True)
class _Linear:
    """A `nn.Dense` / `nn.Conv` occurrence; made masked or exact when its input is known."""

    operator: type
    fields: dict
    path: str


def make_masked(operator: Any, args: tuple, kwargs: dict, path: str) -> Any:
    """`_Maker.make` for masked builds: blocks and linear layers become plans, not modules."""
    if operator in _BLOCKS or operator in _MASKED:
        if operator is _blocks.Sequential:
            args = (args,)
        try:
            fields = dict(inspect.signature(operator).bind(*args, **kwargs).arguments)
        except TypeError as error:
            raise BuildError(f"{path}: {operator.__qualname__} does not accept args, kwargs "
                             f"{sorted(kwargs)}: {error}") from error
        kind = _Block if operator in _BLOCKS else _Linear
        return kind(operator, fields, path)
    if any(isinstance(a, (_Block, _Linear)) or _holds_plan(a) for a in (*args, *kwargs.values())):
        raise BuildError(f"{path}: {getattr(operator, '__qualname__', operator)} holds layers "
                         f"of its own; a masked build carries widths only through jaxnas "
                         f"blocks. Mark the widths inside it static=True.")
    return None  # not special: the ordinary maker makes it


def _holds_plan(value: Any) -> bool:
    if isinstance(value, (_Block, _Linear)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_plan(v) for v in value)


# ---------------------------------------------------------------------- running


class Runner:
    """Runs a masked plan inside `Built`'s compact call, carrying each activation's mask."""

    def __init__(self, module: nn.Module, config: Any, train: bool):
        self.module, self.config, self.train = module, config, train

    def run(self, node: Any, x: Any, mask: Mask) -> tuple[Any, Mask]:
        if isinstance(node, _Block):
            return self._block(node, x, mask)
        if isinstance(node, _Linear):
            return self._linear(node, x, mask)
        return self._leaf(node, x, mask)

    # -- leaves

    def _linear(self, node: _Linear, x: Any, mask: Mask) -> tuple[Any, Mask]:
        fields = dict(node.fields)
        features = fields.pop("features")
        opened = isinstance(features, MaskedWidth)
        if not opened and mask is None:
            layer = _instantiate(node.operator, fields | {"features": features}, node.path)
            return _blocks.call_layer(layer, x, self.train), None
        maximum = features.maximum if opened else int(features)
        layer = _instantiate(_MASKED[node.operator], fields | {"max_features": maximum},
                             node.path)
        width = features.value(self.config) if opened else maximum
        in_mask = jnp.ones(x.shape[-1], bool) if mask is None else mask
        try:
            y = layer(x, width, in_mask)
        except (TypeError, ValueError, FlaxError) as error:
            raise BuildError(f"{node.path}: cannot apply {layer.__class__.__name__} to an "
                             f"input of shape {getattr(x, 'shape', None)}: {error}") from error
        out_mask = _active(maximum, width) if opened else None
        self._record(node.path, in_mask, jnp.ones(maximum, bool) if out_mask is None
                     else out_mask)
        return y, out_mask

    def _leaf(self, layer: Any, x: Any, mask: Mask) -> tuple[Any, Mask]:
        name = _name(layer)
        operator = type(layer) if isinstance(layer, nn.Module) else getattr(layer, "fn", layer)
        if mask is not None and operator in _MIXING:
            raise BuildError(f"{name}: {_kind(operator)} mixes features, so the masked widths "
                             f"before it would change its result; mark those widths "
                             f"static=True to build them exactly.")
        y = _blocks.call_layer(layer, x, self.train)
        if mask is None:
            return y, None
        if not hasattr(y, "shape") or y.shape[-1:] != x.shape[-1:]:
            raise BuildError(f"{name}: {_kind(operator)} changes the feature axis "
                             f"({x.shape} -> {getattr(y, 'shape', None)}), so the masked widths "
                             f"before it cannot be followed; mark them static=True.")
        self._record(name, mask, mask)
        return jnp.where(mask, y, jnp.zeros((), y.dtype)), mask

    def _record(self, path: str, in_mask: jax.Array, out_mask: jax.Array) -> None:
        module = self.module
        if module.is_mutable_collection(MASKS) and not module.is_initializing():
            # a variable may not share its name with the layer's module
            module.sow(MASKS, path + _SUFFIX, {"in": in_mask, "out": out_mask})

    # -- blocks

    def _block(self, node: _Block, x: Any, mask: Mask) -> tuple[Any, Mask]:
        kind, f = node.kind, node.fields
        if kind is _blocks.Identity:
            return x, mask
        if kind is _blocks.Sequential:
            for layer in _blocks._flatten(f.get("layers", ())):
                x, mask = self.run(layer, x, mask)
            return x, mask
        if kind is _blocks.Flatten:
            y = x.reshape(x.shape[0], -1)
            if mask is None:
                return y, None
            return y, jnp.broadcast_to(mask, x.shape[1:]).reshape(-1)
        if kind is _blocks.Residual:
            y, body_mask = self.run(f["body"], x, mask)
            self._same_shapes(node, ("input", x), ("body", y))
            return x + y, _union(mask, body_mask)
        if kind is _blocks.Add:
            outs = [self.run(b, x, mask) for b in f.get("branches", ())]
            self._same_shapes(node, *((f"branch {i}", y) for i, (y, _) in enumerate(outs)))
            return sum((y for y, _ in outs[1:]), outs[0][0]), _union(*(m for _, m in outs))
        if kind is _blocks.Concat:
            return self._concat(node, x, mask)
        return self._cell(node, x, mask)

    def _concat(self, node: _Block, x: Any, mask: Mask) -> tuple[Any, Mask]:
        axis = node.fields.get("axis", -1)
        outs = [self.run(b, x, mask) for b in node.fields.get("branches", ())]
        ys = [y for y, _ in outs]
        if len({y.shape[: axis % y.ndim] for y in ys}) > 1:
            shapes = ", ".join(f"branch {i}: {y.shape}" for i, y in enumerate(ys))
            raise BuildError(f"{node.path}: Concat needs equal shapes before axis {axis}; "
                             f"got {shapes}.")
        y = jnp.concatenate(ys, axis=axis)
        if axis % y.ndim != y.ndim - 1:
            return y, _union(*(m for _, m in outs))
        return y, _concat_masks([(m, y.shape[-1]) for y, m in outs])

    def _cell(self, node: _Block, x: Any, mask: Mask) -> tuple[Any, Mask]:
        states = list(x) if isinstance(x, (tuple, list)) else [x, x]
        masks = list(mask) if isinstance(mask, (tuple, list)) else [mask, mask]
        inputs, ops = node.fields.get("inputs", ()), node.fields.get("ops", ())
        if len(states) != 2 or len(inputs) != len(ops) or not inputs:
            raise BuildError(f"{node.path}: a Cell takes one input or a pair and one (left, "
                             f"right) input pair and op pair per node.")
        used = set()
        for i, ((left, right), (op_left, op_right)) in enumerate(zip(inputs, ops)):
            for index in (left, right):
                if not 0 <= index < len(states):
                    raise BuildError(f"{node.path}: node {i} reads state {index}; only states "
                                     f"0..{len(states) - 1} exist before it.")
            a, mask_a = self.run(op_left, states[left], masks[left])
            b, mask_b = self.run(op_right, states[right], masks[right])
            self._same_shapes(node, (f"node {i} left", a), (f"node {i} right", b))
            states.append(a + b)
            masks.append(_union(mask_a, mask_b))
            used.update((left, right))
        loose = [i for i in range(2, len(states)) if i not in used]
        y = jnp.concatenate([states[i] for i in loose], axis=-1)
        return y, _concat_masks([(masks[i], states[i].shape[-1]) for i in loose])

    @staticmethod
    def _same_shapes(node: _Block, *named: tuple[str, Any]) -> None:
        if len({y.shape for _, y in named}) > 1:
            listed = ", ".join(f"{name}: {y.shape}" for name, y in named)
            raise BuildError(f"{node.path}: {node.kind.__name__} needs equal shapes; got "
                             f"{listed}.")


def _union(*masks: Mask) -> Mask:
    if any(m is None for m in masks):
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def _concat_masks(parts: list[tuple[Mask, int]]) -> Mask:
    if all(m is None for m, _ in parts):
        return None
    return jnp.concatenate([jnp.ones(n, bool) if m is None else m for m, n in parts])


def _instantiate(operator: type, fields: dict, path: str) -> nn.Module:
    try:
        return operator(**fields, name=path)
    except TypeError as error:
        raise BuildError(f"{path}: {operator.__qualname__} does not accept {sorted(fields)} "
                         f"in a masked build ({error}).") from error


def _name(layer: Any) -> str:
    return getattr(layer, "name", None) or type(layer).__name__


def _kind(operator: Any) -> str:
    return getattr(operator, "__qualname__", None) or repr(operator)


# ------------------------------------------------------------------ exact params


def exact_params(module: nn.Module, variables: Any, x: Any, config: Any) -> dict:
    """One member's masked variables, sliced to the variables of its exact-width network.

    Args:
        module: A masked module (`spec.resolve(config, masked=True)` or `build` of a tree
            holding `MaskedWidth`s).
        variables: Its variables for this one config (not a batch).
        x: An input of the module's input shape (its values do not matter).
        config: The config whose widths are active.

    Returns:
        Variables for the exact module `spec.resolve(config)` (the same paths): each masked
        layer's kernel keeps its active rows and columns, its bias its active columns, and
        a per-channel layer after a masked width (e.g. `BatchNorm`) keeps the active
        entries of every variable whose last axis is the feature axis.
    """
    _, state = module.apply(variables, x, config=config, mutable=[MASKS])
    masks = {name.removesuffix(_SUFFIX): {k: np.asarray(v) for k, v in sown[0].items()}
             for name, sown in state.get(MASKS, {}).items()}
    exact = {}
    for collection, tree in variables.items():
        tree = dict(tree)
        for path, mask in masks.items():
            if path in tree:
                tree[path] = _slice_layer(tree[path], mask)
        exact[collection] = tree
    return exact


def _slice_layer(layer: Any, mask: dict) -> Any:
    rows, columns = np.flatnonzero(mask["in"]), np.flatnonzero(mask["out"])

    def cut(key_path, value):
        name = getattr(key_path[-1], "key", None) if key_path else None
        if name == "kernel" and value.ndim >= 2 and value.shape[-2] == len(mask["in"]):
            return jnp.take(jnp.take(value, rows, axis=-2), columns, axis=-1)
        if value.ndim and value.shape[-1] == len(mask["out"]):
            return jnp.take(value, columns, axis=-1)
        return value

    return jax.tree_util.tree_map_with_path(cut, layer)
