"""One JAX device per CPU core, so that a bucket's members train on every core at once.

A JAX CPU backend has one device by default, and one device runs one program at a time on
about one and a half cores (XLA's intra-op threads barely help the small matrix products of
a search's models). The population axis is a mesh axis (DESIGN, principle 6): with one
device per core, `BucketTrainer` gives each device its share of a bucket, and the
quickstart's training runs 1.6 times as fast on two cores.

The number of CPU devices can only be set before JAX starts its backends, so `import jaxnas`
does it then, once, unless the user has chosen: `JAXNAS_CPU_DEVICES` (a number; `1` keeps
JAX's single device), `jax_num_cpu_devices` or XLA's `--xla_force_host_platform_device_count`.
Ordinary JAX work still runs on the first device; only the bucket trainers spread out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

ENVIRONMENT = "JAXNAS_CPU_DEVICES"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(os.cpu_count() or 1, 1)


def cpu_devices(count: int | None = None) -> int:
    """Asks JAX for `count` CPU devices (default: `JAXNAS_CPU_DEVICES`, else one per core).

    Does nothing once JAX's backends have started, or when the user has set the number of
    CPU devices through JAX or XLA; `import jaxnas` calls it.

    Args:
        count: the number of CPU devices; None for the default.

    Returns:
        `count`, or -1 when it left JAX's own setting alone (JAX had started, or the
        user had chosen).

    Raises:
        ValueError: `count` (or `JAXNAS_CPU_DEVICES`) is not a positive integer.
    """
    import jax  # noqa: PLC0415 - `import jaxnas` stays light until it is needed

    if count is None:
        count = os.environ.get(ENVIRONMENT) or usable_cores()
    try:
        count = int(count)
        if count < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"jaxnas: {ENVIRONMENT} / count={count!r} must be a positive "
                         f"integer (the number of CPU devices).") from None
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return -1
    current = getattr(jax.config, "jax_num_cpu_devices", None)
    if current not in (-1, count):  # None: a JAX without the setting; else the user chose
        return -1
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backends have started: too late
        return -1
    return count


def check_devices(devices: Any) -> tuple | None:
    """`jn.run`'s `devices=` as the tuple of devices its bucket trainers spread over.

    Args:
        devices: None (every local device of JAX's default backend), a count (the first
            that many), or a sequence of `jax.Device`s or device ids, all of one platform.

    Returns:
        The devices, or None for JAX's local devices.

    Raises:
        ValueError: a count out of range, a device or id this process does not have, one
            named twice, or devices of several platforms (each named with what exists).
    """
    import jax  # noqa: PLC0415

    if devices is None:
        return None
    local = jax.local_devices()
    known = ", ".join(f"{d.id} ({d.platform})" for d in local)
    if isinstance(devices, bool):
        raise ValueError(f"jn.run: devices={devices!r} must be None, a count or a sequence "
                         f"of devices or device ids.")
    if isinstance(devices, int):
        if not 1 <= devices <= len(local):
            raise ValueError(f"jn.run: devices={devices} must be a count from 1 to the "
                             f"{len(local)} local device(s) of this process ({known}).")
        return tuple(local[:devices])
    if isinstance(devices, str) or not isinstance(devices, Sequence) or not devices:
        raise ValueError(f"jn.run: devices={devices!r} must be None, a count or a non-empty "
                         f"sequence of devices or device ids.")
    by_id = {d.id: d for d in local}
    chosen = []
    for device in devices:
        key = device if isinstance(device, int) and not isinstance(device, bool) else None
        found = by_id.get(key) if key is not None else (device if device in local else None)
        if found is None:
            raise ValueError(f"jn.run: devices names {device!r}, which is not a local device "
                             f"of this process; it has {known}.")
        if found in chosen:
            raise ValueError(f"jn.run: devices names {device!r} twice.")
        chosen.append(found)
    platforms = {d.platform for d in chosen}
    if len(platforms) > 1:
        raise ValueError(f"jn.run: devices mixes platforms ({', '.join(sorted(platforms))}); a "
                         f"bucket spreads over devices of one platform.")
    return tuple(chosen)
