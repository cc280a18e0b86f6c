"""`jn.run(constraints=...)`: which configurations may be trained, checked before training.

Two kinds, told apart by type:

* a predicate on the configuration, `fn(config) -> bool`, pure and jittable (checked when
  the run is defined on a sample config: it must trace and return one boolean);
* an architecture constraint (`jn.constraints.max_params(n)`, `max_flops(n)`,
  `architecture(measure, limit)`), checked on `jn.nn.summary` of the configuration's exact
  model (not the masked bucket's), measured once per distinct structure.

A configuration that breaks one is recorded `infeasible` (its measured values in `extra`,
the broken constraint in `error`), never trained and not counted in `max_evaluations` or
cost; the optimiser is told it failed. The same measurements give the `params` and `flops`
objectives when the run names them and the task does not return them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import nn as _nn
from jaxnas._compiling import HELPER_OPTIONS, jit_with
from jaxnas._shapes import HELPER_MIN_ROWS, pad_to_power_of_two
from jaxnas.constraints import ArchitectureConstraint
from jaxnas.run._objectives import Objectives
from jaxnas.space import CONSTRAINT_TRIES, Config, SearchSpace
from jaxnas.train import BucketTask

MEASURES = ("params", "flops")  # what `jn.nn.summary` gives that a run may optimise


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


class Screen:
    """The run's constraints and architecture measurements, per batch of configurations.

    Args:
        constraints: `jn.run`'s `constraints` (None: none).
        spec: the compiled space.
        task: the run's `BucketTask`, or None for a plain callable.
        objectives: the run's objectives (`params` / `flops` among them are measured).

    Raises:
        TypeError, ValueError: a constraint of neither kind, a predicate that does not
            trace or returns something other than one boolean, an architecture constraint
            with a task that builds no model; each names the constraint.
    """

    def __init__(self, constraints: Sequence | None, spec: SearchSpace, task: Any,
                 objectives: Objectives):
        if constraints is None:
            constraints = ()
        if callable(constraints) or isinstance(constraints, ArchitectureConstraint):
            constraints = (constraints,)
        if not isinstance(constraints, Sequence) or isinstance(constraints, str):
            raise TypeError(f"jn.run: constraints={constraints!r} must be a list of "
                            f"predicates fn(config) -> bool and jn.constraints values.")
        self.spec, self.task = spec, task
        self.architecture = [c for c in constraints if isinstance(c, ArchitectureConstraint)]
        self.predicates = [c for c in constraints if not isinstance(c, ArchitectureConstraint)]
        for fn in self.predicates:
            _check_predicate(fn, spec)
        _check_feasible_share(self.predicates, spec)
        self.wanted = [m for m in MEASURES if m in objectives.metrics]
        builds = task is not None and _builds_a_model(task)
        if self.architecture and not builds:
            raise ValueError(
                f"jn.run: constraint {self.architecture[0].describe()!r} is on the built "
                f"model, but evaluate={task!r} builds none (a jn.SupervisedTask does; a "
                f"function or a plain callable cannot be measured). Check the config "
                f"with a predicate fn(config) -> bool instead.")
        self.measuring = builds and bool(self.architecture or self.wanted)
        self._check = (jit_with(jax.vmap(lambda c: jnp.stack(
            [jnp.asarray(fn(c), bool) for fn in self.predicates])), HELPER_OPTIONS)
            if self.predicates else None)
        self._summaries: dict[Any, dict] = {}  # exact structure -> its summary

    @property
    def active(self) -> bool:
        return bool(self.predicates) or self.measuring

    def describe(self) -> list[str]:
        """What the run's identity records of its constraints."""
        return ([f"predicate {_name(fn)}" for fn in self.predicates]
                + [c.describe() for c in self.architecture])

    def __call__(self, configs: Config) -> tuple[list[str | None], list[dict]]:
        """For a batch: why each row is infeasible (None where feasible), and its
        measurements (`params`, `flops`; empty when the run measures nothing)."""
        n = jax.tree.leaves(configs)[0].shape[0]
        reasons: list[str | None] = [None] * n
        if self._check is not None:
            # Padded on the host to one shape (copies of row 0), so that batches of every
            # size share one program (as the run's other host helpers do).
            size = pad_to_power_of_two(n, HELPER_MIN_ROWS)
            padded = jax.tree.map(lambda a: np.concatenate(
                [np.asarray(a), np.repeat(np.asarray(a)[:1], size - n, axis=0)]), configs)
            verdicts = np.asarray(self._check(padded), bool)[:n]  # (n, k)
            for i in range(n):
                broken = [_name(fn) for fn, ok in zip(self.predicates, verdicts[i]) if not ok]
                if broken:
                    reasons[i] = f"infeasible: constraint {', '.join(broken)} is False"
        measures: list[dict] = [{} for _ in range(n)]
        if not self.measuring:
            return reasons, measures
        signatures = self.spec.buckets(configs, masked=False)
        for i, signature in enumerate(signatures):
            if reasons[i] is not None:
                continue
            summary = self._summary(signature, jax.tree.map(lambda a, i=i: a[i], configs))
            measures[i] = {m: summary[m] for m in MEASURES}
            broken = [f"{c.name} ({c.value(summary):g} > {c.limit:g})"
                      for c in self.architecture if c.violation(summary) > 0]
            if broken:
                reasons[i] = f"infeasible: {', '.join(broken)}"
        return reasons, measures

    def _summary(self, signature: Any, config: Config) -> dict:
        if signature not in self._summaries:
            module, shape = self.task.architecture(self.spec.resolve(config))
            self._summaries[signature] = _nn.summary(module, shape)
        return self._summaries[signature]


def _builds_a_model(task: Any) -> bool:
    """Whether the task overrides `BucketTask.architecture` (so that it builds a model)."""
    return (isinstance(task, BucketTask)
            and type(task).architecture is not BucketTask.architecture)


# A predicate that fewer than this share of uniform samples satisfy is refused: the
# optimisers' rejection (`SearchSpace.constrain`) would mostly fail.
MIN_FEASIBLE_SHARE, FEASIBILITY_SAMPLES = 0.01, 2048


def _check_feasible_share(predicates: list, spec: SearchSpace) -> None:
    """Raises, naming the predicates, when almost no uniform sample satisfies them."""
    if not predicates:
        return
    keys = jax.random.split(jax.random.key(0), FEASIBILITY_SAMPLES)
    verdicts = jax.jit(jax.vmap(lambda k: jnp.stack(
        [jnp.asarray(fn(spec.sample(k)), bool) for fn in predicates])))(keys)
    shares = np.asarray(verdicts, np.float64).mean(axis=0)
    together = float(np.asarray(verdicts).all(axis=1).mean())
    if together < MIN_FEASIBLE_SHARE:
        each = ", ".join(f"{_name(fn)} {share:.2%}" for fn, share in zip(predicates, shares))
        raise ValueError(
            f"jn.run: almost no configuration satisfies the constraints: {together:.2%} of "
            f"{FEASIBILITY_SAMPLES} uniform samples do (each alone: {each}); the optimisers "
            f"draw {CONSTRAINT_TRIES} candidates per configuration. Loosen the constraint "
            f"or narrow the space's ranges to where it holds.")


def _check_predicate(fn: Any, spec: SearchSpace) -> None:
    """A predicate must trace on a config and return one boolean."""
    if not callable(fn):
        raise TypeError(f"jn.run: constraint {fn!r} is neither a predicate fn(config) -> "
                        f"bool nor a jn.constraints value.")
    try:
        out = jax.eval_shape(fn, jax.eval_shape(spec.sample, jax.random.key(0)))
    except Exception as error:  # noqa: BLE001 - say which constraint and why
        raise ValueError(f"jn.run: constraint {_name(fn)} must be a pure, jittable "
                         f"function of the config (config['path'] values are traced "
                         f"arrays); tracing it failed: {type(error).__name__}: "
                         f"{error}") from error
    if not (hasattr(out, "shape") and out.shape == () and out.dtype == np.bool_):
        raise ValueError(f"jn.run: constraint {_name(fn)} must return one boolean (e.g. "
                         f"config['width'] * config['depth'] <= 512), not {out!r}.")
