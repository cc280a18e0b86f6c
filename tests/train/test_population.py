"""Bucket training: vmapped members, padding, continuation across rungs, the supervised task."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from jaxnas.train import BucketTrainer, SupervisedTask, Task, pad_to_power_of_two

N_TRAIN, N_VAL, FEATURES, CLASSES = 96, 48, 6, 3


def data(seed=0):
    """A small separable classification problem: the label is the argmax of 3 projections."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_VAL, FEATURES)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(FEATURES, CLASSES)), axis=1).astype(np.int32)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def space():
    dense = jn.Operation(nn.Dense, args=(jn.Integer(4, 16),))
    model = jn.Operation(jn.nn.Sequential, args=([dense, jn.Operation(nn.relu),
                                                  jn.Operation(nn.Dense, args=(CLASSES,))],))
    return {"model": model, "learning_rate": jn.Float(1e-3, 1e-1, log=True),
            "epochs": jn.IntegerFidelity(1, 9)}


def population(spec, n, seed=0):
    configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(seed), n))
    keys = jax.random.split(jax.random.key(seed + 100), n)
    return configs, keys


def member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def other_keys(n=5):
    """Trial keys other than `population`'s: other initial weights, other shuffles.

    A parent trained under them stands where no fresh state under `population`'s keys
    stands, so a member continued from it shows whether its parent's state was used.
    """
    return jax.random.split(jax.random.key(999), n)


@pytest.fixture(scope="module")
def setup():
    spec = jn.compile(space())
    task = SupervisedTask(*data(), batch_size=16)
    configs, keys = population(spec, 5)
    trainer = BucketTrainer(task.for_bucket(spec, member(configs, 0), masked=True))
    return spec, task, configs, keys, trainer


def test_continuing_from_a_lower_rung_equals_training_straight_through(setup):
    spec, _, configs, keys, trainer = setup
    # The parent is trained under other keys than the ones passed with it: the continued
    # member must go on from the parent's state (its weights and its key), so it ends where
    # the parent's own straight training ends, not where a fresh start under `keys` does.
    low, _ = trainer(other_keys(), configs, jnp.full(5, 3))
    continued, continued_results = trainer(keys, configs, jnp.full(5, 9), parents=low)
    straight, straight_results = trainer(other_keys(), configs, jnp.full(5, 9))
    np.testing.assert_array_equal(continued.epoch, 9)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6),
                 (continued.params, continued.opt_state, continued.val_curve),
                 (straight.params, straight.opt_state, straight.val_curve))
    np.testing.assert_allclose(continued_results["loss"], straight_results["loss"], atol=1e-6)
    # The parent's three epochs are kept, not trained again: its curve points stand as they
    # were, and they differ from those of a fresh start under `keys`.
    np.testing.assert_array_equal(continued.val_curve[:, :3], low.val_curve[:, :3])
    np.testing.assert_array_equal(continued.train_curve[:, :3], low.train_curve[:, :3])
    fresh, _ = trainer(keys, configs, jnp.full(5, 9))
    assert np.all(np.asarray(fresh.train_curve[:, 0] != low.train_curve[:, 0]))


def test_mixed_batch_of_new_and_continued_members(setup):
    _, _, configs, keys, trainer = setup
    low, _ = trainer(other_keys(), configs, jnp.full(5, 1))
    has_parent = np.array([True, False, True, False, True])
    mixed, _ = trainer(keys, configs, jnp.full(5, 4), parents=low, has_parent=has_parent)
    from_parents, _ = trainer(other_keys(), configs, jnp.full(5, 4))
    fresh, _ = trainer(keys, configs, jnp.full(5, 4))
    # Rows with a parent go on from it; rows without start from their own keys.
    expected = np.where(has_parent[:, None], from_parents.val_curve, fresh.val_curve)
    np.testing.assert_allclose(mixed.val_curve, expected, atol=1e-6)
    assert np.all(np.asarray(from_parents.train_curve[:, 0] != fresh.train_curve[:, 0]))


def counting_task():
    """A task whose state counts the epochs trained and the epochs its last `train` ran."""

    def init(key, config):
        del key, config
        return {"epochs": jnp.zeros((), jnp.int32), "last_run": jnp.zeros((), jnp.int32)}

    def train(state, config, fidelity):
        del config

        def one_epoch(s):
            return {"epochs": s["epochs"] + 1, "last_run": s["last_run"] + 1}

        return jax.lax.while_loop(lambda s: s["epochs"] < fidelity, one_epoch,
                                  {**state, "last_run": jnp.zeros((), jnp.int32)})

    def evaluate(state, config):
        del config
        return -state["epochs"].astype(jnp.float32)

    return Task(init, train, evaluate)


@pytest.mark.parametrize("members_at_once", [None, 2])
def test_a_continued_member_trains_only_the_epochs_its_parent_lacks(members_at_once):
    trainer = BucketTrainer(counting_task(), members_at_once=members_at_once)
    keys = other_keys()
    configs = {"unused": jnp.zeros(5)}
    low, _ = trainer(keys, configs, jnp.array([1, 2, 3, 1, 2]))
    has_parent = np.array([True, True, False, True, True])
    high, _ = trainer(keys, configs, jnp.full(5, 4), parents=low, has_parent=has_parent)
    np.testing.assert_array_equal(high["epochs"], 4)
    np.testing.assert_array_equal(high["last_run"], [3, 2, 4, 3, 2])


def test_padding_is_never_reported_and_members_are_independent(setup):
    spec, task, configs, keys, trainer = setup
    states, results = trainer(keys, configs, jnp.full(5, 2))  # padded to 8
    assert results["loss"].shape == (5,) and states.epoch.shape == (5,)
    # A member trained alone (padded to 1) gets what it got inside the batch.
    alone, alone_results = trainer(keys[2:3], member_batch(configs, 2), jnp.full(1, 2))
    np.testing.assert_allclose(alone_results["loss"][0], results["loss"][2], atol=1e-6)
    np.testing.assert_allclose(alone.val_curve[0], states.val_curve[2], atol=1e-6)


def member_batch(configs, i):
    return jax.tree.map(lambda a: a[i:i + 1], configs)


def test_learning_curves_record_every_epoch_trained(setup):
    _, _, configs, keys, trainer = setup
    states, results = trainer(keys, configs, jnp.array([1, 2, 3, 4, 9]))
    curves = np.asarray(results["val_curve"])
    for row, epochs in enumerate([1, 2, 3, 4, 9]):
        assert np.all(np.isfinite(curves[row, :epochs]))
        assert np.all(np.isnan(curves[row, epochs:]))
    np.testing.assert_array_equal(results["epochs"], [1, 2, 3, 4, 9])
    # The objective is the last point of the validation curve.
    np.testing.assert_allclose(results["loss"], curves[np.arange(5), [0, 1, 2, 3, 8]])


def test_training_learns(setup):
    _, _, configs, keys, trainer = setup
    _, results = trainer(keys, configs, jnp.full(5, 9))
    curves = np.asarray(results["val_curve"])
    lr = np.asarray(configs["learning_rate"])
    best = np.argmax(lr)  # the largest learning rates learn this easy problem in 9 epochs
    assert curves[best, -1] < curves[best, 0] and curves[best, -1] < 0.5


def _trace_counting_trainer(**kwargs):
    """A trainer whose task counts how often its `train` is traced, and its space."""
    spec = jn.compile(space())
    traces = []
    inner = SupervisedTask(*data(), batch_size=32).for_bucket(
        spec, spec.sample(jax.random.key(0)), masked=True)

    def train(state, config, fidelity):
        traces.append(1)
        return inner.train(state, config, fidelity)

    return spec, traces, BucketTrainer(Task(inner.init, train, inner.evaluate), **kwargs)


def test_one_program_serves_every_batch_size_on_a_cpu():
    spec, traces, trainer = _trace_counting_trainer(members_at_once=2, capacity=4)
    configs, keys = population(spec, 3)
    trainer(keys, configs, jnp.full(3, 1))
    once = len(traces)
    assert once > 0
    for n in (1, 4, 2, 9, 3):  # 9 takes three calls of the capacity-4 program
        configs, keys = population(spec, n, seed=n)
        states, results = trainer(keys, configs, jnp.full(n, 2))
        assert results["loss"].shape == (n,) and states.epoch.shape == (n,)
        np.testing.assert_array_equal(states.epoch, 2)
    assert len(traces) == once  # never traced again, so never compiled again


def test_compile_ahead_makes_the_first_call_trace_nothing():
    spec, traces, trainer = _trace_counting_trainer(members_at_once=1, capacity=4)
    configs, keys = population(spec, 3)
    assert trainer.compile(jax.random.key_data(keys), configs)
    compiled = len(traces)
    assert compiled > 0
    for n in (3, 1, 6):  # fresh and continued members, one call and two
        configs, keys = population(spec, n, seed=n)
        states, _ = trainer(keys, configs, jnp.full(n, 1))
        trainer(keys, configs, jnp.full(n, 2), parents=states)
    assert len(traces) == compiled  # the calls ran the program compiled ahead


def test_a_batch_larger_than_the_capacity_equals_one_trained_at_once(setup):
    spec, task, configs, keys, _ = setup
    bucket = task.for_bucket(spec, member(configs, 0), masked=True)
    small = BucketTrainer(bucket, members_at_once=1, capacity=2)  # 5 members: 3 calls
    states, results = small(keys, configs, jnp.full(5, 3))
    reference, reference_results = BucketTrainer(bucket, members_at_once=8)(
        keys, configs, jnp.full(5, 3))
    assert _max_difference(states.params, reference.params) < 1e-5
    np.testing.assert_allclose(results["val_curve"], reference_results["val_curve"],
                               atol=1e-6)


def test_all_at_once_pads_to_a_power_of_two_as_on_an_accelerator():
    spec, traces, trainer = _trace_counting_trainer(members_at_once="all",
                                                    devices=jax.devices()[:1])
    assert trainer.members_at_once is None and trainer.capacity is None
    for n in (3, 4, 3, 2):  # padded sizes 4, 4, 4, 2: two programs
        configs, keys = population(spec, n, seed=n)
        _, results = trainer(keys, configs, jnp.full(n, 1))
        assert results["loss"].shape == (n,)
    assert len(traces) == 2
    assert [pad_to_power_of_two(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 16]


def test_all_at_once_shares_one_program_up_to_min_members():
    # An accelerator's trainer (min_members 32 there), on the CPU: every batch up to the
    # minimum runs the one program compiled ahead, the first larger one adds one.
    spec, traces, trainer = _trace_counting_trainer(members_at_once="all", min_members=8,
                                                    devices=jax.devices()[:1])
    assert trainer.min_members == 8
    configs, keys = population(spec, 1)
    assert trainer.compile(jax.random.key_data(keys), configs)
    compiled = len(traces)
    for n in (1, 5, 8, 2):  # the quickstart's PriorBand asks 1 to 27 members at a time
        configs, keys = population(spec, n, seed=n)
        states, results = trainer(keys, configs, jnp.full(n, 1))
        assert results["loss"].shape == (n,)
        trainer(keys, configs, jnp.full(n, 2), parents=states)
    assert len(traces) == compiled
    configs, keys = population(spec, 9, seed=9)
    trainer(keys, configs, jnp.full(9, 1))  # padded to 16
    assert len(traces) == 2 * compiled


def test_an_accelerators_trainer_pads_to_32_rows_a_cpus_to_none(setup):
    spec, task, configs, _, _ = setup
    bucket = task.for_bucket(spec, member(configs, 0), masked=True)

    class Accelerator:  # a stand-in: the defaults read only the platform
        platform, id = "gpu", 0

    accelerator = BucketTrainer(bucket, devices=(Accelerator(),))
    assert accelerator.members_at_once is None and accelerator.min_members == 32
    assert BucketTrainer(bucket, members_at_once="all").min_members == 1  # on the CPU
    assert BucketTrainer(bucket).min_members is None  # a few at a time: a capacity


def test_bad_trainer_sizes_are_refused(setup):
    spec, task, configs, _, _ = setup
    bucket = task.for_bucket(spec, member(configs, 0), masked=True)
    with pytest.raises(ValueError, match="capacity=6 must be a multiple of members_at_once=4"):
        BucketTrainer(bucket, members_at_once=4, capacity=6)
    with pytest.raises(ValueError, match="capacity=0 must be a positive integer"):
        BucketTrainer(bucket, capacity=0)
    with pytest.raises(ValueError, match="min_members=-1 must be a positive integer"):
        BucketTrainer(bucket, members_at_once="all", min_members=-1)


def test_supervised_task_rejects_bad_input():
    train, val = data()
    with pytest.raises(ValueError, match="kind='ranking'"):
        SupervisedTask(train, val, kind="ranking")
    with pytest.raises(ValueError, match="batch_size=500 must lie in 1..96"):
        SupervisedTask(train, val, batch_size=500)
    with pytest.raises(ValueError, match="train_data"):
        SupervisedTask((train[0], train[1][:5]), val)
    spec = jn.compile(space())
    with pytest.raises(ValueError, match="no entry 'net'"):
        SupervisedTask(train, val, model="net").for_bucket(spec, spec.sample(jax.random.key(0)))


def _max_difference(a, b):
    return max(jax.tree.leaves(jax.tree.map(
        lambda x, y: float(np.max(np.abs(np.asarray(x, float) - np.asarray(y, float)),
                                  initial=0.0)), a, b)))


def test_steps_fidelity_takes_the_epochs_minibatches_and_continues_mid_epoch(setup):
    spec, _, configs, keys, epochs_trainer = setup
    steps_per_epoch = N_TRAIN // 16
    steps_spec = jn.compile({**space(), "epochs": jn.IntegerFidelity(1, 9 * steps_per_epoch)})
    task = SupervisedTask(*data(), batch_size=16, fidelity="steps")
    trainer = BucketTrainer(task.for_bucket(steps_spec, member(configs, 0), masked=True))
    by_epochs, _ = epochs_trainer(keys, configs, jnp.full(5, 3))
    steps = 3 * steps_per_epoch
    by_steps, results = trainer(keys, configs, jnp.full(5, steps))
    # The same minibatches in the same order: equal up to float32 rounding. Each of the
    # `steps` updates may round differently by a few ulps of the largest parameter (another
    # but equivalent order of a sum); a wrong minibatch or step moves the parameters by
    # about the learning rate (>= 1e-3 here), far outside.
    largest = max(float(np.max(np.abs(p))) for p in jax.tree.leaves(by_epochs.params))
    tolerance = steps * np.finfo(np.float32).eps * max(largest, 1.0)
    assert _max_difference(by_steps.params, by_epochs.params) <= tolerance
    one_step_short, _ = trainer(keys, configs, jnp.full(5, steps - 1))
    assert _max_difference(one_step_short.params, by_epochs.params) > 100 * tolerance
    np.testing.assert_array_equal(results["steps"], steps)
    np.testing.assert_array_equal(results["epochs"], 3)
    # An epoch's training loss is the mean of its steps' losses, taken one step at a time.
    np.testing.assert_allclose(by_steps.train_curve, by_epochs.train_curve, rtol=1e-5)
    # Stopping in the middle of an epoch and continuing gives the straight result: the
    # parent's, which trained under other keys than a fresh start would.
    low, low_results = trainer(other_keys(), configs, jnp.array([4, 7, 1, 6, 11]))
    np.testing.assert_array_equal(low_results["epochs"], [0, 1, 0, 1, 1])
    continued, continued_results = trainer(keys, configs, jnp.full(5, 20), parents=low)
    straight, _ = trainer(other_keys(), configs, jnp.full(5, 20))
    np.testing.assert_array_equal(continued_results["steps"], 20)
    assert _max_difference((continued.params, continued.opt_state, continued.val_curve),
                           (straight.params, straight.opt_state, straight.val_curve)) < 1e-6
    np.testing.assert_allclose(continued.train_curve[:, :3], straight.train_curve[:, :3],
                               atol=1e-6)
    fresh, _ = trainer(keys, configs, jnp.full(5, 20))
    assert _max_difference(fresh.params, straight.params) > 1e-3


def test_data_fraction_fidelity_trains_on_nested_subsets_and_retrains_on_promotion(setup):
    _, _, configs, keys, _ = setup
    fraction_spec = jn.compile({**space(), "epochs": jn.FloatFidelity(0.25, 1.0)})
    task = SupervisedTask(*data(), batch_size=16, fidelity="data_fraction", epochs=3)
    trainer = BucketTrainer(task.for_bucket(fraction_spec, member(configs, 0), masked=True))
    low, low_results = trainer(keys, configs, jnp.full(5, 0.25))
    # 24 of the 96 rows: one full minibatch of 16 a step, so 1 step an epoch.
    np.testing.assert_array_equal(low_results["steps"], 3)
    np.testing.assert_array_equal(low_results["epochs"], 3)
    continued, continued_results = trainer(keys, configs, jnp.full(5, 1.0), parents=low)
    straight, straight_results = trainer(keys, configs, jnp.full(5, 1.0))
    np.testing.assert_array_equal(straight_results["steps"], 3 * N_TRAIN // 16)
    # Retraining runs the very program a straight training runs, so nothing may differ.
    assert _max_difference(continued, straight) == 0.0
    assert np.any(low_results["loss"] != straight_results["loss"])
    # The retraining starts from the parent's trial key, not from the key passed with it.
    other_low, _ = trainer(other_keys(), configs, jnp.full(5, 0.25))
    from_other, _ = trainer(keys, configs, jnp.full(5, 1.0), parents=other_low)
    other_straight, _ = trainer(other_keys(), configs, jnp.full(5, 1.0))
    assert _max_difference(from_other, other_straight) == 0.0
    assert _max_difference(from_other.params, straight.params) > 1e-3
    # Every member trains on the same subset: a member alone gets what it got in the batch.
    _, alone = trainer(keys[1:2], member_batch(configs, 1), jnp.full(1, 0.25))
    np.testing.assert_allclose(alone["loss"][0], low_results["loss"][1], atol=1e-6)


def test_fidelity_kinds_reject_bad_input(tmp_path):
    train, val = data()
    with pytest.raises(ValueError, match="fidelity='minutes' must be one of"):
        SupervisedTask(train, val, fidelity="minutes")
    with pytest.raises(ValueError, match="epochs=None must be a positive integer"):
        SupervisedTask(train, val, fidelity="data_fraction")
    with pytest.raises(ValueError, match="epochs=3 is for fidelity='data_fraction'"):
        SupervisedTask(train, val, fidelity="steps", epochs=3)
    fraction_task = SupervisedTask(train, val, fidelity="data_fraction", epochs=2)
    # A space whose fidelity cannot count it is refused when the run is defined.
    with pytest.raises(ValueError, match=r"within \(0, 1\].*\[1, 9\]"):
        jn.run(fraction_task, space(), root_directory=tmp_path / "a", max_evaluations=2)
    fractional = {**space(), "epochs": jn.FloatFidelity(0.5, 9.5)}
    with pytest.raises(ValueError, match=r"whole epochs.*\[0.5, 9.5\]"):
        jn.run(SupervisedTask(train, val), fractional, root_directory=tmp_path / "b",
               max_evaluations=2)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_training_a_few_members_at_a_time_gives_what_all_at_once_gives(setup):
    spec, task, configs, keys, _ = setup
    bucket = task.for_bucket(spec, member(configs, 0), masked=True)
    at_once = BucketTrainer(bucket, members_at_once=8)  # the whole padded batch
    two_at_a_time = BucketTrainer(bucket, members_at_once=2)  # 5 members, padded to 8
    # Parents under other keys, so that continuing from them shows in the result.
    low, _ = two_at_a_time(other_keys(), configs, jnp.array([1, 2, 3, 1, 2]))
    states, results = two_at_a_time(keys, configs, jnp.full(5, 4), parents=low)
    reference, reference_results = at_once(other_keys(), configs, jnp.full(5, 4))
    assert results["loss"].shape == (5,)
    assert _max_difference(states.params, reference.params) < 1e-5
    np.testing.assert_allclose(results["val_curve"], reference_results["val_curve"], atol=1e-6)
    fresh, _ = at_once(keys, configs, jnp.full(5, 4))
    assert _max_difference(fresh.params, reference.params) > 1e-3
    with pytest.raises(ValueError, match="members_at_once=0 must be a positive integer or .all. or None"):
        BucketTrainer(bucket, members_at_once=0)


def test_members_spread_over_devices_train_as_on_one(setup):
    spec, task, configs, keys, _ = setup
    assert len(jax.devices()) >= 2  # the suite runs with two CPU devices (conftest)
    bucket = task.for_bucket(spec, member(configs, 0), masked=True)
    one = BucketTrainer(bucket, devices=jax.devices()[:1])
    spread = BucketTrainer(bucket, devices=jax.devices()[:2])
    assert spread.capacity % 2 == 0
    low, _ = one(other_keys(), configs, jnp.array([1, 2, 3, 1, 2]))
    has_parent = np.array([True, False, True, True, False])
    reference, reference_results = one(keys, configs, jnp.full(5, 4), parents=low,
                                       has_parent=has_parent)
    states, results = spread(keys, configs, jnp.full(5, 4), parents=low,
                             has_parent=has_parent)
    assert _max_difference(states.params, reference.params) < 1e-6
    np.testing.assert_allclose(results["val_curve"], reference_results["val_curve"],
                               atol=1e-6)
    np.testing.assert_array_equal(results["epochs"], 4)
    # More members than a call takes: each call's members, from both devices, land in
    # their own rows (5 members, calls of 2: the last leaves the second device idle).
    in_calls = BucketTrainer(bucket, devices=jax.devices()[:2], capacity=2)
    states, results = in_calls(keys, configs, jnp.full(5, 4), parents=low,
                               has_parent=has_parent)
    assert _max_difference(states.params, reference.params) < 1e-6
    np.testing.assert_allclose(results["loss"], reference_results["loss"], atol=1e-6)
    # Members land on both devices, in order: a batch of one leaves the second idle.
    alone, alone_results = spread(keys[3:4], member_batch(configs, 3), jnp.full(1, 4),
                                  parents=member_batch(low, 3))
    np.testing.assert_allclose(alone_results["loss"], reference_results["loss"][3:4],
                               atol=1e-6)


def test_a_state_may_hold_typed_prng_keys():
    def init(key, config):
        del config
        return {"key": key, "steps": jnp.zeros((), jnp.float32)}

    def train(state, config, fidelity):
        del config
        return {"key": jax.random.split(state["key"])[0], "steps": state["steps"] + fidelity}

    def evaluate(state, config):
        del config
        return {"loss": state["steps"], "key": state["key"]}

    trainer = BucketTrainer(Task(init, train, evaluate))
    keys = jax.random.split(jax.random.key(0), 3)
    configs = {"unused": np.zeros(3)}
    low, _ = trainer(keys, configs, np.ones(3, np.float32))
    assert jax.dtypes.issubdtype(low["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(low["key"]),
                                  jax.random.key_data(jax.vmap(
                                      lambda k: jax.random.split(k)[0])(keys)))
    _, results = trainer(keys, configs, np.full(3, 2, np.float32), parents=low,
                         has_parent=np.array([True, False, True]))
    np.testing.assert_array_equal(results["loss"], [3, 2, 3])
