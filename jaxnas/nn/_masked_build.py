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

An open depth (`MaskedDepth`, a `jn.nn.Repeat`'s choice) is a `Sequential` of the longest
block list told which prefix each config runs: the blocks every choice runs are called, each
later one under `nn.cond` on the config's count (one branch taken where one member is traced
at a time, both then selected under `vmap`). A skippable block must keep its input's shape
(`DepthError` otherwise, raised at init; the run then trains those depths apart). At init
every block runs, to make its variables, and a skipped block's output is dropped, so the
layers after it are initialised for the config's own depth. Layers are made where they run
(`LeafPlan`), so that a block's variables live in its branch's scope.

`exact_params(module, variables, x, config)` slices one member's masked variables to the
variables of its exact network (`spec.resolve(config)`), e.g. to export an incumbent: the
blocks its depth skips are left out.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas._tracing import branching, unbatched_widths
from jaxnas.nn import _blocks
from jaxnas.nn._calling import CALL_ERRORS, BuildError, call_layer, layer_error, layer_name
from jaxnas.nn._masked import MASKED_LAYERS, active_mask
from jaxnas.space import MaskedDepth, MaskedWidth, Operation

MASKS = "width_masks"  # the collection `exact_params` reads the active features from

# the blocks this interpreter runs itself, and the layers that must not see masked features
_BLOCKS = (_blocks.Sequential, _blocks.Residual, _blocks.Add, _blocks.Concat, _blocks.Cell,
           _blocks.Identity, _blocks.Flatten)
_MIXING = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.InstanceNorm,
           nn.MultiHeadDotProductAttention, nn.SelfAttention, nn.softmax, nn.log_softmax,
           jax.nn.softmax, jax.nn.log_softmax, nn.standardize)

_SUFFIX = ":mask"  # a sown variable may not share its name with the layer's module
_SKIPPED = ":skipped"  # sown for each layer of a block its config's depth skips
Mask = Any  # None (every feature active) or a (features,) bool array


def holds_widths(value: Any, seen: set | None = None) -> bool:
    """Whether an operation tree has a `MaskedWidth` or `MaskedDepth` in its arguments."""
    seen = set() if seen is None else seen
    if isinstance(value, (MaskedWidth, MaskedDepth)):
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


@dataclasses.dataclass(frozen=True)
class LeafPlan:
    """Any other layer of a masked build, made where it runs (`make()`), so that a block
    under `nn.cond` (an open depth) makes its layers in the branch's scope."""

    operator: Any
    make: Any  # () -> the layer, named by `path`; layers in its arguments made with it
    path: str


def made(value: Any) -> Any:
    """`value` with every `LeafPlan` in it (in tuples, lists, dicts) made: the arguments of
    a layer that holds other layers, when it is made."""
    if isinstance(value, LeafPlan):
        return value.make()
    if isinstance(value, (list, tuple)):
        return type(value)(made(v) for v in value)
    if isinstance(value, dict):
        return {k: made(v) for k, v in value.items()}
    return value


def masked_plan(operator: Any, args: tuple, kwargs: dict, path: str) -> Any:
    """A block or maskable layer of a masked build as a plan to interpret, not a module.

    Returns None for any other operator: the ordinary build makes it.
    """
    if operator in _BLOCKS or operator in MASKED_LAYERS:
        depth = None
        if operator is _blocks.Sequential:
            args = (args,)
            if isinstance(kwargs.get("depth"), MaskedDepth):
                kwargs = dict(kwargs)
                depth = kwargs.pop("depth")
        try:
            fields = dict(inspect.signature(operator).bind(*args, **kwargs).arguments)
        except TypeError as error:
            raise BuildError(f"{path}: {operator.__qualname__} does not accept args, kwargs "
                             f"{sorted(kwargs)}: {error}") from error
        if depth is not None:
            fields["depth"] = depth
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
        # Whether the layers being run count (a traced bool inside a block that the
        # config's depth may skip; None: they do): the masks they sow are cleared if not.
        self.live: jax.Array | None = None

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
        maximum = (-(-features.maximum // self.module.width_divisor) if opened
                   else int(features))
        layer = _instantiate(MASKED_LAYERS[node.operator], fields | {"max_features": maximum},
                             node.path)
        width = features.value(self.config) if opened else maximum
        in_mask = jnp.ones(x.shape[-1], bool) if mask is None else mask
        try:
            # Tiered products pay in training steps; an evaluation pass (once an epoch)
            # would not repay its branches' compile time.
            with unbatched_widths(branching() and self.train):
                y = layer(x, width, mask)  # None: every input active, known when tracing
        except CALL_ERRORS as error:
            raise layer_error(layer, x, error) from error
        out_mask = active_mask(maximum, width) if opened else None
        self._record(node.path, in_mask, jnp.ones(maximum, bool) if out_mask is None
                     else out_mask)
        return y, out_mask

    def _leaf(self, layer: Any, x: Any, mask: Mask) -> tuple[Any, Mask]:
        if isinstance(layer, LeafPlan):
            layer = layer.make()
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
            if self.live is not None:
                in_mask, out_mask = in_mask & self.live, out_mask & self.live
            module.sow(MASKS, path + _SUFFIX, {"in": in_mask, "out": out_mask})

    # -- blocks

    def _block(self, node: _BlockPlan, x: Any, mask: Mask) -> tuple[Any, Mask]:
        kind, fields = node.kind, node.fields
        if kind is _blocks.Identity:
            return x, mask
        if kind is _blocks.Sequential:
            if "depth" in fields:
                return self._prefix(node, x, mask)
            return self._sequence(fields.get("layers", ()), x, mask)
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

    def _sequence(self, layers: Any, x: Any, mask: Mask) -> tuple[Any, Mask]:
        for layer in _blocks.flatten_layers(layers):
            x, mask = self.run(layer, x, mask)
        return x, mask

    def _prefix(self, node: _BlockPlan, x: Any, mask: Mask) -> tuple[Any, Mask]:
        """A sequence of blocks with an open depth: the config's first `count` run.

        The blocks every choice runs are called; each later one runs under `nn.cond` on
        `count > i` (unbatched: one branch taken; vmapped: both, then selected), so it must
        keep its input's shape. At init every block runs (to make its variables) and the
        skipped ones' outputs are dropped, so what follows sees the config's own depth.
        """
        depth, blocks = node.fields["depth"], _block_list(node.fields["layers"])
        count = depth.value(self.config)
        for i, block in enumerate(blocks):
            if i < depth.minimum:
                x, mask = self._sequence(block, x, mask)
            else:
                x, mask = self._optional(node.path, i, block, x, mask, count > i)
        return x, mask

    def _optional(self, path: str, i: int, block: Any, x: Any, mask: Mask,
                  active: jax.Array) -> tuple[Any, Mask]:
        module = self.module
        # Both ways out (run, skip) must agree on whether a mask comes with the output:
        # if either may carry one, both carry an array (all True where it would be None).
        masked = mask is not None or _carries_mask(block, False)
        out = lambda y, m: (y, jnp.ones(y.shape[-1], bool) if masked and m is None  # noqa: E731
                                else m)
        if module.is_initializing() or module.is_mutable_collection(MASKS):
            taken = _concrete(active)
            if taken is False and not module.is_initializing():  # exact_params: skipped
                for name in _layer_names(block):
                    module.sow(MASKS, name + _SKIPPED, {"skipped": jnp.zeros((), bool)})
                return out(x, mask)
            live = self.live
            if taken is None:  # traced: the block's masks count where it runs
                self.live = active if live is None else live & active
            try:
                y, y_mask = out(*self._sequence(block, x, mask))
            finally:
                self.live = live
            _check_kept(path, i, x, y)
            if taken is True and not module.is_initializing():
                return y, y_mask
            _, mask = out(x, mask)
            return (jnp.where(active, y, x),
                    None if not masked else jnp.where(active, y_mask, mask))

        def run(mdl, x, mask, config):
            return out(*MaskedPlanRunner(mdl, config, self.train)._sequence(block, x, mask))

        def skip(mdl, x, mask, config):
            del mdl, config
            return out(x, mask)

        return nn.cond(active, run, skip, module, x, mask, self.config)

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


def _block_list(layers: Any) -> tuple:
    """The blocks of a depth's sequence: its one list (`Sequential((b0, b1, ...))`)."""
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
        return tuple(layers[0])
    return tuple(layers)


def _carries_mask(plan: Any, carried: bool, moves: list | None = None) -> bool:
    """Whether `MaskedPlanRunner.run` of `plan` returns a mask (not None) when its input
    `carried` one: the runner's rules, without running it. `moves`: collects the paths of
    the blocks where a mask meets a flatten, concatenation or cell, whose output places
    each feature by the widths' maxima (see `keeps_feature_places`)."""
    walk = functools.partial(_carries_mask, moves=moves)
    if isinstance(plan, _LinearPlan):
        return isinstance(plan.fields.get("features"), MaskedWidth)
    if isinstance(plan, (list, tuple)):  # a sequence of layers
        for layer in _blocks.flatten_layers(plan):
            carried = walk(layer, carried)
        return carried
    if not isinstance(plan, _BlockPlan):  # a leaf keeps its input's mask
        return carried
    kind, fields = plan.kind, plan.fields
    if kind is _blocks.Sequential:
        if "depth" in fields:  # an open depth's later blocks: run or skipped
            for i, block in enumerate(_block_list(fields["layers"])):
                after = walk(block, carried)
                carried = after if i < fields["depth"].minimum else carried or after
            return carried
        return walk(fields.get("layers", ()), carried)
    if kind is _blocks.Residual:
        return carried and walk(fields["body"], carried)
    # Lists, not generators, in `all` and `any`: every branch is walked, so that `moves`
    # collects the flattens, concatenations and cells in all of them.
    if kind is _blocks.Add:
        return all([walk(b, carried) for b in fields.get("branches", ())])
    if kind in (_blocks.Concat, _blocks.Cell):  # a mask if any part has one
        parts = fields.get("branches", ()) if kind is _blocks.Concat else [
            op for pair in fields.get("ops", ()) for op in pair]
        out = any([walk(b, carried) for b in parts]) or carried
    else:  # Identity, Flatten
        out = carried
    if out and kind is not _blocks.Identity and moves is not None:
        moves.append(plan.path)
    return out


def keeps_feature_places(plan: Any) -> bool:
    """Whether every masked feature of `plan` keeps its index when the open widths'
    maxima change: no mask meets a flatten, concatenation or cell (which place features
    by the maxima). What `jaxnas.train._narrow` needs to train a member on a narrower
    build of the same plan."""
    moves: list = []
    _carries_mask(plan, False, moves)
    return not moves


def _layer_names(value: Any) -> list[str]:
    """The names of the modules a plan makes (its layers' paths)."""
    if isinstance(value, LeafPlan):
        return [value.path]
    if isinstance(value, (_BlockPlan, _LinearPlan)):
        inner = [n for v in value.fields.values() for n in _layer_names(v)]
        return [value.path, *inner]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _layer_names(v)]
    if isinstance(value, nn.Module) and value.name:
        return [value.name]
    return []


def _concrete(value: jax.Array) -> bool | None:
    """A traced condition's value if it is known now (an eager call), else None."""
    try:
        return bool(value)
    except jax.errors.ConcretizationTypeError:
        return None


def _check_kept(path: str, i: int, x: Any, y: Any) -> None:
    """An optional block of an open depth must keep its input's shape and dtype."""
    if _shape(x) != _shape(y):
        raise DepthError(f"{path}: block {i} of an open depth maps {_shape(x)} to "
                         f"{_shape(y)}; a block that may be skipped must keep its input's "
                         f"shape. Train its depths apart (masked='widths').")


def _shape(a: Any) -> str:
    """`float32[2, 8]`, or the shapes of a pair's arrays."""
    if isinstance(a, (tuple, list)):
        return "(" + ", ".join(_shape(v) for v in a) + ")"
    return f"{getattr(a, 'dtype', '?')}{list(getattr(a, 'shape', ()))}"


class DepthError(BuildError):
    """A depth left open whose skippable blocks change the shape: it cannot be masked."""


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


def live_masks(module: nn.Module, variables: Any, x: Any, config: Any) -> dict:
    """The in and out masks each masked layer of `module` sows for `config` on input `x`
    (traceable: `config` may be traced), cleared for layers its depth skips."""
    _, state = module.apply(variables, x, train=False, config=config, mutable=[MASKS])
    return state.get(MASKS, {})


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
    sown = state.get(MASKS, {})
    masks = {name.removesuffix(_SUFFIX): {k: np.asarray(v) for k, v in values[0].items()}
             for name, values in sown.items() if name.endswith(_SUFFIX)}
    skipped = {name.removesuffix(_SKIPPED) for name in sown if name.endswith(_SKIPPED)}
    exact = {}
    for collection, tree in variables.items():
        tree = {path: value for path, value in tree.items() if path not in skipped}
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
