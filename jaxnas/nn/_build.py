"""`jn.nn.build`: a resolved operation tree becomes one Linen module.

The tree is data (`jn.Operation`s holding concrete arguments, as `spec.resolve(config,
build=False)` returns them). `Built` interprets it inside its compact `__call__`: every Linen
operator is instantiated there, named by where it sits in the tree, so the parameter tree
reads like the space (HANNAH's scopes), and input shapes are inferred lazily by Linen. As in
NePS, an operation object used in several places shares its searched values (a resampled
copy draws its own), and every place it occurs is a module with its own weights.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.nn import _masked_build
from jaxnas.nn._blocks import Sequential
from jaxnas.nn._calling import BuildError, call_layer
from jaxnas.space import Operation


def build(operation: Operation, *, name: str | None = None) -> nn.Module:
    """Builds a Linen module from a resolved operation tree.

    Args:
        operation: A `jn.Operation` with concrete arguments, e.g.
            `spec.resolve(config, build=False)["model"]`. Operators may be Linen module
            classes (`nn.Dense`, `nn.Conv`, `nn.BatchNorm`, `nn.Dropout`, ...), jaxnas blocks
            (`jn.nn.Sequential`, `Residual`, ...) or plain functions applied to the input
            (`nn.relu`; extra arguments follow the input).
        name: Optional name of the returned module.

    Returns:
        A Linen module called as `module.apply(params, x, train=False)`; `train` reaches
        Dropout (`deterministic`), BatchNorm (`use_running_average`) and jaxnas blocks.
        A tree holding `MaskedWidth`s (`spec.resolve(config, masked=True, build=False)`)
        is built at the maximum widths with masked layers and called with the config
        whose widths are active: `module.apply(params, x, config=config)`.

    Raises:
        BuildError: an operator that is not a Linen module class, a jaxnas block or a
            callable, or arguments it does not accept (raised at build time); shapes that
            do not connect (raised at the first `init`, naming the path and the shapes).
    """
    if not isinstance(operation, Operation):
        raise BuildError(f"build() takes a jn.Operation (from spec.resolve(config, "
                         f"build=False)), got {operation!r}.")
    _check(operation)
    return Built(operation=operation, masked=_masked_build.holds_widths(operation), name=name)


class Built(nn.Module):
    """The module `build` returns: interprets its operation tree when called.

    Attributes:
        operation: the operation tree.
        masked: whether the tree holds open widths (`MaskedWidth`), read from `config`.
        width_divisor: a masked module's layers are built at each open width's maximum
            divided by it, rounded up (`narrowed`).
    """

    operation: Any
    masked: bool = False
    width_divisor: int = 1

    @nn.nowrap
    def narrowed(self) -> Built | None:
        """This masked module built at half its open widths' maxima (rounded up), for the
        members whose features all fit there (`narrow_fits`); None if the module is not
        masked, or if a mask reaches a flatten, concatenation or cell, which places
        features by the maxima, so that a narrower build would move them."""
        if not self.masked:
            return None
        plan = _LayerFactory(masked=True).layer(self.operation, _path(self.operation))
        if not _masked_build.keeps_feature_places(plan):
            return None
        return Built(operation=self.operation, masked=True,
                     width_divisor=2 * self.width_divisor, name=self.name)

    @nn.nowrap
    def narrow_fits(self, variables: Any, narrow_variables: Any, x: Any,
                    config: Any) -> jax.Array:
        """Whether every feature this module's layers use for `config` lies inside
        `narrowed()`'s shapes at the same place, so that the narrow module with
        `narrow_variables` (the leading blocks of `variables`) computes what this one
        does: a traced bool, from each masked layer's live masks on the input `x` (one row
        suffices). A layer in a block that `config`'s depth skips uses nothing."""
        narrowed = self.narrowed()
        if narrowed is None:
            return jnp.zeros((), bool)
        wide = _masked_build.live_masks(self, variables, x, config)
        narrow = _masked_build.live_masks(narrowed, narrow_variables, x, config)
        if jax.tree.structure(wide) != jax.tree.structure(narrow):
            return jnp.zeros((), bool)
        fits = jnp.ones((), bool)
        for w, n in zip(jax.tree.leaves(wide), jax.tree.leaves(narrow)):
            size = n.shape[-1]
            if w.shape[-1] < size:
                return jnp.zeros((), bool)
            fits &= ~jnp.any(w[..., size:]) & jnp.all(w[..., :size] == n)
        return fits

    @nn.compact
    def __call__(self, x, train: bool = False, config: Any = None):
        """Applies the network; `config` gives a masked module its active widths."""
        if not self.masked:
            layer = _LayerFactory().layer(self.operation, _path(self.operation))
            return call_layer(layer, x, train)
        if config is None:
            raise BuildError(f"{_path(self.operation)}: this module was built with masked "
                             f"widths; call it with the config whose widths are active "
                             f"(module.apply(params, x, config=config)).")
        plan = _LayerFactory(masked=True).layer(self.operation, _path(self.operation))
        y, _ = _masked_build.MaskedPlanRunner(self, config, train).run(plan, x, None)
        return y


# ----------------------------------------------------------------------- making


class _LayerFactory:
    """Turns operations into layers inside `Built`'s compact scope, one per occurrence.

    As in NePS, an operation object used in several places shares its searched values,
    not its weights: each place it occurs becomes its own module, named by that place's
    path (`model.args[0][2]`). With `masked`, blocks and maskable layers become plans for
    `_masked_build.MaskedPlanRunner` instead of modules.
    """

    def __init__(self, masked: bool = False):
        self.masked = masked

    def layer(self, op: Any, path: str) -> Any:
        """The layer (or masked plan) for `op` at `path`; anything else is returned as is."""
        if not isinstance(op, Operation):
            return op  # a constant, or a layer the user built already
        operator = Sequential if op.operator is nn.Sequential else op.operator
        args = tuple(self._argument(a, f"{path}.args[{i}]") for i, a in enumerate(op.args))
        kwargs = {k: self._argument(v, f"{path}.kwargs.{k}") for k, v in op.kwargs.items()}
        if self.masked:
            plan = _masked_build.masked_plan(operator, args, kwargs, path)
            if plan is not None:
                return plan
        if is_module_class(operator):
            if operator is Sequential:
                args = (args,)  # layers as varargs (torch, NePS) or one list (flax); flattened
            if self.masked:  # made where it runs: inside a skippable block's branch
                return _masked_build.LeafPlan(operator, functools.partial(
                    _made_layer, _instantiate, operator, args, kwargs, path), path)
            return _instantiate(operator, args, kwargs, path)
        if self.masked and _holds_leaf_plan((args, kwargs)):  # a function of layers
            return _masked_build.LeafPlan(operator, functools.partial(
                _made_layer, _FunctionLayer, operator, args, kwargs, path), path)
        return _FunctionLayer(operator, args, kwargs, path)

    def _argument(self, value: Any, path: str) -> Any:
        if isinstance(value, Operation):
            return self.layer(value, path)
        if isinstance(value, (list, tuple)) and _holds_operation(value):
            return tuple(self._argument(v, f"{path}[{i}]") for i, v in enumerate(value))
        return value


def _made_layer(make: Callable, operator: Any, args: tuple, kwargs: dict, path: str) -> Any:
    """`make(operator, args, kwargs, path)` with the layers in its arguments made first."""
    return make(operator, _masked_build.made(args), _masked_build.made(kwargs), path)


def _holds_leaf_plan(value: Any) -> bool:
    if isinstance(value, _masked_build.LeafPlan):
        return True
    if isinstance(value, dict):
        return any(_holds_leaf_plan(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(_holds_leaf_plan(v) for v in value)


def _holds_operation(value: Any) -> bool:
    if isinstance(value, Operation):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_operation(v) for v in value)


def _instantiate(operator: type, args: tuple, kwargs: dict, path: str) -> nn.Module:
    try:
        return operator(*args, **kwargs, name=path)
    except TypeError as error:
        fields = [f.name for f in dataclasses.fields(operator)
                  if f.init and f.name not in ("parent", "name")]
        shown = tuple(type(a).__name__ if isinstance(a, nn.Module) else a for a in args)
        raise BuildError(
            f"{path}: {operator.__qualname__} does not accept args={shown!r}, kwargs="
            f"{sorted(kwargs)} ({error}); its fields are {fields}."
        ) from error


@dataclasses.dataclass(frozen=True)
class _FunctionLayer:
    """A function operator as a layer: `fn(x, *args, **kwargs)`."""

    fn: Callable
    args: tuple
    kwargs: dict
    name: str

    def __call__(self, x):
        return self.fn(x, *self.args, **self.kwargs)


# ----------------------------------------------------------------------- checks


def _check(op: Any, seen: set | None = None) -> None:
    """Rejects operators that can never be layers, before any shape is known."""
    seen = set() if seen is None else seen
    if id(op) in seen:
        return
    seen.add(id(op))
    if isinstance(op, Operation):
        operator = op.operator  # callable: the Operation constructor checked that
        if isinstance(operator, type) and not is_module_class(operator):
            raise BuildError(
                f"{_path(op)}: operator {operator!r} is not a Linen module class, a jaxnas "
                f"block or a function; wrap other callables in a function of the input."
            )
        for value in (*op.args, *op.kwargs.values()):
            _check(value, seen)
    elif isinstance(op, (list, tuple)):
        for item in op:
            _check(item, seen)


def is_module_class(operator: Any) -> bool:
    """Whether `operator` is a Linen module class (what the space layer treats as a module)."""
    return isinstance(operator, type) and issubclass(operator, nn.Module)


def _path(op: Any) -> str:
    return getattr(op, "name", None) or getattr(getattr(op, "operator", None), "__name__", "op")


# ----------------------------------------------------------------------- summary


def summary(module: nn.Module, input_shape: tuple, *, dtype: Any = jnp.float32,
            train: bool = False, config: Any = None) -> dict[str, Any]:
    """Parameter count and FLOPs of a module on an input shape (XLA's cost analysis).

    Nothing is allocated or compiled: parameters come from `jax.eval_shape`, FLOPs from XLA's
    cost analysis of the lowered forward pass.

    Args:
        module: A Linen module (e.g. from `build`).
        input_shape: The input's shape, batch axis included.
        dtype: The input's dtype.
        train: Passed to the module's call.
        config: The config of a masked module (its active widths); the counts are those of
            the module as built, at the maximum widths.

    Returns:
        `{"params": int, "flops": float, "output_shape": tuple}`.
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    extra = {} if config is None else {"config": config}
    variables = jax.eval_shape(functools.partial(module.init, train=train, **extra), rngs, x)
    param_count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables.get("params", {})))

    def forward(variables, x):
        return module.apply(variables, x, train=train, rngs={"dropout": jax.random.key(2)},
                            mutable=["batch_stats"] if train else False, **extra)

    out = jax.eval_shape(forward, variables, x)
    out = out[0] if train else out
    lowered = jax.jit(forward).lower(variables, x)
    cost = lowered.cost_analysis()  # the HLO's own count: no compilation needed
    if not cost:
        cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"params": param_count, "flops": float((cost or {}).get("flops", 0.0)),
            "output_shape": tuple(out.shape)}
