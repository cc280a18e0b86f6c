"""Recursive rules with a node budget (`jn.compile(space, max_nodes=...)`): pools of rule
instances filled by a breadth-first derivation, instead of unrolling to `max_depth`.

Distribution checks use fixed seeds and allow 5 standard errors at their sample sizes.
"""

import functools
import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from tests.space._grammars import C_HAS_S, S_CHILDREN, grammar_like, grammar_like_alt

BUDGET = 64
N = 4_000


def _render(node) -> str:
    """A resolved (unbuilt) derivation as NePS writes one: `(Sequential (Conv2D-3))`."""
    if isinstance(node, jn.Operation):
        name = node.operator()[0]
        inner = " ".join(_render(a) for a in node.args)
        return f"({name}{' ' + inner if inner else ''})"
    return repr(node)


def _instances_used(spec, active: np.ndarray) -> np.ndarray:
    """How many `S` instances each config's derivation uses (their root decisions)."""
    first = {}
    for i, path in enumerate(spec.paths):  # an instance's first decision: its production
        first.setdefault(path.split(".")[0], i)
    return active[:, [first[f"S#{k}"] for k in range(BUDGET)]].sum(axis=1)


@pytest.fixture(scope="module", params=[grammar_like, grammar_like_alt],
                ids=["GrammarLike", "GrammarLikeAlt"])
def grammar(request):
    spec = jn.compile(request.param(), max_nodes=BUDGET)

    @jax.jit
    @jax.vmap
    def draw(key):
        config = spec.sample(key)
        return config, spec.active(config).array, spec.log_prior(config), spec.feasible(config)

    return spec, draw(jax.random.split(jax.random.key(0), N))


def test_decisions_grow_with_the_budget_not_the_depth(grammar):
    spec, _ = grammar
    per_instance = len(spec.paths) // BUDGET
    assert len(spec.paths) == BUDGET * per_instance
    assert per_instance == 18  # S, two C's (each C and the O of three productions), 3 + 6 O
    assert spec.paths[0] in ("S#0", "S#0.args")  # the production: a choice, or its args
    assert spec.paths[-1].startswith(f"S#{BUDGET - 1}")
    assert jn.compile(grammar_like(), max_nodes=2 * BUDGET).paths[-1].startswith(
        f"S#{2 * BUDGET - 1}")


def test_derivation_sizes_follow_the_grammar(grammar):
    """The number of `S` instances a sampled derivation uses, against a direct Monte
    Carlo of the grammar conditioned on fitting the budget."""
    spec, (_, active, _, fits) = grammar
    assert np.all(np.asarray(fits))
    ours = _instances_used(spec, np.asarray(active))
    rng = np.random.default_rng(0)

    def derivation_size():
        pending, size = 1, 0
        while pending:
            pending, size = pending - 1, size + 1
            if size > BUDGET:
                return None
            direct, via_c = S_CHILDREN[rng.integers(6)]
            pending += direct + sum(C_HAS_S[rng.integers(4)] for _ in range(via_c))
        return size

    sizes = [derivation_size() for _ in range(40_000)]
    reference = np.array([s for s in sizes if s is not None])
    assert 0.9 < len(reference) / len(sizes) < 1.0  # the budget cuts the tail, as meant
    for q in (1, 2, 3, 5, 10, 20, 40):
        p = np.mean(reference <= q)
        tolerance = 5 * math.sqrt(p * (1 - p) / N + p * (1 - p) / len(reference)) + 1e-9
        assert abs(np.mean(ours <= q) - p) <= tolerance, q
    assert ours.max() <= BUDGET


def test_log_prior_is_the_derivations_probability(grammar):
    """Every used decision is a uniform categorical: the log prior is minus the sum of
    the logs of their choice counts, over the decisions the derivation uses only."""
    spec, (_, active, log_prior, _) = grammar
    choices = np.array([len(spec.parameters()[p].choices) for p in spec.paths])
    expected = -(np.asarray(active) * np.log(choices)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(log_prior), expected, rtol=1e-5)


def test_references_take_instances_breadth_first():
    spec = jn.compile(grammar_like(), max_nodes=BUDGET)
    config = _hand_derivation(spec)  # every other decision its first choice
    pick = {"S#0": 5, "S#1": 3, "S#2": 1, "S#3": 1, "S#1.choices[3].args[1]": 1, "S#4": 4}
    active = spec.active(config)
    assert all(bool(active[p]) for p in pick)
    assert not any(bool(active[f"S#{k}"]) for k in range(5, BUDGET))
    assert _render(spec.resolve(config, build=False)["S"]) == (
        "(Sequential "
        "(Sequential (Sequential (ReLUConvBN)) "                          # S#1: S#3 C
        "(Sequential (Conv2D-3) (Sequential (Conv2D-3) (Conv2D-3) (Conv2D-3)) (ReLUConvBN))) "
        "(Sequential (ReLUConvBN)) "                                      # S#2
        "(Conv2D-3) (Conv2D-3) (Conv2D-3) (Conv2D-3) (Conv2D-3) (Conv2D-3))")


def test_a_derivation_past_the_budget_is_infeasible():
    spec = jn.compile(grammar_like(), max_nodes=4)
    every_s_doubles = _lowest(spec).replace(
        {f"S#{k}": 5 for k in range(4)})
    assert not bool(spec.feasible(every_s_doubles))
    with pytest.raises(ValueError, match="max_nodes=4"):
        spec.resolve(every_s_doubles)
    keys = jax.random.split(jax.random.key(1), 256)
    feasible = jax.jit(jax.vmap(spec.feasible))  # one program, not op-by-op dispatch
    sampled = jax.jit(jax.vmap(spec.sample))(keys)
    assert bool(jnp.all(feasible(sampled)))
    mutated = jax.jit(jax.vmap(lambda k, c: spec.mutate(k, c, 0.5, 0.2)))(keys, sampled)
    assert bool(jnp.all(feasible(mutated)))


def test_rules_that_refer_to_each_other_share_the_budget():
    digit = jn.Integer(0, 9)  # resampled in each term: a shared one would be one value
    term = jn.Categorical(((digit.resample(),), (jn.ByName("expr").resample(),)))
    expr = jn.Categorical(((jn.ByName("_term").resample(), "+", jn.ByName("expr").resample()),
                           (jn.ByName("_term").resample(),)))
    # `_term`, an intermediate, starts no derivation of its own (a `term` entry would).
    spec = jn.compile({"expr": expr, "_term": term}, max_nodes=8)
    assert {p.split("#")[0] for p in spec.paths if "#" in p} == {"expr", "_term"}
    configs = jax.jit(jax.vmap(spec.sample))(jax.random.split(jax.random.key(2), 512))
    assert bool(jnp.all(jax.jit(jax.vmap(spec.feasible))(configs)))
    config = _lowest(spec).replace(
        {"expr#0": 0, "_term#0": 0, "_term#0.choices[0][0]": 3, "expr#1": 1, "_term#1": 0,
         "_term#1.choices[0][0]": 4})
    assert spec.resolve(config)["expr"] == ((3,), "+", ((4,),))
    # Each instance used counts against the one budget: 2 expr + 2 term here.
    active = spec.active(config)
    assert sum(bool(active[p]) for p in spec.paths if "#" in p and "." not in p) == 4


def test_spaces_without_recursion_are_the_same_with_a_budget():
    space = {"lr": jn.Float(1e-4, 1e-1, log=True),
             "act": jn.Categorical(("relu", jn.Operation(jn.nn.Identity)))}
    plain, budget = jn.compile(space), jn.compile(space, max_nodes=16)
    assert plain.paths == budget.paths and not budget.constrained
    key = jax.random.key(3)
    assert plain.sample(key).items() == budget.sample(key).items()


def test_the_budget_is_part_of_the_space():
    small, large = (jn.compile(grammar_like(), max_nodes=n) for n in (8, 16))
    assert small != large and small == jn.compile(grammar_like(), max_nodes=8) is not None
    restored = pickle.loads(pickle.dumps(small))
    assert restored.max_nodes == 8 and restored.paths == small.paths
    assert "max_nodes=8" in repr(small)


@pytest.mark.parametrize("budget", [0, -3, 2.5, "8", True])
def test_a_budget_that_is_not_a_positive_integer_is_refused(budget):
    with pytest.raises(jn.SpaceError, match=f"max_nodes={budget!r}"):
        jn.compile(grammar_like(), max_nodes=budget)


def test_a_rule_referenced_but_never_defined_is_named():
    space = {"S": jn.Categorical(((jn.ByName("T").resample(),), (1,)))}
    with pytest.raises(jn.SpaceError, match=r"ByName\('T'\) refers to no entry"):
        jn.compile(space, max_nodes=8)


def test_a_grammar_that_cannot_finish_within_the_budget_names_the_rule():
    # root -> branch branch; branch -> leaf leaf; leaf -> a bit, or root again: the
    # smallest derivation uses 1 + 2 + 4 instances.
    space = {"root": jn.Categorical(((jn.ByName("_branch").resample(),) * 2,)),
             "_branch": jn.Categorical(((jn.ByName("_leaf").resample(),) * 2,)),
             "_leaf": jn.Categorical(((jn.Integer(0, 1).resample(),),
                                      (jn.ByName("root").resample(),)))}
    with pytest.raises(jn.SpaceError, match=r"root: the smallest derivation .* needs 7 .*"
                                            r"max_nodes=6"):
        jn.compile(space, max_nodes=6)
    assert jn.compile(space, max_nodes=7).max_nodes == 7
    endless = {"tree": jn.Categorical(((jn.ByName("tree").resample(),) * 2,
                                       (jn.ByName("tree").resample(),) * 3))}
    with pytest.raises(jn.SpaceError, match="cannot terminate: rule.* 'tree'"):
        jn.compile(endless, max_nodes=100)


@functools.cache
def _lowest(spec):
    """The config of every slot's lowest value (a space is hashable: one jitted
    `from_unit` a space, not an op-by-op one a call)."""
    return jax.jit(spec.from_unit)(jnp.zeros(len(spec.paths)))


def _hand_derivation(spec):
    """S#0 -> S S O*6; S#1 -> S C; S#2 -> ReLUConvBN; S#3 -> ReLUConvBN; S#1's C -> O S
    ReLUConvBN; S#4 -> O O O (as in `test_references_take_instances_breadth_first`)."""
    return _lowest(spec).replace(
        {"S#0": 5, "S#1": 3, "S#2": 1, "S#3": 1, "S#1.choices[3].args[1]": 1, "S#4": 4})


def test_an_edited_production_keeps_the_rest_of_the_tree():
    spec = jn.compile(grammar_like(), max_nodes=BUDGET)
    carry_over = jax.jit(spec.carry_over)  # one compile, not five op-by-op calls
    # As `_hand_derivation`, but S#2 -> S, which takes S#5 -> O O O.
    parent = _hand_derivation(spec).replace({"S#2": 2, "S#5": 4})
    before = spec.resolve(parent, build=False)["S"].args
    # S#1 drops its two children. Read as a table, S#2's child would now be S#3; carried
    # over, S#2 keeps its own subtree.
    edited = parent.replace({"S#1": 1})
    assert _render(spec.resolve(edited, build=False)["S"].args[1]) != _render(before[1])
    carried = spec.resolve(carry_over(parent, edited, jax.random.key(0)),
                           build=False)["S"].args
    assert _render(carried[0]) == "(Sequential (ReLUConvBN))"
    assert _render(carried[1:]) == _render(before[1:])
    # S#3 now refers to a new S: it grows afresh, and everything else stays.
    edited = parent.replace({"S#3": 2})
    for seed in range(3):
        tree = spec.resolve(carry_over(parent, edited, jax.random.key(seed)),
                            build=False)["S"].args
        assert _render(tree[0].args[0]).startswith("(Sequential (Sequential")
        assert _render(tree[0].args[1:]) == _render(before[0].args[1:])
        assert _render(tree[1:]) == _render(before[1:])
    assert carry_over(parent, parent, jax.random.key(0)).items() == parent.items()


def test_mutation_without_changes_is_the_parent_and_with_changes_stays_feasible():
    spec = jn.compile(grammar_like(), max_nodes=8)
    parents = jax.jit(jax.vmap(spec.sample))(jax.random.split(jax.random.key(4), 64))
    keys = jax.random.split(jax.random.key(5), 64)
    mutate = jax.jit(jax.vmap(spec.mutate, in_axes=(0, 0, None, None)))
    same = mutate(keys, parents, 0.0, 0.1)
    np.testing.assert_array_equal(np.asarray(same.ints), np.asarray(parents.ints))
    moved = mutate(keys, parents, 1.0, 0.1)
    assert bool(jnp.all(jax.jit(jax.vmap(spec.feasible))(moved)))
    assert np.mean(np.any(np.asarray(moved.ints) != np.asarray(parents.ints), axis=1)) > 0.9


# A derivation NePS's own test suite records for its `GrammarLike` space (its
# `test_resolve_context`), as nested `(production, arguments)`: an `S` production's
# arguments are its searched ones in order (`S` as a nested pair, `C` as
# `("C", production, arguments)`, an `O` as its index; the fixed ReLUConvBNs left out).
NEPS_RECORDED = (5, [(3, [(1, []), ("C", 1, [0, (5, [(0, [("C", 3, [(4, [2, 0, 2])])]),
                                                       (1, []), 0, 2, 1, 0, 1, 2])])]),
                     (2, [(2, [(0, [("C", 2, [2, (1, [])])])])]), 1, 1, 2, 2, 1, 1])
NEPS_RECORDED_STRING = (
    "(Sequential (Sequential (Sequential (ReLUConvBN)) (Sequential (Conv2D-3) (Sequential "
    "(Sequential (Sequential (Sequential (Identity) (Conv2D-3) (Identity)))) (Sequential "
    "(ReLUConvBN)) (Conv2D-3) (Identity) (Conv2D-1) (Conv2D-3) (Conv2D-1) (Identity)) "
    "(ReLUConvBN))) (Sequential (Sequential (Sequential (Sequential (Identity) (Sequential "
    "(ReLUConvBN)))))) (Conv2D-1) (Conv2D-1) (Identity) (Identity) (Conv2D-1) (Conv2D-1))")


def _from_derivation(spec, tree):
    """A config of `grammar_like()` holding `tree`, its `S`s numbered breadth-first."""
    values, queue, k = {}, [tree], 0
    while k < len(queue):
        production, args = queue[k]
        values[f"S#{k}"] = production
        for j, arg in enumerate(args):
            here = f"S#{k}.choices[{production}].args[{j}]"
            if isinstance(arg, int):
                values[here] = arg
            elif arg[0] == "C":
                values[here] = arg[1]
                for i, inner in enumerate(arg[2]):
                    if isinstance(inner, int):
                        values[f"{here}.choices[{arg[1]}].args[{i}]"] = inner
                    else:
                        queue.append(inner)
            else:
                queue.append(arg)
        k += 1
    return _lowest(spec).replace(values), len(queue)


def test_a_derivation_neps_records_is_one_of_the_space():
    spec = jn.compile(grammar_like(), max_nodes=BUDGET)
    config, size = _from_derivation(spec, NEPS_RECORDED)
    assert size == 11 and bool(spec.feasible(config))
    assert _render(spec.resolve(config, build=False)["S"]) == NEPS_RECORDED_STRING
    assert float(spec.log_prior(config)) < 0.0  # a derivation the prior gives mass to


HAND = (5, [(3, [(1, []), ("C", 1, [0, (4, [0, 0, 0])])]), (1, []), 0, 0, 0, 0, 0, 0])


def _subtrees(tree, path=()):
    """`(path, subtree)` of every `S` of a nested derivation (see `NEPS_RECORDED`)."""
    yield path, tree
    for j, arg in enumerate(tree[1]):
        if isinstance(arg, tuple) and arg[0] == "C":
            for i, inner in enumerate(arg[2]):
                if isinstance(inner, tuple):
                    yield from _subtrees(inner, (*path, (j, i)))
        elif isinstance(arg, tuple):
            yield from _subtrees(arg, (*path, (j, None)))


def _replaced(tree, path, new):
    if not path:
        return new
    (j, i), rest = path[0], path[1:]
    args = list(tree[1])
    if i is None:
        args[j] = _replaced(args[j], rest, new)
    else:
        c_args = list(args[j][2])
        c_args[i] = _replaced(c_args[i], rest, new)
        args[j] = ("C", args[j][1], c_args)
    return (tree[0], args)


# The derivation NePS's test suite records for `GrammarLikeAlt` (its
# `test_resolve_context_alt`: 52 decisions, 18 `S` six deep), in `NEPS_RECORDED`'s
# encoding; NePS's resolve of those 52 samplings (checked with NePS 0.17, which makes
# exactly them) writes it as `NEPS_RECORDED_ALT_STRING`.
_S_D = (2, [(5, [(3, [(1, []), ("C", 0, [1])]), (2, [(1, [])]), 1, 1, 2, 1, 0, 0])])
_S_E = (5, [(1, []), (3, [(0, [("C", 0, [2])]), ("C", 0, [0])]), 1, 2, 1, 1, 1, 2])
NEPS_RECORDED_ALT = (3, [(2, [(2, [(5, [(0, [("C", 2, [0, (1, [])])]), (1, []),
                                        2, 0, 0, 1, 0, 2])])]),
                         ("C", 1, [0, (5, [_S_D, _S_E, 2, 2, 2, 1, 1, 0])])])
NEPS_RECORDED_ALT_STRING = (
    "(Sequential (Sequential (Sequential (Sequential (Sequential (Sequential (Conv2D-3) "
    "(Sequential (ReLUConvBN)))) (Sequential (ReLUConvBN)) (Identity) (Conv2D-3) (Conv2D-3) "
    "(Conv2D-1) (Conv2D-3) (Identity)))) (Sequential (Conv2D-3) (Sequential (Sequential "
    "(Sequential (Sequential (Sequential (ReLUConvBN)) (Sequential (Conv2D-1))) (Sequential "
    "(Sequential (ReLUConvBN))) (Conv2D-1) (Conv2D-1) (Identity) (Conv2D-1) (Conv2D-3) "
    "(Conv2D-3))) (Sequential (Sequential (ReLUConvBN)) (Sequential (Sequential (Sequential "
    "(Identity))) (Sequential (Conv2D-3))) (Conv2D-1) (Identity) (Conv2D-1) (Conv2D-1) "
    "(Conv2D-1) (Identity)) (Identity) (Identity) (Identity) (Conv2D-1) (Conv2D-1) "
    "(Conv2D-3)) (ReLUConvBN)))")
# Where each `S` production's arguments sit in `grammar_like_alt()`'s tuple of arguments,
# and each `C` production's.
_ALT_S_ARGS = {0: "C", 1: "", 2: "S", 3: "SC", 4: "OOO", 5: "SSOOOOOO"}
_ALT_C_ARGS = {0: "O", 1: "OS", 2: "OS", 3: "S"}


def _from_alt_derivation(spec, tree):
    """A config of `grammar_like_alt()` holding `tree`, its `S`s numbered breadth-first."""
    values, queue, k = {}, [tree], 0
    while k < len(queue):
        production, args = queue[k]
        values[f"S#{k}.args"] = production
        for j, (kind, arg) in enumerate(zip(_ALT_S_ARGS[production], args)):
            here = f"S#{k}.args.choices[{production}][{j}]"
            if kind == "S":
                queue.append(arg)
            elif kind == "O":
                values[here] = arg
            else:
                _, c_production, inner = arg
                values[f"{here}.args"] = c_production
                for i, (c_kind, c_arg) in enumerate(zip(_ALT_C_ARGS[c_production], inner)):
                    if c_kind == "S":
                        queue.append(c_arg)
                    else:
                        values[f"{here}.args.choices[{c_production}][{i}]"] = c_arg
        k += 1
    return _lowest(spec).replace(values), len(queue)


def test_the_alternative_forms_recorded_derivation_is_one_of_the_space():
    """NePS's recorded `GrammarLikeAlt` derivation nests `S` six deep, deeper than the
    issue could unroll the grammar (depth 5: 1.3 million decisions); a budget of 64
    instances (1,152 decisions) holds it, and it resolves as NePS resolves it."""
    spec = jn.compile(grammar_like_alt(), max_nodes=BUDGET)
    config, size = _from_alt_derivation(spec, NEPS_RECORDED_ALT)
    assert size == 18 and bool(spec.feasible(config))
    assert _render(spec.resolve(config, build=False)["S"]) == NEPS_RECORDED_ALT_STRING
    active = spec.active(config)
    used = [p for p in spec.paths if bool(active[p])]
    assert len(used) == 52  # NePS's 52 decisions, one slot each


def test_crossover_grafts_a_subtree_of_the_second_parent_into_the_first():
    spec = jn.compile(grammar_like(), max_nodes=BUDGET)
    first, _ = _from_derivation(spec, HAND)
    second, _ = _from_derivation(spec, NEPS_RECORDED)
    expected = {_render(spec.resolve(_from_derivation(spec, _replaced(HAND, at, sub))[0],
                                     build=False)["S"])
                for at, _ in _subtrees(HAND) for _, sub in _subtrees(NEPS_RECORDED)}
    cross = jax.jit(jax.vmap(spec.crossover, in_axes=(0, None, None)))
    children = cross(jax.random.split(jax.random.key(6), 32), first, second)
    assert bool(jnp.all(jax.jit(jax.vmap(spec.feasible))(children)))
    seen = set()
    for k in range(32):
        child = jax.tree.map(lambda a, k=k: a[k], children)
        seen.add(_render(spec.resolve(child, build=False)["S"]))
    assert seen <= expected and len(seen) > 8  # 5 x 11 possible grafts


def test_a_grammar_of_modules_builds():
    import flax.linen as nn

    s = jn.ByName("S")
    space = {"S": jn.Categorical((jn.Operation(jn.nn.Identity),
                                  jn.Operation(jn.nn.Residual, args=(s.resample(),)).resample()))}
    spec = jn.compile(space, max_nodes=4)
    config = spec.config({"S#0": 1, "S#1": 1, "S#2": 0, "S#3": 0})
    assert _render_modules(spec.resolve(config, build=False)["S"]) == "Residual(Residual(Identity))"
    module = spec.resolve(config)["S"]
    assert isinstance(module, nn.Module)
    x = jnp.ones((2, 3))
    # x + (x + x): each Residual adds its input to its body.
    np.testing.assert_allclose(module.apply(module.init(jax.random.key(0), x), x), 3 * x)


def _render_modules(node) -> str:
    inner = ", ".join(_render_modules(a) for a in node.args)
    return f"{node.operator.__name__}({inner})" if inner else node.operator.__name__


@pytest.mark.parametrize("shared", ["operation", "rule"])
def test_a_shared_value_that_refers_to_its_rule_is_refused(shared):
    s = jn.ByName("S")
    inner = (jn.Operation(sequence_of, args=(s.resample(),)) if shared == "operation"
             else jn.Operation(sequence_of, args=(s,)).resample())
    with pytest.raises(jn.SpaceError, match="a value cannot contain itself"):
        jn.compile({"S": jn.Categorical((0, inner))}, max_nodes=4)


def sequence_of(*args):
    return args


@pytest.mark.parametrize("name, kwargs, exploits", [
    ("priorband", dict(max_trials=160), False),
    ("regularized_evolution", dict(batch_size=8, population_size=16, sample_size=4,
                                   max_trials=160), True),
    ("complex_random_search", dict(batch_size=8, max_trials=160), True),
])
def test_searches_on_a_grammar_propose_derivations_within_the_budget(name, kwargs, exploits):
    """PriorBand (incumbent mutation), regularised evolution (one-decision mutation, carried
    over) and complex random search (mutation and crossover of derivations) on NePS's
    grammar with a fidelity: every proposal is a derivation within the budget. With a loss
    that favours large derivations, the two that breed from the best find larger ones than
    they start with (PriorBand's new samples stay mostly uniform and prior draws)."""
    budget = 16
    spec = jn.compile({**grammar_like(), "epochs": jn.IntegerFidelity(1, 9)},
                      max_nodes=budget)
    first = [spec.paths.index(f"S#{k}") for k in range(budget)]
    opt = jn.optimizers.get(name, spec, **kwargs)

    def size(configs):
        return jax.vmap(lambda c: spec.active(c).array[jnp.asarray(first)].sum())(configs)

    @jax.jit
    def step(state, key):
        state, proposals = opt.ask(state, key)
        used = size(proposals.configs)
        state = opt.tell(state, proposals.trial_ids, -used.astype(jnp.float32))
        return state, (proposals.valid, used, jax.vmap(spec.feasible)(proposals.configs))

    state = opt.init(jax.random.key(0))
    sizes = []
    for key in jax.random.split(jax.random.key(1), 16):
        state, (valid, used, feasible) = step(state, key)
        valid = np.asarray(valid)
        assert np.all(np.asarray(feasible)[valid])
        sizes.append(np.asarray(used)[valid])
    early, late = np.concatenate(sizes[:3]), np.concatenate(sizes[-4:])
    assert not exploits or late.mean() > early.mean() + 2.0, (early, late)


def test_prior_unit_encoding_and_buckets_keep_their_meaning():
    """`sample_prior` follows a production's prior, `from_unit(to_unit(c))` is `c`, and a
    bucket is the derivation: the decisions of instances it does not use, and non-static
    values, leave it unchanged."""
    cell = jn.ByName("cell")
    space = {"cell": jn.Categorical((("conv", 3), ("conv", 5),
                                     ("pair", cell.resample(), cell.resample())),
                                    prior=1, prior_confidence="high"),
             "lr": jn.Float(1e-3, 1e-1, log=True)}
    spec = jn.compile(space, max_nodes=8)
    keys = jax.random.split(jax.random.key(6), 2_000)
    roots = {name: np.asarray(jax.jit(jax.vmap(draw))(keys)["cell#0"])
             for name, draw in (("uniform", spec.sample), ("prior", spec.sample_prior))}
    assert np.mean(roots["prior"] == 1) > np.mean(roots["uniform"] == 1) + 0.2

    configs = jax.jit(jax.vmap(spec.sample))(keys[:256])
    back = jax.jit(jax.vmap(lambda c: spec.from_unit(spec.to_unit(c))))(configs)
    np.testing.assert_array_equal(np.asarray(back.ints), np.asarray(configs.ints))
    np.testing.assert_allclose(np.asarray(back.floats), np.asarray(configs.floats), rtol=1e-5)

    active = np.asarray(jax.jit(jax.vmap(lambda c: spec.active(c).array))(configs))
    row = next(i for i in range(256) if not active[i, spec.paths.index("cell#7")])
    config = jax.tree.map(lambda x: x[row], configs)
    moved = config.replace({"cell#7": (int(config["cell#7"]) + 1) % 3, "lr": 0.05})
    assert spec.bucket(moved) == spec.bucket(config)
    buckets = spec.buckets(configs)
    derivations = [repr(spec.resolve(jax.tree.map(lambda x, i=i: x[i], configs),
                                     build=False)["cell"]) for i in range(64)]
    assert 1 < len(set(derivations)) < 64  # some derivations repeat, some differ
    for i in range(64):
        for j in range(i):
            assert (buckets[i] == buckets[j]) == (derivations[i] == derivations[j])
