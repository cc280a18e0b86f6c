"""`import jaxnas` gives JAX one CPU device per core, unless the user chose, or JAX started."""

import os
import subprocess
import sys

import pytest

import jaxnas as jn


def devices_after(code: str, **environment) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JAXNAS_CPU_DEVICES"}
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "host_platform_device_count" not in f)
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_import_makes_the_cpu_devices_asked_for_unless_jax_has_started():
    count = "import jaxnas, jax; print(len(jax.devices('cpu')))"
    assert devices_after(count, JAXNAS_CPU_DEVICES="3") == "3"
    assert devices_after(count, JAXNAS_CPU_DEVICES="1") == "1"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert devices_after(count) == str(cores)
    started = "import jax; jax.devices(); import jaxnas, jax; print(len(jax.devices('cpu')))"
    assert devices_after(started, JAXNAS_CPU_DEVICES="3") == "1"
    chosen = ("import jax; jax.config.update('jax_num_cpu_devices', 2); import jaxnas; "
              "print(len(jax.devices('cpu')))")
    assert devices_after(chosen, JAXNAS_CPU_DEVICES="3") == "2"


def test_a_bad_device_count_is_refused_with_its_value():
    with pytest.raises(ValueError, match="count=0 must be a positive integer"):
        jn.cpu_devices(0)
    with pytest.raises(ValueError, match="JAXNAS_CPU_DEVICES / count='many'"):
        jn.cpu_devices("many")
