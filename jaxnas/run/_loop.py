"""`jn.run`: ask the optimiser, train or evaluate each bucket at once, store, tell.

One iteration of the loop:

1. `ask` gives a batch of proposals (new configurations and promotions);
2. the host groups the valid ones into buckets of equal structure (widths masked and depths
   open, so that configurations differing only in them share one);
3. each bucket is evaluated in one jit-compiled, vmapped call (a `Task` or a pure function),
   or one trial at a time (a plain Python callable); promoted trials continue from their
   parent's training state, kept on the host;
4. the results are committed to the trial table (SQLite) and only then told to the optimiser.

Budgets (evaluations, cost, fidelity spent, seconds) are checked between batches; whichever
runs out first ends the run. This file holds the loop and what it returns; the pieces live
beside it (`_folder`, `_worker`, `_evaluators`, `_budgets`, `_storage`, `_progress`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxnas import optimizers as _optimizers
from jaxnas._devices import check_devices
from jaxnas.run import _compilation_cache as persistent_cache
from jaxnas.run._budgets import (check_budgets, check_checkpoint_every, default_max_trials,
                                 make_optimizer)
from jaxnas.run._evaluators import make_batch, make_evaluator
from jaxnas.run._folder import Claim, claim_folder, describe_run, remove_other_run
from jaxnas.run._heartbeat import DEFAULT_TIMEOUT, check_timeout
from jaxnas.run._objectives import Objectives
from jaxnas.run._progress import Progress
from jaxnas.run._records import INCUMBENT, TrialRecord, best_trial, pareto_trials
from jaxnas.run._report import summarise
from jaxnas.run._storage import RunStore, check_shared_folder, storage_of
from jaxnas.run._warm_start import WarmStart, check_initial_configs
from jaxnas.run._worker import STATE_FULL, Worker
from jaxnas.space import SearchSpace, compile as _compile

logger = logging.getLogger("jaxnas")


@dataclasses.dataclass(frozen=True)
class Incumbent:
    """The best trial: lowest loss among the successful (and feasible) trials at the
    highest fidelity; `loss` is the objective negated where it is maximised, `objectives`
    the values as the evaluation returned them."""

    trial_id: int
    loss: float
    fidelity: float | None
    config: Any  # the resolved config (the user's pytree, operations built)
    values: dict  # the config's values by path
    metrics: dict  # what else the evaluation reported (curves, test scores, ...)
    objectives: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What `jn.run` returns.

    Attributes:
        incumbent: the best trial, or None when no trial succeeded (and with several
            objectives: see `pareto_front`).
        trials: every trial of the run (see `jn.load_results`).
        root_directory: where the run is stored.
        stopped_by: the budget that ended the run (or why it ended).
        objectives: the run's objectives and their directions (and bounds), by name.
    """

    incumbent: Incumbent | None
    trials: list
    root_directory: Path
    stopped_by: str
    objectives: dict = dataclasses.field(default_factory=lambda: {"loss": "minimize"})
    # The run's database URL (with its password: kept in memory, never shown).
    storage: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def pareto_front(self) -> list[dict]:
        """The non-dominated trials: successful, feasible, at the highest fidelity any
        reached, no other such trial at least as good in every objective and better in
        one (each in its direction); in trial-id order, as `trials` holds them. With one
        objective, the trials that share the best value."""
        parsed = Objectives.parse(self.objectives)
        records = [TrialRecord(**t) for t in self.trials]
        front = pareto_trials(records, parsed.names, parsed.signs())
        return [t.as_dict() for t in front]

    def summary(self, top: int = 5) -> str:
        """The run's progress, best trials and failures as text, as `python -m jaxnas
        status ROOT` prints them (read from the run folder, so all workers' trials)."""
        return summarise(self.root_directory, top, storage=self.storage)


def run(evaluate: Any, space: Any, *, optimizer: str | _optimizers.Optimizer = "auto",
        root_directory: str | Path, max_evaluations: int | None = None,
        max_cost: float | None = None, max_fidelity_spent: float | None = None,
        max_seconds: float | None = None, seed: int = 0, objectives: Any = None,
        constraints: Any = None, masked: bool | str = True,
        optimizer_kwargs: Mapping | None = None, progress: bool | None = None,
        overwrite: bool = False, checkpoint_every: int = 20,
        compilation_cache: bool | str | Path = True,
        initial_configs: Sequence[Mapping[str, Any]] | None = None,
        heartbeat_timeout: float = DEFAULT_TIMEOUT, devices: Any = None,
        storage: str | None = None) -> RunResult:
    """Searches `space` for the configuration that minimises `evaluate`'s loss.

    The run lives in `root_directory`: every trial in `trials.sqlite` (committed the
    moment it finishes, before the optimiser hears of it), the optimiser's history, and
    Orbax checkpoints of its state. Calling `run` again with the same arguments on the same
    folder continues the run: nothing finished is evaluated again, and trials that were
    running when a process died are evaluated once more. Several processes calling `run`
    on one folder share the work, as NePS or Optuna workers do: each asks for its own
    batches and the optimiser's state stays one consistent history.

    Failed trials: an exception raised by `evaluate` (a plain callable's trial, or a whole
    training bucket) or a non-finite loss makes the trial `failed`, recorded with its
    error and traceback; it is never promoted or the incumbent, and the run goes on. In a
    vmapped bucket each member's loss is its own: one diverging member fails alone.

    Args:
        evaluate: one of
            * a `jn.Task` (pure `init`, `train`, `evaluate`), or a `jn.train.BucketTask`
              such as `jn.SupervisedTask`: vmapped per bucket, training states carried
              across rungs;
            * a pure JAX function `f(config, fidelity, key) -> loss` (jitted and vmapped);
            * a plain Python callable `f(**config) -> float | dict`, called one trial at a
              time with the resolved values by name (the fidelity under its own name). A
              dict gives `loss` and optionally `cost`. An exception is a failed trial.
              One that names NePS's `pipeline_directory` and `previous_pipeline_directory`
              gets the trial's own folder (`ROOT/trial_folders/trial_<id>`) and, for a
              promoted trial, its parent's (else None), to save and continue from its
              own checkpoints.
        space: a space pytree or a compiled `SearchSpace`.
        optimizer: an optimiser name (`jn.optimizers.get`) or an `Optimizer` value.
            `"auto"` (the default) picks one from the space as NePS does
            (`jn.optimizers.auto_choice`: PriorBand with a fidelity and priors, Hyperband
            with a fidelity alone, Bayesian optimisation, PiBO with priors, without a
            fidelity); the run's metadata and `python -m jaxnas status` name the choice.
            A named optimiser that would ignore the space's priors warns.
        root_directory: the run folder; a new one starts a run, an existing one continues.
        max_evaluations: stop once the run holds this many trials (all workers together).
        max_cost: stop once the summed cost (a trial's `cost`, else its fidelity) reaches it.
        max_fidelity_spent: stop once the fidelity trained reaches it (a continued trial
            counts only the fidelity it adds).
        max_seconds: stop this process after this much wall-clock time (checked between
            batches).
        seed: the run's seed: every random draw follows from `jax.random.key(seed)`.
        objectives: what to optimise, by the names the evaluation returns:
            `{"loss": "minimize"}` (the default), or several, each `"minimize"` or
            `"maximize"` (`{"accuracy": "maximize", "params": "minimize"}`); a bound such
            as `{"latency_ms": ("<=", 5.0)}` makes a returned metric a constraint: a trial
            that breaks it is recorded `feasible=False`, never the incumbent nor on the
            Pareto front, and ranked below every feasible trial (`nsga2`: constrained
            domination; other optimisers are told it failed). The evaluation returns a
            dict with every name (a pure function may return one value per name, in this
            order, bounds last); a missing or non-finite one fails the trial, named.
            Several objectives need an optimiser that takes them
            (`jn.optimizers.MULTI_OBJECTIVE`: `nsga2`, which `"auto"` then picks, or
            random and grid search); see `RunResult.pareto_front`.
        constraints: which configurations may be trained, checked before training: pure,
            jittable predicates `fn(config) -> bool` on the config's values, and
            constraints on the built model (`jn.constraints.max_params(n)`,
            `max_flops(n)`, `architecture(measure, limit)`; a `jn.SupervisedTask`'s model,
            measured with `jn.nn.summary` once per structure). A configuration that breaks
            one is recorded `infeasible` (what was measured in `extra`, the constraint in
            `error`), never trained, not counted in `max_evaluations` or cost, and told
            to the optimiser as a failure. A run with objectives `params` or `flops` gets
            them from the same measurement.
        masked: group configurations that differ only in widths or in depths
            (`jn.nn.Repeat`) into one bucket (True); `"widths"`: in widths only; False:
            every structure apart.
        optimizer_kwargs: keyword arguments for a named optimiser. `max_trials` (the
            state's capacity) defaults to `max_evaluations` plus one batch and the
            imported trials, else 1024. A run that fills the capacity jaxnas chose grows
            it (twice the room), and a continued run that needs more (a larger
            `max_evaluations` or `max_trials`) grows it too: the run so far is replayed
            into the larger state, which asks what it would have asked had it been that
            large from the start. A `max_trials` given is kept: the run stops when it is
            full.
        progress: show a progress line (default: when stderr is a terminal).
        overwrite: delete a run already in `root_directory` that was started with another
            space, optimiser or seed, and start afresh (otherwise that is an error).
        checkpoint_every: save the optimiser's state with Orbax every this many optimiser
            events (asks and tells); a resumed run restores the newest good checkpoint
            and replays only the events after it.
        compilation_cache: JAX's persistent compilation cache, so that a second run
            loads its compiled programs instead of compiling them again: True (the
            default) uses the folder in the `JAXNAS_COMPILATION_CACHE` environment
            variable (`0` turns it off), else `~/.cache/jaxnas/xla`; a path uses that
            folder; False leaves JAX's cache as it is. A cache configured for JAX itself
            (`JAX_COMPILATION_CACHE_DIR`) is used as it is.
        initial_configs: configurations to evaluate first (Optuna's `enqueue_trial`), each
            a dict `{path: value}` (a `Float` or `Integer` by value, a `Categorical` by
            its choice, or by index among operations; for a flat space the paths are the
            entries' names). The i-th takes the place of the optimiser's i-th new sample,
            at the fidelity the optimiser gave it, and is then told, promoted and
            modelled like any other trial; decisions it leaves out keep the optimiser's
            draw. Part of the run's identity: a continued run must pass the same.
        heartbeat_timeout: seconds this process may fall silent before other workers
            take over its unfinished trials (default 300). Each worker writes a heartbeat
            to the run's database every `heartbeat_timeout / 5` seconds (at most 30) from
            a thread of its own, so a long trial does not silence it; a worker that dies
            on this host is noticed at once, one on another host or one that hangs once
            its timeout has passed. If it comes back, its results for the trials it lost
            are dropped. The hosts' clocks must agree to well within the timeout.
        devices: the devices a training bucket's members are spread over (its population
            axis sharded over a 1-D mesh, padded to a multiple of their number; data and
            optimiser replicated): None (the default) for every local device of JAX's
            default backend (on a CPU one per core, `jn.cpu_devices`), a count for the
            first that many, or a list of `jax.Device`s or device ids. The trial table is
            the same whatever the devices (losses to float tolerance), so a resumed run
            may use others. The optimiser runs on JAX's default device.
        storage: where the trials and the optimiser's history are kept: None (the
            default) for SQLite in the run folder, nothing to start; or a PostgreSQL URL,
            `postgresql://user:password@host:port/database` (the `[postgres]` extra),
            which workers on any number of machines share by running the same command.
            The database holds one run; the run folder (checkpoints, training states)
            must then be one path that every worker reaches (a shared file system), and
            a folder on a memory file system with a database on another machine is
            refused. The password is used to connect and never written: the folder's
            `storage.json` records the URL without it, for readers.

    Returns:
        A `RunResult` with the incumbent and every trial of the run.

    Raises:
        ValueError: no budget or a bad one; an initial configuration outside the space
            (named by its entry, path and value); a heartbeat timeout that is not a
            positive number; `devices` naming a device this process does not have; a
            `storage` that is not a PostgreSQL URL; an existing run with another space,
            optimiser or seed (the message says what differs).
        StorageError: a folder that cannot be written, a database that cannot be reached
            (named without its password), one that holds another run's folder, or one
            from a newer jaxnas.
    """
    spec = space if isinstance(space, SearchSpace) else _compile(space)
    budgets = check_budgets(
        max_evaluations=max_evaluations, max_cost=max_cost,
        max_fidelity_spent=max_fidelity_spent, max_seconds=max_seconds)
    check_checkpoint_every(checkpoint_every)
    heartbeat_timeout = check_timeout(heartbeat_timeout)
    devices = check_devices(devices)
    persistent_cache.check_setting(compilation_cache)
    parsed = Objectives.parse(objectives)
    evaluator = make_evaluator(evaluate, spec, masked, parsed, constraints, devices)
    root = Path(root_directory)
    optimizer, optimizer_kwargs = _named_optimizer(
        _several_objectives(optimizer, parsed), spec, optimizer_kwargs, parsed)
    initial = check_initial_configs(spec, initial_configs, optimizer)
    description = describe_run(spec, optimizer, optimizer_kwargs, seed, parsed.describe(),
                               evaluator.screen.describe(), initial)
    storage = storage_of(root, storage)
    check_shared_folder(root, storage)
    if overwrite:
        remove_other_run(root, description, storage)
    store = RunStore(root, create=True, storage=storage)
    persistent_cache.enable(compilation_cache)
    evaluator.warm_up()  # the first bucket's program compiles beside the optimiser's
    start = time.monotonic()  # `max_seconds` counts this process's whole run
    progress_line = Progress(sys.stderr.isatty() if progress is None else progress, budgets,
                             parsed)
    worker = None
    try:
        given = (optimizer_kwargs or {}).get("max_trials")
        # Infeasible trials take rows of the optimiser's table without counting as
        # evaluations: a constrained run gets twice the default room.
        room = 2 if evaluator.screen.active else 1
        default, probe = ((None, None) if given else
                          default_max_trials(optimizer, spec, max_evaluations, optimizer_kwargs))
        # Imported trials take rows of the table without counting as evaluations.
        needed = given or room * default + store.import_count()
        claim = claim_folder(store, spec, description, needed, given)
        evaluator.start(store)
        # The optimiser samples and mutates within the constraints on the config.
        constrained = spec.constrain(tuple(evaluator.screen.predicates))

        def new_worker(claim: Claim, probe: Any = None) -> Worker:
            return Worker(make_optimizer(optimizer, constrained, claim.max_trials,
                                         optimizer_kwargs, probe),
                          store, seed, checkpoint_every, parsed, WarmStart(initial),
                          heartbeat_timeout,
                          name=optimizer if isinstance(optimizer, str) else None,
                          grown_after=claim.grown_after)

        worker = new_worker(claim, probe)
        while True:
            stopped_by = _loop(spec, worker, evaluator, store, budgets, progress_line, start)
            if stopped_by != STATE_FULL or given or not isinstance(optimizer, str):
                break
            # A named optimiser in the capacity jaxnas chose, out of room with budget left
            # (a run without `max_evaluations`, or one whose rows go to infeasible trials):
            # twice the room, the run so far replayed into it, and on.
            claim = claim_folder(store, spec, description, 2 * claim.max_trials, None)
            worker.close()
            worker = None  # (if the next one fails to start, `finally` has none to close)
            worker = new_worker(claim)
        if stopped_by == STATE_FULL:
            logger.warning("jaxnas.run: %s", worker.full)
        worker.checkpoint(force=True)
        trials = store.all_trials()
    finally:
        evaluator.close()  # the training states being written finish, after an error too
        if worker is not None:
            worker.close()
        store.close()
        progress_line.close()
    incumbent = None if parsed.several else _incumbent(spec, trials)
    logger.info("jaxnas.run stopped: %s; %d trials; best loss %s", stopped_by, len(trials),
                None if incumbent is None else incumbent.loss)
    return RunResult(incumbent, [t.as_dict() for t in trials], root, stopped_by,
                     parsed.describe(), storage)


def _several_objectives(optimizer: Any, objectives: Objectives) -> Any:
    """`"auto"` with several objectives is `nsga2`; a single-objective optimiser given
    several is an error that names the ones that take them."""
    if not objectives.several:
        return optimizer
    if optimizer == "auto":
        logger.info("jaxnas.run: optimizer='auto' chose 'nsga2' for %d objectives",
                    len(objectives.names))
        return "nsga2"
    takes = (optimizer in _optimizers.MULTI_OBJECTIVE if isinstance(optimizer, str)
             else _optimizers.takes_objective_vectors(optimizer))
    if not takes:
        raise ValueError(
            f"jn.run: optimizer={optimizer!r} optimises one objective, but objectives "
            f"names {len(objectives.names)} ({', '.join(objectives.names)}). Use one that "
            f"takes several: {', '.join(_optimizers.MULTI_OBJECTIVE)} (or 'auto').")
    return optimizer


def _named_optimizer(optimizer: Any, spec: SearchSpace, kwargs: Mapping | None,
                     objectives: Objectives) -> tuple[Any, Mapping | None]:
    """`"auto"` resolved to a name; a name checked (bad names and arguments fail here,
    before the run folder is touched), with a warning when it would ignore priors. A
    multi-objective optimiser's `n_objectives` comes from the run's objectives."""
    if not isinstance(optimizer, str):
        return optimizer, kwargs
    if optimizer == "auto":
        optimizer = _optimizers.auto_choice(spec)
        logger.info("jaxnas.run: optimizer='auto' chose %r", optimizer)
    # nsga2 always takes the count; a wrapped single-objective optimiser only when there
    # are several (so that a one-objective run's arguments stay as they always were).
    takes = "n_objectives" in _optimizers.options(optimizer)
    if takes and (objectives.several or "multi_objective" not in _optimizers.options(
            optimizer)):
        kwargs = dict(kwargs or {})
        given = kwargs.setdefault("n_objectives", len(objectives.names))
        if given != len(objectives.names):
            raise ValueError(
                f"jn.run: optimizer_kwargs n_objectives={given!r}, but objectives names "
                f"{len(objectives.names)} ({', '.join(objectives.names)}).")
    _optimizers.get(optimizer, spec, **dict(kwargs or {}))
    if _optimizers.ignores_priors(optimizer, spec, dict(kwargs or {})):
        with_prior = [p for p, q in spec.parameters().items()
                      if getattr(q, "prior", None) is not None]
        warnings.warn(
            f"jn.run: optimizer={optimizer!r} ignores the priors of the space (on "
            f"{', '.join(with_prior)}). Use 'priorband' or 'priorband_bo' (with a "
            f"fidelity), 'tpe' or 'bayesian_optimization' to use them, or pass "
            f"optimizer_kwargs={{'use_prior': True}} where the optimiser has it.",
            UserWarning, stacklevel=3)
    return optimizer, kwargs


def _loop(spec: SearchSpace, worker: Worker, evaluator: Any, store: RunStore,
          budgets: dict, progress: Progress, start: float) -> str:
    """Claims, evaluates and tells batches until a budget is spent; returns which.

    `start`: when the run began (`time.monotonic()`), for `max_seconds`.
    """
    if evaluator.warming:
        worker.prepare_tell()  # while the first batch's training program compiles
    while True:
        claimed, stopped_by = worker.next_batch(budgets, time.monotonic() - start)
        if stopped_by:
            return stopped_by
        batch = make_batch(spec, claimed, worker.key_ids(claimed))
        evaluator(batch, worker.trial_keys, worker.record)
        # The step is told by the next `next_batch`, in the transaction of the next ask.
        progress.update(store, time.monotonic() - start)


def _incumbent(spec: SearchSpace, trials: list[TrialRecord]) -> Incumbent | None:
    best = best_trial(trials, INCUMBENT)
    if best is None:
        return None
    resolved = spec.resolve(best.config, best.fidelity)
    return Incumbent(best.trial_id, best.loss, best.fidelity, resolved, dict(best.config),
                     dict(best.extra), dict(best.objectives))
