"""What every benchmark script records and how it writes its results.

The scripts run as `python benchmarks/NAME.py`, so this folder is on `sys.path` and they
import this module as `_common`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax

import jaxnas as jn

REPO = Path(__file__).resolve().parents[1]  # for the git commit recorded in the JSON


def jaxnas_revision() -> str:
    """The checkout's git commit, with "+dirty" if `jaxnas/` has uncommitted changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(("git", "-C", str(REPO), *args), capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("status", "--porcelain", "--", "jaxnas").stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def machine_info(*distributions: str) -> dict[str, Any]:
    """Platform, CPUs and load, JAX devices, jaxnas, and the versions of `distributions`.

    Args:
        *distributions: installed distribution names to record (e.g. "neural-pipeline-search").
    """
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "jaxnas": jn.__version__,
        "jaxnas_revision": jaxnas_revision(),
        **{name: importlib.metadata.version(name) for name in distributions},
    }


def write_results(path: Path, results: dict[str, Any], *, indent: int = 2) -> None:
    """Writes the results as indented JSON, creating the folder, and says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=indent) + "\n")
    print(f"\nwrote {path}")
