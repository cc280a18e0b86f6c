"""What a run compiles: one training program per bucket structure, whatever the rung sizes,
and none again when the same task runs a second search in the same process.

A change that brings back per-bucket or per-size retracing (a trainer rebuilt per call, a
program per padded batch size, a fidelity in the static signature) fails here: the counts
are of traces of the task's `train`, which JAX makes exactly when it compiles a program
that calls it.
"""

import contextlib
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxnas as jn

CLASSES = 3


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(5, CLASSES)), axis=1).astype(np.int32)
    return (x[:80], y[:80]), (x[80:], y[80:])


def space():
    def layer(_):
        width = jn.Integer(4, 32, log=True)
        return jn.Operation(jn.nn.Sequential, args=(jn.Operation(nn.Dense, args=(width,)),
                                                    jn.Operation(nn.relu)))

    body = jn.nn.Repeat(layer, counts=(1, 2))  # one structure: widths and depth are masked
    return {"model": jn.Operation(jn.nn.Sequential,
                                  args=(body, jn.Operation(nn.Dense, args=(CLASSES,)))),
            "learning_rate": jn.Float(1e-3, 1e-1, log=True),
            "epochs": jn.IntegerFidelity(1, 9)}


class CountingTask(jn.SupervisedTask):
    """A supervised task that counts, per bucket structure, how often `train` is traced."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.traces = Counter()

    def for_bucket(self, spec, config, masked=False):
        inner = super().for_bucket(spec, config, masked)
        signature = spec.bucket(config, masked=masked)

        def train(state, config, fidelity):
            self.traces[signature] += 1
            return inner.train(state, config, fidelity)

        return jn.Task(inner.init, train, inner.evaluate)


@contextlib.contextmanager
def _listening(listen):
    """`listen` receives JAX's event durations (traces, compilations) inside the block."""
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield
    finally:
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is not None:
            unregister(listen)


def test_each_structure_is_traced_once_and_a_second_run_traces_nothing(tmp_path):
    task = CountingTask(*data(), batch_size=16)
    first = jn.run(task, space(), optimizer="priorband", root_directory=tmp_path / "a",
                   max_fidelity_spent=120, seed=0)
    sizes = Counter((t["step"], t["fidelity"]) for t in first.trials)
    assert len(set(sizes.values())) >= 3  # rungs of several sizes went through one program
    assert len({t["config"]["model.args[0]"] for t in first.trials}) == 2  # both depths
    assert len(task.traces) == 1  # depths 1 and 2 share the program
    # Each structure's program is traced once (plus once for its output shapes), however
    # many rungs, sizes and fidelities the run trained with it.
    assert all(n <= 2 for n in task.traces.values()), task.traces
    before = dict(task.traces)
    jn.run(task, space(), optimizer="priorband", root_directory=tmp_path / "b",
           max_fidelity_spent=120, seed=1)
    assert dict(task.traces) == before  # the second search reused the compiled programs


def test_the_first_bucket_compiles_ahead_and_a_failing_guess_changes_nothing(tmp_path):
    # jn.run compiles the prior configuration's bucket in a background thread while the
    # optimiser's programs compile; the run then traces that structure no more than a run
    # without it would, and a guess that fails (here: the task cannot make the prior's
    # bucket the first time it is asked) only costs the thread its time.
    class FailsFirst(CountingTask):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.asked = 0

        def for_bucket(self, spec, config, masked=False):
            self.asked += 1
            if self.asked == 1:
                raise RuntimeError("not this time")
            return super().for_bucket(spec, config, masked)

    for task in (CountingTask(*data(), batch_size=16), FailsFirst(*data(), batch_size=16)):
        result = jn.run(task, space(), optimizer="priorband", root_directory=tmp_path /
                        type(task).__name__, max_fidelity_spent=40, seed=0)
        assert all(t["status"] == "success" for t in result.trials)
        assert len(task.traces) == 1 and all(n <= 2 for n in task.traces.values())
    assert task.asked == 2  # the warm-up's failed call, then the first batch's


def test_the_optimisers_tell_compiles_while_the_first_training_program_does(tmp_path):
    # The first batch waits for its training program (compiled ahead in a background
    # thread); the optimiser's `tell`, which the first result would otherwise wait for,
    # is traced and compiled in that wait. The training program's trace here waits for
    # tell's (up to 30 s): a run that traced tell only after the first batch would time out.
    told = threading.Event()
    waited = []

    def listen(event, seconds, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration" and \
                kwargs.get("fun_name") == "tell":
            told.set()

    class WaitsForTell(CountingTask):
        def for_bucket(self, spec, config, masked=False):
            inner = super().for_bucket(spec, config, masked)

            def train(state, config, fidelity):
                waited.append(told.wait(timeout=30))
                return inner.train(state, config, fidelity)

            return jn.Task(inner.init, train, inner.evaluate)

    with _listening(listen):
        result = jn.run(WaitsForTell(*data(), batch_size=16), space(), optimizer="priorband",
                        root_directory=tmp_path, max_fidelity_spent=40, seed=0)
    assert all(t["status"] == "success" for t in result.trials)
    assert waited and all(waited), waited


def test_a_run_with_max_evaluations_traces_its_optimisers_ask_once(tmp_path):
    # The run learns its batch size from a traced ask of the optimiser it then builds:
    # that optimiser is the run's (TPE asks one trial at a time), so its first ask reuses
    # the trace. (JAX reports a reused trace too, in microseconds: a real one of TPE's
    # ask takes a tenth of a second.)
    asks = []

    def listen(event, seconds, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration" and \
                kwargs.get("fun_name") == "ask" and seconds > 1e-3:
            asks.append(seconds)

    with _listening(listen):
        result = jn.run(lambda x: (x - 0.3) ** 2, {"x": jn.Float(0.0, 1.0)}, optimizer="tpe",
                        root_directory=tmp_path, max_evaluations=6, progress=False)
    assert len(result.trials) == 6
    assert len(asks) == 1, asks


def test_a_pure_function_is_traced_once_ahead_of_the_first_batch(tmp_path):
    threads = []

    def evaluate(config, fidelity, key):
        threads.append(threading.current_thread().name)  # runs only while tracing
        return (config["x"] - 0.3) ** 2 + 1.0 / fidelity

    result = jn.run(evaluate, {"x": jn.Float(0.0, 1.0, prior=0.5),
                               "epochs": jn.IntegerFidelity(1, 9)},
                    optimizer="priorband", root_directory=tmp_path, max_fidelity_spent=60)
    assert len(result.trials) > 9
    assert len(threads) == 1 and threads[0].startswith("jaxnas-warm-up"), threads


def test_a_run_compiles_with_jaxnas_own_compiler_options(tmp_path):
    # The suite's XLA_FLAGS set an optimisation level, which jaxnas defers to; a user's
    # process has none, so jaxnas's own options (level 1 for training, level 0 and the
    # older emitters for the host helpers) reach XLA there: this run must compile with them.
    code = ("import sys; sys.path.insert(0, {tests!r})\n"
            "import jaxnas as jn\n"
            "from run.test_compiles import CountingTask, data, space\n"
            "r = jn.run(CountingTask(*data(), batch_size=16), space(), optimizer='priorband',\n"
            "           root_directory={root!r}, max_fidelity_spent=30, seed=0)\n"
            "print(sum(t['status'] == 'success' for t in r.trials), len(r.trials))\n")
    code = code.format(tests=str(Path(__file__).resolve().parents[1]), root=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    succeeded, trials = map(int, done.stdout.split())
    assert succeeded == trials > 0


def test_host_helpers_compile_one_program_for_every_batch_size():
    # Counted as traces, which happen whether or not the persistent cache holds the program.
    spec = jn.compile(space())
    configs = jax.tree.map(np.asarray, jax.jit(jax.vmap(spec.sample))(
        jax.random.split(jax.random.key(0), 40)))
    traces = []

    def listen(event, seconds, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            traces.append(event)

    with _listening(listen):
        for n in (1, 3, 17, 40):  # one padded size (64 rows), so one program
            rows = jax.tree.map(lambda a, n=n: a[:n], configs)
            assert len(spec.buckets(rows, masked=True)) == n
    assert len(traces) == 1


def test_a_depth_whose_blocks_change_the_shape_trains_each_depth_apart(tmp_path):
    # Every conv block halves the length, so a block cannot be skipped: the run finds that
    # out when it first traces the bucket and trains each depth in its own program.
    def block(_):
        return jn.Operation(jn.nn.Sequential, args=(
            jn.Operation(nn.Conv, args=(jn.Integer(2, 6), (3,))), jn.Operation(nn.relu),
            jn.Operation(jn.nn.MaxPool, kwargs={"window": 2})))

    space = {"model": jn.Operation(jn.nn.Sequential, args=(
        jn.nn.Repeat(block, counts=(1, 2)), jn.Operation(jn.nn.Flatten),
        jn.Operation(nn.Dense, args=(CLASSES,)))),
        "learning_rate": jn.Float(1e-3, 1e-1, log=True), "epochs": jn.IntegerFidelity(1, 3)}
    (x, y), (xv, yv) = data()
    task = CountingTask((x[..., None], y), (xv[..., None], yv), batch_size=16)
    result = jn.run(task, space, optimizer="random_search", root_directory=tmp_path,
                    max_evaluations=8, seed=0)
    assert all(t["status"] == "success" for t in result.trials), result.trials
    assert len({t["config"]["model.args[0]"] for t in result.trials}) == 2
    assert len(task.traces) == 2  # one program per depth


@pytest.fixture
def no_jax_cache():
    """JAX without a cache folder of its own (the suite sets one, `tests/conftest.py`),
    as a user who never set one has it; the suite's is back afterwards."""
    from jax.experimental.compilation_cache import compilation_cache  # noqa: PLC0415

    suites = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", suites)
    compilation_cache.reset_cache()  # JAX opens the folder again at its next compilation


def test_the_persistent_cache_holds_the_training_programs(tmp_path, no_jax_cache):
    folder = tmp_path / "cache"
    jn.run(CountingTask(*data(), batch_size=16), space(), optimizer="random_search",
           root_directory=tmp_path / "run", max_evaluations=4, seed=0,
           compilation_cache=folder)
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert any(folder.iterdir())  # the programs that took long enough to compile


def test_the_cache_stays_off_when_turned_off_and_a_bad_setting_is_refused(tmp_path):
    code = ("import jax, jaxnas as jn\n"
            "jn.run(lambda config, fidelity, key: config['x'], {'x': jn.Float(0, 1)},\n"
            f"       optimizer='random_search', root_directory={str(tmp_path / 'run')!r},\n"
            "       max_evaluations=2)\n"
            "print(jax.config.jax_compilation_cache_dir)")
    env = {**os.environ, "JAXNAS_COMPILATION_CACHE": "off"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the suite's own (tests/conftest.py)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "None"
    with pytest.raises(ValueError, match="compilation_cache=3 must be True"):
        jn.run(CountingTask(*data()), space(), root_directory=tmp_path / "bad",
               max_evaluations=1, compilation_cache=3)
    assert not (tmp_path / "bad").exists()


def test_a_task_puts_its_data_on_the_device_without_compiling(caplog):
    # `jnp.asarray` of host data compiles a small program per shape and dtype in every new
    # process; a task's data need none. Odd shapes, so that no earlier test's program hides
    # a compilation here.
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(37, 13)), rng.integers(0, CLASSES, size=37)  # float64, int64
    with jax.log_compiles(True), caplog.at_level("WARNING", logger="jax"):
        task = jn.SupervisedTask((x[:29], y[:29]), (x[29:], y[29:]), batch_size=8,
                                 test_data=(x[:3], y[:3]))
    compiled = [r.getMessage() for r in caplog.records if "compilation" in r.getMessage()]
    assert not compiled, compiled
    assert [a.dtype for a in task.train_data] == [np.float32, np.int32]  # JAX's dtypes
    assert isinstance(task.validation_data[0], jax.Array)


def test_no_structure_is_compiled_ahead_in_a_space_of_several_without_priors(tmp_path):
    # Without priors the first batch is uniform draws, which need not hold the structure
    # of the space's corner (its first choices) that a compilation ahead would guess.
    def two_structures():
        dense = jn.Operation(nn.Dense, args=(jn.Integer(4, 16),))
        return {"model": jn.Operation(jn.nn.Sequential, args=(jn.Categorical(
            [jn.Operation(jn.nn.Sequential, args=(dense, jn.Operation(nn.relu))),
             jn.Operation(jn.nn.Sequential, args=(dense, jn.Operation(nn.tanh)))]),
            jn.Operation(nn.Dense, args=(CLASSES,)))),
            "epochs": jn.IntegerFidelity(1, 3)}

    task = CountingTask(*data(), batch_size=16)
    result = jn.run(task, two_structures(), optimizer="random_search", seed=1,
                    root_directory=tmp_path, max_evaluations=1, progress=False)
    assert [t["status"] for t in result.trials] == ["success"]
    assert len(task.traces) == 1, task.traces  # the sampled structure's program only
