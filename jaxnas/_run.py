"""`jn.run`: ask the optimiser, train or evaluate each bucket at once, store, tell.

One iteration of the loop:

1. `ask` gives a batch of proposals (new configurations and promotions);
2. the host groups the valid ones into buckets of equal structure (widths masked, so that
   configurations differing only in widths share one);
3. each bucket is evaluated in one jit-compiled, vmapped call (a `Task` or a pure function),
   or one trial at a time (a plain Python callable); promoted trials continue from their
   parent's training state, kept on the host;
4. the results are committed to the trial table (SQLite) and only then told to the optimiser.

Budgets (evaluations, cost, fidelity spent, seconds) are checked between batches; whichever
runs out first ends the run.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import optimizers as _optimizers
from jaxnas._storage import TrialStore, load_results
from jaxnas.space import SearchSpace, compile as _compile
from jaxnas.train import BucketTrainer, Task, pad_to_power_of_two

logger = logging.getLogger("jaxnas")

DEFAULT_MAX_TRIALS = 1024


@dataclasses.dataclass(frozen=True)
class Incumbent:
    """The best trial: lowest loss among the successful trials at the highest fidelity."""

    trial_id: int
    loss: float
    fidelity: float | None
    config: Any  # the resolved config (the user's pytree, operations built)
    values: dict  # the config's values by path
    metrics: dict  # what else the evaluation reported (curves, test scores, ...)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What `jn.run` returns.

    Attributes:
        incumbent: the best trial, or None when no trial succeeded.
        trials: every trial of the run (see `jn.load_results`).
        root_directory: where the run is stored.
        stopped_by: the budget that ended the run (or why it ended).
    """

    incumbent: Incumbent | None
    trials: list
    root_directory: Path
    stopped_by: str


def run(evaluate: Any, space: Any, *, optimizer: str | _optimizers.Optimizer = "priorband",
        root_directory: str | Path, max_evaluations: int | None = None,
        max_cost: float | None = None, max_fidelity_spent: float | None = None,
        max_seconds: float | None = None, seed: int = 0, masked: bool = True,
        optimizer_kwargs: Mapping | None = None, progress: bool | None = None) -> RunResult:
    """Searches `space` for the configuration that minimises `evaluate`'s loss.

    Args:
        evaluate: one of
            * a `jn.Task` (pure `init`, `train`, `evaluate`), or an object with
              `for_bucket(spec, config, masked) -> Task` such as `jn.SupervisedTask`:
              vmapped per bucket, training states carried across rungs;
            * a pure JAX function `f(config, fidelity, key) -> loss` (jitted and vmapped);
            * a plain Python callable `f(**config) -> float | dict`, called one trial at a
              time with the resolved values by name (the fidelity under its own name). A
              dict gives `loss` and optionally `cost`. An exception is a failed trial.
        space: a space pytree or a compiled `SearchSpace`.
        optimizer: an optimiser name (`jn.optimizers.get`) or an `Optimizer` value.
        root_directory: where the trial table (`trials.sqlite`) is written.
        max_evaluations: stop after this many trials.
        max_cost: stop once the summed cost (a trial's `cost`, else its fidelity) reaches it.
        max_fidelity_spent: stop once the fidelity trained reaches it (a continued trial
            counts only the fidelity it adds).
        max_seconds: stop after this much wall-clock time (checked between batches).
        seed: the run's seed: every random draw follows from `jax.random.key(seed)`.
        masked: group configurations that differ only in widths into one bucket.
        optimizer_kwargs: keyword arguments for a named optimiser (`max_trials` defaults to
            `max_evaluations`, else 1024).
        progress: show a progress line (default: when stderr is a terminal).

    Returns:
        A `RunResult` with the incumbent and the trial table.

    Raises:
        ValueError: no budget given, a bad budget, a root directory that already holds a run.
    """
    spec = space if isinstance(space, SearchSpace) else _compile(space)
    budgets = _check_budgets(max_evaluations=max_evaluations, max_cost=max_cost,
                             max_fidelity_spent=max_fidelity_spent, max_seconds=max_seconds)
    root = Path(root_directory)
    if (root / "trials.sqlite").exists() and load_results(root):
        raise ValueError(f"root_directory={str(root)!r} already holds a run; choose a new "
                         f"directory.")
    opt = _make_optimizer(optimizer, spec, max_evaluations, optimizer_kwargs)
    evaluator = _evaluator(evaluate, spec, masked)
    store = TrialStore(root)
    show = sys.stderr.isatty() if progress is None else progress

    key = jax.random.key(seed)
    state = opt.init(jax.random.fold_in(key, 0))
    ask, tell = jax.jit(opt.ask), jax.jit(opt.tell)
    root_of: dict[int, int] = {}  # trial id -> the id of its first ancestor
    trial_key = _key_maker(jax.random.fold_in(key, 1))
    spent = {"evaluations": 0, "cost": 0.0, "fidelity": 0.0}
    fidelity_of: dict[int, float] = {}
    start, step, stopped_by = time.monotonic(), 0, ""
    trials: list[dict] = []
    try:
        while not (stopped_by := _exhausted(budgets, spent, time.monotonic() - start)):
            step += 1
            state, proposals = ask(state, jax.random.fold_in(key, step))
            try:
                _optimizers.check(state)
            except ValueError as full:
                logger.warning("jaxnas.run: %s", full)
                stopped_by = "the optimiser's capacity (optimizer_kwargs max_trials)"
                break
            rows = np.flatnonzero(np.asarray(proposals.valid))
            if max_evaluations is not None:
                rows = rows[: max_evaluations - spent["evaluations"]]
            if rows.size == 0:
                stopped_by = "the optimiser has nothing more to propose"
                break
            batch = _select(proposals, rows)
            for tid, parent in zip(batch["trial_ids"], batch["parent_ids"]):
                # A continued trial keeps its first ancestor's key: training to a higher
                # fidelity in steps then equals training there in one go.
                root_of[tid] = root_of[parent] if parent >= 0 else tid
            batch["key_ids"] = [root_of[t] for t in batch["trial_ids"]]
            results = evaluator(batch, trial_key)
            for r in results:
                parent = r["parent_id"]
                r["cost"] = r["cost"] if r["cost"] is not None else r["fidelity"]
                added = (r["fidelity"] or 0.0) - fidelity_of.get(parent, 0.0)
                fidelity_of[r["trial_id"]] = r["fidelity"] or 0.0
                spent["evaluations"] += 1
                spent["cost"] += r["cost"] or 0.0
                spent["fidelity"] += added
            store.add(results)  # committed before the optimiser hears of it
            trials.extend(results)
            losses = np.full(proposals.trial_ids.shape, np.nan, np.float32)
            ids = np.full(proposals.trial_ids.shape, -1, np.int32)
            ids[: len(results)] = [r["trial_id"] for r in results]
            losses[: len(results)] = [r["loss"] for r in results]
            state = tell(state, jnp.asarray(ids), jnp.asarray(losses))
            _report(show, trials, spent, budgets, time.monotonic() - start)
    finally:
        store.close()
        if show:
            print(file=sys.stderr)
    incumbent = _incumbent(spec, trials)
    logger.info("jaxnas.run stopped: %s; %d trials; best loss %s", stopped_by, len(trials),
                None if incumbent is None else incumbent.loss)
    return RunResult(incumbent, trials, root, stopped_by)


# ----------------------------------------------------------------------- pieces


def _check_budgets(**budgets: Any) -> dict:
    given = {k: v for k, v in budgets.items() if v is not None}
    if not given:
        raise ValueError("jn.run needs a budget: max_evaluations, max_cost, "
                         "max_fidelity_spent or max_seconds.")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"jn.run: {name}={value!r} must be a positive number.")
    if "max_evaluations" in given and not isinstance(given["max_evaluations"], int):
        raise ValueError(f"jn.run: max_evaluations={given['max_evaluations']!r} must be an "
                         f"integer.")
    return given


def _exhausted(budgets: dict, spent: dict, seconds: float) -> str:
    checks = (("max_evaluations", spent["evaluations"]), ("max_cost", spent["cost"]),
              ("max_fidelity_spent", spent["fidelity"]), ("max_seconds", seconds))
    for name, used in checks:
        if name in budgets and used >= budgets[name]:
            return name
    return ""


def _make_optimizer(optimizer: Any, spec: SearchSpace, max_evaluations: int | None,
                    kwargs: Mapping | None) -> _optimizers.Optimizer:
    if isinstance(optimizer, _optimizers.Optimizer):
        if kwargs:
            raise ValueError("jn.run: optimizer_kwargs apply to a named optimizer only.")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"jn.run: optimizer={optimizer!r} must be a name or an Optimizer.")
    kwargs = dict(kwargs or {})
    kwargs.setdefault("max_trials", max_evaluations or DEFAULT_MAX_TRIALS)
    return _optimizers.get(optimizer, spec, **kwargs)


def _select(proposals: Any, rows: np.ndarray) -> dict:
    """The valid proposals as host (numpy) values: indexing them compiles nothing."""
    host = jax.device_get(proposals)
    return {
        "configs": jax.tree.map(lambda a: np.asarray(a)[rows], host.configs),
        "fidelities": np.asarray(host.fidelities)[rows].tolist(),
        "trial_ids": np.asarray(host.trial_ids)[rows].tolist(),
        "parent_ids": np.asarray(host.parent_ids)[rows].tolist(),
    }


def _key_maker(base: jax.Array) -> Callable[[list[int]], jax.Array]:
    """`ids -> keys`: one PRNG key per trial, `fold_in(base, id)`, made by one jitted call."""
    fold = jax.jit(jax.vmap(lambda i: jax.random.fold_in(base, i)))

    def keys(ids: list[int]) -> jax.Array:
        size = pad_to_power_of_two(len(ids))  # few shapes, few compiles
        padded = np.asarray(list(ids) + [0] * (size - len(ids)), np.int32)
        return fold(padded)[: len(ids)] if size != len(ids) else fold(padded)

    return keys


def _host_config(configs: Any, i: int) -> dict:
    return {path: np.asarray(configs[path][i]).item() for path in configs}


def _row(batch: dict, i: int, loss: float, *, seconds: float, cost: float | None = None,
         error: str | None = None, extra: dict | None = None) -> dict:
    fidelity = batch["fidelities"][i]
    ok = error is None and math.isfinite(loss)
    return {"trial_id": batch["trial_ids"][i], "parent_id": batch["parent_ids"][i],
            "config": _host_config(batch["configs"], i),
            "fidelity": None if fidelity is None or math.isnan(fidelity) else fidelity,
            "loss": float(loss), "status": "success" if ok else "failed", "cost": cost,
            "seconds": seconds, "error": error if error else (None if ok else "non-finite loss"),
            "extra": extra or {}}


# -------------------------------------------------------------------- evaluators


def _evaluator(evaluate: Any, spec: SearchSpace, masked: bool) -> Callable:
    if hasattr(evaluate, "for_bucket") or isinstance(evaluate, Task):
        return _TaskEvaluator(evaluate, spec, masked)
    if not callable(evaluate):
        raise TypeError(f"jn.run: evaluate={evaluate!r} must be a Task, a pure function "
                        f"f(config, fidelity, key) or a callable f(**config).")
    if _is_pure(evaluate):
        return _TaskEvaluator(_pure_task(evaluate), spec, masked, bucketed=False)
    return _PlainEvaluator(evaluate, spec)


def _is_pure(fn: Callable) -> bool:
    """A pure JAX evaluate takes exactly `(config, fidelity, key)` positionally."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return [p.name for p in parameters] == ["config", "fidelity", "key"]


class _TaskEvaluator:
    """Trains each bucket with a `BucketTrainer`; keeps trained states for promotions.

    With `bucketed=False` the whole batch is one bucket (a pure function, whose config
    values all arrive traced).
    """

    def __init__(self, task: Any, spec: SearchSpace, masked: bool, bucketed: bool = True):
        self.task, self.spec, self.masked, self.bucketed = task, spec, masked, bucketed
        self.trainers: dict[tuple, BucketTrainer] = {}
        self.states: dict[int, Any] = {}  # trial id -> trained state (one member)

    def __call__(self, batch: dict, trial_key: Callable) -> list[dict]:
        configs = batch["configs"]
        signatures = (self.spec.buckets(configs, masked=self.masked) if self.bucketed
                      else [()] * len(batch["trial_ids"]))
        results = [None] * len(signatures)
        for signature in dict.fromkeys(signatures):
            rows = [i for i, s in enumerate(signatures) if s == signature]
            trainer = self._trainer(signature, configs, rows[0])
            members = jax.tree.map(lambda a: a[np.asarray(rows)], configs)
            keys = trial_key([batch["key_ids"][i] for i in rows])
            fidelities = np.asarray([batch["fidelities"][i] for i in rows], np.float32)
            parents = [batch["parent_ids"][i] for i in rows]
            has_parent = np.array([p in self.states for p in parents])
            parent_states = None
            if has_parent.any():
                template = next(self.states[p] for p in parents if p in self.states)
                parent_states = jax.tree.map(
                    _stack, *[self.states.get(p, template) for p in parents])
            t0 = time.monotonic()
            states, out = jax.block_until_ready(trainer(
                keys, members, fidelities, parent_states,
                has_parent if has_parent.any() else None))
            seconds = (time.monotonic() - t0) / len(rows)
            states, out = jax.device_get((states, out))  # host copies: sliced for free
            for j, i in enumerate(rows):
                self.states[batch["trial_ids"][i]] = jax.tree.map(lambda a: a[j], states)
                metrics = out if isinstance(out, Mapping) else {"loss": out}
                loss = float(np.asarray(metrics["loss"])[j])
                extra = {k: np.asarray(v[j]).tolist() for k, v in metrics.items()
                         if k not in ("loss", "cost")}
                cost = float(np.asarray(metrics["cost"])[j]) if "cost" in metrics else None
                results[i] = _row(batch, i, loss, seconds=seconds, cost=cost, extra=extra)
        return results

    def _trainer(self, signature: tuple, configs: Any, row: int) -> BucketTrainer:
        if signature not in self.trainers:
            task = self.task
            if hasattr(task, "for_bucket"):
                task = task.for_bucket(self.spec, jax.tree.map(lambda a: a[row], configs),
                                       self.masked)
            self.trainers[signature] = BucketTrainer(task)
        return self.trainers[signature]


def _stack(*leaves: Any) -> Any:
    """Stacks one leaf of several saved states: on the host, except typed PRNG keys."""
    if jax.dtypes.issubdtype(getattr(leaves[0], "dtype", None), jax.dtypes.prng_key):
        return jnp.stack(leaves)
    return np.stack(leaves)


def _pure_task(fn: Callable) -> Task:
    """`f(config, fidelity, key)` as a `Task`: the state is the trial's key and fidelity.

    So a pure function runs through the same `BucketTrainer` (jit, vmap, padding) as any
    task; it has no structure to bucket, as every config value reaches it traced.
    """

    def init(key, config):
        del config
        return {"key": jax.random.key_data(key), "fidelity": jnp.zeros((), jnp.float32)}

    def train(state, config, fidelity):
        del config
        return {**state, "fidelity": jnp.asarray(fidelity, jnp.float32)}

    def evaluate(state, config):
        return fn(config, state["fidelity"], jax.random.wrap_key_data(state["key"]))

    return Task(init, train, evaluate)


class _PlainEvaluator:
    """`f(**config)`, one trial at a time, with the resolved values by name."""

    def __init__(self, fn: Callable, spec: SearchSpace):
        self.fn, self.spec = fn, spec

    def __call__(self, batch: dict, trial_key: Callable) -> list[dict]:
        del trial_key  # a plain callable draws its own randomness
        results = []
        for i in range(len(batch["trial_ids"])):
            config = jax.tree.map(lambda a: a[i], batch["configs"])
            fidelity = batch["fidelities"][i]
            t0 = time.monotonic()
            try:
                resolved = self.spec.resolve(
                    config, None if math.isnan(fidelity) else fidelity)
                out = self.fn(**resolved)
                loss = float(out["loss"] if isinstance(out, Mapping) else out)
                cost = out.get("cost") if isinstance(out, Mapping) else None
                extra = ({k: v for k, v in out.items() if k not in ("loss", "cost")}
                         if isinstance(out, Mapping) else {})
                results.append(_row(batch, i, loss, seconds=time.monotonic() - t0,
                                    cost=None if cost is None else float(cost),
                                    extra=_jsonable(extra)))
            except Exception as error:  # noqa: BLE001 - a failing trial is recorded
                logger.warning("trial %d failed: %r", batch["trial_ids"][i], error)
                results.append(_row(batch, i, math.nan, seconds=time.monotonic() - t0,
                                    error=f"{type(error).__name__}: {error}"))
        return results


def _jsonable(extra: dict) -> dict:
    out = {}
    for k, v in extra.items():
        try:
            out[k] = np.asarray(v).tolist()
        except Exception:  # noqa: BLE001 - keep what can be stored
            out[k] = repr(v)
    return out


# ----------------------------------------------------------------------- results


def _incumbent(spec: SearchSpace, trials: list[dict]) -> Incumbent | None:
    done = [t for t in trials if t["status"] == "success"]
    if not done:
        return None
    top = max((t["fidelity"] or 0.0) for t in done)
    best = min((t for t in done if (t["fidelity"] or 0.0) == top), key=lambda t: t["loss"])
    resolved = spec.resolve(best["config"], best["fidelity"])
    return Incumbent(best["trial_id"], best["loss"], best["fidelity"], resolved,
                     dict(best["config"]), dict(best["extra"]))


def _report(show: bool, trials: list, spent: dict, budgets: dict, seconds: float) -> None:
    losses = [t["loss"] for t in trials if t["status"] == "success"]
    best = min(losses) if losses else math.nan
    used = {"max_evaluations": spent["evaluations"], "max_cost": spent["cost"],
            "max_fidelity_spent": spent["fidelity"], "max_seconds": seconds}
    fraction = max(used[k] / v for k, v in budgets.items())
    logger.debug("%d trials, best loss %.6g, %.0f%% of the budget", len(trials), best,
                 100 * fraction)
    if show:
        print(f"\rjaxnas: {len(trials)} trials | best loss {best:.6g} | "
              f"budget {100 * min(fraction, 1):5.1f}% | {seconds:6.1f}s", end="",
              file=sys.stderr, flush=True)
