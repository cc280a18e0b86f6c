"""Masked builds: one module for every configuration of a masked bucket.

`spec.resolve(config, masked=True, build=False)` leaves each searched width open as a
`MaskedWidth`. Building such a tree makes every maskable layer (`nn.Dense` / `nn.Conv`, the
keys of `MASKED_LAYERS`) its masked counterpart at the width's maximum, and the module reads
the widths from the config it is called with (`module.apply(params, x, config=config)`), so
configurations that differ only in widths run one compiled program, vmapped over their
configs.

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

from jaxnas.nn import _blocks, _tiers
from jaxnas.nn._calling import CALL_ERRORS, BuildError, call_layer, layer_error, layer_name
from jaxnas.nn._masked import MASKED_LAYERS, active_mask
from jaxnas.space import MaskedWidth, Operation

MASKS = "width_masks"  # the collection `exact_params` reads the active features from

# the blocks this interpreter runs itself, and the layers that must not see masked features
_BLOCKS = (_blocks.Sequential, _blocks.Residual, _blocks.Add, _blocks.Concat, _blocks.Cell,
           _blocks.Identity, _blocks.Flatten)
_MIXING = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.InstanceNorm,
           nn.MultiHeadDotProductAttention, nn.SelfAttention, nn.softmax, nn.log_softmax,
           jax.nn.softmax, jax.nn.log_softmax, nn.standardize)

_SUFFIX = ":mask"  # a sown variable may not share its name with the layer's module
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
class _BlockPlan:
    """A jaxnas block, interpreted here rather than called, so that masks flow through it."""

    kind: type
    fields: dict
    path: str


@dataclasses.dataclass(frozen=True)
class _LinearPlan:
    """A maskable layer (`nn.Dense`, `nn.Conv`); made masked or exact when its input is known."""

    operator: type
    fields: dict
    path: str


def masked_plan(operator: Any, args: tuple, kwargs: dict, path: str) -> Any:
    """A block or maskable layer of a masked build as a plan to interpret, not a module.

    Returns None for any other operator: the ordinary build makes it.
    """
    if operator in _BLOCKS or operator in MASKED_LAYERS:
        if operator is _blocks.Sequential:
            args = (args,)
        try:
            fields = dict(inspect.signature(operator).bind(*args, **kwargs).arguments)
        except TypeError as error:
            raise BuildError(f"{path}: {operator.__qualname__} does not accept args, kwargs "
                             f"{sorted(kwargs)}: {error}") from error
        plan = _BlockPlan if operator in _BLOCKS else _LinearPlan
        return plan(operator, fields, path)
    if any(_holds_plan(value) for value in (*args, *kwargs.values())):
        raise BuildError(f"{path}: {getattr(operator, '__qualname__', operator)} holds layers "
                         f"of its own; a masked build carries widths only through jaxnas "
                         f"blocks. Mark the widths inside it static=True.")
    return None


def _holds_plan(value: Any) -> bool:
    if isinstance(value, (_BlockPlan, _LinearPlan)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_plan(v) for v in value)


# ---------------------------------------------------------------------- running


class MaskedPlanRunner:
    """Runs a masked plan inside `Built`'s compact call, carrying each activation's mask."""

    def __init__(self, module: nn.Module, config: Any, train: bool):
        self.module, self.config, self.train = module, config, train

    def run(self, node: Any, x: Any, mask: Mask) -> tuple[Any, Mask]:
        if isinstance(node, _BlockPlan):
            return self._block(node, x, mask)
        if isinstance(node, _LinearPlan):
            return self._linear(node, x, mask)
        return self._leaf(node, x, mask)

    # -- leaves

    def _linear(self, node: _LinearPlan, x: Any, mask: Mask) -> tuple[Any, Mask]:
        fields = dict(node.fields)
        features = fields.pop("features")
        opened = isinstance(features, MaskedWidth)
        if not opened and mask is None:
            layer = _instantiate(node.operator, fields | {"features": features}, node.path)
            return call_layer(layer, x, self.train), None
        maximum = features.maximum if opened else int(features)
        layer = _instantiate(MASKED_LAYERS[node.operator], fields | {"max_features": maximum},
                             node.path)
        width = features.value(self.config) if opened else maximum
        in_mask = jnp.ones(x.shape[-1], bool) if mask is None else mask
        try:
            # Tiered products pay in training steps; an evaluation pass (once an epoch)
            # would not repay its branches' compile time.
            with _tiers.unbatched_widths(_tiers.branching() and self.train):
                y = layer(x, width, mask)  # None: every input active, known when tracing
        except CALL_ERRORS as error:
            raise layer_error(layer, x, error) from error
        out_mask = active_mask(maximum, width) if opened else None
        self._record(node.path, in_mask, jnp.ones(maximum, bool) if out_mask is None
                     else out_mask)
        return y, out_mask

    def _leaf(self, layer: Any, x: Any, mask: Mask) -> tuple[Any, Mask]:
        name = layer_name(layer)
        operator = type(layer) if isinstance(layer, nn.Module) else getattr(layer, "fn", layer)
        if mask is not None and operator in _MIXING:
            raise BuildError(f"{name}: {_kind(operator)} mixes features, so the masked widths "
                             f"before it would change its result; mark those widths "
                             f"static=True to build them exactly.")
        y = call_layer(layer, x, self.train)
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
            module.sow(MASKS, path + _SUFFIX, {"in": in_mask, "out": out_mask})

    # -- blocks

    def _block(self, node: _BlockPlan, x: Any, mask: Mask) -> tuple[Any, Mask]:
        kind, fields = node.kind, node.fields
        if kind is _blocks.Identity:
            return x, mask
        if kind is _blocks.Sequential:
            for layer in _blocks.flatten_layers(fields.get("layers", ())):
                x, mask = self.run(layer, x, mask)
            return x, mask
        if kind is _blocks.Flatten:
            y = x.reshape(x.shape[0], -1)
            if mask is None:
                return y, None
            return y, jnp.broadcast_to(mask, x.shape[1:]).reshape(-1)
        if kind is _blocks.Residual:
            y, body_mask = self.run(fields["body"], x, mask)
            _blocks.check_same_shapes(node.path, kind.__name__, ("input", x), ("body", y))
            return x + y, _union(mask, body_mask)
        if kind is _blocks.Add:
            outs = [self.run(branch, x, mask) for branch in fields.get("branches", ())]
            _blocks.check_same_shapes(node.path, kind.__name__,
                                      *((f"branch {i}", y) for i, (y, _) in enumerate(outs)))
            return sum((y for y, _ in outs[1:]), outs[0][0]), _union(*(m for _, m in outs))
        if kind is _blocks.Concat:
            return self._concat(node, x, mask)
        return self._cell(node, x, mask)

    def _concat(self, node: _BlockPlan, x: Any, mask: Mask) -> tuple[Any, Mask]:
        axis = node.fields.get("axis", -1)
        outs = [self.run(branch, x, mask) for branch in node.fields.get("branches", ())]
        ys = [y for y, _ in outs]
        _blocks.check_concat_shapes(node.path, axis,
                                    *((f"branch {i}", y) for i, y in enumerate(ys)))
        y = jnp.concatenate(ys, axis=axis)
        if axis % y.ndim != y.ndim - 1:
            return y, _union(*(m for _, m in outs))
        return y, _concat_masks([(m, y.shape[-1]) for y, m in outs])

    def _cell(self, node: _BlockPlan, x: Any, mask: Mask) -> tuple[Any, Mask]:
        states = list(x) if isinstance(x, (tuple, list)) else [x, x]
        masks = list(mask) if isinstance(mask, (tuple, list)) else [mask, mask]
        inputs, ops = node.fields.get("inputs", ()), node.fields.get("ops", ())
        if len(states) != 2 or len(inputs) != len(ops) or not inputs:
            raise BuildError(f"{node.path}: a Cell takes one input or a pair and one (left, "
                             f"right) input pair and op pair per node.")
        used = set()
        for i, ((left, right), (op_left, op_right)) in enumerate(zip(inputs, ops)):
            _blocks.check_cell_reads(node.path, i, (left, right), len(states))
            a, mask_a = self.run(op_left, states[left], masks[left])
            b, mask_b = self.run(op_right, states[right], masks[right])
            _blocks.check_same_shapes(node.path, node.kind.__name__, (f"node {i} left", a),
                                      (f"node {i} right", b))
            states.append(a + b)
            masks.append(_union(mask_a, mask_b))
            used.update((left, right))
        loose = [i for i in range(2, len(states)) if i not in used]
        y = jnp.concatenate([states[i] for i in loose], axis=-1)
        return y, _concat_masks([(masks[i], states[i].shape[-1]) for i in loose])


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
