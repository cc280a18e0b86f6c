"""How jaxnas has XLA compile its programs on a CPU: three kinds, three sets of options.

Compiling, not running, is most of a small search's time on a CPU, and XLA's CPU compiler
spends most of it in LLVM. jaxnas compiles three kinds of program:

* **training programs** (`BucketTrainer`), which run thousands of steps: their matrix
  products are library calls whatever the level, but their elementwise fusions (an
  optimiser's update) run several times slower below LLVM level 1. Level 1 compiles the
  quickstart's program ~10% faster than XLA's default level, and with LLVM's expensive
  passes off another ~12% (2.9-3.0 s against 3.2-3.6 s, 4.3-4.7 s of CPU time against
  5.1-5.6 s), with the same step times (within 2%);
* **host helpers** (an optimiser's `init`, `ask` and `tell`, a space's activity masks, the
  trial keys), each run a few dozen times in a run: level 0 with XLA's older loop emitters
  (`xla_cpu_use_fusion_emitters=False`, which compile programs with many small outputs
  several times faster) compiles PriorBand's `ask` in 0.8-1.1 s instead of 2.6 s (level 0
  alone: 1.6-1.9 s), and runs it in 2.3 ms instead of 1.5 ms. A training program must keep
  the fusion emitters: without them its steps run 1.4-2.3x slower.
* **model programs**: the `init`, `ask` and `tell` of an optimiser that models every trial
  (`tpe`, `bayesian_optimization`: one ask per trial, a few hundred in a run, each fitting
  or scoring a model) at level 1 with the older emitters and LLVM's expensive passes off.
  At level 0 their steps ran 2-2.4x slower (at 200 trials on Hartmann-6, a trial's
  optimiser time: the GP 13.9 ms against 6.9 ms, TPE 1.7 ms against 0.8 ms), for a compile
  only 1.1 s and 0.7 s shorter (2.5 s against 3.6 s, 1.5 s against 2.2 s). XLA's defaults
  compile them in 5.4 s and 3.2 s, for steps of 7.3 ms and 0.6 ms. Of the library
  fusions XLA:CPU hands to YNNPACK they keep the matrix products only: its fusions of
  elementwise work into a reduction ran TPE's Parzen densities (24 candidates x 256
  observations x 6 dimensions) at 6 ns an element, 220 us of an 0.8 ms trial. Without
  them a TPE trial at 200 trials takes 0.56 ms instead of 0.70 ms on Hartmann-6 and
  1.79 ms instead of 2.06 ms on the mixed problem (timed side by side, the same
  proposals); the GP's trials cost the same. Training programs keep XLA's default:
  their library fusions are matrix products.

An `XLA_FLAGS` that sets a level of its own wins, and other backends keep XLA's defaults.

What no option changes: XLA:CPU runs a program of more than 8 operations that are not one
chain, some on buffers over 512 bytes, on its intra-op thread pool; on a 2-core machine
the handoffs cost 70-90 us a call (a jitted identity on 10 arrays of 256 floats takes
90 us, on 9 of them 20 us). An optimiser's `tell` that copies its dozen state arrays
pays that whatever it computes; XLA's thresholds are compiled in, not options.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

import jax

TRAINING_OPTIONS = {"xla_backend_optimization_level": 1,
                    "xla_llvm_disable_expensive_passes": True}
HELPER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
MODEL_OPTIONS = {"xla_backend_optimization_level": 1, "xla_llvm_disable_expensive_passes": True,
                 "xla_cpu_use_fusion_emitters": False,
                 "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
# Options that an older XLA may not know: passed only where it accepts them.
_NEWER_OPTIONS = ("xla_cpu_experimental_ynn_fusion_type",)


def jit_with(fn: Callable, options: dict[str, Any], platform: str | None = None) -> Any:
    """`jax.jit(fn)`, compiled with `options` on a CPU (the default backend's platform
    unless `platform` is given), where this JAX takes compiler options and `XLA_FLAGS`
    does not set a level."""
    if platform is None:
        platform = jax.default_backend()
    if (platform != "cpu" or "compiler_options" not in inspect.signature(jax.jit).parameters
            or "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")):
        return jax.jit(fn)
    options = {name: value for name, value in options.items()
               if name not in _NEWER_OPTIONS or _accepted(name, value)}
    return jax.jit(fn, compiler_options=options)


@functools.cache
def _accepted(name: str, value: Any) -> bool:
    """Whether this XLA's CPU compiler takes the option (a trivial program compiled once
    with it; an unknown option or value is an error there)."""
    try:
        jax.jit(lambda: 0, compiler_options={name: value}).lower().compile()
    except Exception:  # noqa: BLE001 - JaxRuntimeError: no such option, or no such value
        return False
    return True

