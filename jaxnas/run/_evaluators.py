"""How the runner evaluates a batch of claimed trials: the two evaluators behind `jn.run`.

* `BucketEvaluator` drives a `jn.train.BucketTask` (a `jn.Task`, a `jn.SupervisedTask`,
  or a pure function `f(config, fidelity, key)` wrapped by `jn.train.as_bucket_task`):
  one jitted, vmapped `BucketTrainer` call per bucket, promotions continuing from their
  parent's trained state (in memory, else from the run folder).
* `PlainEvaluator` calls a Python callable `f(**config)` one trial at a time.

Both commit each finished bucket or trial at once, through the `commit` they are given.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import inspect
import logging
import math
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import train as _train
from jaxnas.nn import BuildError
from jaxnas.optimizers import has_priors
from jaxnas.run._checkpoints import TrainingStates
from jaxnas.run._constraints import Screen
from jaxnas.run._kept_states import KeptStates, kept_bytes
from jaxnas.run._objectives import Objectives
from jaxnas.run._records import TrialRecord
from jaxnas.run._storage import RunStore
from jaxnas.space import Categorical, Config, SearchSpace

logger = logging.getLogger("jaxnas")

Commit = Callable[[list[TrialRecord]], None]
TrialKeys = Callable[[list[int]], np.ndarray]  # ids -> raw key data (n, ...) uint32


class Batch(NamedTuple):
    """Claimed trials as an evaluator takes them.

    Attributes:
        trials: the claimed trials, one step's.
        configs: their configs as one `Config` batch (leading axis: the trials), on the host.
        key_ids: for each trial, the id its PRNG key is folded from (its first ancestor).
    """

    trials: list[TrialRecord]
    configs: Config
    key_ids: list[int]


def make_batch(spec: SearchSpace, trials: list[TrialRecord], key_ids: list[int]) -> Batch:
    """Packs the trials' stored values into a `Config` batch.

    The stored values are the float32 / int32 values the optimiser proposed, so the
    configs equal the proposals exactly.
    """
    configs = spec.config({p: np.asarray([t.config[p] for t in trials]) for p in spec.paths})
    if not spec.paths:  # no decisions: one empty config per trial
        configs = jax.tree.map(lambda a: np.broadcast_to(a, (len(trials), *a.shape)), configs)
    return Batch(trials, configs, key_ids)


def make_evaluator(evaluate: Any, spec: SearchSpace, masked: bool, objectives: Objectives,
                   constraints: Any = None,
                   devices: tuple | None = None) -> BucketEvaluator | PlainEvaluator:
    """The evaluator for `jn.run`'s `evaluate` (see its docstring for the three forms),
    checked before the run folder is touched; `start(store)` then gives it the folder.
    `devices`: what a bucket's members spread over (None: every local device).

    Raises:
        TypeError: `evaluate` is none of them.
        ValueError: the task cannot train `spec` (`BucketTask.check_space`).
    """
    pure = callable(evaluate) and is_pure_function(evaluate)
    task = _train.as_bucket_task(evaluate, pure_function=pure)
    if task is not None:
        screen = Screen(constraints, spec, task, objectives)
        if objectives.metrics != ("loss",):  # (the default costs no extra trace)
            _check_returns(task.metrics(spec), objectives, screen)
        return BucketEvaluator(task, spec, masked, objectives, screen, devices)
    if not callable(evaluate):
        raise TypeError(f"jn.run: evaluate={evaluate!r} must be a Task, a pure function "
                        f"f(config, fidelity, key) or a callable f(**config).")
    return PlainEvaluator(evaluate, spec, objectives,
                          Screen(constraints, spec, None, objectives))


def _check_returns(returned: Any, objectives: Objectives, screen: Screen) -> None:
    """Raises when the evaluation cannot give every objective and bounded metric: a dict
    without one of their names (that the run does not measure itself), or a number of
    values other than theirs. `returned` is `BucketTask.metrics` (None: unknown)."""
    names = objectives.metrics
    if returned is None:
        return
    if isinstance(returned, set):
        measured = set(screen.wanted) if screen.measuring else set()
        missing = [n for n in names if n not in returned | measured]
        if missing:
            raise ValueError(
                f"jn.run: objectives name {', '.join(map(repr, missing))}, which the "
                f"evaluation never returns (it returns {', '.join(sorted(returned))}); "
                f"return {'it' if len(missing) == 1 else 'them'} in its dict, or name what "
                f"it returns.")
    elif returned != len(names) and not (returned == 1 and len(names) == 1):
        raise ValueError(
            f"jn.run: objectives name {len(names)} ({', '.join(names)}), but the "
            f"evaluation returns {returned} value(s); return a dict by name or one value "
            f"per objective, bounded metrics last.")


def is_pure_function(fn: Callable) -> bool:
    """A pure JAX evaluate takes exactly `(config, fidelity, key)` positionally."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return [p.name for p in parameters] == ["config", "fidelity", "key"]


# The trainers of each task, by (space, masked): a later run of the same task object in the
# same process (a notebook's second search) reuses their compiled programs instead of
# tracing and compiling them again. Weak keys: they go with the task.
_TRAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# A task's verdicts on whether a bucket's depths may stay open, kept as its trainers are.
_DEPTH_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# The first element of a bucket's signature whose depths are trained apart (widths only).
_WIDTHS_ONLY = ("masked", "widths")


@functools.cache
def _key_data() -> np.ndarray:
    """Key data that stands for any trial's when only shapes are traced (made on first use:
    importing jaxnas must not start JAX's backend)."""
    shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
    return np.zeros((1, *shape.shape), shape.dtype)


def _per_task(cache: weakref.WeakKeyDictionary, task: _train.BucketTask, spec: SearchSpace,
              *key: Any) -> dict:
    """The task's dict in `cache` for this space and `key` (the masking, the devices) (a
    fresh one for a task that cannot be weakly referenced: kept for this run only)."""
    try:
        by_space = cache.setdefault(task, {})
    except TypeError:
        return {}
    return by_space.setdefault((spec, *key), {})


class BucketEvaluator:
    """Trains each bucket with a `BucketTrainer`; keeps trained states for promotions."""

    def __init__(self, task: _train.BucketTask, spec: SearchSpace, masked: bool,
                 objectives: Objectives, screen: Screen, devices: tuple | None = None):
        task.check_space(spec)  # a space the task cannot train fails here, early
        self.task, self.spec, self.masked = task, spec, masked
        self.objectives, self.screen, self.devices = objectives, screen, devices
        # signature -> trainer
        self.trainers = _per_task(_TRAINERS, task, spec, masked, devices)
        self.depth_open = _per_task(_DEPTH_OPEN, task, spec, masked)  # signature -> bool
        # trial id -> trained state (one member), for promotions: the newest batches'
        # (all of them until `start` gives a run folder to read dropped ones back from)
        self.states = KeptStates(budget=None)
        self._kept_bytes = kept_bytes()  # a bad JAXNAS_STATES_IN_MEMORY fails here, early
        self.saved: TrainingStates | None = None
        self._warming: concurrent.futures.Future | None = None

    def warm_up(self) -> None:
        """Compiles, in a background thread, the training program of the bucket the
        prior's configuration falls in (`prior_mode`), while the run claims its folder and
        compiles the optimiser's programs: on a CPU, where an optimiser's ask and a
        training program each take seconds to compile on one core, the two compile side
        by side. The first batch waits for it, so that nothing is compiled twice. A guess
        that fails (an infeasible prior) costs only its thread's time; the batch that
        needs the program compiles it as it would have. In a space of several
        structures without priors (a grammar, a choice of operations) the first batch is
        uniform draws, which rarely fall in the corner `prior_mode` picks: there the
        guess is not made, as its compilation would take a core from the optimiser's."""
        if self._warming is not None:
            return
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxnas-warm-up")
        self._warming = pool.submit(self._compile_prior_bucket)
        pool.shutdown(wait=False)

    def _compile_prior_bucket(self) -> None:
        try:
            configs = prior_mode(self.spec)
            signature = self._signatures(configs)[0] if self.task.bucketed else ()
            if signature and not has_priors(self.spec):
                return
            self._trainer(signature, configs).compile(_key_data(), configs)
        except Exception as error:  # noqa: BLE001 - only a guess: the batch will tell
            logger.debug("jaxnas: compiling the prior's bucket ahead failed: %r", error)

    @property
    def warming(self) -> bool:
        """Whether a training program is being compiled ahead (`warm_up`) and not done."""
        return self._warming is not None and not self._warming.done()

    def _wait_for_warm_up(self) -> None:
        if self._warming is not None:
            self._warming.result()
            self._warming = None

    def start(self, store: RunStore) -> None:
        """Saves trained states in the run folder, so that a promotion continues from
        its parent's state in another process or after a restart."""
        if self.task.saves_states:
            self.saved = TrainingStates(store)
            self.states.budget = self._kept_bytes

    def close(self) -> None:
        """Waits for the training states still being written (and a warm-up)."""
        self._wait_for_warm_up()
        if self.saved is not None:
            self.saved.close()

    def __call__(self, batch: Batch, trial_keys: TrialKeys, commit: Commit) -> None:
        self._wait_for_warm_up()  # its trainers and verdicts are this call's to use
        batch, measures = screen_batch(self.screen, batch, commit)
        if not batch.trials:
            return
        configs = batch.configs
        signatures = (self._signatures(configs) if self.task.bucketed
                      else [()] * len(batch.trials))
        for signature in dict.fromkeys(signatures):
            rows = [i for i, s in enumerate(signatures) if s == signature]
            commit(self._evaluate_bucket(batch, signature, rows, trial_keys,
                                         [measures[i] for i in rows]))  # at once

    def _signatures(self, configs: Config) -> list[tuple]:
        """The batch's bucket signatures: depths open where the bucket's blocks allow it
        (a block that may be skipped must keep its input's shape), else widths only."""
        signatures = self.spec.buckets(configs, masked=self.masked)
        if self.masked is not True or not self.spec.depth_paths:
            return signatures
        for signature in dict.fromkeys(signatures):  # decided once per bucket and task
            if signature not in self.depth_open:
                row = signatures.index(signature)
                self._decide_depth(signature, jax.tree.map(lambda a: a[row:row + 1], configs))
        if all(self.depth_open[s] for s in signatures):
            return signatures
        closed = self.spec.buckets(configs, masked="widths")
        return [s if self.depth_open[s] else (_WIDTHS_ONLY, *c)
                for s, c in zip(signatures, closed)]

    def _decide_depth(self, signature: tuple, members: Config) -> None:
        """Whether the bucket's masked module may skip its blocks: its initial state's
        shapes are traced, which is where a shape-changing block shows."""
        trainer = self._trainer(signature, members)
        try:
            trainer.state_shapes(_key_data(), members)
            self.depth_open[signature] = True
        except BuildError:  # a block that may be skipped changes the shape
            del self.trainers[signature]
            self.depth_open[signature] = False
        except Exception:  # noqa: BLE001 - the bucket's own call reports it
            self.depth_open[signature] = True

    def _evaluate_bucket(self, batch: Batch, signature: tuple, rows: list[int],
                         trial_keys: TrialKeys, measures: list[dict]) -> list[TrialRecord]:
        trials = [batch.trials[i] for i in rows]
        members = jax.tree.map(lambda a: a[np.asarray(rows)], batch.configs)
        keys = trial_keys([batch.key_ids[i] for i in rows])
        fidelities = np.asarray([math.nan if t.fidelity is None else t.fidelity
                                 for t in trials], np.float32)
        parents = [t.parent_id for t in trials]
        start = time.monotonic()
        try:  # building the bucket's model (the task's `for_bucket`) may fail too
            trainer = self._trainer(signature, members)
            restored = self._load_missing_parents(parents, trainer, keys, members)
            parent_states, has_parent = self._parent_states(parents, restored)
            states, out = jax.block_until_ready(trainer(
                keys, members, fidelities, parent_states, has_parent))
        except Exception as error:  # noqa: BLE001 - the bucket fails, the run goes on
            logger.warning("a bucket of %d trials failed: %r", len(rows), error)
            seconds, trace = (time.monotonic() - start) / len(rows), traceback.format_exc()
            return [t.finish(math.nan, seconds=seconds, trace=trace,
                             error=f"{type(error).__name__}: {error}") for t in trials]
        seconds = (time.monotonic() - start) / len(rows)
        finished = [finish(t, _with(measures[j], _member(out, j)), self.objectives, seconds)
                    for j, t in enumerate(trials)]
        for parent in parents:
            self.states.pop(parent)  # continued: its child's state replaces it
        self.states.keep({t.trial_id: j for j, t in enumerate(trials)
                          if self._continuable(t.fidelity)}, states)
        return self._save_states(finished, fidelities, states)

    def _continuable(self, fidelity: float | None) -> bool:
        """Whether a trial trained to `fidelity` may be promoted (continued) later: a
        trial at the top fidelity, or in a space without one, never is."""
        top = self.spec.fidelity.upper if self.spec.fidelity is not None else None
        return top is not None and fidelity is not None and fidelity < top

    def _trainer(self, signature: tuple, members: Config) -> _train.BucketTrainer:
        """The bucket's trainer, made once per structure; any member stands for it."""
        if signature not in self.trainers:
            first = jax.tree.map(lambda a: a[0], members)
            masked = "widths" if signature[:1] == (_WIDTHS_ONLY,) else self.masked
            task = self.task.for_bucket(self.spec, first, masked)
            self.trainers[signature] = _train.BucketTrainer(task, devices=self.devices)
        return self.trainers[signature]

    def _load_missing_parents(self, parents: list[int], trainer: _train.BucketTrainer,
                              keys: np.ndarray, members: Config) -> dict[int, Any]:
        """The parent states this process does not hold (another process trained them, or
        they were dropped from memory), read back from the run folder: trial id -> state."""
        missing = [p for p in parents if p >= 0 and p not in self.states]
        if self.saved is None or not missing:
            return {}
        template = trainer.state_shapes(keys, members)  # the bucket shares one shape
        restored = {parent: self.saved.load(parent, template) for parent in missing}
        logger.debug("jaxnas.run: read the states of trials %s back from the run folder",
                     missing)
        return {parent: state for parent, state in restored.items() if state is not None}

    def _parent_states(self, parents: list[int],
                       restored: Mapping[int, Any]) -> tuple[Any, np.ndarray | None]:
        """The parents' states stacked (a stand-in where a member has none), and which
        members have one; (None, None) when none has. `restored`: states read back."""
        found = {p: restored[p] if p in restored else self.states[p] for p in parents
                 if p in restored or p in self.states}
        if not found:
            return None, None
        template = next(iter(found.values()))
        stacked = jax.tree.map(_stack, *[found.get(p, template) for p in parents])
        return stacked, np.array([p in found for p in parents])

    def _save_states(self, finished: list[TrialRecord], fidelities: np.ndarray,
                     states: Any) -> list[TrialRecord]:
        """Saves the bucket's states if a member may be promoted; names them in its rows."""
        if self.saved is None or not any(self._continuable(f) for f in fidelities):
            return finished  # a trial at the maximum fidelity is never continued
        reference = self.saved.save([t.trial_id for t in finished], states)
        return [dataclasses.replace(t, state_ref=f"{reference}:{j}")
                for j, t in enumerate(finished)]


def prior_mode(spec: SearchSpace) -> Config:
    """A batch of one config, each parameter at its prior (a numeric one without a prior
    at its lower bound, a categorical one at its first choice), on the host: the
    configuration a prior-guided optimiser's first proposals centre on."""
    values = {}
    for path, parameter in spec.parameters().items():
        prior = getattr(parameter, "prior", None)
        if prior is None:
            prior = 0 if isinstance(parameter, Categorical) else parameter.lower
        values[path] = np.asarray([prior])
    return spec.config(values)


def screen_batch(screen: Screen, batch: Batch, commit: Commit) -> tuple[Batch, list[dict]]:
    """Commits the batch's infeasible trials (never trained) and returns the rest, with
    each one's architecture measurements."""
    n = len(batch.trials)
    if not screen.active:
        return batch, [{} for _ in range(n)]
    reasons, measures = screen(batch.configs)
    infeasible = [batch.trials[i].infeasible(reasons[i], measures[i])
                  for i in range(n) if reasons[i] is not None]
    if infeasible:
        commit(infeasible)
    keep = [i for i in range(n) if reasons[i] is None]
    if len(keep) == n:
        return batch, measures
    rows = np.asarray(keep, np.int64)
    return (Batch([batch.trials[i] for i in keep],
                  jax.tree.map(lambda a: a[rows], batch.configs),
                  [batch.key_ids[i] for i in keep]), [measures[i] for i in keep])


def _with(measures: dict, out: Any) -> Any:
    """The evaluation's output with the architecture measurements it does not report
    itself (a bare loss becomes `{"loss": ...}`)."""
    if not measures:
        return out
    named = dict(out) if isinstance(out, Mapping) else {"loss": out}
    return {**measures, **named}


def _member(out: Any, member: int) -> Any:
    """One member's output (a dict of values, or its loss or objective vector) from a
    bucket's evaluation output (leading axis: the members)."""
    if isinstance(out, Mapping):
        return {k: np.asarray(v)[member] for k, v in out.items()}
    return np.asarray(out)[member]


def finish(trial: TrialRecord, out: Any, objectives: Objectives,
           seconds: float) -> TrialRecord:
    """The trial finished with evaluation output `out`: its objectives (a missing or
    non-finite one fails it, named), its cost, feasibility and other metrics. NePS's name
    for the loss, `objective_to_minimize`, is read as `loss`."""
    if (isinstance(out, Mapping) and NEPS_LOSS in out and "loss" not in out
            and "loss" in objectives.metrics):
        out = {("loss" if k == NEPS_LOSS else k): v for k, v in out.items()}
    outcome = objectives.outcome(out)
    mapping = isinstance(out, Mapping)
    cost = out.get("cost") if mapping else None
    metrics = set(objectives.metrics)
    extra = ({k: v for k, v in out.items() if k not in metrics and k != "cost"}
             if mapping else {})
    return trial.finish(outcome.loss, seconds=seconds,
                        cost=None if cost is None else float(np.asarray(cost)),
                        error=outcome.error, extra=_jsonable(extra),
                        objectives=outcome.values if outcome.error is None else None,
                        feasible=(outcome.violation == 0.0) if objectives.bounds else None)


def _stack(*leaves: Any) -> Any:
    """Stacks one leaf of several saved states: on the host, except typed PRNG keys."""
    if jax.dtypes.issubdtype(getattr(leaves[0], "dtype", None), jax.dtypes.prng_key):
        return jnp.stack(leaves)
    return np.stack(leaves)


# What a NePS evaluation calls its loss.
NEPS_LOSS = "objective_to_minimize"
# The keyword arguments NePS passes a training loop, which jaxnas passes a plain callable
# that names them: the trial's own folder, and its parent's for a promotion.
FOLDER_ARGUMENTS = ("pipeline_directory", "previous_pipeline_directory")
TRIAL_FOLDERS = "trial_folders"  # under the run folder: one folder per trial that asks


class PlainEvaluator:
    """`f(**config)`, one trial at a time, with the resolved values by name.

    A callable that names NePS's `pipeline_directory` or `previous_pipeline_directory` gets
    them too: the trial's own folder (`ROOT/trial_folders/trial_<id>`, made for it) where
    it may save a checkpoint, and for a promotion its parent's folder (None for a trial
    without a parent, or whose parent's folder is gone), so that its own loop continues
    from the parent's checkpoint instead of training from scratch.
    """

    def __init__(self, fn: Callable, spec: SearchSpace, objectives: Objectives,
                 screen: Screen):
        self.fn, self.spec, self.objectives, self.screen = fn, spec, objectives, screen
        self.folders = _folder_arguments(fn, spec)
        self.root: Path | None = None

    def start(self, store: RunStore) -> None:
        """Notes the run folder, where trials that ask for one get their folder."""
        self.root = store.root

    def warm_up(self) -> None:
        """Nothing to compile ahead: the callable is the user's."""

    warming = False  # nothing is ever compiled ahead (`BucketEvaluator.warming`)

    def close(self) -> None:
        """Nothing in flight."""

    def __call__(self, batch: Batch, trial_keys: TrialKeys, commit: Commit) -> None:
        del trial_keys  # a plain callable draws its own randomness
        batch, _ = screen_batch(self.screen, batch, commit)
        for i, trial in enumerate(batch.trials):
            config = jax.tree.map(lambda a, i=i: a[i], batch.configs)
            commit([self._evaluate(trial, config)])  # each trial is committed as it finishes

    def _folder(self, trial_id: int) -> Path:
        return self.root / TRIAL_FOLDERS / f"trial_{trial_id}"

    def _folder_kwargs(self, trial: TrialRecord) -> dict[str, Path | None]:
        """NePS's folder arguments the callable takes, for `trial`."""
        out: dict[str, Path | None] = {}
        if "pipeline_directory" in self.folders:
            out["pipeline_directory"] = self._folder(trial.trial_id)
            out["pipeline_directory"].mkdir(parents=True, exist_ok=True)
        if "previous_pipeline_directory" in self.folders:
            previous = self._folder(trial.parent_id) if trial.parent_id >= 0 else None
            if previous is not None and not previous.is_dir():
                logger.warning("jaxnas.run: trial %d continues trial %d, whose folder %s is "
                               "gone; previous_pipeline_directory is None", trial.trial_id,
                               trial.parent_id, previous)
                previous = None
            out["previous_pipeline_directory"] = previous
        return out

    def _evaluate(self, trial: TrialRecord, config: Config) -> TrialRecord:
        start = time.monotonic()
        try:
            out = self.fn(**self.spec.resolve(config, trial.fidelity),
                          **self._folder_kwargs(trial))
            return finish(trial, out, self.objectives, time.monotonic() - start)
        except Exception as error:  # noqa: BLE001 - a failing trial is recorded
            logger.warning("trial %d failed: %r", trial.trial_id, error)
            return trial.finish(math.nan, seconds=time.monotonic() - start,
                                error=f"{type(error).__name__}: {error}",
                                trace=traceback.format_exc())


def _folder_arguments(fn: Callable, spec: SearchSpace) -> tuple[str, ...]:
    """Which of NePS's folder arguments `fn` names; a space entry of the same name is an
    error (the two would collide)."""
    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()
    wanted = tuple(name for name in FOLDER_ARGUMENTS if name in names)
    clash = [name for name in wanted if name in spec.entries]
    if clash:
        raise ValueError(f"jn.run: the space has an entry named {clash[0]!r}, which evaluate "
                         f"also takes as the trial's folder (NePS's argument); rename the "
                         f"entry.")
    return wanted


def _jsonable(extra: dict) -> dict:
    out = {}
    for k, v in extra.items():
        try:
            out[k] = np.asarray(v).tolist()
        except Exception:  # noqa: BLE001 - keep what can be stored
            out[k] = repr(v)
    return out
