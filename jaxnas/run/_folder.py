"""The run folder's identity: what a run is (space, optimiser, its arguments, seed), the
claim that writes it into a new folder or checks that a folder's run is this one, and
`overwrite=True`'s removal of another run.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from jaxnas import optimizers as _optimizers
from jaxnas.run._pickling import dumps
from jaxnas.run._storage import RunStore, delete_run, run_exists
from jaxnas.space import SearchSpace

logger = logging.getLogger("jaxnas")

_VERSIONED = ("jaxnas", "jax", "flax", "optax", "orbax-checkpoint", "numpy")


def describe_run(spec: SearchSpace, optimizer: Any, kwargs: Mapping | None,
                 seed: int, objectives: dict | None = None,
                 constraints: list | None = None,
                 initial_configs: list | None = None) -> dict:
    """What must match for a folder's run to be continued."""
    if isinstance(optimizer, _optimizers.Optimizer):
        name = f"{optimizer.ask.__module__}.{optimizer.ask.__qualname__}"
        arguments = {}
    else:
        name = optimizer
        arguments = {k: v for k, v in dict(kwargs or {}).items() if k != "max_trials"}
    return {"space": spec.describe(), "optimizer": name,
            "optimizer_kwargs": json.loads(json.dumps(arguments, default=repr)),
            "seed": int(seed), "objectives": objectives or {"loss": "minimize"},
            "constraints": constraints or [], "initial_configs": initial_configs or []}


def remove_other_run(root: Path, description: dict, storage: str | None = None) -> None:
    """`overwrite=True`: deletes the folder's run if it is a different one."""
    if not run_exists(root, storage):
        return
    with RunStore(root, create=False, storage=storage) as store:
        stored = store.get_meta("run")
        where = store.where
    if stored is not None and not _differences(json.loads(stored), description):
        return  # the same run: continue it
    logger.warning("jaxnas.run: overwrite=True deletes the run in %s (%s)", root, where)
    delete_run(root, storage)


class Claim(NamedTuple):
    """What `claim_folder` found: the optimiser's capacity, and up to which event the
    run's asks were made with a smaller one (0: none were)."""

    max_trials: int
    grown_after: int


def claim_folder(store: RunStore, spec: SearchSpace, description: dict,
                 max_trials: int, given_max_trials: int | None) -> Claim:
    """Writes a new run's metadata, or checks that the folder's run is this one.

    A continued run keeps the capacity (`max_trials`) it started with unless this call
    needs more (a larger `max_evaluations`, a larger `max_trials` given, imports, or a
    run that filled the state it chose, which asks for twice the room): then the
    capacity grows, and the events up to now are replayed into an optimiser of the new
    size instead of restored from a checkpoint (`Claim.grown_after`). The optimisers' asks
    do not depend on the capacity (tests/optimizers/test_capacity.py), so the replay
    proposes the same trials, which `Worker` checks. A given `max_trials` below the stored one is
    an error: a state cannot shrink below the trials it holds.

    Raises:
        ValueError: the folder holds a different run (the message says what differs).
    """
    with store.transaction():
        stored = store.get_meta("run")
        if stored is None:
            store.set_meta(_new_run_meta(spec, description, max_trials))
            return Claim(int(max_trials), 0)
        stored_max_trials = int(store.get_meta("max_trials"))
        grown_after = int(store.get_meta("max_trials_grown_after") or 0)
        differences = _differences(json.loads(stored), description)
        if given_max_trials is not None and given_max_trials < stored_max_trials:
            differences.append(f"max_trials was {stored_max_trials}, now {given_max_trials} "
                               f"(a continued run's max_trials may grow, not shrink)")
        if differences:
            raise ValueError(
                f"jn.run: root_directory={str(store.root)!r} ({store.where}) holds a "
                f"different run, so it cannot be continued: {'; '.join(differences)}. Use "
                f"a new root_directory, or pass overwrite=True to delete that run.")
        if max_trials <= stored_max_trials:
            return Claim(stored_max_trials, grown_after)
        grown_after = store.last_event()
        store.set_meta({"max_trials": int(max_trials), "max_trials_grown_after": grown_after})
    logger.info("jaxnas.run: the optimiser's capacity grows from %d to %d trials; the run's "
                "%d events so far are replayed", stored_max_trials, max_trials, grown_after)
    return Claim(int(max_trials), grown_after)


def _new_run_meta(spec: SearchSpace, description: dict, max_trials: int) -> dict:
    try:
        space_blob, unpicklable = dumps(spec), None
    except Exception as error:  # noqa: BLE001 - say why in load_space
        space_blob, unpicklable = None, f"{type(error).__name__}: {error}"
    return {"run": json.dumps(description), "space": space_blob,
            "space_unpicklable": unpicklable, "created": time.time(),
            "versions": json.dumps(_versions()), "max_trials": int(max_trials)}


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for path in sorted(set(old["space"]) | set(new["space"])):
        a, b = old["space"].get(path), new["space"].get(path)
        if a != b:
            out.append(f"space {path!r} was {a or 'absent'}, now {b or 'absent'}")
    defaults = {"objectives": {"loss": "minimize"}, "constraints": [],  # older runs'
                "initial_configs": []}
    for key in ("optimizer", "optimizer_kwargs", "seed", "objectives", "constraints",
                "initial_configs"):
        before = old.get(key, defaults.get(key))
        if before != new[key]:
            out.append(f"{key} was {before!r}, now {new[key]!r}")
    return out


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for package in _VERSIONED:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out
