"""JAX's persistent compilation cache, on by default for `jn.run`.

A search compiles a handful of programs (the optimiser's ask and tell, one training program
per bucket structure) that take seconds each on a CPU and are the same from one run to the
next; with the cache a second run loads them from disk instead (the quickstart's: 3 s of
compiling per training program, 0.1 s to load it). `jn.run(compilation_cache=...)` picks the
folder or turns it off; the `JAXNAS_COMPILATION_CACHE` environment variable does the same
for every run (a folder, or `0` / `off` / `false`). A cache the user set up for JAX itself
(`jax_compilation_cache_dir`, `JAX_COMPILATION_CACHE_DIR`) is used as it is, and one the
user turned off (`jax_enable_compilation_cache=False`) stays off.

The cache is trusted code, as JAX's own documentation warns: keep its folder private.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENVIRONMENT = "JAXNAS_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
MIN_COMPILE_SECONDS = 0.01
_ours: str | None = None  # the folder this module pointed JAX at, if any


def default_folder() -> Path:
    """`$XDG_CACHE_HOME/jaxnas/xla`, or `~/.cache/jaxnas/xla`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxnas" / "xla"


def check_setting(setting: bool | str | os.PathLike | None) -> None:
    """Raises ValueError unless `setting` is True, False, None or a folder."""
    if not (setting is None or isinstance(setting, (bool, str, os.PathLike))):
        raise ValueError(f"jn.run: compilation_cache={setting!r} must be True (the default "
                         f"folder, {default_folder()}), False (off) or a folder.")


def enable(setting: bool | str | os.PathLike | None = True) -> Path | None:
    """Points JAX's persistent compilation cache at the folder `setting` asks for.

    Args:
        setting: True or None (the `JAXNAS_COMPILATION_CACHE` folder if set, else
            `default_folder()`), a folder, or False (leave JAX's cache as it is).

    Returns:
        The folder in use, or None when the cache is off.
    """
    global _ours
    check_setting(setting)
    if setting is False or not jax.config.jax_enable_compilation_cache:
        return None
    current = jax.config.jax_compilation_cache_dir
    if current and current != _ours:  # the user's own cache
        return Path(current)
    if setting is True or setting is None:
        from_environment = os.environ.get(ENVIRONMENT, "")
        if from_environment.strip().lower() in _OFF:
            return None
        setting = from_environment or default_folder()
    folder = Path(setting).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs time; the run goes on without it
    if str(folder) == current:
        return folder
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX's default keeps only programs that took a second to compile; a run also compiles
    # a score of small ones (50 ms each, 1.3 s of the quickstart's warm run), and loading
    # any of them is cheaper than compiling it.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _ours = str(folder)
    # JAX decides once per process whether a cache is used, at the first compilation; a
    # process that compiled anything before this run would otherwise never use it.
    from jax.experimental.compilation_cache import compilation_cache  # noqa: PLC0415

    compilation_cache.reset_cache()
    return folder
