"""Property tests over randomly generated search spaces, through the public API only.

Hypothesis draws a *recipe* (plain data: bounds, priors, nesting, sharing, recursion) and
`_build` turns it into a fresh space, so a failing example prints as readable data and the
same recipe can be built twice from distinct objects. Spaces mix every parameter kind:
floats and integers (linear and log, with and without priors of each confidence, static or
not), categoricals of constants, `Bool`, categoricals over tuples holding parameters and
operations, shared parameter and operation objects, `.resample()` copies, `Dynamic` values,
a fidelity, and optionally a recursive `ByName` rule with a terminating choice.

The properties are exact except where float32 rounding is involved; each tolerance says
which rounding it allows. Compiling dominates the run time, so the pure methods go through
`jax.jit` with the (hashable) spec as a static argument, and every property test draws the
same spaces (one hypothesis seed): each space's methods compile once for the whole file.
Eager calls are compared with jitted and vmapped ones in one test with fewer examples. No
statistical claims here: see `test_distributions.py`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import jaxnas as jn

EPS32 = float(np.finfo(np.float32).eps)
CONFIDENCES = ("low", "medium", "high")
SEEDS = st.integers(0, 2**32 - 1)
# Each new space costs a few compiles (2-4 s on 2 CPU cores), which bounds the example
# count. For a deeper run, raise it and vary the seed, e.g.
# JAXNAS_PROPERTY_EXAMPLES=200 JAXNAS_PROPERTY_SEED=1 python -m pytest tests/space/test_properties.py
EXAMPLES = int(os.environ.get("JAXNAS_PROPERTY_EXAMPLES", "12"))
HYPOTHESIS_SEED = int(os.environ.get("JAXNAS_PROPERTY_SEED", "20240611"))


def _property(*, max_examples=EXAMPLES):
    """`@given(cases(), SEEDS)` with one fixed hypothesis seed for every property test.

    Every test then draws the same sequence of spaces, so the jitted methods below compile
    once per space rather than once per test. This is only an optimisation: no assertion
    depends on it.
    """
    def decorate(test):
        test = given(cases(), SEEDS)(test)
        test = settings(deadline=None, max_examples=max_examples,
                        suppress_health_check=[HealthCheck.too_slow,
                                               HealthCheck.data_too_large])(test)
        return seed(HYPOTHESIS_SEED)(test)
    return decorate


# ------------------------------------------------------------------------ operators


class Node:
    """A small class operator: keeps its resolved arguments, compares by value."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(other) is type(self) and (self.args, self.kwargs) == (other.args, other.kwargs)

    def __hash__(self):
        return hash((type(self), len(self.args), tuple(self.kwargs)))

    def __repr__(self):
        return f"{type(self).__name__}(*{self.args!r}, **{self.kwargs!r})"


class Tag(Node):
    """Marks one occurrence of a shared object: `Tag(tag=i, value=<the shared object>)`."""


def _pack(**values):
    """The `Dynamic` function: its resolved arguments, sorted by name."""
    return tuple(sorted(values.items()))


# -------------------------------------------------------------------------- recipes
#
# Leaves:   ("float"|"int", lower, upper, log, prior, confidence, static)
#           ("cat", choices, prior, confidence)      ("bool", prior, confidence)
# Items (inside a choice tuple or an operation): a leaf, ("const", str), ("shared", i, tagged),
#           ("resample", i), ("op", [items]), ("dyn", [leaves]), ("branch", ...),
#           ("oparg", branch): an operation whose argument list is a categorical of tuples,
#           ("dict", [(key, item)]) and ("list", [items]): plain nested containers.
# Branch:   ("branch", [[items], ...], prior, confidence): a categorical over tuples.


def _prior(draw, lower, upper, log, integer):
    if not draw(st.booleans()):
        return None, "medium"
    fraction = draw(st.floats(0.0, 1.0))
    confidence = draw(st.sampled_from(CONFIDENCES))
    if integer:
        if log:
            value = round(math.exp(math.log(lower) + fraction * math.log(upper / lower)))
        else:
            value = lower + round(fraction * (upper - lower))
        return min(max(value, lower), upper), confidence
    if log:
        value = math.exp(math.log(lower) + fraction * (math.log(upper) - math.log(lower)))
    else:
        value = lower + fraction * (upper - lower)
    return min(max(value, lower), upper), confidence


@st.composite
def float_recipes(draw):
    log = draw(st.booleans())
    if log:
        lower = draw(st.sampled_from([1.0, 2.5, 5.0])) * 10.0 ** draw(st.integers(-6, 2))
        upper = lower * 10.0 ** draw(st.floats(0.1, 6.0))
    else:
        lower = draw(st.floats(-1e3, 1e3))
        upper = lower + draw(st.floats(1e-2, 2e3))
    prior, confidence = _prior(draw, lower, upper, log, integer=False)
    return ("float", lower, upper, log, prior, confidence, draw(st.booleans()))


@st.composite
def integer_recipes(draw):
    log = draw(st.booleans())
    if log:
        lower = draw(st.integers(1, 20))
        upper = lower + draw(st.integers(1, 300))
    else:
        lower = draw(st.integers(-50, 50))
        upper = lower + draw(st.integers(1, 60))
    prior, confidence = _prior(draw, lower, upper, log, integer=True)
    return ("int", lower, upper, log, prior, confidence, draw(st.booleans()))


@st.composite
def categorical_recipes(draw):
    constants = draw(st.sampled_from([
        st.integers(-5, 5), st.floats(-1.0, 1.0, width=32),
        st.sampled_from(["relu", "tanh", "gelu", "silu", "id"]),
    ]))
    choices = tuple(draw(st.lists(constants, min_size=1, max_size=5, unique=True)))
    prior = draw(st.one_of(st.none(), st.integers(0, len(choices) - 1)))
    return ("cat", choices, prior, draw(st.sampled_from(CONFIDENCES)))


@st.composite
def bool_recipes(draw):
    return ("bool", draw(st.one_of(st.none(), st.booleans())), draw(st.sampled_from(CONFIDENCES)))


LEAVES = st.one_of(float_recipes(), integer_recipes(), categorical_recipes(), bool_recipes())


def item_recipes(n_shared: int, depth: int):
    """Strategy for one item of a choice tuple or an operation, nesting at most `depth`."""
    options = [LEAVES, st.tuples(st.just("const"), st.sampled_from(["a", "b", "conv"]))]
    if n_shared:
        index = st.integers(0, n_shared - 1)
        options += [st.tuples(st.just("shared"), index, st.booleans()),
                    st.tuples(st.just("resample"), index)]
    options.append(st.tuples(st.just("dyn"), st.lists(LEAVES, min_size=1, max_size=2)))
    if depth > 0:
        inner = item_recipes(n_shared, depth - 1)
        keys = st.sampled_from(["x", "y", "_z"])
        options += [st.tuples(st.just("op"), st.lists(inner, min_size=0, max_size=2)),
                    branch_recipes(n_shared, depth - 1),
                    st.tuples(st.just("oparg"), branch_recipes(n_shared, depth - 1)),
                    st.tuples(st.just("dict"), st.lists(st.tuples(keys, inner), min_size=1,
                                                        max_size=2, unique_by=lambda kv: kv[0])),
                    st.tuples(st.just("list"), st.lists(inner, min_size=1, max_size=2))]
    return st.one_of(*options)


@st.composite
def branch_recipes(draw, n_shared: int, depth: int):
    items = item_recipes(n_shared, depth)
    choices = draw(st.lists(st.lists(items, min_size=1, max_size=2), min_size=1, max_size=3))
    prior = draw(st.one_of(st.none(), st.integers(0, len(choices) - 1)))
    return ("branch", choices, prior, draw(st.sampled_from(CONFIDENCES)))


@st.composite
def rule_recipes(draw, n_shared: int):
    """A recursive rule: choice 0 terminates, the others resample the rule 1 or 2 times."""
    arities = draw(st.sampled_from([(1,), (2,), (1, 2)]))
    extra = st.tuples(st.just("shared"), st.integers(0, n_shared - 1), st.booleans()) \
        if n_shared else st.nothing()
    return dict(
        name=draw(st.sampled_from(["rule", "_rule"])),
        terminal=draw(LEAVES),
        terminal_resampled=draw(st.booleans()),
        arities=arities,
        # An item placed before the recursive reference: expanded, then rolled back at
        # max_depth, which exercises the compiler's transactions.
        extra=draw(st.one_of(st.none(), extra)),
        prior=draw(st.one_of(st.none(), st.integers(0, len(arities)))),
        confidence=draw(st.sampled_from(CONFIDENCES)),
        reference=draw(st.sampled_from([None, "before", "after"])),
        copy=draw(st.booleans()),
        max_depth=draw(st.integers(1, 3 if arities == (1,) else 2)),  # at most 13 copies
    )


@st.composite
def space_recipes(draw, *, allow_rule: bool = True):
    n_shared = draw(st.integers(0, 2))
    shared = [draw(st.one_of(LEAVES, st.tuples(st.just("op"), st.lists(LEAVES, max_size=2))))
              for _ in range(n_shared)]
    entry = st.one_of(LEAVES, LEAVES, LEAVES, item_recipes(n_shared, 2))
    entries = draw(st.lists(entry, min_size=1, max_size=6))
    hidden = draw(st.lists(st.booleans(), min_size=len(entries), max_size=len(entries)))
    rule = draw(st.one_of(st.none(), rule_recipes(n_shared))) if allow_rule else None
    return dict(
        shared=shared,
        shared_on_top=draw(st.lists(st.booleans(), min_size=n_shared, max_size=n_shared)),
        entries=[(f"_e{i}" if h else f"e{i}", e) for i, (e, h) in enumerate(zip(entries, hidden))],
        rule=rule,
        fidelity=draw(st.booleans()),
        max_depth=rule["max_depth"] if rule else draw(st.integers(1, 3)),
    )


# --------------------------------------------------------------------------- builder


@dataclasses.dataclass
class Case:
    space: dict
    max_depth: int
    shared_kinds: dict  # tag -> "op" | "param"
    shared_top: dict  # tag -> top-level name holding the shared object itself
    rule: jn.Categorical | None = None
    rule_name: str | None = None
    rule_reference: str | None = None
    rule_copy: str | None = None


def _build_leaf(recipe):
    kind = recipe[0]
    if kind in ("float", "int"):
        _, lower, upper, log, prior, confidence, static = recipe
        make = jn.Float if kind == "float" else jn.Integer
        return make(lower, upper, log=log, prior=prior, prior_confidence=confidence,
                    static=static)
    if kind == "cat":
        _, choices, prior, confidence = recipe
        return jn.Categorical(choices, prior=prior, prior_confidence=confidence)
    _, prior, confidence = recipe
    return jn.Bool(prior=prior, prior_confidence=confidence)


def _build_item(recipe, shared):
    kind = recipe[0]
    if kind == "const":
        return recipe[1]
    if kind == "shared":
        _, i, tagged = recipe
        return jn.Operation(Tag, kwargs={"tag": i, "value": shared[i]}) if tagged else shared[i]
    if kind == "resample":
        return shared[recipe[1]].resample()
    if kind == "op":
        return jn.Operation(Node, kwargs={f"k{j}": _build_item(r, shared)
                                          for j, r in enumerate(recipe[1])})
    if kind == "oparg":
        return jn.Operation(Node, args=_build_item(recipe[1], shared))
    if kind == "dyn":
        return jn.Dynamic(_pack, **{f"p{j}": _build_leaf(r) for j, r in enumerate(recipe[1])})
    if kind == "dict":
        return {key: _build_item(r, shared) for key, r in recipe[1]}
    if kind == "list":
        items = [_build_item(r, shared) for r in recipe[1]]
        if len(items) >= 2 and all(isinstance(i, str) for i in items) and len(set(items)) == len(
                items):  # read as a choice by `jn.compile` unless marked a constant
            return jn.Constant(items)
        return items
    if kind == "branch":
        _, choices, prior, confidence = recipe
        return jn.Categorical([tuple(_build_item(r, shared) for r in choice) for choice in choices],
                              prior=prior, prior_confidence=confidence)
    return _build_leaf(recipe)


def _build(recipe) -> Case:
    """Builds a fresh space (new objects every call) from a recipe."""
    shared = [_build_item(r, []) for r in recipe["shared"]]
    case = Case({}, recipe["max_depth"],
                {i: "op" if r[0] == "op" else "param" for i, r in enumerate(recipe["shared"])},
                {})
    space = case.space
    for name, entry in recipe["entries"]:
        space[name] = _build_item(entry, shared)
    for i, on_top in enumerate(recipe["shared_on_top"]):
        if on_top:
            space[f"shared{i}"] = shared[i]
            case.shared_top[i] = f"shared{i}"
    rule = recipe["rule"]
    if rule is not None:
        name = rule["name"]
        terminal = _build_leaf(rule["terminal"])
        choices = [("leaf", terminal.resample() if rule["terminal_resampled"] else terminal)]
        before = () if rule["extra"] is None else (_build_item(rule["extra"], shared),)
        for arity in rule["arities"]:
            choices.append(("node", *before, *(jn.ByName(name).resample() for _ in range(arity))))
        case.rule = jn.Categorical(choices, prior=rule["prior"],
                                   prior_confidence=rule["confidence"])
        case.rule_name = name
        if rule["reference"] == "before":  # a forward reference, expanded at the rule's path
            space["tree"] = jn.ByName(name)
        space[name] = case.rule
        if rule["reference"] == "after":
            space["tree"] = jn.ByName(name)
        case.rule_reference = "tree" if rule["reference"] else None
        if rule["copy"]:
            space["tree_copy"] = jn.ByName(name).resample()
            case.rule_copy = "tree_copy"
    if recipe["fidelity"]:
        space["epochs"] = jn.IntegerFidelity(1, 27)
    return case


@st.composite
def cases(draw, **kwargs):
    """A (recipe, case, spec) triple."""
    recipe = draw(space_recipes(**kwargs))
    case = _build(recipe)
    return recipe, case, jn.compile(case.space, max_depth=case.max_depth)


# --------------------------------------------------------------------------- helpers


def _expected_feasible(case: Case, spec, path: str) -> tuple[int, ...]:
    """Indices a categorical slot may take; for the rule, from its nesting depth."""
    param = spec.parameters()[path]
    if case.rule is not None and param is case.rule:
        # Each unrolled copy adds one ".choices[" to the path; a top-level resampled copy
        # is itself one level deep. Recursive choices need one more copy.
        copy = case.rule_copy is not None and path.startswith(case.rule_copy)
        nesting = path.count(".choices[") + copy
        if nesting >= case.max_depth:
            return (0,)
    return tuple(range(len(param.choices)))


def _feasible_table(case, spec) -> dict[str, tuple[int, ...]]:
    return {p: _expected_feasible(case, spec, p) for p in spec.paths
            if isinstance(spec.parameters()[p], jn.Categorical)}


def _host(config) -> dict[str, np.ndarray]:
    return {p: np.asarray(v) for p, v in config.items()}


def _float_tolerance(param) -> float:
    """Absolute round-trip error float32 allows: a few ulps of the transformed bounds."""
    if param.log:
        scale = max(1.0, abs(math.log(param.lower)), abs(math.log(param.upper)))
        return 16 * EPS32 * scale * param.upper
    return 16 * EPS32 * max(abs(param.lower), abs(param.upper), param.upper - param.lower)


def _unit_tolerance(param) -> float:
    """Round-trip error float32 allows in the unit encoding: `_float_tolerance`, rescaled."""
    f = math.log if param.log else (lambda x: x)
    lo, hi = f(param.lower), f(param.upper)
    return 16 * EPS32 * max(abs(lo), abs(hi), hi - lo) / (hi - lo)


def _assert_in_space(spec, config, feasible):
    """Property 1: keys, dtypes, shapes and bounds of one config."""
    config = _host(config)
    assert set(config) == set(spec.paths)
    for path, value in config.items():
        param = spec.parameters()[path]
        assert value.shape == (), (path, value.shape)
        if isinstance(param, jn.Float):
            assert value.dtype == np.float32, (path, value.dtype)
            assert np.isfinite(value), (path, value)
            # Configs are float32: the bounds are the float32 roundings of the user's.
            assert np.float32(param.lower) <= value <= np.float32(param.upper), (path, value, param)
        elif isinstance(param, jn.Integer):
            assert value.dtype == np.int32, (path, value.dtype)
            assert param.lower <= int(value) <= param.upper, (path, value, param)
        else:
            assert isinstance(param, jn.Categorical), (path, param)
            assert value.dtype == np.int32, (path, value.dtype)
            assert int(value) in feasible[path], (path, int(value), feasible[path])


def _assert_same(a, b, *, exact_floats=True, spec=None):
    """Equal configs; with `exact_floats=False`, floats within `_float_tolerance`."""
    a, b = _host(a), _host(b)
    assert set(a) == set(b)
    for path in a:
        assert a[path].dtype == b[path].dtype, path
        if exact_floats or a[path].dtype != np.float32:
            assert np.array_equal(a[path], b[path]), (path, a[path], b[path])
        else:
            tolerance = _float_tolerance(spec.parameters()[path])
            assert abs(float(a[path]) - float(b[path])) <= tolerance, (path, a[path], b[path])


def _bin(param, value: int) -> tuple[float, float]:
    """Documented unit encoding of an integer: the bin [value - 0.5, value + 0.5], (log-)scaled."""
    f = math.log if param.log else (lambda x: x)
    lo, hi = f(param.lower - 0.5), f(param.upper + 0.5)
    return (f(value - 0.5) - lo) / (hi - lo), (f(value + 0.5) - lo) / (hi - lo)


def _collect_tags(tree, found):
    if isinstance(tree, Tag):
        found.setdefault(tree.kwargs["tag"], []).append(tree.kwargs["value"])
    if isinstance(tree, Node):
        _collect_tags(tree.args, found)
        _collect_tags(tree.kwargs, found)
    elif isinstance(tree, dict):
        for value in tree.values():
            _collect_tags(value, found)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            _collect_tags(value, found)
    return found


# ------------------------------------------------------------------------ properties


def _jit_method(name):
    def call(spec, *args):
        return getattr(spec, name)(*args)
    call.__name__ = name
    return jax.jit(call, static_argnums=0)


# The pure methods, jitted with the spec as a static argument: each (space, method) is
# compiled once as one program and shared by every test that draws an equal space. Eager
# calls compile every primitive for each new shape, which costs more; they are compared
# with these in test_jit_and_vmap_match_single_eager_draws.
jitted = types.SimpleNamespace(**{name: _jit_method(name) for name in (
    "sample", "sample_prior", "log_prior", "to_unit", "from_unit", "mutate", "active",
    "unit_intervals")})


@_property()
def test_samples_lie_in_bounds_and_take_only_feasible_choices(drawn, seed):
    _, case, spec = drawn
    feasible = _feasible_table(case, spec)
    for i, key in enumerate(jax.random.split(jax.random.key(seed), 6)):
        method = jitted.sample if i % 2 else jitted.sample_prior
        _assert_in_space(spec, method(spec, key), feasible)
    # The unit decoding reaches the feasible choices and only those. With at most 5
    # choices per categorical, the bin centres for 1..5 bins hit every feasible rank.
    reached = {path: set() for path in feasible}
    for u in sorted({0.0, 1.0} | {(k + 0.5) / n for n in range(1, 6) for k in range(n)}):
        decoded = _host(jitted.from_unit(spec, np.full(len(spec.paths), u, np.float32)))
        for path in feasible:
            reached[path].add(int(decoded[path]))
    for path, choices in feasible.items():
        assert len(spec.parameters()[path].choices) <= 5
        assert sorted(reached[path]) == list(choices), (path, reached[path], choices)


@_property()
def test_unit_encoding_round_trips_sampled_configs(drawn, seed):
    _, case, spec = drawn
    feasible = _feasible_table(case, spec)
    key_uniform, key_prior = jax.random.split(jax.random.key(seed))
    for config in (jitted.sample(spec, key_uniform), jitted.sample_prior(spec, key_prior)):
        u = np.asarray(jitted.to_unit(spec, config))
        assert u.shape == (len(spec.paths),) and u.dtype == np.float32
        assert np.all((u >= 0.0) & (u <= 1.0)), u
        back = jitted.from_unit(spec, u)
        _assert_in_space(spec, back, feasible)
        _assert_same(config, back, spec=spec, exact_floats=False)


@_property()
def test_unit_decoding_is_stable_under_re_encoding(drawn, seed):
    _, case, spec = drawn
    feasible = _feasible_table(case, spec)
    edge_rate = (seed % 7) / 20  # pin up to 30% of the columns to the edges 0 and 1
    key_u, key_edge = jax.random.split(jax.random.key(seed))
    u = jax.random.uniform(key_u, (len(spec.paths),))
    r = jax.random.uniform(key_edge, (len(spec.paths),))
    u = np.asarray(jnp.where(r < edge_rate / 2, 0.0, jnp.where(r > 1 - edge_rate / 2, 1.0, u)))
    config = jitted.from_unit(spec, u)
    _assert_in_space(spec, config, feasible)
    u_again = np.asarray(jitted.to_unit(spec, config))
    _assert_same(config, jitted.from_unit(spec, u_again), spec=spec, exact_floats=False)
    lower, upper = (np.asarray(a) for a in jitted.unit_intervals(spec, config))
    values = _host(config)
    for col, path in enumerate(spec.paths):
        param, value = spec.parameters()[path], values[path]
        if isinstance(param, jn.Float):
            assert abs(u_again[col] - u[col]) <= _unit_tolerance(param), (path, u[col], u_again[col])
            assert lower[col] == upper[col] == u_again[col], (path, lower[col], upper[col])
        elif isinstance(param, jn.Integer):  # u lies in the bin of the value it decodes to
            lo, hi = _bin(param, int(value))
            assert lo - 1e-5 <= u[col] <= hi + 1e-5, (path, u[col], int(value), (lo, hi))
            assert lo - 1e-5 <= u_again[col] <= hi + 1e-5, (path, u_again[col], (lo, hi))
            np.testing.assert_allclose([lower[col], upper[col]], [lo, hi], atol=1e-5)
        else:  # equal bins over the feasible choices, in order
            n, rank = len(feasible[path]), feasible[path].index(int(value))
            assert rank / n - 1e-6 <= u[col] <= (rank + 1) / n + 1e-6, (path, u[col], rank, n)
            assert abs(u_again[col] - (rank + 0.5) / n) <= 1e-6, (path, u_again[col])
            np.testing.assert_allclose([lower[col], upper[col]], [rank / n, (rank + 1) / n],
                                       atol=1e-6)


@_property()
def test_sampling_is_deterministic(drawn, seed):
    _, _, spec = drawn
    key_a, key_b = jax.random.split(jax.random.key(seed))
    same_key = jax.random.split(jax.random.key(seed))[0]  # equal to key_a, a new array
    for method in (jitted.sample, jitted.sample_prior):
        _assert_same(method(spec, key_a), method(spec, same_key))
    config = jitted.sample(spec, key_a)
    _assert_same(jitted.mutate(spec, key_b, config, 0.5, 0.2),
                 jitted.mutate(spec, key_b, config, 0.5, 0.2))


_traces = []


def _draw_batch(spec, keys):
    _traces.append(spec)  # runs once per trace: a retrace shows up here
    return jax.vmap(spec.sample)(keys), jax.vmap(spec.sample_prior)(keys)


_draw_batch_jit = jax.jit(_draw_batch, static_argnums=0)


@_property(max_examples=max(2, EXAMPLES // 4))
def test_jit_and_vmap_match_single_eager_draws(drawn, seed):
    """Eager calls compile every primitive for a new space, hence fewer examples."""
    recipe, _, spec = drawn
    keys = jax.random.split(jax.random.key(seed), 3)
    # The spec is a static argument: an equal spec compiled from a rebuilt space hits the
    # cache instead of tracing again.
    rebuilt = jn.compile(_build(recipe).space, max_depth=spec.max_depth)
    before = len(_traces)
    uniform, prior = _draw_batch_jit(spec, keys)
    again = _draw_batch_jit(rebuilt, keys)
    assert len(_traces) - before <= 1
    _assert_same(again[0], uniform)
    _assert_same(again[1], prior)
    # Row i of a vmapped batch is the draw for keys[i], and eager calls give the jitted
    # values. Floats may differ in the last bit (XLA contracts a * b + c into an FMA under
    # jit; vectorised exp and log round differently), so they agree to a few ulps of the
    # bounds; integers and choices agree exactly.
    for batch, method in ((uniform, spec.sample), (prior, spec.sample_prior)):
        for path, values in _host(batch).items():
            assert values.shape == (3,), (path, values.shape)
        for i in range(3):
            row = jax.tree.map(lambda x, i=i: x[i], batch)
            _assert_same(row, getattr(jitted, method.__name__)(spec, keys[i]),
                         spec=spec, exact_floats=False)
        eager = method(keys[0])
        _assert_same(eager, method(keys[0]))
        _assert_same(eager, getattr(jitted, method.__name__)(spec, keys[0]),
                     spec=spec, exact_floats=False)


@_property()
def test_log_prior_is_finite_and_ignores_inactive_slots(drawn, seed):
    _, _, spec = drawn
    keys = jax.random.split(jax.random.key(seed), 4)
    pairs = ((jitted.sample_prior(spec, keys[0]), jitted.sample(spec, keys[1])),
             (jitted.sample(spec, keys[2]), jitted.sample_prior(spec, keys[3])))
    for a, b in pairs:
        log_prior = jitted.log_prior(spec, a)
        assert log_prior.shape == () and log_prior.dtype == jnp.float32
        assert np.isfinite(log_prior), (float(log_prior), _host(a))
        assert not np.isnan(log_prior)
        # Overwrite every inactive slot of `a` with `b`'s value: same activity, same log_prior.
        active = _host(jitted.active(spec, a))
        assert set(active) == set(spec.paths)
        assert all(v.dtype == np.bool_ and v.shape == () for v in active.values())
        mixed = {p: a[p] if active[p] else b[p] for p in spec.paths}
        assert _host(jitted.active(spec, mixed)) == active
        np.testing.assert_array_equal(np.asarray(jitted.log_prior(spec, mixed)),
                                      np.asarray(log_prior))


@_property()
def test_mutate_keeps_configs_at_rate_zero_and_moves_every_choice_at_rate_one(drawn, seed):
    _, case, spec = drawn
    feasible = _feasible_table(case, spec)
    std = 10.0 ** (-3 + 3 * (seed % 1000) / 999)  # 1e-3 .. 1
    key_sample, key_zero, key_one = jax.random.split(jax.random.key(seed), 3)
    config = jitted.sample_prior(spec, key_sample)
    _assert_same(jitted.mutate(spec, key_zero, config, 0.0, std), config)
    moved = jitted.mutate(spec, key_one, config, 1.0, std)
    _assert_in_space(spec, moved, feasible)
    before, after = _host(config), _host(moved)
    for path, choices in feasible.items():
        if len(choices) > 1:
            assert after[path] != before[path], (path, before[path])
        else:
            assert after[path] == before[path], path


@_property()
def test_resolve_returns_the_public_entries_with_shared_objects_equal(drawn, seed):
    _, case, spec = drawn
    visible = [name for name in case.space if not name.startswith("_")]
    static = set(spec.static_paths)
    for key in jax.random.split(jax.random.key(seed), 3):
        config = jitted.sample(spec, key)
        resolved = spec.resolve(config)
        assert isinstance(resolved, dict) and list(resolved) == visible
        assert spec.resolve(config) == resolved  # a pure function of the config
        found = _collect_tags(resolved, {})
        for tag, name in case.shared_top.items():
            found.setdefault(tag, []).append(resolved[name])
        for tag, values in found.items():
            if case.shared_kinds[tag] == "op":  # one object, built once
                assert all(v is values[0] for v in values), (tag, values)
            else:
                assert all(v == values[0] for v in values), (tag, values)
        if case.rule_reference and not case.rule_name.startswith("_"):
            assert resolved[case.rule_reference] == resolved[case.rule_name]
        for name in visible:  # nested containers keep their type and public keys
            entry = case.space[name]
            if isinstance(entry, dict):
                assert list(resolved[name]) == [k for k in entry if not k.startswith("_")]
            elif isinstance(entry, list):
                assert isinstance(resolved[name], list) and len(resolved[name]) == len(entry)
        if "epochs" in resolved:
            assert resolved["epochs"] == 27  # the fidelity defaults to its upper bound
        # The bucket lists the active static slots, in order, with their values.
        bucket = spec.bucket(config)
        hash(bucket)
        active, values = _host(jitted.active(spec, config)), _host(config)
        assert [p for p, _ in bucket] == [p for p in spec.paths if p in static and active[p]]
        assert all(v == values[p].item() for p, v in bucket)


@settings(deadline=None, max_examples=100)
@given(space_recipes())
def test_specs_are_hashable_and_equal_for_equal_spaces(recipe):
    case = _build(recipe)
    spec = jn.compile(case.space, max_depth=case.max_depth)
    again = jn.compile(case.space, max_depth=case.max_depth)
    rebuilt = jn.compile(_build(recipe).space, max_depth=case.max_depth)
    for other in (again, rebuilt):
        assert other == spec and hash(other) == hash(spec)
        assert other.paths == spec.paths
    assert {spec: 1}[rebuilt] == 1
    assert spec != object()
    # A different space gives a different spec: one more entry, or one leaf changed.
    different = dict(case.space, zz_extra=jn.Float(0.0, 1.0))
    assert jn.compile(different, max_depth=case.max_depth) != spec
    changed = _perturb_first_leaf(recipe)
    if changed is not None:
        assert jn.compile(_build(changed).space, max_depth=case.max_depth) != spec
    if case.rule is not None:  # unrolled one level deeper: more slots
        deeper = jn.compile(case.space, max_depth=case.max_depth + 1)
        assert deeper != spec and len(deeper.paths) > len(spec.paths)


def _perturb_first_leaf(recipe):
    """The recipe with its first top-level leaf changed in a way resolve can see, or None."""
    for i, (name, leaf) in enumerate(recipe["entries"]):
        if leaf[0] in ("float", "int"):
            leaf = (*leaf[:2], leaf[2] + 1, *leaf[3:])
        elif leaf[0] == "cat":
            leaf = ("cat", (*leaf[1], "zz"), *leaf[2:])
        elif leaf[0] == "bool":
            leaf = ("bool", True if leaf[1] is None else None, leaf[2])
        else:
            continue
        entries = list(recipe["entries"])
        entries[i] = (name, leaf)
        return dict(recipe, entries=entries)
    return None


# ------------------------------------------------ regressions found by these properties


def test_integer_prior_far_tail_has_finite_log_prior():
    spec = jn.compile({"n": jn.Integer(0, 10, prior=0, prior_confidence="high")})
    # n = 10 is drawn by spec.sample with probability 1/11; its prior mass is about 1e-12.
    assert np.isfinite(spec.log_prior({"n": jnp.int32(10)}))


def test_space_with_an_empty_dict_is_hashable():
    spec = jn.compile({"lr": jn.Float(0.0, 1.0), "extra": {}})
    hash(spec)


def test_distinct_slots_get_distinct_paths():
    space = {"a.b": jn.Float(0.0, 1.0), "a": {"b": jn.Integer(0, 3)}}
    with pytest.raises(jn.SpaceError, match="two decisions have this path"):
        jn.compile(space)


def test_bucket_of_a_space_without_decisions():
    spec = jn.compile({"epochs": jn.IntegerFidelity(1, 27), "act": "relu"})
    config = spec.sample(jax.random.key(0))
    assert spec.resolve(config) == {"epochs": 27, "act": "relu"}
    assert spec.bucket(config) == ()
