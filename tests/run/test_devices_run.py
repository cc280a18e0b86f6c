"""`jn.run(devices=...)`: a bucket's members spread over the devices asked for, and the
trial table is the same whatever they are, across a resume with others too."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxnas as jn

REPO = Path(__file__).resolve().parents[2]

# A search whose trial table is compared between device counts, in this process (two CPU
# devices, conftest) and in a subprocess with eight: two structures (the hidden layer's
# activation), widths masked, PriorBand's rungs of 1 to 9 epochs with promotions, so that
# buckets come in odd sizes and smaller than the device count.
SCRIPT = r'''
import json, sys
import flax.linen as nn
import numpy as np
import jaxnas as jn

def space():
    model = jn.Operation(jn.nn.Sequential, args=([
        jn.Operation(nn.Dense, args=(jn.Integer(2, 16, prior=8),)),
        jn.Categorical((jn.Operation(nn.relu), jn.Operation(nn.tanh))),
        jn.Operation(nn.Dense, args=(2,))],))
    return {"model": model, "learning_rate": jn.Float(1e-3, 1e-1, log=True, prior=1e-2),
            "epochs": jn.IntegerFidelity(1, 9)}

def task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
    return jn.SupervisedTask((x[:64], y[:64]), (x[64:], y[64:]), batch_size=32)

SPREAD = []  # the device ids each bucket trainer was made with
_init = jn.train.BucketTrainer.__init__

def _spy(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    SPREAD.append([d.id for d in self.devices])

jn.train.BucketTrainer.__init__ = _spy

def run(root, devices, budget):
    SPREAD.clear()
    result = jn.run(task(), space(), optimizer="priorband", root_directory=root,
                    max_fidelity_spent=budget, devices=devices, progress=False,
                    checkpoint_every=1)
    return [[t["trial_id"], t["parent_id"], json.dumps(t["config"], sort_keys=True),
             t["fidelity"], t["status"], t["loss"]] for t in result.trials], list(SPREAD)

if __name__ == "__main__":
    root = sys.argv[1]
    out = {"devices": len(__import__("jax").devices())}
    out["one"], out["one_spread"] = run(root + "/one", 1, 90)
    out["all"], out["all_spread"] = run(root + "/all", None, 90)
    # Stopped half way on three devices, resumed on four others.
    out["half"], out["half_spread"] = run(root + "/resumed", 3, 12)
    out["resumed"], out["resumed_spread"] = run(root + "/resumed", [7, 2, 5, 0], 90)
    print(json.dumps(out))
'''


def _same_table(a, b):
    assert [row[:5] for row in a] == [row[:5] for row in b]
    np.testing.assert_allclose([row[5] for row in a], [row[5] for row in b], rtol=1e-5,
                               atol=1e-6)


def test_eight_devices_three_and_a_resume_on_four_give_the_one_device_table(tmp_path):
    script = tmp_path / "devices_run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, JAXNAS_CPU_DEVICES="8", PYTHONPATH=str(REPO))
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "host_platform_device_count" not in f)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    one = out["one"]
    assert len(one) > 20 and any(row[1] >= 0 for row in one)  # promotions continued
    _same_table(out["all"], one)
    _same_table(out["resumed"], one)
    # Each run's buckets spread over the devices it named (two structures: two trainers).
    assert {tuple(d) for d in out["one_spread"]} == {(0,)}
    assert {tuple(d) for d in out["all_spread"]} == {tuple(range(8))}
    assert {tuple(d) for d in out["half_spread"]} == {(0, 1, 2)}
    assert {tuple(d) for d in out["resumed_spread"]} == {(7, 2, 5, 0)}
    # The resumed half promoted trials that the first half trained.
    first_half = {row[0] for row in out["half"]}
    assert any(row[1] in first_half for row in out["resumed"] if row[0] not in first_half)


def test_bad_devices_are_refused_before_the_folder_is_touched(tmp_path):
    space = {"x": jn.Float(0.0, 1.0)}
    local = len(jax.local_devices())
    for devices, message in [
            (0, f"devices=0 must be a count from 1 to the {local} local device"),
            (local + 1, f"devices={local + 1} must be a count from 1"),
            ([0, 99], "devices names 99, which is not a local device of this process"),
            ([0, 0], "devices names 0 twice"),
            ("cpu", "devices='cpu' must be None, a count or a non-empty sequence")]:
        with pytest.raises(ValueError, match=message):
            jn.run(lambda x: x, space, root_directory=tmp_path / "run", max_evaluations=3,
                   devices=devices)
    assert not (tmp_path / "run").exists()
