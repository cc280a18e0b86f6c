"""`SearchSpace`: a compiled space with pure, jittable, vmappable sampling and encodings.

A config is a flat dict `path -> scalar array`: float32 for `Float`, int32 for `Integer`
and for a `Categorical` (the chosen index). Every slot is always present (fixed shapes);
`active(config)` says which ones the chosen branches use. Under `vmap` each leaf gets a
leading axis.

The class is thin: the unit encoding lives in `_encoding.py`, the prior in
`_distributions.py`, gates in `_gates.py`, drawing until feasible in `_feasible.py`,
derivations and their edits in `_derivations.py`, bucket signatures in `_buckets.py`,
resolving in `_resolve.py`, widths in `_widths.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.space import _buckets, _derivations, _registry
from jaxnas.space._config import Config, PathValues
from jaxnas.space._distributions import Prior, categorical_draw, truncated_normal_unit
from jaxnas.space._encoding import CategoricalEncoding, NumericEncoding, Packing
from jaxnas.space._expand import expand
from jaxnas.space._feasible import first_feasible
from jaxnas.space._fingerprint import fingerprint
from jaxnas.space._gates import GateTable
from jaxnas.space._ir import Compiled
from jaxnas.space._parameters import Fidelity, Parameter
from jaxnas.space._pools import Derivation
from jaxnas.space._resolve import Resolver
from jaxnas.space._widths import depth_slots, width_slots



class FidelityInfo:
    """Where the space's fidelity sits and its range."""

    __slots__ = ("path", "lower", "upper", "is_integer")

    def __init__(self, path: str, fidelity: Fidelity):
        self.path, self.lower, self.upper = path, fidelity.lower, fidelity.upper
        self.is_integer = fidelity.is_integer

    def __repr__(self) -> str:
        kind = "int" if self.is_integer else "float"
        return f"FidelityInfo({self.path!r}, {self.lower!r}..{self.upper!r}, {kind})"


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
        max_nodes: the node budget of its recursive rules' derivations (None: they
            are unrolled to `max_depth`).
    """

    def __init__(self, compiled: Compiled, *, max_depth: int, max_slots: int,
                 max_nodes: int | None = None):
        slots = compiled.slots
        packing = Packing(slots)
        numeric_slots = [slots[i] for i in packing.numeric_slots]
        categorical_slots = [slots[i] for i in packing.categorical_slots]
        numeric = NumericEncoding(numeric_slots)
        categorical = CategoricalEncoding(categorical_slots)
        fields = {
            "_compiled": compiled,
            "max_depth": max_depth,
            "max_slots": max_slots,
            "max_nodes": max_nodes,
            "_derivation": (Derivation(compiled.pools, packing.paths) if compiled.pools
                            else None),
            "_packing": packing,
            "_numeric": numeric,
            "_categorical": categorical,
            "_prior": Prior(numeric_slots, categorical_slots, numeric, categorical),
            "_gates": GateTable(compiled, packing.categorical_slots),
            "_static": tuple(s.static for s in slots),
            "_number_choices": tuple(_number_choices(s) for s in slots),
            "_fingerprint": fingerprint(compiled, max_depth, max_nodes),
            "_widths": width_slots(compiled),
            "_depths": depth_slots(compiled, _registry.registered_block("Sequential")),
            "_source": None,  # the definition, for pickling (`from_source`)
            "_constraints": (),  # predicates every draw must satisfy (`constrain`)
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        # Host helpers run this on every batch: jitted (on first use: making a space does
        # not start JAX's backend), not op by op.
        object.__setattr__(self, "_active_program", None)
        object.__setattr__(self, "_derive_program", None)

    @classmethod
    def from_source(cls, source: Any, max_depth: int, max_slots: int,
                    max_nodes: int | None = None) -> SearchSpace:
        """Compiles a space definition (what `jaxnas.compile` and unpickling call).

        Args:
            source: a pytree of parameters, operations and constants, or a `Space`.
            max_depth: how many times a rule may be resampled inside itself.
            max_slots: the largest number of decisions the unrolled space may have.
            max_nodes: the node budget of recursive rules' derivations, or None.

        Raises:
            SpaceError: the space cannot be compiled (see `jaxnas.compile`).
        """
        compiled = expand(source, max_depth=max_depth, max_slots=max_slots,
                          max_nodes=max_nodes)
        spec = cls(compiled, max_depth=max_depth, max_slots=max_slots, max_nodes=max_nodes)
        object.__setattr__(spec, "_source", source)
        return spec

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SearchSpace is immutable.")

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, SearchSpace) and self._fingerprint == other._fingerprint

    def __reduce__(self) -> tuple:
        """Pickles the space as its definition, compiled again on load (the compiled
        tables hold jitted functions, which do not pickle), and its constraints."""
        if self._source is None:
            raise TypeError("this SearchSpace was not made by jaxnas.compile and cannot be "
                            "pickled.")
        if self._constraints:
            return (_constrained, (self._source, self.max_depth, self.max_slots,
                                   self._constraints, self.max_nodes))
        return (SearchSpace.from_source, (self._source, self.max_depth, self.max_slots,
                                          self.max_nodes))

    def constrain(self, predicates: tuple) -> SearchSpace:
        """This space with `predicates` (pure, jittable `fn(config) -> bool`) that
        `sample`, `sample_prior` and `mutate` satisfy: each draws `CONSTRAINT_TRIES`
        candidates at once and returns the first feasible one (a mutation with none
        keeps its input; a sample with none returns an infeasible draw, so a caller that
        must be sure checks `feasible`). `from_unit` and `to_unit` are unchanged. A space
        with constraints equals only the same space with the same predicates."""
        if not predicates:
            return self
        out = object.__new__(SearchSpace)
        for name, value in self.__dict__.items():
            object.__setattr__(out, name, value)
        object.__setattr__(out, "_constraints", self._constraints + tuple(predicates))
        object.__setattr__(out, "_fingerprint", (self._fingerprint, tuple(predicates)))
        return out

    @property
    def constrained(self) -> bool:
        """Whether some configs of the space are infeasible: it has constraints
        (`constrain`), or recursive rules with a node budget (`max_nodes`), whose
        derivations may not fit."""
        return bool(self._constraints) or self._derivation is not None

    def feasible(self, config: Config) -> jax.Array:
        """`()` bool: whether `config` satisfies the space's constraints and its
        derivation fits in `max_nodes` (True for a space with neither)."""
        ok = jnp.ones((), bool)
        if self._derivation is not None:
            indices = self._split(config)[1]
            site_on = self._gates.site_use(indices)
            ok = self._derivation.derive(site_on)[2]
        for predicate in self._constraints:
            ok = ok & jnp.asarray(predicate(config), bool)
        return ok

    def _first_feasible(self, draw, key: jax.Array, fallback: Config | None = None) -> Config:
        """`draw(key)` without constraints; else the first feasible draw
        (`_feasible.first_feasible`)."""
        if not self.constrained:
            return draw(key)
        return first_feasible(draw, key, self.feasible, pools=self._derivation is not None,
                              fallback=fallback)

    def describe(self) -> dict[str, str]:
        """Each slot's path and definition, as text: what a resumed run compares."""
        return {s.path: f"{s.kind} {s.param!r}{' static' if s.static else ''}"
                for s in self._compiled.slots}

    def __repr__(self) -> str:
        packing = self._packing
        return (
            f"SearchSpace({len(packing.paths)} slots: {packing.n_float} float, "
            f"{packing.n_int} int, {packing.n_categorical} categorical; "
            f"{len(self.static_paths)} static; "
            f"fidelity={self.fidelity}; "
            + (f"max_nodes={self.max_nodes})" if self._derivation is not None
               else f"max_depth={self.max_depth})")
        )

    # ------------------------------------------------------------------ properties

    @property
    def entries(self) -> tuple[str, ...]:
        """The names of a dict space's top-level entries, in order (`_name` ones too);
        empty for a space that is not a dict."""
        return self._compiled.entries

    @property
    def paths(self) -> tuple[str, ...]:
        return self._packing.paths

    @property
    def static_paths(self) -> tuple[str, ...]:
        return tuple(p for p, s in zip(self.paths, self._static) if s)

    @property
    def width_paths(self) -> tuple[str, ...]:
        """Paths of the widths a masked build leaves open (`bucket(config, masked=True)`).

        A width is an `Integer`, or a `Categorical` of integers, used only as the `features`
        of `nn.Dense` or `nn.Conv` operations (wherever it is shared) and not marked
        `static=True`. Values computed by a `Dynamic` stay static.
        """
        return tuple(self.paths[i] for i in self._widths)

    @property
    def depth_paths(self) -> tuple[str, ...]:
        """Paths of the depths a masked build leaves open (`bucket(config, masked=True)`).

        A depth is a `Categorical` (static) among `jn.nn.Sequential`s of one list of blocks
        and its prefixes, as `jn.nn.Repeat` makes: the masked build holds the longest list
        and each member runs its own prefix. `masked="widths"` keeps depths static.
        """
        return tuple(self.paths[i] for i in self._depths)

    @property
    def recursive_rules(self) -> tuple[str, ...]:
        """The rules that have pools (`max_nodes`): each derivation is a tree, which
        `mutate`, `carry_over` and `crossover` keep. Empty for a space without."""
        pools = self._compiled.pools
        return () if pools is None else tuple(pools.rules)

    @property
    def fidelity(self) -> FidelityInfo | None:
        fid = self._compiled.fidelity
        return None if fid is None else FidelityInfo(fid.path, fid.fidelity)

    def parameters(self) -> dict[str, Parameter]:
        """Returns `{path: parameter}` for every slot (HANNAH's `parametrization(flatten=True)`).

        A resampled copy maps to its source parameter.
        """
        return {slot.path: slot.param for slot in self._compiled.slots}

    # ---------------------------------------------------------------- pure methods

    def sample(self, key: jax.Array) -> Config:
        """Samples a config uniformly (log-uniformly where `log=True`), ignoring priors
        (and satisfying the constraints, see `constrain`)."""
        return self._first_feasible(self._sample, key)

    def _sample(self, key: jax.Array) -> Config:
        n_numeric = self._packing.n_numeric
        u = jax.random.uniform(key, (len(self.paths),), jnp.float32)
        indices = categorical_draw(u[n_numeric:], self._categorical.uniform_logits)
        return self._packing.pack(self._numeric.from_unit(u[:n_numeric]), indices)

    def sample_prior(self, key: jax.Array) -> Config:
        """Samples a config from the prior (uniform for parameters without one; satisfying
        the constraints, see `constrain`)."""
        return self._first_feasible(self._sample_prior, key)

    def _sample_prior(self, key: jax.Array) -> Config:
        n_numeric = self._packing.n_numeric
        u = jax.random.uniform(key, (len(self.paths),), jnp.float32)
        u_numeric = self._prior.sample_unit(u[:n_numeric])
        indices = categorical_draw(u[n_numeric:], self._prior.categorical_logits)
        return self._packing.pack(self._numeric.from_unit(u_numeric), indices)

    def prior_mode(self) -> Config:
        """The prior's most likely configuration: each number at its prior (the middle of
        its range in the unit encoding where it has none), each categorical at its prior
        choice (its first feasible choice where it has none), as NePS's
        `sample_prior_first` takes it. It may break the space's constraints (`feasible`
        says)."""
        numeric = self._numeric.from_unit(jnp.asarray(self._prior.numeric_mean))
        logits = self._prior.categorical_logits
        indices = (jnp.argmax(jnp.asarray(logits), axis=-1).astype(jnp.int32)
                   if logits.shape[0] else jnp.zeros((0,), jnp.int32))
        return self._packing.pack(numeric, indices)

    def log_prior(self, config: Config, centre: Config | None = None) -> jax.Array:
        """Log density of `config` under the prior, summed over active slots (float32).

        Densities are with respect to the unit encoding (`to_unit`): Lebesgue measure for
        floats, counting measure for integers (the exact mass of the value's bin) and
        categoricals. Slots that `config`'s branches do not use contribute nothing.

        Args:
            config: one config (vmap for a batch).
            centre: None for the prior itself (parameters without a prior are uniform).
                Given, the prior's shape centred on `centre` instead (PriorBand's density
                around its incumbent, Sec. 5.2): every numeric slot, with or without a
                prior, a normal truncated to [0, 1] around `centre`'s unit value with its
                `prior_confidence` sigma; every categorical weighs `centre`'s choice 2 / 4
                / 6 (low / medium / high confidence) against 1 for each other feasible
                choice.

        Returns:
            A float32 scalar.
        """
        numeric, indices = self._split(config)
        if centre is None:
            log_numeric, log_categorical = self._prior.log_density(numeric, indices)
        else:
            centre_numeric, centre_indices = self._split(centre)
            log_numeric, log_categorical = self._prior.centred_log_density(
                numeric, indices, centre_numeric, centre_indices)
        active_numeric, active_categorical = self._packing.from_slot_order(
            self._activity(indices)[0])
        return (jnp.sum(jnp.where(active_numeric, log_numeric, 0.0))
                + jnp.sum(jnp.where(active_categorical, log_categorical, 0.0)))

    def values(self, config: Config) -> dict[str, jax.Array]:
        """The config's values by path, as a training step reads them (pure, jittable).

        A `Float` or `Integer` is its value; a `Categorical` of plain numbers is the chosen
        number (float32, so a traced learning rate or dropout rate can come from a list);
        any other `Categorical` is its index (int32). `Dynamic` values and operations are
        structure: use `resolve` on the host for those.
        """
        out = {}
        for path, choices in zip(self.paths, self._number_choices):
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
        return Config(*self._packing.stored_arrays(values, np), self._packing.layout)

    def to_unit(self, config: Config) -> jax.Array:
        """Encodes `config` as a `(len(paths),)` float32 vector in [0, 1]."""
        numeric, indices = self._split(config)
        return self._packing.to_slot_order(self._numeric.to_unit(numeric),
                                           self._categorical.to_unit(indices))

    def from_unit(self, u: jax.Array) -> Config:
        """Decodes a `(len(paths),)` vector in [0, 1] into a config (values are clipped)."""
        u = jnp.clip(jnp.asarray(u, jnp.float32), 0.0, 1.0)
        u_numeric, u_categorical = self._packing.from_slot_order(u)
        return self._packing.pack(self._numeric.from_unit(u_numeric),
                                  self._categorical.from_unit(u_categorical))

    def unit_intervals(self, config: Config) -> tuple[jax.Array, jax.Array]:
        """The unit values that decode to each of `config`'s values, as `(lower, upper)`.

        For a model of the unit encoding (TPE's Parzen estimators): a `Float`'s interval is
        its own point (`lower == upper`, a density applies); an `Integer`'s (or a `Float`
        with a `step`) is its bin (a probability mass applies); a `Categorical`'s is its
        choice's bin, `1 / n` wide for `n` feasible choices (`to_unit` gives the bin's
        centre).

        Returns:
            `(lower, upper)`, each `(len(paths),)` float32 in [0, 1], in `paths` order.
        """
        numeric, indices = self._split(config)
        point = self._numeric.to_unit(numeric)
        bin_lower, bin_upper = self._numeric.bin_edges(numeric)
        discrete = jnp.asarray(self._numeric.is_discrete)
        centre = self._categorical.to_unit(indices)
        half = 0.5 / jnp.asarray(self._categorical.feasible.sum(-1), jnp.float32)
        lower = self._packing.to_slot_order(jnp.where(discrete, bin_lower, point),
                                            centre - half)
        upper = self._packing.to_slot_order(jnp.where(discrete, bin_upper, point),
                                            centre + half)
        return lower, upper

    def mutate(self, key: jax.Array, config: Config, rate: float | jax.Array,
               std: float | jax.Array) -> Config:
        """Perturbs each slot with probability `rate` (PriorBand's incumbent sampling).

        A mutated numeric slot moves by a normal with sigma `std` in the unit encoding,
        truncated to [0, 1]; a mutated categorical takes a different feasible choice,
        uniformly. `rate` and `std` may be traced. With constraints (`constrain`), the
        first of several mutations that satisfies them, else `config` itself.

        With pools (`max_nodes`), the tree of `config`'s derivation is kept
        (`carry_over`): each instance's decisions mutate in place, a changed production
        grows fresh subtrees where it newly refers to a rule, and with probability `rate`
        one instance the derivation uses, drawn uniformly, regrows its whole subtree
        (hierarchical NAS's mutation).
        """
        if self._derivation is None:
            return self._first_feasible(lambda k: self._mutate(k, config, rate, std), key,
                                        fallback=config if self.constrained else None)

        return self._first_feasible(
            lambda k: _derivations.mutate(self, k, config, rate, std), key, fallback=config)

    def carry_over(self, parent: Config, edited: Config, key: jax.Array) -> Config:
        """`edited`, a copy of `parent` with some decisions changed, laid out so that
        what it keeps of `parent`'s derivation stays in place (pure, jittable).

        In a space with pools (`max_nodes`), a config's instances are used in
        breadth-first order, so a production changed in one instance would move every
        instance after it: the tree would not be `parent`'s with one change. Here each
        position of `parent`'s tree keeps its instance's edited decisions, and each
        reference the edit newly uses gets a fresh subtree (drawn with `key`, again
        while the derivation overflows the budget, up to `CONSTRAINT_TRIES` times, then
        `parent` itself). With constraints, the result satisfies them too. Without pools,
        `edited` itself. `mutate` does this; an optimiser that edits configs itself
        (regularised evolution's one-decision mutation) calls it.
        """
        if self._derivation is None:
            return edited
        none = jnp.zeros((self._derivation.n_instances,), bool)
        return self._first_feasible(
            lambda k: _derivations.carry_over(self, parent, edited, k, none), key,
            fallback=parent)

    def crossover(self, key: jax.Array, first: Config, second: Config) -> Config:
        """A child of two configs (pure, jittable).

        With pools (`max_nodes`), a subtree crossover as in hierarchical NAS: the child
        is `first`'s derivation with the subtree at one of its instances, drawn
        uniformly, replaced by the subtree at an instance of the same rule in
        `second`'s, drawn uniformly (the child is `first` where `second` uses no
        instance of that rule, or where no pair fits the budget in `CONSTRAINT_TRIES`
        draws). Without pools, a uniform crossover: each decision from either config
        with probability 1/2. Constraints, where the space has some, are kept.
        """
        if self._derivation is None:
            take = jax.random.uniform(key, (len(self.paths),)) < 0.5
            is_float = np.asarray(first.layout.is_float, bool)
            child = Config(jnp.where(take[np.flatnonzero(is_float)], second.floats,
                                     first.floats),
                           jnp.where(take[np.flatnonzero(~is_float)], second.ints,
                                     first.ints), first.layout)
            if not self.constrained:
                return child
            return jax.tree.map(lambda a, b: jnp.where(self.feasible(child), a, b),
                                child, first)
        return self._first_feasible(lambda k: _derivations.graft(self, k, first, second),
                                    key, fallback=first)

    def _mutate(self, key: jax.Array, config: Config, rate: float | jax.Array,
                std: float | jax.Array) -> Config:
        numeric, indices = self._split(config)
        n, n_numeric = len(self.paths), self._packing.n_numeric
        u = jax.random.uniform(key, (2 * n,), jnp.float32)
        flip = u[:n] < rate
        unit = self._numeric.to_unit(numeric)
        moved = self._numeric.from_unit(truncated_normal_unit(
            u[n: n + n_numeric], unit, jnp.broadcast_to(std, unit.shape)))
        new_numeric = jnp.where(flip[:n_numeric], moved, numeric)
        uniform = self._categorical.uniform_logits
        others = jnp.where(
            jax.nn.one_hot(indices, self._categorical.max_choices, dtype=bool), -jnp.inf, uniform)
        has_other = jnp.any(jnp.isfinite(others), axis=-1)
        new_indices = categorical_draw(u[n + n_numeric:],
                                       jnp.where(has_other[:, None], others, uniform))
        new_indices = jnp.where(flip[n_numeric:] & has_other, new_indices, indices)
        return self._packing.pack(new_numeric, new_indices)

    def active(self, config: Config) -> PathValues:
        """Returns a mapping `path -> bool`: whether the chosen branches use each slot."""
        _, indices = self._split(config)
        return PathValues(self._activity(indices)[0], self.paths)

    def _activity(self, indices: jax.Array,
                  children: bool = False) -> tuple[jax.Array, Any, jax.Array]:
        """`(active, child, fits)` from the categorical indices: each slot's activity;
        with pools, whether the derivation fits in `max_nodes` (True without) and, with
        `children`, the instance each reference takes (`Derivation.derive`; else None)."""
        if self._derivation is None:
            return self._gates.evaluate(indices), None, jnp.ones((), bool)
        site_on = self._gates.site_use(indices)
        instance_on, child, fits = self._derivation.derive(site_on, children)
        return self._gates.evaluate(indices, instance_on), child, fits

    # ----------------------------------------------------------------- host helpers

    def resolve(self, config: Mapping[str, Any], fidelity: float | None = None, *,
                build: bool = True, masked: bool | str = False) -> Any:
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
            masked: Leave the widths (`width_paths`) and depths (`depth_paths`) open:
                every config of one masked bucket resolves to the same modules, built at
                the maximum widths with masked layers and the longest block lists, called
                as `module.apply(params, x, config=config)` so that each member's widths
                and depths are traced values. With `build=False` the widths are
                `jn.nn.MaskedWidth`s and a depth is its longest `Sequential` with a
                `depth=jn.nn.MaskedDepth` kwarg. `"widths"`: leave only the widths open.

        Returns:
            The space's pytree; `_name` entries dropped; shared objects resolve to the same
            Python object, so a shared operation is one module instance.

        Raises:
            ValueError: a batched config, or a fidelity out of range.
            KeyError: a path of the space missing from `config`.
            TypeError: an operator that rejects its resolved arguments (names the path).
        """
        widths, depths = self._open(masked)
        values = self._host_values(config)
        fid_value = self._fidelity_value(fidelity)
        resolver = Resolver(self._compiled.slots, values, fid_value, build, widths, depths,
                            _derivations.derived(self, values))
        return resolver.resolve(self._compiled.root)

    def bucket(self, config: Mapping[str, Any], *, masked: bool | str = False) -> tuple:
        """Returns the hashable static signature of one config.

        Configs with equal signatures share program structure and array shapes and can
        be trained in one compiled, vmapped call. The signature lists
        `(path, value)` for every active static slot (the index for a categorical).
        With `masked=True` the widths (`width_paths`) and depths (`depth_paths`) are
        left out: configs that differ only in them share a bucket, trained at the maximum
        widths with masks and the longest block lists (`resolve(config, masked=True)`);
        `masked="widths"` leaves out the widths only.
        """
        values = self._host_values(config)
        return self.buckets({p: v[None] for p, v in values.items()}, masked=masked)[0]

    def buckets(self, configs: Mapping[str, Any], *,
                masked: bool | str = False) -> list[tuple]:
        """`bucket` for a batch of configs (leading axis), as a list of signatures."""
        return _buckets.signatures(self, configs, masked)

    # ------------------------------------------------------------------- internals

    def _open(self, masked: bool | str) -> tuple[dict, dict]:
        """The widths and depths that `masked` leaves open."""
        if not (masked is True or masked is False or masked == "widths"):
            raise ValueError(f"masked={masked!r} must be True (widths and depths open), "
                             f"'widths' (widths only) or False.")
        if not masked:
            return {}, {}
        return self._widths, (self._depths if masked is True else {})

    def _split(self, config: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
        """Unpacks a config (a `Config` or any mapping by path) into the working vectors."""
        if isinstance(config, Config) and config.layout == self._packing.layout:
            floats, ints = jnp.asarray(config.floats), jnp.asarray(config.ints)
        else:
            self._check_paths(config)
            floats, ints = self._packing.stored_arrays(config, jnp)
        if floats.ndim != 1 or ints.ndim != 1:
            raise ValueError(
                "SearchSpace methods take one config of scalars; use jax.vmap for a batch."
            )
        return self._packing.unpack(floats, ints)

    def _check_paths(self, config: Mapping[str, Any]) -> None:
        missing = [p for p in self.paths if p not in config]
        if missing:
            raise KeyError(f"config lacks paths {missing[:5]} of this space.")

    def _host_values(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self._check_paths(config)
        if isinstance(config, Config):  # to the host once, not one device read a path
            config = Config(np.asarray(config.floats), np.asarray(config.ints), config.layout)
        values = {p: np.asarray(config[p]) for p in self.paths}
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


def _number_choices(slot: Any) -> tuple[float, ...] | None:
    """A categorical of plain numbers: its choices as floats (what `values` reads)."""
    if slot.kind != "cat" or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                     for c in slot.param.choices):
        return None
    return tuple(float(c) for c in slot.param.choices)


# Run folders written before the space package was split pickled their space as a call of
# this name; it stays so that they load.
_recompile = SearchSpace.from_source


def _constrained(source: Any, max_depth: int, max_slots: int, constraints: tuple,
                 max_nodes: int | None = None) -> SearchSpace:
    """Unpickles a constrained space (`SearchSpace.__reduce__`)."""
    return SearchSpace.from_source(source, max_depth, max_slots,
                                   max_nodes).constrain(constraints)
