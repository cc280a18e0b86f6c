"""`SearchSpace`: a compiled space with pure, jittable, vmappable sampling and encodings.

A config is a flat dict `path -> scalar array`: float32 for `Float`, int32 for `Integer`
and for a `Categorical` (the chosen index). Every slot is always present (fixed shapes);
`active(config)` says which ones the chosen branches use. Under `vmap` each leaf gets a
leading axis.

Unit encoding. Each slot maps to [0, 1]: floats linearly in (log-)space; integers to the
centre of one of `upper - lower + 1` equal bins (with `log=True`, value v owns
[log(v - 0.5), log(v + 0.5)], rescaled);
categoricals to the centre of one of `n` bins over their *feasible* choices (choices a
recursive grammar cannot finish within `max_depth` are skipped). `from_unit` inverts it.

Priors (PriorBand, Mallik et al. 2023, Sec. 5 and App. E): a numeric prior is a normal
truncated to the unit interval, centred on the prior's encoding, with sigma 0.5 / 0.25 /
0.125 for low / medium / high confidence; a categorical prior weighs its choice 2 / 4 / 6
against 1 for every other choice. `log_prior` is the log density of that distribution with
respect to the unit encoding (Lebesgue measure for floats, counting measure for integers
and categoricals); parameters without a prior contribute their uniform density.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr, ndtri

from jaxnas.space import _compile as C
from jaxnas.space._config import Config, Layout, PathValues
from jaxnas.space._parameters import Fidelity, Operation, Parameter

PRIOR_SIGMA = {"low": 0.5, "medium": 0.25, "high": 0.125}
PRIOR_WEIGHT = {"low": 2.0, "medium": 4.0, "high": 6.0}


class FidelityInfo:
    """Where the space's fidelity sits and its range."""

    __slots__ = ("path", "lower", "upper", "is_integer")

    def __init__(self, path: str, fidelity: Fidelity):
        self.path, self.lower, self.upper = path, fidelity.lower, fidelity.upper
        self.is_integer = fidelity.is_integer

    def __repr__(self) -> str:
        kind = "int" if self.is_integer else "float"
        return f"FidelityInfo({self.path!r}, {self.lower!r}..{self.upper!r}, {kind})"


@dataclasses.dataclass(frozen=True)
class MaskedWidth:
    """A searched width left open in a masked build: the config's value at `path`.

    `spec.resolve(config, masked=True)` puts one in place of each width (the `features` of a
    `nn.Dense` or `nn.Conv`) so that every config of a masked bucket resolves to the same
    module, built at `maximum`; the module reads the width from the config it is called with.

    Attributes:
        path: the width's slot.
        maximum: the largest width it can take (the parameter's upper bound).
        choices: for a `Categorical` of widths, the widths by index; None for an `Integer`.
    """

    path: str
    maximum: int
    choices: tuple[int, ...] | None = None

    def value(self, config: Mapping[str, Any]) -> jax.Array:
        """The active width in `config`, an int32 scalar (traced under jit and vmap)."""
        v = jnp.asarray(config[self.path], jnp.int32)
        if self.choices is not None:
            v = jnp.asarray(self.choices, jnp.int32)[v]
        return v


class SearchSpace:
    """A compiled, immutable, hashable search space (see `jaxnas.compile`).

    `sample`, `sample_prior`, `log_prior`, `to_unit`, `from_unit`, `mutate` and `active`
    are pure functions of their arguments: jit and vmap them freely. `resolve`,
    `parameters`, `bucket` and `buckets` are host-side helpers.

    Attributes:
        paths: slot paths, in the order of `to_unit`'s columns.
        static_paths: paths of static (structure-changing) slots.
        fidelity: a `FidelityInfo`, or None when the space has no fidelity.
        max_depth: the recursion depth the space was unrolled to.
    """

    def __init__(self, compiled: C.Compiled, *, max_depth: int, max_slots: int):
        object.__setattr__(self, "_c", compiled)
        object.__setattr__(self, "max_depth", max_depth)
        object.__setattr__(self, "max_slots", max_slots)
        object.__setattr__(self, "_t", _Tables(compiled))
        object.__setattr__(self, "_fingerprint", _fingerprint(compiled, max_depth))
        object.__setattr__(self, "_widths", _width_slots(compiled))
        # Host helpers run this on every batch: jitted once per batch size, not op by op.
        object.__setattr__(self, "_active_batch", jax.jit(jax.vmap(self.active)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SearchSpace is immutable.")

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, SearchSpace) and self._fingerprint == other._fingerprint

    def __reduce__(self) -> tuple:
        """Pickles the space as its definition, compiled again on load (the compiled
        tables hold jitted functions, which do not pickle)."""
        source = getattr(self, "_source", None)
        if source is None:
            raise TypeError("this SearchSpace was not made by jaxnas.compile and cannot be "
                            "pickled.")
        return (_recompile, (source, self.max_depth, self.max_slots))

    def describe(self) -> dict[str, str]:
        """Each slot's path and definition, as text: what a resumed run compares."""
        return {s.path: f"{s.kind} {s.param!r}{' static' if s.static else ''}"
                for s in self._c.slots}

    def __repr__(self) -> str:
        t = self._t
        return (
            f"SearchSpace({len(t.paths)} slots: {t.n_float} float, {t.n_int} int, "
            f"{t.n_cat} categorical; {len(self.static_paths)} static; "
            f"fidelity={self.fidelity}; max_depth={self.max_depth})"
        )

    # ------------------------------------------------------------------ properties

    @property
    def paths(self) -> tuple[str, ...]:
        return self._t.paths

    @property
    def static_paths(self) -> tuple[str, ...]:
        return tuple(p for p, s in zip(self._t.paths, self._t.static) if s)

    @property
    def width_paths(self) -> tuple[str, ...]:
        """Paths of the widths a masked build leaves open (`bucket(config, masked=True)`).

        A width is an `Integer`, or a `Categorical` of integers, used only as the `features`
        of `nn.Dense` or `nn.Conv` operations (wherever it is shared) and not marked
        `static=True`. Values computed by a `Dynamic` stay static.
        """
        return tuple(self._t.paths[i] for i in self._widths)

    @property
    def fidelity(self) -> FidelityInfo | None:
        fid = self._c.fidelity
        return None if fid is None else FidelityInfo(fid.path, fid.fidelity)

    def parameters(self) -> dict[str, Parameter]:
        """Returns `{path: parameter}` for every slot (HANNAH's `parametrization(flatten=True)`).

        A resampled copy maps to its source parameter.
        """
        return {slot.path: slot.param for slot in self._c.slots}

    # ---------------------------------------------------------------- pure methods

    def sample(self, key: jax.Array) -> Config:
        """Samples a config uniformly (log-uniformly where `log=True`), ignoring priors."""
        t = self._t
        u = jax.random.uniform(key, (t.n_num + t.n_cat,), jnp.float32)
        idx = _categorical(u[t.n_num:], t.logits_uniform)
        return self._assemble(t.num_from_unit(u[: t.n_num]), idx)

    def sample_prior(self, key: jax.Array) -> Config:
        """Samples a config from the prior (uniform for parameters without one)."""
        t = self._t
        u = jax.random.uniform(key, (t.n_num + t.n_cat,), jnp.float32)
        u_num = u[: t.n_num]
        u_prior = _truncated_normal_unit(u_num, t.prior_mu, t.prior_sigma)
        u_num = jnp.where(t.has_prior, u_prior, u_num)
        idx = _categorical(u[t.n_num:], t.logits_prior)
        return self._assemble(t.num_from_unit(u_num), idx)

    def log_prior(self, config: Config) -> jax.Array:
        """Log density of `config` under the prior, summed over active slots (float32)."""
        t = self._t
        num, idx = self._split(config)
        active_num, active_cat = t.active_split(t.evaluate_gates(idx))
        log_num = t.num_log_prior(num)
        log_cat = jnp.take_along_axis(
            jax.nn.log_softmax(t.logits_prior, axis=-1), idx[:, None], axis=-1
        )[:, 0] if t.n_cat else jnp.zeros((0,), jnp.float32)
        return jnp.sum(jnp.where(active_num, log_num, 0.0)) + jnp.sum(
            jnp.where(active_cat, log_cat, 0.0)
        )

    def values(self, config: Config) -> dict[str, jax.Array]:
        """The config's values by path, as a training step reads them (pure, jittable).

        A `Float` or `Integer` is its value; a `Categorical` of plain numbers is the chosen
        number (float32, so a traced learning rate or dropout rate can come from a list);
        any other `Categorical` is its index (int32). `Dynamic` values and operations are
        structure: use `resolve` on the host for those.
        """
        out = {}
        for path, choices in zip(self._t.paths, self._t.number_choices):
            value = config[path]
            out[path] = value if choices is None else jnp.asarray(choices, jnp.float32)[value]
        return out

    def config(self, values: Mapping[str, Any]) -> Config:
        """Packs values by path into a `Config` of this space (the inverse of reading one).

        Args:
            values: `{path: value}` for every path of the space; scalars give one config,
                arrays with a leading axis a batch. Host (numpy or Python) values stay on
                the host: packing a stored batch compiles nothing.

        Raises:
            KeyError: a path of the space missing from `values`.
        """
        self._check_paths(values)
        layout = self._t.layout
        columns = [np.asarray(values[p]) for p in layout.paths]
        shape = columns[0].shape if columns else ()

        def pack(is_float: bool, dtype: Any) -> np.ndarray:
            picked = [c for c, f in zip(columns, layout.is_float) if f == is_float]
            if not picked:
                return np.zeros((*shape, 0), dtype)
            return np.stack([c.astype(dtype) for c in picked], axis=-1)

        return Config(pack(True, np.float32), pack(False, np.int32), layout)

    def to_unit(self, config: Config) -> jax.Array:
        """Encodes `config` as a `(len(paths),)` float32 vector in [0, 1]."""
        t = self._t
        num, idx = self._split(config)
        return t.join(t.num_to_unit(num), t.cat_to_unit(idx))

    def from_unit(self, u: jax.Array) -> Config:
        """Decodes a `(len(paths),)` vector in [0, 1] into a config (values are clipped)."""
        t = self._t
        u = jnp.clip(jnp.asarray(u, jnp.float32), 0.0, 1.0)
        return self._assemble(t.num_from_unit(u[t.num_cols]), t.cat_from_unit(u[t.cat_cols]))

    def mutate(self, key: jax.Array, config: Config, rate: float | jax.Array,
               std: float | jax.Array) -> Config:
        """Perturbs each slot with probability `rate` (PriorBand's incumbent sampling).

        A mutated numeric slot moves by a normal with sigma `std` in the unit encoding,
        truncated to [0, 1]; a mutated categorical takes a different feasible choice,
        uniformly. `rate` and `std` may be traced.
        """
        t = self._t
        num, idx = self._split(config)
        n = t.n_num + t.n_cat
        u = jax.random.uniform(key, (2 * n,), jnp.float32)
        flip = u[:n] < rate
        u_num = t.num_to_unit(num)
        moved = t.num_from_unit(
            _truncated_normal_unit(u[n: n + t.n_num], u_num, jnp.broadcast_to(std, u_num.shape)))
        new_num = jnp.where(flip[: t.n_num], moved, num)
        others = jnp.where(
            jax.nn.one_hot(idx, t.max_choices, dtype=bool), -jnp.inf, t.logits_uniform
        )
        has_other = jnp.any(jnp.isfinite(others), axis=-1)
        new_idx = _categorical(u[n + t.n_num:], jnp.where(has_other[:, None], others, t.logits_uniform))
        new_idx = jnp.where(flip[t.n_num:] & has_other, new_idx, idx)
        return self._assemble(new_num, new_idx)

    def active(self, config: Config) -> PathValues:
        """Returns a mapping `path -> bool`: whether the chosen branches use each slot."""
        _, idx = self._split(config)
        return PathValues(self._t.evaluate_gates(idx), self._t.paths)

    # ----------------------------------------------------------------- host helpers

    def resolve(self, config: Mapping[str, Any], fidelity: float | None = None, *,
                build: bool = True, masked: bool = False) -> Any:
        """Turns one concrete config into the user's pytree with values in place.

        Args:
            config: One config (not a batch), e.g. from `sample`.
            fidelity: Value for the space's fidelity entry; defaults to its upper bound.
            build: Build operations: an operation whose operator is a Linen module class
                becomes `jn.nn.build(...)` of it (one module, layers named by path); any
                other class is instantiated with its arguments; a function operator becomes
                `functools.partial(fn, *args, **kwargs)` (the function itself without
                arguments). With `build=False` operations are returned as `Operation`s
                holding concrete arguments and named by their path.
            masked: Leave the widths (`width_paths`) open: every config of one masked bucket
                resolves to the same modules, built at the maximum widths with masked
                layers, called as `module.apply(params, x, config=config)` so that each
                member's widths are traced values. With `build=False` the widths are
                `jn.nn.MaskedWidth`s.

        Returns:
            The space's pytree; `_name` entries dropped; shared objects resolve to the same
            Python object, so a shared operation is one module instance.

        Raises:
            ValueError: a batched config, or a fidelity out of range.
            KeyError: a path of the space missing from `config`.
            TypeError: an operator that rejects its resolved arguments (names the path).
        """
        values = self._host_values(config)
        fid_value = self._fidelity_value(fidelity)
        widths = self._widths if masked else {}
        return _Resolver(self._c.slots, values, fid_value, build, widths).resolve(self._c.root)

    def bucket(self, config: Mapping[str, Any], *, masked: bool = False) -> tuple:
        """Returns the hashable static signature of one config.

        Configs with equal signatures share program structure and array shapes and can
        be trained in one compiled, vmapped call. The signature lists
        `(path, value)` for every active static slot (the index for a categorical).
        With `masked=True` the widths (`width_paths`) are left out: configs that differ
        only in widths share a bucket, trained at the maximum widths with masks
        (`resolve(config, masked=True)`).
        """
        values = self._host_values(config)
        return self.buckets({p: v[None] for p, v in values.items()}, masked=masked)[0]

    def buckets(self, configs: Mapping[str, Any], *, masked: bool = False) -> list[tuple]:
        """`bucket` for a batch of configs (leading axis), as a list of signatures."""
        t = self._t
        if not t.paths:  # no decisions: every config has the empty signature
            n = np.shape(configs.floats)[0] if isinstance(configs, Config) else 1
            return [()] * n
        arrays = {p: np.asarray(configs[p]) for p in t.paths}
        if any(a.ndim != 1 for a in arrays.values()):
            raise ValueError("buckets takes a batch of configs with one leading axis.")
        active = np.asarray(self._active_batch(configs).array)
        static = [i for i, s in enumerate(t.static) if s and not (masked and i in self._widths)]
        columns = [(t.paths[i], arrays[t.paths[i]].tolist()) for i in static]
        return [
            tuple((path, column[row]) for (path, column), i in zip(columns, static)
                  if active[row, i])
            for row in range(len(active))
        ]

    # ------------------------------------------------------------------- internals

    def _assemble(self, num: jax.Array, idx: jax.Array) -> Config:
        """Packs the internal numeric / categorical vectors into a `Config`."""
        t = self._t
        ints = jnp.concatenate([num.astype(jnp.int32), idx])[t.int_gather]
        return Config(num[t.float_from_num], ints, t.layout)

    def _split(self, config: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
        """Unpacks a config (a `Config` or any mapping by path) into numeric and indices."""
        t = self._t
        if isinstance(config, Config) and config.layout == t.layout:
            floats, ints = jnp.asarray(config.floats), jnp.asarray(config.ints)
        else:
            self._check_paths(config)
            floats = _stack([config[p] for p, f in zip(t.paths, t.layout.is_float) if f],
                            jnp.float32)
            ints = _stack([config[p] for p, f in zip(t.paths, t.layout.is_float) if not f],
                          jnp.int32)
        if floats.ndim != 1 or ints.ndim != 1:
            raise ValueError(
                "SearchSpace methods take one config of scalars; use jax.vmap for a batch."
            )
        num = jnp.concatenate([floats.astype(jnp.float32), ints.astype(jnp.float32)])
        return num[t.num_gather], ints.astype(jnp.int32)[t.cat_gather]

    def _check_paths(self, config: Mapping[str, Any]) -> None:
        missing = [p for p in self._t.paths if p not in config]
        if missing:
            raise KeyError(f"config lacks paths {missing[:5]} of this space.")

    def _host_values(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self._check_paths(config)
        values = {p: np.asarray(config[p]) for p in self._t.paths}
        batched = [p for p, v in values.items() if v.ndim]
        if batched:
            raise ValueError(
                f"expected one config of scalars, but {batched[0]!r} has shape "
                f"{values[batched[0]].shape}; pick one first, e.g. "
                f"jax.tree.map(lambda x: x[i], configs)."
            )
        return values

    def _fidelity_value(self, fidelity: float | None) -> Any:
        info = self.fidelity
        if info is None:
            if fidelity is not None:
                raise ValueError(f"fidelity={fidelity!r} given, but the space has no fidelity.")
            return None
        if fidelity is None:
            return info.upper
        if not info.lower <= fidelity <= info.upper:
            raise ValueError(
                f"fidelity={fidelity!r} for {info.path!r} is outside "
                f"[{info.lower!r}, {info.upper!r}]."
            )
        return int(fidelity) if info.is_integer else float(fidelity)


# --------------------------------------------------------------------- numerics


def _longest_chains(n_gates: int, deps: dict[int, list[int]]) -> list[int]:
    """Length of the longest dependency chain below each gate (root and never: 0)."""
    level: dict[int, int] = {0: 0, 1: 0}
    for start in range(n_gates):
        stack = [start]
        while stack:  # iterative DFS: grammars can nest deeper than Python's recursion limit
            g = stack[-1]
            if g in level:
                stack.pop()
                continue
            pending = [d for d in deps[g] if d not in level]
            if pending:
                stack.extend(pending)
            else:
                level[g] = 1 + max(level[d] for d in deps[g])
                stack.pop()
    return [level[g] for g in range(n_gates)]


def _log_normal_mass(a: jax.Array, b: jax.Array) -> jax.Array:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails.

    Phi(b) - Phi(a) cancels to 0 in float32 once both lie far in the upper tail, so an
    interval above zero is mirrored below it, where log_ndtr resolves tiny masses.
    """
    upper = a > 0
    lo, hi = jnp.where(upper, -b, a), jnp.where(upper, -a, b)
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    return log_hi + jnp.log1p(-jnp.exp(jnp.minimum(log_lo - log_hi, -1e-7)))


def _stack(values: list, dtype: Any) -> jax.Array:
    if not values:
        return jnp.zeros((0,), dtype)
    return jnp.stack([jnp.asarray(v, dtype) for v in values])


def _categorical(u: jax.Array, logits: jax.Array) -> jax.Array:
    """Inverse-CDF draw per row of `logits` from uniforms `u` (one per row).

    One uniform per decision keeps every method to a single `jax.random` call, which
    compiles far faster on CPU than one threefry call per distribution.
    """
    if logits.shape[0] == 0:
        return jnp.zeros((0,), jnp.int32)
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    last = logits.shape[-1] - 1 - jnp.argmax(jnp.isfinite(logits)[:, ::-1], axis=-1)
    # `<=` skips zero-probability choices even for u == 0.
    idx = jnp.sum(cdf <= u[:, None] * cdf[:, -1:], axis=-1)
    return jnp.minimum(idx, last).astype(jnp.int32)  # guards rounding at the top end


def _truncated_normal_unit(u: jax.Array, mu: jax.Array, sigma: jax.Array) -> jax.Array:
    """N(mu, sigma) truncated to [0, 1], by inverse CDF of uniforms `u`, elementwise.

    `mu` lies in [0, 1], so the interval always contains the mode and the CDF difference
    never vanishes; the inverse is accurate for the sigmas used here (>= 1e-3).
    """
    if mu.shape[0] == 0:
        return mu
    # Reflect so that the mode sits in the upper half: the long tail then maps to p near
    # 0, where float32 resolves probabilities finely (it does not near p = 1).
    flip = mu < 0.5
    m = jnp.where(flip, 1.0 - mu, mu)
    lower, upper = ndtr(-m / sigma), ndtr((1.0 - m) / sigma)
    p = jnp.clip(lower + u * (upper - lower), 1e-30, 1.0 - 1e-7)
    x = jnp.clip(m + sigma * ndtri(p), 0.0, 1.0)
    return jnp.where(flip, 1.0 - x, x)


class _Tables:
    """Numpy tables derived from the compiled slots and gates; closed over by the methods."""

    def __init__(self, compiled: C.Compiled):
        slots = compiled.slots
        self.paths = tuple(s.path for s in slots)
        self.kinds = tuple(s.kind for s in slots)
        self.static = tuple(s.static for s in slots)
        self.number_choices = tuple(
            tuple(float(c) for c in s.param.choices)
            if s.kind == "cat" and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                       for c in s.param.choices) else None
            for s in slots)
        self.num_slots = [i for i, s in enumerate(slots) if s.kind != "cat"]
        self.cat_slots = [i for i, s in enumerate(slots) if s.kind == "cat"]
        self.n_num, self.n_cat = len(self.num_slots), len(self.cat_slots)
        self.n_float = sum(k == "float" for k in self.kinds)
        self.n_int = sum(k == "int" for k in self.kinds)
        self.num_cols = np.asarray(self.num_slots, np.int32)
        self.cat_cols = np.asarray(self.cat_slots, np.int32)
        self._build_packing()
        self._build_numeric([slots[i] for i in self.num_slots])
        self._build_categorical([slots[i] for i in self.cat_slots])
        self._build_gates(compiled)

    # -- packing: Config holds floats and ints; the math works on numeric and categorical

    def _build_packing(self) -> None:
        kinds = self.kinds
        self.layout = Layout(self.paths, tuple(k == "float" for k in kinds))
        float_slots = [i for i, k in enumerate(kinds) if k == "float"]
        int_slots = [i for i, k in enumerate(kinds) if k != "float"]
        num_pos = {slot: j for j, slot in enumerate(self.num_slots)}
        cat_pos = {slot: j for j, slot in enumerate(self.cat_slots)}
        float_pos = {slot: j for j, slot in enumerate(float_slots)}
        int_pos = {slot: j for j, slot in enumerate(int_slots)}
        self.float_from_num = np.array([num_pos[i] for i in float_slots], np.int32)
        self.int_gather = np.array(
            [num_pos[i] if kinds[i] == "int" else self.n_num + cat_pos[i] for i in int_slots],
            np.int32)
        self.num_gather = np.array(
            [float_pos[i] if kinds[i] == "float" else len(float_slots) + int_pos[i]
             for i in self.num_slots], np.int32)
        self.cat_gather = np.array([int_pos[i] for i in self.cat_slots], np.int32)

    # -- numeric slots

    def _build_numeric(self, slots: list) -> None:
        n = len(slots)
        self.is_int = np.array([s.kind == "int" for s in slots], bool)
        self.is_log = np.array([s.param.log for s in slots], bool)
        self.lower = np.array([s.param.lower for s in slots], np.float64)
        self.upper = np.array([s.param.upper for s in slots], np.float64)
        half = np.where(self.is_int, 0.5, 0.0)
        edge_lo, edge_hi = self.lower - half, self.upper + half
        self.t_lo = np.where(self.is_log, np.log(np.where(self.is_log, edge_lo, 1.0)), edge_lo)
        self.t_hi = np.where(self.is_log, np.log(np.where(self.is_log, edge_hi, 1.0)), edge_hi)
        mu = np.full(n, 0.5)
        sigma = np.ones(n)
        has_prior = np.zeros(n, bool)
        for j, s in enumerate(slots):
            if s.param.prior is not None:
                has_prior[j] = True
                mu[j] = self._unit64(j, s.param.prior)
                sigma[j] = PRIOR_SIGMA[s.param.prior_confidence]
        self.has_prior = has_prior
        self.prior_mu = mu.astype(np.float32)
        self.prior_sigma = sigma.astype(np.float32)

    def _unit64(self, j: int, value: float) -> float:
        t = math.log(value) if self.is_log[j] else value
        return (t - self.t_lo[j]) / (self.t_hi[j] - self.t_lo[j])

    def num_from_unit(self, u: jax.Array) -> jax.Array:
        t_lo = jnp.asarray(self.t_lo, jnp.float32)
        t = t_lo + u * jnp.asarray(self.t_hi - self.t_lo, jnp.float32)
        x = jnp.where(self.is_log, jnp.exp(t), t)
        x = jnp.where(self.is_int, jnp.round(x), x)
        return jnp.clip(x, jnp.asarray(self.lower, jnp.float32), jnp.asarray(self.upper, jnp.float32))

    def num_to_unit(self, x: jax.Array) -> jax.Array:
        t = jnp.where(self.is_log, jnp.log(jnp.where(self.is_log, jnp.maximum(x, 1e-30), 1.0)), x)
        u = (t - jnp.asarray(self.t_lo, jnp.float32)) / jnp.asarray(self.t_hi - self.t_lo, jnp.float32)
        return jnp.clip(u, 0.0, 1.0)

    def num_log_prior(self, x: jax.Array) -> jax.Array:
        """Per-slot log density (floats) or log bin mass (integers) under the prior."""
        mu, sigma = self.prior_mu, self.prior_sigma
        z = ndtr((1.0 - mu) / sigma) - ndtr(-mu / sigma)  # truncation mass
        # Floats: truncated-normal density in the unit encoding; uniform density is 1.
        u = self.num_to_unit(x)
        log_pdf = (-0.5 * jnp.square((u - mu) / sigma) - 0.5 * math.log(2 * math.pi)
                   - jnp.log(sigma) - jnp.log(z))
        log_pdf = jnp.where(self.has_prior, log_pdf, 0.0)
        # Integers: probability of the value's bin [a, b] in the unit encoding.
        a = self.num_to_unit(x - 0.5)
        b = self.num_to_unit(x + 0.5)
        log_mass_prior = _log_normal_mass((a - mu) / sigma, (b - mu) / sigma) - jnp.log(z)
        log_mass = jnp.where(self.has_prior, log_mass_prior,
                             jnp.log(jnp.maximum(b - a, 1e-30)))
        return jnp.where(self.is_int, log_mass, log_pdf)

    # -- categorical slots

    def _build_categorical(self, slots: list) -> None:
        self.max_choices = max([len(s.feasible) for s in slots], default=1)
        n = len(slots)
        feasible = np.zeros((n, self.max_choices), bool)
        log_w_prior = np.full((n, self.max_choices), -np.inf)
        for c, s in enumerate(slots):
            feasible[c, : len(s.feasible)] = s.feasible
            weight = np.ones(len(s.feasible))
            if s.param.prior is not None:
                weight[s.param.prior] = PRIOR_WEIGHT[s.param.prior_confidence]
            log_w_prior[c, : len(s.feasible)] = np.log(weight)
        self.feasible = feasible
        self.logits_uniform = np.where(feasible, 0.0, -np.inf).astype(np.float32)
        self.logits_prior = np.where(feasible, log_w_prior, -np.inf).astype(np.float32)
        self.n_feasible = feasible.sum(-1).astype(np.int32)
        self.rank = (np.cumsum(feasible, -1) - 1).astype(np.int32)  # rank among feasible
        order = np.argsort(~feasible, axis=-1, kind="stable")  # feasible choices first
        self.by_rank = order.astype(np.int32)

    def cat_to_unit(self, idx: jax.Array) -> jax.Array:
        if self.n_cat == 0:
            return jnp.zeros((0,), jnp.float32)
        rank = jnp.take_along_axis(jnp.asarray(self.rank), idx[:, None], axis=-1)[:, 0]
        return (rank.astype(jnp.float32) + 0.5) / jnp.asarray(self.n_feasible, jnp.float32)

    def cat_from_unit(self, u: jax.Array) -> jax.Array:
        if self.n_cat == 0:
            return jnp.zeros((0,), jnp.int32)
        n = jnp.asarray(self.n_feasible)
        rank = jnp.clip(jnp.floor(u * n).astype(jnp.int32), 0, n - 1)
        return jnp.take_along_axis(jnp.asarray(self.by_rank), rank[:, None], axis=-1)[:, 0]

    def join(self, u_num: jax.Array, u_cat: jax.Array) -> jax.Array:
        return jnp.concatenate([u_num, u_cat])[self.inverse_perm]

    # -- gates

    def _build_gates(self, compiled: C.Compiled) -> None:
        gates, slots = compiled.gates, compiled.slots
        canonical: dict[int, Any] = {}

        def canon(g: int) -> Any:
            """Collapses alias chains: a gate becomes 'root', ('choice', slot, i) or a set."""
            if g in canonical:
                return canonical[g]
            gate = gates[g]
            if gate.kind == "root":
                out: Any = "root"
            elif gate.kind == "choice":
                out = ("choice", gate.slot, gate.choice)
            else:
                refs: set = set()
                for r in gate.refs:
                    c = canon(r)
                    if c == "root":
                        refs = {"root"}
                        break
                    if c != "never":
                        refs |= c if isinstance(c, frozenset) else {c}
                out = ("root" if "root" in refs else "never" if not refs else
                       next(iter(refs)) if len(refs) == 1 else frozenset(refs))
            canonical[g] = out
            return out

        # Compact gate table: 0 = root, 1 = never, then choice and alias (any-of) gates.
        table: dict[Any, int] = {"root": 0, "never": 1}  # "never" stays 0 in every round
        kinds: list = ["root", "never"]
        choice_slot, choice_value, alias_refs = [], [], []

        def index(c: Any) -> int:
            if c in table:
                return table[c]
            if isinstance(c, frozenset):
                members = [index(m) for m in sorted(c, key=repr)]
                table[c] = len(kinds)
                kinds.append("alias")
                alias_refs.append((table[c], members))
            else:
                table[c] = len(kinds)
                kinds.append("choice")
                choice_slot.append((table[c], c[1], c[2]))
            return table[c]

        self.slot_gate = np.array([index(canon(s.gate)) for s in slots], np.int32)
        n_gates = len(kinds)
        deps: dict[int, list[int]] = {g: [int(self.slot_gate[slot])] for g, slot, _ in choice_slot}
        deps.update({g: members for g, members in alias_refs})
        level = _longest_chains(n_gates, deps)  # propagation rounds needed per gate
        self.rounds = max(level, default=0)
        self.n_gates = n_gates
        cat_col = {slot: j for j, slot in enumerate(self.cat_slots)}
        self.choice_gate = np.array([g for g, _, _ in choice_slot], np.int32)
        self.choice_slot = np.array([s for _, s, _ in choice_slot], np.int32)
        self.choice_col = np.array([cat_col[s] for _, s, _ in choice_slot], np.int32)
        self.choice_value = np.array([v for _, _, v in choice_slot], np.int32)
        owners = [g for g, members in alias_refs for _ in members]
        refs = [m for _, members in alias_refs for m in members]
        self.alias_owner = np.array(owners, np.int32)
        self.alias_ref = np.array(refs, np.int32)
        perm = np.concatenate([self.num_cols, self.cat_cols]).astype(np.int64)
        self.inverse_perm = np.argsort(perm).astype(np.int32)

    def evaluate_gates(self, idx: jax.Array) -> jax.Array:
        """Slot activity `(n_slots,)` bool from the categorical indices `(n_cat,)`."""
        n_slots = len(self.paths)
        if self.rounds == 0:
            return jnp.asarray(self.slot_gate == 0)
        picked = idx[self.choice_col] == self.choice_value if len(self.choice_gate) else None
        g = jnp.zeros((self.n_gates,), jnp.int32).at[0].set(1)
        for _ in range(self.rounds):
            new = jnp.zeros((self.n_gates,), jnp.int32).at[0].set(1)
            if picked is not None:
                slot_on = g[self.slot_gate[self.choice_slot]]
                new = new.at[self.choice_gate].set(slot_on * picked.astype(jnp.int32))
            if len(self.alias_owner):
                new = new.at[self.alias_owner].max(g[self.alias_ref])
            g = new
        return g[self.slot_gate].astype(bool)

    def active_split(self, slot_active: jax.Array) -> tuple[jax.Array, jax.Array]:
        return slot_active[self.num_cols], slot_active[self.cat_cols]


# ---------------------------------------------------------------------- resolve


class _Resolver:
    def __init__(self, slots, values, fidelity, build, widths):
        self.slots, self.values, self.fidelity, self.build = slots, values, fidelity, build
        self.widths = widths  # {slot: MaskedWidth} left open in a masked resolve
        self.memo: dict[int, Any] = {}

    def resolve(self, node: Any) -> Any:
        key = id(node)
        if key not in self.memo:
            self.memo[key] = self._resolve(node)
        return self.memo[key]

    def _value(self, slot: int) -> Any:
        if slot in self.widths:
            return self.widths[slot]
        s = self.slots[slot]
        v = self.values[s.path]
        return float(v) if s.kind == "float" else int(v)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, C.Const):
            return node.value
        if isinstance(node, C.Leaf):
            return self._value(node.slot)
        if isinstance(node, C.Choice):
            if node.slot in self.widths:
                return self.widths[node.slot]
            index = self._value(node.slot)
            branch = node.branches[index]
            if branch is C.INFEASIBLE:
                raise ValueError(
                    f"{self.slots[node.slot].path}: choice {index} cannot terminate within "
                    f"max_depth and has probability zero; the config is not from this space."
                )
            return self.resolve(branch)
        if isinstance(node, C.Seq):
            items = [self.resolve(item) for item in node.items]
            return node.kind(*items) if _is_namedtuple(node.kind) else node.kind(items)
        if isinstance(node, C.Dict):
            return {k: self.resolve(v) for k, v in zip(node.keys, node.items)
                    if not k.startswith("_")}
        if isinstance(node, C.Fid):
            return self.fidelity
        if isinstance(node, C.Dyn):
            kwargs = {k: self.resolve(v) for k, v in node.kwargs.items()}
            try:
                return node.fn(**kwargs)
            except Exception as error:
                raise type(error)(f"{node.path}: Dynamic function failed on {kwargs}: "
                                  f"{error}") from error
        if isinstance(node, C.Op):
            return self._operation(node)
        raise TypeError(f"cannot resolve {node!r}")  # pragma: no cover

    def _operation(self, node: C.Op) -> Any:
        args = self.resolve(node.args)
        args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
        kwargs = {k: self.resolve(v) for k, v in node.kwargs.items()}
        if not self.build:
            return Operation(node.operator, args, kwargs, name=node.path)
        if _is_linen_module(node.operator):
            from jaxnas.nn import build  # here: jaxnas.nn imports this module
            unbuilt = _Resolver(self.slots, self.values, self.fidelity, False, self.widths)
            return build(unbuilt.resolve(node))
        return _build_operation(node.path, node.operator, args, kwargs)


def _build_operation(path: str, operator: Callable, args: tuple, kwargs: dict) -> Any:
    """Instantiates a class operator; wraps a function operator in `functools.partial`."""
    if not isinstance(operator, type):
        return functools.partial(operator, *args, **kwargs) if args or kwargs else operator
    try:
        return operator(*args, **kwargs)
    except TypeError as error:
        raise TypeError(
            f"{path}: {operator.__qualname__} rejected its arguments args={args!r}, "
            f"kwargs={kwargs!r}: {error}"
        ) from error


def _is_linen_module(operator: Any) -> bool:
    return isinstance(operator, type) and issubclass(operator, nn.Module)


def _is_namedtuple(kind: type) -> bool:
    return issubclass(kind, tuple) and hasattr(kind, "_fields")


def _width_slots(compiled: C.Compiled) -> dict[int, MaskedWidth]:
    """The slots used only as `features` of `nn.Dense` / `nn.Conv`: what masking may open.

    Every reference to a slot is counted (a shared slot has several); a slot qualifies
    when each of them is the `features` argument of a dense or convolution operation.
    """
    uses: dict[int, list[bool]] = {}
    seen: set[int] = set()
    stack = [compiled.root]

    def use(child: Any, is_width: bool) -> None:
        if isinstance(child, (C.Leaf, C.Choice)):
            uses.setdefault(child.slot, []).append(is_width)
        stack.append(child)

    while stack:
        node = stack.pop()
        if id(node) in seen or node is C.INFEASIBLE:
            continue
        seen.add(id(node))
        if isinstance(node, C.Choice):
            for branch in node.branches:
                use(branch, False)
        elif isinstance(node, C.Op):
            features = _features_node(node)
            args = node.args.items if isinstance(node.args, C.Seq) else [node.args]
            for child in args:
                use(child, child is features)
            for child in node.kwargs.values():
                use(child, child is features)
        elif isinstance(node, C.Seq):
            for child in node.items:
                use(child, False)
        elif isinstance(node, C.Dict):
            for key, child in zip(node.keys, node.items):
                if key.startswith("_"):  # an intermediate: counted where it is referenced
                    stack.append(child)
                else:
                    use(child, False)
        elif isinstance(node, C.Dyn):
            for child in node.kwargs.values():
                use(child, False)
    widths = {}
    for index, flags in sorted(uses.items()):
        slot = compiled.slots[index]
        if not all(flags) or getattr(slot.param, "static", None):
            continue
        if slot.kind == "int" and slot.param.lower >= 1:
            widths[index] = MaskedWidth(slot.path, int(slot.param.upper))
        elif slot.kind == "cat" and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1
                for c in slot.param.choices):
            choices = tuple(slot.param.choices)
            widths[index] = MaskedWidth(slot.path, max(choices), choices)
    return widths


def _features_node(op: C.Op) -> Any:
    """The IR node of a dense or convolution operation's `features`, else None."""
    if op.operator not in (nn.Dense, nn.Conv):
        return None
    if "features" in op.kwargs:
        return op.kwargs["features"]
    if isinstance(op.args, C.Seq):
        return op.args.items[0] if op.args.items else None
    return op.args


def _recompile(source: Any, max_depth: int, max_slots: int) -> SearchSpace:
    from jaxnas.space import compile as compile_space  # noqa: PLC0415 - circular import

    return compile_space(source, max_depth=max_depth, max_slots=max_slots)


def _fingerprint(compiled: C.Compiled, max_depth: int) -> tuple:
    """A structural key: equal for spaces that sample, encode and resolve identically."""
    slots = tuple(
        (s.path, s.kind, s.gate, s.static, s.feasible, repr(s.param)) for s in compiled.slots
    )
    gates = tuple((g.kind, g.slot, g.choice, tuple(g.refs)) for g in compiled.gates)
    numbering: dict[int, int] = {}
    parts: list = []
    stack = [compiled.root]
    while stack:  # IR structure, with sharing and callables by identity
        node = stack.pop()
        if id(node) in numbering:
            parts.append(("ref", numbering[id(node)]))
            continue
        numbering[id(node)] = len(numbering)
        if isinstance(node, C.Const):
            parts.append(("const", _const_key(node.value)))
        elif isinstance(node, (C.Leaf, C.Choice)):
            parts.append((type(node).__name__, node.slot))
            if isinstance(node, C.Choice):
                stack.extend(b for b in node.branches if b is not C.INFEASIBLE)
        elif isinstance(node, C.Op):
            parts.append(("op", id(node.operator), tuple(node.kwargs)))
            stack.append(node.args)
            stack.extend(node.kwargs.values())
        elif isinstance(node, C.Dyn):
            parts.append(("dyn", id(node.fn), tuple(node.kwargs)))
            stack.extend(node.kwargs.values())
        elif isinstance(node, (C.Seq, C.Dict)):
            parts.append((type(node).__name__,
                          tuple(node.keys) if isinstance(node, C.Dict) else node.kind))
            stack.extend(node.items)
        elif isinstance(node, C.Fid):
            parts.append(("fid", node.path, repr(node.fidelity)))
    return (max_depth, slots, gates, tuple(parts))


def _const_key(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))
    return (type(value), value)
