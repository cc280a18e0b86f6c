"""`jn.optimizers.jitted`: an optimiser's programs compiled as `jn.run` compiles them.

The suite's XLA_FLAGS set an optimisation level, which jaxnas defers to, so the compiler
options themselves only reach XLA in a process without them: a subprocess here. A name
that is not an option of this XLA, or a value it refuses, fails there at the first call.

A model's program keeps only the matrix products among XLA:CPU's library (YNNPACK)
fusions: its fusions of elementwise work into a reduction ran TPE's Parzen densities
several times slower than XLA's own loops. With XLA's own options, TPE's ask on six floats
holds such fusions (one at 32 trials, three at 200); as `jn.run` compiles it, none.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = """
import json, re, sys
import jax, jax.numpy as jnp, numpy as np
import jaxnas as jn
from jaxnas import optimizers

spec = jn.compile({"x": jn.Float(-2.0, 2.0), "y": jn.Float(1e-3, 1.0, log=True)})
out = {}
for name in ("tpe", "random_search"):  # a model's options and a host helper's
    start = {"n_startup_trials": 3} if name == "tpe" else {}
    opt = optimizers.get(name, spec, batch_size=1, max_trials=16, **start)
    rows = []
    for init, ask, tell in (optimizers.jitted(opt, name),
                            [jax.jit(f) for f in opt]):  # XLA's own options
        state = init(jax.random.key(0))
        xs = []
        for step in range(6):  # past the start: the model proposes
            state, p = ask(state, jax.random.key(step))
            x = np.asarray(p.configs["x"])
            state = tell(state, p.trial_ids, jnp.asarray((x - 0.5) ** 2, jnp.float32))
            xs += x.tolist()
        rows.append(xs)
    out[name] = rows


def library_reductions(text):
    # The library fusions (kind=kCustom) of a compiled program whose computation reduces.
    computations = {}
    for block in text.split("\\n\\n"):
        found = re.match(r"(?:ENTRY )?%(\\S+) ", block.strip())
        if found:
            computations[found.group(1)] = block
    called = re.findall(r"kind=kCustom, calls=%([\\w.\\-]+)", text)
    return sum(" reduce(" in computations.get(name, "") for name in called)


six = jn.compile({f"x{i}": jn.Float(0.0, 1.0) for i in range(6)})
opt = optimizers.get("tpe", six, batch_size=1, max_trials=32)
state = jax.jit(opt.init)(jax.random.key(0))
out["library_reductions"] = [
    library_reductions(ask.lower(state, jax.random.key(0)).compile().as_text())
    for ask in (optimizers.jitted(opt, "tpe").ask, jax.jit(opt.ask))]
print(json.dumps(out))
"""


def test_jn_run_s_compiler_options_compile_and_propose_what_xla_s_own_do():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Under this XLA's own options the same ask holds one (an XLA whose defaults hold none
    # passes trivially).
    ours, xla_default = out.pop("library_reductions")
    assert ours == 0, f"{ours} library fusions reduce (XLA's own options: {xla_default})"
    for name, (ours, xla_default) in out.items():
        assert len(ours) == 6
        np.testing.assert_allclose(ours, xla_default, rtol=1e-5, err_msg=name)

