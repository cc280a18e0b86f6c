"""The run folder: resume after SIGKILL, several workers on one folder, reading a run back,
and clear errors for folders that cannot be used."""

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnas as jn
from tests.run import _worker

REPO = Path(__file__).resolve().parents[2]
SAME = ("trial_id", "parent_id", "step", "config", "fidelity", "status", "loss")


def _table(root, storage=None) -> list[tuple]:
    return [tuple(str(t[k]) if k == "config" else t[k] for k in SAME)
            for t in jn.load_results(root, storage=storage)]


def _successes(root, storage=None) -> int:
    if storage is not None:
        if not (Path(root) / "storage.json").exists():
            return 0
        return sum(t["status"] == "success" for t in jn.load_results(root, storage=storage))
    path = Path(root) / "trials.sqlite"
    if not path.exists():  # (connecting would create it)
        return 0
    try:
        with sqlite3.connect(path, timeout=60.0) as db:
            return db.execute("SELECT COUNT(*) FROM trials WHERE status = 'success'"
                              ).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _start(root, *args, storage=None) -> subprocess.Popen:
    more = () if storage is None else ("--storage", storage)
    return subprocess.Popen([sys.executable, "-m", "tests.run._worker", str(root), *args,
                             *more], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _events(root, storage=None) -> tuple[list, list]:
    """The steps of the run's `ask` (and `reissue`) and `tell` events."""
    query = "SELECT step, kind FROM events"
    if storage is None:
        with sqlite3.connect(Path(root) / "trials.sqlite") as db:
            rows = db.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(storage) as db:
            rows = db.execute(query).fetchall()
    return ([(s,) for s, k in rows if k in ("ask", "reissue")],
            [(s,) for s, k in rows if k == "tell"])


def _in_process(root, evaluations, **kwargs):
    return jn.run(_worker.objective(0.0), _worker.space(), root_directory=root,
                  max_evaluations=evaluations, progress=False, **kwargs)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path, storage):
    evaluations = 100
    reference = _in_process(tmp_path / "reference", evaluations, checkpoint_every=3)
    root = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills, finished_before = 0, []
    while True:
        process = _start(root, "--evaluations", str(evaluations), "--sleep", "0.01",
                         "--checkpoint-every", "3", storage=storage)
        if kills < 3:
            # Kill after 5 to 24 more trials have finished, at a random moment within a
            # step: while trials run, commit and checkpoints are written (every 3 events).
            # Counting trials, not seconds, keeps the kills inside the run on any machine.
            target = _successes(root, storage) + int(rng.integers(5, 25))
            while process.poll() is None and _successes(root, storage) < target:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                done = [t for t in jn.load_results(root, storage=storage)
                        if t["status"] == "success"]
                finished_before.append({t["trial_id"]: t["loss"] for t in done})
                continue
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
        break
    assert kills >= 3, "the run finished before the test could kill it"
    assert len(finished_before[-1]) < evaluations  # the last kill did interrupt the run
    final = jn.load_results(root, storage=storage)
    assert all(t["status"] == "success" for t in final)
    by_id = {t["trial_id"]: t["loss"] for t in final}
    for earlier in finished_before:  # nothing finished was lost or evaluated again
        assert all(by_id[tid] == loss for tid, loss in earlier.items())
    # The same trials as an uninterrupted run in SQLite, whichever database held this one.
    assert _table(root, storage) == [tuple(str(t[k]) if k == "config" else t[k]
                                           for k in SAME) for t in reference.trials]


@pytest.mark.slow
def test_four_workers_share_one_run(tmp_path, storage):
    evaluations = 160
    workers = [_start(tmp_path, "--evaluations", str(evaluations), "--sleep", "0.02",
                      "--checkpoint-every", "10", storage=storage) for _ in range(4)]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    trials = jn.load_results(tmp_path, storage=storage)
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)) == evaluations  # none lost, none twice
    assert all(t["status"] == "success" for t in trials)
    assert len({t["worker"] for t in trials}) >= 2  # the work was shared
    # A promotion continues a finished trial of the same config at a lower fidelity.
    by_id = {t["trial_id"]: t for t in trials}
    for t in trials:
        if t["parent_id"] >= 0:
            parent = by_id[t["parent_id"]]
            assert parent["config"] == t["config"] and parent["fidelity"] < t["fidelity"]
    # One consistent optimiser history: every ask was told, and replaying the whole log
    # in a fresh process proposes exactly the stored trials (a mismatch raises).
    asks, tells = _events(tmp_path, storage)
    assert sorted(asks) == sorted(tells) and len(asks) == len(set(asks))
    for path in (tmp_path / "checkpoints").iterdir():
        if path.is_dir():
            import shutil
            shutil.rmtree(path)  # force a replay of the whole log
    again = _in_process(tmp_path, evaluations, checkpoint_every=10, storage=storage)
    assert len(again.trials) == evaluations


def _small_run(root, evaluations, storage=None, optimizer="tpe", **kwargs):
    def evaluate(x, kind):
        return (x - 0.5) ** 2 + {"a": 0.0, "b": 0.3}[kind]

    return jn.run(evaluate, {"x": jn.Float(-2.0, 2.0), "kind": jn.Categorical(("a", "b"))},
                  optimizer=optimizer, root_directory=root, max_evaluations=evaluations,
                  progress=False, storage=storage, **kwargs)


def test_a_run_continued_past_its_capacity_grows_it_and_is_the_run_made_at_once(
        tmp_path, storage, request, caplog):
    """12 evaluations make a state of 13 trials; continued to 30, the run grows it to 31,
    replays its 12 trials into the larger state, and goes on as a run of 30 would."""
    other = storage and request.getfixturevalue("postgres_server").database()
    assert len(_small_run(tmp_path / "parts", 12, storage).trials) == 12
    with caplog.at_level(logging.INFO, logger="jaxnas"):
        continued = _small_run(tmp_path / "parts", 30, storage)
    assert ("capacity grows from 13 to 31 trials; the run's 24 events so far are replayed"
            in caplog.text)
    assert "cannot be restored" not in caplog.text  # the smaller state's are not read
    whole = _small_run(tmp_path / "whole", 30, other)
    assert continued.stopped_by == "max_evaluations"
    assert _table(tmp_path / "parts", storage) == _table(tmp_path / "whole", other)
    assert len(whole.trials) == 30


def test_a_run_that_fills_the_state_it_chose_grows_it_and_goes_on(tmp_path, caplog):
    """Without `max_evaluations` a state holds 1024 trials: a run of 1100 by cost grows it
    (twice the room, the run so far replayed) and is the run made in the larger one; with
    the capacity given, the run stops there and says so."""
    def run(root, **kwargs):
        def evaluate(x, kind):
            return {"loss": (x - 0.5) ** 2 + {"a": 0.0, "b": 0.3}[kind], "cost": 1.0}

        return jn.run(evaluate, {"x": jn.Float(-2.0, 2.0),
                                 "kind": jn.Categorical(("a", "b"))},
                      optimizer="random_search", root_directory=root, max_cost=1100,
                      progress=False, **kwargs)

    with caplog.at_level(logging.INFO, logger="jaxnas"):
        grown = run(tmp_path / "grown", optimizer_kwargs={"batch_size": 100})
    assert "capacity grows from 1024 to 2048 trials" in caplog.text
    assert grown.stopped_by == "max_cost" and len(grown.trials) == 1100
    run(tmp_path / "large", optimizer_kwargs={"batch_size": 100, "max_trials": 2048})
    assert _table(tmp_path / "grown") == _table(tmp_path / "large")
    with caplog.at_level(logging.WARNING, logger="jaxnas"):
        pinned = run(tmp_path / "pinned", optimizer_kwargs={"batch_size": 100,
                                                            "max_trials": 1024})
    assert pinned.stopped_by == "the optimiser's capacity (optimizer_kwargs max_trials)"
    assert len(pinned.trials) < 1100 and "optimizer state is full" in caplog.text


def test_a_grown_run_resumes_from_its_new_checkpoints_and_max_trials_cannot_shrink(
        tmp_path, caplog):
    def go(evaluations, **kwargs):
        return _small_run(tmp_path, evaluations, **kwargs)

    go(12)
    go(20, optimizer_kwargs={"max_trials": 40})  # a larger capacity, given
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jaxnas"):
        resumed = go(36)  # fits in 40: the newest checkpoint, no replay from the start
    assert "grows" not in caplog.text and "cannot be restored" not in caplog.text
    assert len(resumed.trials) == 36
    with pytest.raises(ValueError, match=r"holds a different run.*max_trials was 40, now 16 "
                                         r"\(a continued run's max_trials may grow, not "
                                         r"shrink\)"):
        go(36, optimizer_kwargs={"max_trials": 16})


def test_resuming_restores_the_newest_good_checkpoint(tmp_path, caplog):
    capacity = {"max_trials": 128}  # the capacity stays; the budget grows from 40 to 70
    first = _in_process(tmp_path, 40, checkpoint_every=2, optimizer_kwargs=capacity)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert len(steps) == 3  # max_to_keep
    for file in (tmp_path / "checkpoints" / str(steps[-1])).rglob("*"):
        if file.is_file():
            file.write_bytes(b"garbage")  # a corrupt newest checkpoint
    # A save that was killed midway leaves Orbax's temporary folder: it is never read.
    partial = tmp_path / "checkpoints" / f"{steps[-1] + 1}.orbax-checkpoint-tmp-1700000000"
    partial.mkdir()
    (partial / "half_written").write_bytes(b"\x00" * 10)
    with caplog.at_level(logging.WARNING, logger="jaxnas"):
        resumed = _in_process(tmp_path, 70, checkpoint_every=2)  # keeps the stored capacity
    assert f"checkpoint {steps[-1]}" in caplog.text and "older one" in caplog.text
    reference = _in_process(tmp_path / "reference", 70, checkpoint_every=1000,
                            optimizer_kwargs=capacity)
    assert _table(tmp_path) == _table(tmp_path / "reference")
    assert [t["trial_id"] for t in resumed.trials][:40] == \
        [t["trial_id"] for t in first.trials]
    assert len(reference.trials) == 70


def test_a_different_run_in_the_folder_is_refused_then_overwritten(tmp_path):
    _in_process(tmp_path, 10)
    other = {**_worker.space(), "x": jn.Float(-3.0, 3.0)}
    with pytest.raises(ValueError, match=r"holds a different run.*space 'x' was .*Float"
                                         r"\(-2\.0, 2\.0.*now .*Float\(-3\.0, 3\.0"):
        jn.run(_worker.objective(0.0), other, root_directory=tmp_path, max_evaluations=10)
    with pytest.raises(ValueError, match=r"seed was 0, now 1.*overwrite=True"):
        _in_process(tmp_path, 10, seed=1)
    with pytest.raises(ValueError, match=r"optimizer was 'priorband', now 'hyperband'"):
        _in_process(tmp_path, 10, optimizer="hyperband")
    assert len(jn.load_results(tmp_path)) == 10  # nothing was touched
    result = _in_process(tmp_path, 5, seed=1, overwrite=True)
    assert len(result.trials) == 5 and len(jn.load_results(tmp_path)) == 5


def test_read_back_a_run(tmp_path):
    result = _in_process(tmp_path, 30)
    trials = jn.load_results(tmp_path)
    best = result.incumbent
    resolved = jn.load_config(tmp_path, best.trial_id)
    assert resolved == best.config
    assert jn.load_space(tmp_path) == jn.compile(_worker.space())
    with pytest.raises(KeyError, match="trial_id=999"):
        jn.load_config(tmp_path, 999)
    path = jn.export_csv(tmp_path, tmp_path / "trials.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 31 and "config.x" in lines[0] and "loss" in lines[0]
    pandas = pytest.importorskip("pandas")
    frame = jn.load_results(tmp_path, as_frame=True)
    assert isinstance(frame, pandas.DataFrame) and len(frame) == len(trials)
    assert frame["loss"].min() == pytest.approx(min(t["loss"] for t in trials))


def test_a_space_of_jax_s_wrapped_activations_is_read_back(tmp_path):
    """`flax.linen.relu`, `jax.nn.silu`, `sigmoid` and `jnp.tanh` are wrappers that pickle
    cannot store by their own names; the run stores them by their public ones."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    def space():
        act = jn.Categorical([jn.Operation(nn.relu), jn.Operation(jax.nn.silu),
                              jn.Operation(nn.sigmoid), jn.Operation(jnp.tanh)])
        return {"model": jn.Operation(jn.nn.Sequential, args=(
            jn.Operation(nn.Dense, args=(jn.Integer(2, 8),)), act)), "x": jn.Float(0.0, 1.0)}

    jn.run(lambda model, x: x, space(), root_directory=tmp_path, optimizer="random_search",
           max_evaluations=4)
    spec = jn.load_space(tmp_path)
    assert spec == jn.compile(space())
    config = spec.config(jn.load_results(tmp_path)[0]["config"])
    model = spec.resolve(config, build=False)["model"]
    assert model.args[1].operator in (nn.relu, jax.nn.silu, nn.sigmoid, jnp.tanh)
    assert isinstance(jn.load_config(tmp_path, 0)["model"], jn.nn.Built)


def test_status_command_prints_progress_best_and_failures(tmp_path):
    def flaky(x, y, kind, epochs):
        if x > 1.5:
            raise RuntimeError("diverged")
        return (x - 0.5) ** 2 + y ** 2 + 1.0 / epochs

    jn.run(flaky, _worker.space(), root_directory=tmp_path, max_evaluations=40,
           progress=False)
    out = subprocess.run([sys.executable, "-m", "jaxnas", "status", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    failed = [t for t in jn.load_results(tmp_path) if t["status"] == "failed"]
    assert "40 trials" in out and "success" in out and "best" in out.lower()
    assert failed and "RuntimeError: diverged" in out
    assert all("Traceback" in t["traceback"] and "diverged" in t["traceback"]
               for t in failed)


def test_status_shows_the_best_configurations_as_the_space_resolves_them(tmp_path):
    """Entries by name, only the branch each configuration took, architectures as calls;
    no decision paths, no fidelity."""
    import flax.linen as nn

    space = {"model": jn.Categorical([
        jn.Operation(jn.nn.Sequential, args=(jn.Operation(nn.Dense, args=(jn.Integer(2, 8),)),
                                             jn.Operation(nn.relu))),
        jn.Operation(nn.Dense, args=(jn.Integer(16, 32),))]),
        "head": {"lr": jn.Float(1e-3, 1e-1, log=True)}, "epochs": jn.IntegerFidelity(1, 3)}

    def objective(model, head, epochs):
        return head["lr"] / epochs

    result = jn.run(objective, space, root_directory=tmp_path, max_evaluations=12,
                    optimizer="random_search", progress=False)
    best = [line for line in result.summary().splitlines() if line.startswith("  trial")]
    assert len(best) == 5
    for line in best:
        assert "model=Sequential(Dense(" in line or "model=Dense(" in line, line
        assert "head.lr=" in line and "choices[" not in line and "epochs=" not in line
        assert line.count("Dense(") == 1  # the branch not taken is not shown


# A script run from its own folder imports this checkout's jaxnas, whatever is installed.
_THIS_JAXNAS = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), os.environ.get("PYTHONPATH", "")])}
_SCRIPT = """
import sys

import jaxnas as jn
from kernels import KERNELS  # a module beside the script


class Conv:
    def __init__(self, kernel):
        self.kernel = kernel


def seq(*cells):
    return cells


def space():
    cell = jn.ByName("cell")
    return {"cell": jn.Categorical((jn.Operation(Conv, args=(jn.Categorical(KERNELS),)),
                                    jn.Resampled(jn.Operation(
                                        seq, args=(cell.resample(), cell.resample()))))),
            "x": jn.Float(0.0, 1.0)}


if __name__ == "__main__":
    spec = jn.compile(space(), max_nodes=4)
    result = jn.run(lambda cell, x: x, spec, root_directory=sys.argv[1],
                    optimizer="random_search", max_evaluations=6, progress=False)
    for trial in result.trials:  # the derivations as this process resolves them
        print(spec.resolve(spec.config(trial["config"]), build=False)["cell"])
"""


def test_status_shows_a_scripts_derivations_as_calls(tmp_path):
    """A space written in a script (its operators in `__main__`) is read back by another
    process, which imports the script without running its main block (its folder on the
    path, for the module beside it): `status` shows each derivation as the script resolved
    it. Without the script it falls back to paths."""
    script, root = tmp_path / "search.py", tmp_path / "run"
    script.write_text(_SCRIPT)
    (tmp_path / "kernels.py").write_text("KERNELS = (3, 5)\n")
    derivations = subprocess.run([sys.executable, str(script), str(root)], cwd=tmp_path,
                                 env=_THIS_JAXNAS, capture_output=True, text=True,
                                 check=True).stdout.split("\n")
    assert any(d.startswith("seq(") for d in derivations), derivations

    def status() -> list[str]:
        out = subprocess.run([sys.executable, "-m", "jaxnas", "status", str(root)], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if line.startswith("  trial")]

    best = status()
    assert len(best) == 5
    for line in best:
        cell = line.split("cell=")[1].split(", x=")[0]
        assert cell in derivations and "cell#" not in line, line
    spec = jn.load_space(root)  # this process too
    config = spec.config(jn.load_results(root)[0]["config"])
    assert spec.resolve(config, build=False)["cell"].operator.__name__ in ("Conv", "seq")
    script.unlink()
    assert all("cell#0=" in line for line in status())


def test_a_script_without_a_main_block_is_not_run_again_to_read_its_space(tmp_path):
    """Importing a script whose search runs at its top level would run the search again:
    its space is stored as before (by `__main__` names), and `status` shows decision paths
    instead of running anything."""
    script, root = tmp_path / "search.py", tmp_path / "run"
    unguarded = _SCRIPT.replace('if __name__ == "__main__":\n', "if True:\n")
    script.write_text(unguarded.replace("import sys\n", "import sys\nopen(sys.argv[1] + "
                                        "'.ran', 'a').write('x')\n", 1))
    (tmp_path / "kernels.py").write_text("KERNELS = (3, 5)\n")
    subprocess.run([sys.executable, str(script), str(root)], cwd=tmp_path, env=_THIS_JAXNAS,
                   capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-m", "jaxnas", "status", str(root)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "cell#0=" in out and "6 trials" in out
    assert Path(str(root) + ".ran").read_text() == "x"  # the script ran once, not again


def test_unusable_folders_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no jaxnas run in"):
        jn.load_results(tmp_path / "missing")
    _in_process(tmp_path / "newer", 3)
    with sqlite3.connect(tmp_path / "newer" / "trials.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(jn.StorageError, match=r"schema version 99, newer than this jaxnas"):
        _in_process(tmp_path / "newer", 3)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "trials.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(jn.StorageError, match="cannot be opened as a jaxnas run database"):
        _in_process(corrupt, 3)
    if os.geteuid() != 0:  # root ignores permissions
        read_only = tmp_path / "read_only"
        read_only.mkdir()
        read_only.chmod(0o500)
        with pytest.raises(jn.StorageError, match="is read-only"):
            _in_process(read_only / "run", 3)


def test_a_failing_bucket_fails_its_trials_and_a_diverging_member_fails_alone(tmp_path):
    space = {"lr": jn.Float(0.01, 10.0, log=True), "epochs": jn.IntegerFidelity(1, 9)}

    def init(key, config):
        del key, config
        return {"w": jnp.ones(()), "seen": jnp.zeros(())}

    def train(state, config, fidelity):
        # Gradient descent on w**2: diverges (inf, then NaN) for lr > 1.
        w = state["w"]
        for _ in range(30):
            w = w - config["lr"] * 2.0 * w * w * w
        return {"w": w, "seen": jnp.asarray(fidelity, jnp.float32)}

    def evaluate(state, config):
        del config
        return state["w"] ** 2

    result = jn.run(jn.Task(init, train, evaluate), space, root_directory=tmp_path,
                    optimizer="random_search", max_evaluations=20, progress=False,
                    optimizer_kwargs={"batch_size": 10})
    trials = result.trials
    diverged = [t for t in trials if t["status"] == "failed"]
    fine = [t for t in trials if t["status"] == "success"]
    assert diverged and fine  # same buckets, independent outcomes
    assert all(t["error"] == "non-finite loss" for t in diverged)

    def broken_train(state, config, fidelity):
        raise ValueError("shape mismatch in the model")

    broken = jn.run(jn.Task(init, broken_train, evaluate), space,
                    root_directory=tmp_path / "broken", optimizer="random_search",
                    max_evaluations=20, progress=False, optimizer_kwargs={"batch_size": 10})
    assert len(broken.trials) == 20  # the run went on after the first bucket failed
    assert all(t["status"] == "failed" and "shape mismatch" in t["error"]
               and "Traceback" in t["traceback"] for t in broken.trials)


def _counting_task():
    """A task whose state remembers where its training started: 0 from scratch, the
    parent's fidelity when it continued from the parent's saved state."""
    def init(key, config):
        del config
        return {"trained": jnp.zeros(()), "started_from": jnp.zeros(()),
                "key": jax.random.key_data(key)}

    def train(state, config, fidelity):
        return {**state, "started_from": state["trained"],
                "trained": jnp.asarray(fidelity, jnp.float32)}

    def evaluate(state, config):
        return {"loss": (config["x"] - 0.5) ** 2 + 1.0 / state["trained"],
                "started_from": state["started_from"]}

    return jn.Task(init, train, evaluate)


def test_promotions_continue_from_states_saved_by_an_earlier_process(tmp_path):
    space = {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 27)}
    kwargs = dict(optimizer="hyperband", root_directory=tmp_path, progress=False,
                  optimizer_kwargs={"max_trials": 128})
    first = jn.run(_counting_task(), space, max_evaluations=27, **kwargs)  # rung 27@1 only
    assert all(t["parent_id"] == -1 for t in first.trials)
    assert (tmp_path / "states").is_dir()
    # A new call (a restart: nothing in memory) promotes 9 of them to 3 epochs.
    second = jn.run(_counting_task(), space, max_evaluations=36, **kwargs)
    promoted = [t for t in second.trials if t["parent_id"] >= 0]
    assert len(promoted) == 9
    assert all(t["extra"]["started_from"] == 1.0 for t in promoted)  # not from scratch


def test_promotions_continue_states_that_the_process_dropped_from_memory(tmp_path, caplog,
                                                                       monkeypatch):
    """A run keeps only its newest trained states in memory (within a byte budget, here
    none: only the newest batch); a promotion whose parent's state was dropped reads it
    back from the run folder and continues it."""
    space = {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 27)}

    def run(root):
        with caplog.at_level(logging.DEBUG, logger="jaxnas"):
            caplog.clear()
            result = jn.run(_counting_task(), space, optimizer="asha", root_directory=root,
                            max_evaluations=60, progress=False)
        return result.trials, "back from the run folder" in caplog.text

    monkeypatch.setenv("JAXNAS_STATES_IN_MEMORY", "")  # empty: the default
    kept_trials, read_back = run(tmp_path / "kept")
    assert not read_back  # the default budget holds all of this run's states
    monkeypatch.setenv("JAXNAS_STATES_IN_MEMORY", "0")
    trials, read_back = run(tmp_path / "dropped")
    assert read_back
    by_id = {t["trial_id"]: t for t in trials}
    promoted = [t for t in trials if t["parent_id"] >= 0]
    # ASHA promotes from any earlier rung: some parents were trained batches before.
    assert any(t["step"] - by_id[t["parent_id"]]["step"] > 1 for t in promoted)
    assert all(t["extra"]["started_from"] == by_id[t["parent_id"]]["fidelity"]
               for t in promoted)  # continued, not trained from scratch
    assert _table(tmp_path / "dropped") == _table(tmp_path / "kept")
    monkeypatch.setenv("JAXNAS_STATES_IN_MEMORY", "-1")
    with pytest.raises(ValueError, match="JAXNAS_STATES_IN_MEMORY='-1' must be a "
                                         "non-negative integer"):
        run(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # refused before the run folder was made


def test_training_states_that_cannot_be_written_are_reported_and_the_run_goes_on(
        tmp_path, caplog):
    """States are written in the background; a write that fails (here the states folder
    is a file) is a warning, and the promotions that needed it train from scratch."""
    (tmp_path / "states").write_text("not a folder")
    space = {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 27)}
    kwargs = dict(optimizer="hyperband", root_directory=tmp_path, progress=False,
                  optimizer_kwargs={"max_trials": 128})
    with caplog.at_level(logging.WARNING, logger="jaxnas"):
        first = jn.run(_counting_task(), space, max_evaluations=27, **kwargs)
        assert len(first.trials) == 27
        assert "could not save the training states" in caplog.text
        second = jn.run(_counting_task(), space, max_evaluations=36, **kwargs)
    promoted = [t for t in second.trials if t["parent_id"] >= 0]
    assert len(promoted) == 9
    assert all(t["status"] == "success" for t in second.trials)
    assert all(t["extra"]["started_from"] == 0.0 for t in promoted)  # from scratch
    assert "cannot be restored" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own CPU priority is Linux's")
def test_training_states_are_written_at_the_lowest_cpu_priority(tmp_path):
    """The writes of trained states take a core only when the training leaves one idle:
    the thread that writes them runs at nice 19 (watched from outside while the run goes
    on; the last look at it counts, as it starts at the process's priority and lowers its
    own before its first write), and the thread that trains keeps its priority."""
    last, done = {}, threading.Event()

    def watch():
        while not done.is_set():
            for thread in threading.enumerate():
                # A thread still starting has no native id yet.
                if thread.name.startswith("jaxnas-training-states") and thread.native_id:
                    with contextlib.suppress(OSError):  # ended meanwhile
                        last[thread.native_id] = os.getpriority(os.PRIO_PROCESS,
                                                                thread.native_id)
            time.sleep(0.001)

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        space = {"x": jn.Float(0.0, 1.0), "epochs": jn.IntegerFidelity(1, 27)}
        result = jn.run(_counting_task(), space, optimizer="hyperband", root_directory=tmp_path,
                        max_evaluations=30, progress=False)
    finally:
        done.set()
        watcher.join()
    assert any(t["state_ref"] for t in result.trials)  # states were written
    assert last and set(last.values()) == {19}, last
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_a_run_continued_with_a_larger_budget_is_the_run_made_at_once(tmp_path, storage,
                                                                       request):
    """`max_evaluations` 5 stops inside PriorBand's first rung of 27: continued to 40, the
    run first evaluates the rest of that rung, so that the bracket promotes from it and
    every later ask is the one a run of 40 makes."""
    # The run made at once in a database of its own.
    other = storage and request.getfixturevalue("postgres_server").database()

    def run(root, evaluations, where):
        return jn.run(_worker.objective(0.0), _worker.space(), optimizer="priorband",
                      optimizer_kwargs={"max_trials": 64}, root_directory=root,
                      max_evaluations=evaluations, progress=False, storage=where)

    first = run(tmp_path / "parts", 5, storage)
    assert len(first.trials) == 5
    continued = run(tmp_path / "parts", 40, storage)
    whole = run(tmp_path / "whole", 40, other)
    same = ("trial_id", "parent_id", "config", "fidelity", "status", "loss")
    assert ([[t[k] for k in same] for t in continued.trials]
            == [[t[k] for k in same] for t in whole.trials])
    assert any(t["parent_id"] >= 0 for t in continued.trials)  # the first rung promoted
