"""`grid_search`: the points it enumerates, their order, exhaustion, and its errors.

Each test reads a whole grid from one ask whose batch holds every point; the expected grids
are written out with numpy and `itertools.product`.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnas as jn
from jaxnas import optimizers

ALL = 128  # a batch that holds every grid of these tests

# A log float, a float, an integer and a categorical: 4 x 4 x 3 x 2 = 96 points at 4 points
# per float; the fidelity is set, not searched.
MIXED = {
    "lr": jn.Float(1e-4, 1e-1, log=True),
    "x": jn.Float(0.0, 1.0, prior=0.3),  # priors are ignored
    "n": jn.Integer(2, 4),
    "act": jn.Categorical(("relu", "tanh")),
    "z": jn.IntegerFidelity(1, 9),
}


def _ask_all(spec, seed=0, **kwargs):
    """The valid proposals of one ask of `ALL` rows (host arrays), and the state after it."""
    opt = optimizers.grid_search(spec, batch_size=ALL, **kwargs)
    state, proposals = jax.jit(opt.ask)(opt.init(jax.random.key(seed)), jax.random.key(1))
    proposals = jax.device_get(proposals)
    valid = np.asarray(proposals.valid)
    assert not valid[valid.sum():].any(), "valid rows come first"
    return jax.tree.map(lambda a: np.asarray(a)[valid], proposals), state


def _rows(spec, configs) -> list[tuple]:
    """Each config as a tuple of Python values in `spec.paths` order."""
    columns = [np.asarray(configs[p]).tolist() for p in spec.paths]
    return list(zip(*columns))


def _f32(values) -> list[float]:
    return np.asarray(values, np.float32).astype(float).tolist()


def test_every_combination_once_in_lexicographic_order_at_the_maximum_fidelity():
    spec = jn.compile(MIXED)
    assert spec.paths == ("lr", "x", "n", "act")
    proposals, state = _ask_all(spec, points_per_float=4)
    expected = list(itertools.product(
        _f32([1e-4, 1e-3, 1e-2, 1e-1]),  # both ends, evenly spaced on the log scale
        _f32([0.0, 1 / 3, 2 / 3, 1.0]),
        [2, 3, 4],  # every integer
        [0, 1],  # every choice (its index)
    ))
    assert _rows(spec, proposals.configs) == expected
    np.testing.assert_array_equal(proposals.trial_ids, np.arange(96))
    np.testing.assert_array_equal(proposals.fidelities, 9.0)
    np.testing.assert_array_equal(proposals.parent_ids, -1)
    assert int(state.trials.count) == 96


# A conditional space: an optimiser per branch, one branch with a nested choice that
# switches parameters and one with a choice that switches nothing; a plain categorical.
CONDITIONAL = {
    "opt": jn.Categorical((
        {"name": "sgd", "momentum": jn.Float(0.0, 0.9),
         "schedule": jn.Categorical(({"kind": "step", "gamma": jn.Float(0.1, 0.5)},
                                     {"kind": "cosine"}))},
        {"name": "adam", "beta": jn.Float(0.9, 0.999), "eps": jn.Float(1e-8, 1e-6, log=True),
         "amsgrad": jn.Bool()},
        {"name": "none"},
    )),
    "wd": jn.Categorical((0.0, 1e-4)),
}


def test_a_conditional_space_gives_each_active_configuration_once():
    spec = jn.compile(CONDITIONAL)
    paths = {
        "momentum": "opt.choices[0].momentum", "schedule": "opt.choices[0].schedule",
        "gamma": "opt.choices[0].schedule.choices[0].gamma", "beta": "opt.choices[1].beta",
        "eps": "opt.choices[1].eps", "amsgrad": "opt.choices[1].amsgrad",
    }
    assert set(spec.paths) == {"opt", "wd", *paths.values()}
    proposals, _ = _ask_all(spec, points_per_float=3)
    momentum, gamma = _f32([0.0, 0.45, 0.9]), _f32([0.1, 0.3, 0.5])
    beta, eps = _f32([0.9, 0.9495, 0.999]), _f32([1e-8, 1e-7, 1e-6])
    # Unused slots hold their first value: a branch not chosen does not multiply the grid.
    unused = {"momentum": momentum[0], "schedule": 0, "gamma": gamma[0], "beta": beta[0],
              "eps": eps[0], "amsgrad": 0}

    def point(opt, wd, **used):
        return {"opt": opt, "wd": wd, **{paths[k]: v for k, v in {**unused, **used}.items()}}

    expected = []
    for wd in (0, 1):
        expected += [point(0, wd, momentum=m, schedule=0, gamma=g)
                     for m, g in itertools.product(momentum, gamma)]
        expected += [point(0, wd, momentum=m, schedule=1) for m in momentum]
        expected += [point(1, wd, beta=b, eps=e, amsgrad=a)
                     for b, e, a in itertools.product(beta, eps, (0, 1))]
        expected += [point(2, wd)]
    assert len(expected) == 2 * (3 * 4 + 3 * 3 * 2 + 1) == 62
    got = _rows(spec, proposals.configs)
    assert len(got) == len(set(got)) == 62
    assert set(got) == {tuple(p[path] for path in spec.paths) for p in expected}


def test_a_parameter_shared_by_two_branches_varies_wherever_either_uses_it():
    """`t` is used when `s` or `r` picks its first choice: 3 x 5 points with `t` varying,
    and one (s = 1, r = 1) without. Neither choice alone decides whether `t` is used."""
    t = jn.Float(0.0, 1.0)
    spec = jn.compile({"s": jn.Categorical(({"t": t}, 0)), "r": jn.Categorical(({"t": t}, 0))})
    proposals, _ = _ask_all(spec)
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    expected = {(s, value, r) for s, r in ((0, 0), (0, 1), (1, 0)) for value in ts}
    assert spec.paths == ("s", "s.choices[0].t", "r")
    got = _rows(spec, proposals.configs)
    assert len(got) == 16 and set(got) == expected | {(1, 0.0, 1)}


def test_a_grammar_gives_each_tree_that_terminates_within_max_depth_once():
    """A binary tree grammar unrolled to depth 2: a choice that cannot finish (a split at
    the deepest level) is never proposed, so the grid is the five trees of depth <= 2."""
    rule = jn.Categorical(((jn.ByName("e").resample(), jn.ByName("e").resample()),
                           ("leaf", "leaf")))
    spec = jn.compile({"e": rule}, max_depth=2)
    proposals, _ = _ask_all(spec)
    leaf = ("leaf", "leaf")
    trees = [spec.resolve({p: np.asarray(proposals.configs[p])[i] for p in spec.paths})["e"]
             for i in range(len(proposals.valid))]
    assert sorted(map(repr, trees)) == sorted(map(repr, [
        leaf, (leaf, leaf), (leaf, (leaf, leaf)), ((leaf, leaf), leaf),
        ((leaf, leaf), (leaf, leaf))]))


def test_integers_take_every_value_or_points_per_integer_spaced_values():
    spec = jn.compile({"width": jn.Integer(1, 1024, log=True), "depth": jn.Integer(0, 100)})
    proposals, _ = _ask_all(spec, points_per_integer=11)
    widths, depths = [2 ** i for i in range(11)], [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert _rows(spec, proposals.configs) == list(itertools.product(widths, depths))
    proposals, _ = _ask_all(jn.compile({"depth": jn.Integer(3, 9)}))
    np.testing.assert_array_equal(proposals.configs["depth"], np.arange(3, 10))


@pytest.mark.parametrize("space, kwargs, match", [
    # 5 x 5 x 100: an integer's every value multiplies the grid.
    ({"x": jn.Float(0.0, 1.0), "y": jn.Float(0.0, 1.0), "n": jn.Integer(1, 100)}, {},
     r"the grid has 2500 points, more than max_trials=1024\. Its widest parameter is 'n' "
     r"with 100 values"),
    ({"lr": jn.Float(1e-5, 1.0, log=True), "width": jn.Integer(16, 4096, log=True)},
     dict(points_per_float=3, max_trials=200),
     r"the grid has 12243 points, more than max_trials=200\. Its widest parameter is "
     r"'width' with 4081 values"),
    # 2^11 = 2048 branch combinations: the walk over them stops past max_trials.
    ({f"c{i}": jn.Categorical(({"x": jn.Float(0.0, 1.0)}, {"y": jn.Float(0.0, 1.0)}))
      for i in range(11)}, {},
     r"the grid has more than max_trials=1024 points \(its branch combinations alone "
     r"number more\)"),
])
def test_a_grid_larger_than_max_trials_is_an_error_naming_its_size(space, kwargs, match):
    with pytest.raises(ValueError, match=rf"grid_search: {match}"):
        optimizers.grid_search(jn.compile(space), **kwargs)


def test_flat_categoricals_multiply_without_being_branched_on():
    """Twelve categoricals that switch nothing: 3^12 = 531441 points, counted exactly."""
    space = {f"op{i}": jn.Categorical(("conv", "pool", "skip")) for i in range(12)}
    with pytest.raises(ValueError, match=r"the grid has 531441 points"):
        optimizers.grid_search(jn.compile(space))


def test_shuffle_visits_a_permutation_fixed_by_the_init_key():
    spec = jn.compile(MIXED)
    ordered = _rows(spec, _ask_all(spec, points_per_float=4)[0].configs)
    first = _rows(spec, _ask_all(spec, seed=0, points_per_float=4, shuffle=True)[0].configs)
    again = _rows(spec, _ask_all(spec, seed=0, points_per_float=4, shuffle=True)[0].configs)
    other = _rows(spec, _ask_all(spec, seed=1, points_per_float=4, shuffle=True)[0].configs)
    assert sorted(first) == sorted(other) == ordered  # the same points...
    assert first == again  # ...in an order the seed fixes
    assert first != ordered and other != first


def test_an_exhausted_grid_proposes_only_padding_under_scan_and_vmap():
    """12 points, batches of 5: asks give 5, 5 and 2 points, then only padding; searches
    vmapped over seeds visit the same points in their own orders."""
    spec = jn.compile({"x": jn.Float(0.0, 1.0), "c": jn.Categorical(("a", "b", "c"))})
    opt = optimizers.grid_search(spec, points_per_float=4, shuffle=True, batch_size=5)

    def step(state, key):
        state, proposals = opt.ask(state, key)
        losses = jnp.where(proposals.valid, proposals.configs["x"], jnp.nan)
        return opt.tell(state, proposals.trial_ids, losses), proposals

    @jax.jit
    @jax.vmap
    def search(key):
        return jax.lax.scan(step, opt.init(key), jax.random.split(key, 5))

    state, proposals = jax.device_get(search(jax.random.split(jax.random.key(0), 2)))
    np.testing.assert_array_equal(proposals.valid.sum(axis=2), [[5, 5, 2, 0, 0]] * 2)
    np.testing.assert_array_equal(proposals.trial_ids[:, 2:],
                                  [[[10, 11, -1, -1, -1]] + [[-1] * 5] * 2] * 2)
    np.testing.assert_array_equal(state.trials.count, [12, 12])
    assert np.all(state.trials.status[:, :12] == optimizers.Status.SUCCESS)
    optimizers.check(state)  # an exhausted grid is not an overflow
    first, second = (_rows(spec, jax.tree.map(lambda c: c[seed, :12], state.trials.configs))
                     for seed in (0, 1))
    assert sorted(first) == sorted(second) and len(set(first)) == 12 and first != second


def test_jn_run_ends_when_the_grid_is_exhausted_and_stays_ended(tmp_path):
    space = {"x": jn.Float(-1.0, 1.0), "kind": jn.Categorical(("a", "b", "c")),
             "epochs": jn.IntegerFidelity(1, 5)}
    calls = []

    def evaluate(x, kind, epochs):
        calls.append((x, kind, epochs))
        return x ** 2 + {"a": 0.5, "b": 0.0, "c": 1.0}[kind]

    kwargs = dict(optimizer="grid_search", root_directory=tmp_path, max_evaluations=100,
                  optimizer_kwargs={"points_per_float": 5, "batch_size": 4}, progress=False)
    result = jn.run(evaluate, space, **kwargs)
    assert result.stopped_by == "the optimiser has nothing more to propose"
    assert len(result.trials) == len(calls) == 15  # 5 x 3, each once, at the top fidelity
    assert sorted((x, kind) for x, kind, _ in calls) == sorted(
        itertools.product([-1.0, -0.5, 0.0, 0.5, 1.0], "abc"))
    assert {epochs for _, _, epochs in calls} == {5}
    assert result.incumbent.loss == 0.0
    assert result.incumbent.config == {"x": 0.0, "kind": "b", "epochs": 5}
    again = jn.run(evaluate, space, **kwargs)  # resuming a finished grid evaluates nothing
    assert again.stopped_by == result.stopped_by and len(again.trials) == len(calls) == 15


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(points_per_float=1), ValueError, r"points_per_float=1 must be an integer >= 2"),
    (dict(points_per_float=2.5), ValueError, r"points_per_float=2\.5 must be an integer"),
    (dict(points_per_integer=0), ValueError, r"points_per_integer=0 must be an integer >= 2"),
    (dict(shuffle="yes"), TypeError, r"shuffle='yes' must be True or False"),
    (dict(batch_size=0), ValueError, r"batch_size=0 must be an integer >= 1"),
    (dict(max_trials=-3), ValueError, r"max_trials=-3 must be an integer >= 1"),
])
def test_bad_arguments_raise_naming_the_parameter_and_value(kwargs, error, match):
    with pytest.raises(error, match=rf"grid_search: {match}"):
        optimizers.grid_search(jn.compile({"x": jn.Float(0.0, 1.0)}), **kwargs)


# ------------------------------------------------------------------- property: any box


def _parameter(draw):
    """A drawn parameter and its grid values (None for a float: they depend on `points`)."""
    kind = draw(st.sampled_from(["float", "log_float", "int", "log_int", "cat"]))
    if kind == "cat":
        n = draw(st.integers(1, 4))
        return jn.Categorical(tuple(range(n))), list(range(n))
    if kind in ("int", "log_int"):
        lower = draw(st.integers(1, 50))
        upper = lower + draw(st.integers(1, 4))
        return jn.Integer(lower, upper, log=kind == "log_int"), list(range(lower, upper + 1))
    lower = draw(st.floats(1e-3, 10.0, allow_subnormal=False))
    upper = lower * draw(st.floats(1.5, 1e3))
    return jn.Float(lower, upper, log=kind == "log_float"), None


@st.composite
def _boxes(draw):
    drawn = [_parameter(draw) for _ in range(draw(st.integers(1, 4)))]
    return ({f"p{i}": parameter for i, (parameter, _) in enumerate(drawn)},
            [values for _, values in drawn])


@settings(max_examples=8, deadline=None)
@given(box=_boxes(), points=st.integers(2, 4))
def test_a_box_grid_is_the_product_of_each_parameters_values(box, points):
    """In a space without branches the grid is `itertools.product` of each parameter's
    values, in order: a float's `points` values from lower to upper (geometric on a log
    scale, float32), an integer's every value, a categorical's every index."""
    space, listed = box
    spec = jn.compile(space)
    values = []
    for path, given_values in zip(spec.paths, listed):
        parameter = spec.parameters()[path]
        if given_values is None:
            spaced = np.geomspace if parameter.log else np.linspace
            given_values = _f32(spaced(parameter.lower, parameter.upper, points))
        values.append(given_values)
    expected = list(itertools.product(*values))
    if len(expected) > ALL:
        with pytest.raises(ValueError, match=rf"the grid has {len(expected)} points"):
            optimizers.grid_search(spec, points_per_float=points, max_trials=ALL)
        return
    proposals, _ = _ask_all(spec, points_per_float=points, max_trials=ALL)
    assert _rows(spec, proposals.configs) == expected
