"""What `jn.run` trains: the `Task` triple, and the `BucketTask` protocol it drives.

A `Task` is three pure functions of one configuration (jaxnas vmaps them over a bucket):

* `init(key, config) -> state`: a fresh training state;
* `train(state, config, fidelity) -> state`: trains *up to* `fidelity` (epochs, steps, ...)
  from wherever `state` stands, so a configuration promoted to a higher rung continues from
  its saved state instead of starting again;
* `evaluate(state, config) -> loss or dict`: the objective (a dict carries a `"loss"` entry
  and any other metrics).

A `BucketTask` is what the runner holds: it checks a space before a run starts and makes
the `Task` of each bucket (a group of configurations of one structure). `SupervisedTask`
is one; `as_bucket_task` wraps a plain `Task` or a pure function `f(config, fidelity, key)`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Task(NamedTuple):
    """Pure `init`, `train` and `evaluate` of one configuration (see the module docstring)."""

    init: Callable[[jax.Array, Any], Any]
    train: Callable[[Any, Any, Any], Any]
    evaluate: Callable[[Any, Any], Any]


class BucketTask(abc.ABC):
    """An evaluation the runner trains bucket by bucket.

    Attributes:
        bucketed: group configurations by structure (`spec.buckets`) and make one `Task`
            per bucket; False: every configuration reaches one `Task` with all its values
            traced (a pure function has no structure to bucket).
        saves_states: whether trained states are worth saving in the run folder, so that a
            promotion continues from its parent's state in another process or after a
            restart (a pure function's state is its key and fidelity: nothing to save).
    """

    bucketed: bool = True
    saves_states: bool = True

    def check_space(self, spec: Any) -> None:  # noqa: B027 - optional hook, no-op default
        """Raises ValueError if this task cannot train `spec`; called before a run starts."""
        del spec

    def metrics(self, spec: Any) -> Any:
        """What `evaluate` returns, for checks when a run is defined: a set of names (a
        dict's keys), a number of values (an array's size), or None when unknown."""
        del spec
        return None

    def architecture(self, resolved: Any) -> tuple[Any, tuple] | None:
        """The model a resolved config builds and one example's input shape (batch axis
        1), for `jn.nn.summary`; None for a task without one (then `jn.run` cannot check
        architecture constraints or report `params` and `flops`)."""
        del resolved
        return None

    @abc.abstractmethod
    def for_bucket(self, spec: Any, config: Any, masked: bool | str) -> Task:
        """The pure functions of one bucket; `config` is any member (its structure counts).

        `masked` is what the bucket's signature left open, to pass on to
        `spec.resolve(config, masked=masked)`: True (widths and depths), `"widths"` (a
        bucket whose depths could not be skipped) or False.
        """


class FixedTask(BucketTask):
    """One `Task` for every bucket."""

    def __init__(self, task: Task, *, bucketed: bool = True, saves_states: bool = True):
        self.task, self.bucketed, self.saves_states = task, bucketed, saves_states

    def metrics(self, spec: Any) -> Any:
        """The output's names or size, traced (`jax.eval_shape`) on a sample config; None
        if that fails (the trials will say why)."""
        task = self.task

        def once(key, config):
            fidelity = jnp.ones((), jnp.float32)
            return task.evaluate(task.train(task.init(key, config), config, fidelity), config)

        try:
            config = jax.eval_shape(spec.sample, jax.random.key(0))
            out = jax.eval_shape(once, jax.random.key(0), config)
        except Exception:  # noqa: BLE001 - only a check; the run reports real failures
            return None
        if isinstance(out, Mapping):
            return set(out)
        return int(np.prod(getattr(out, "shape", ())))

    def for_bucket(self, spec: Any, config: Any, masked: bool | str) -> Task:
        del spec, config, masked
        return self.task


def task_from_function(fn: Callable[[Any, Any, jax.Array], Any]) -> Task:
    """`f(config, fidelity, key) -> loss` as a `Task`: its state is the key and fidelity.

    So a pure function runs through the same `BucketTrainer` (jit, vmap, padding) as any
    task. A promotion rebuilds its state exactly from the trial's key and the new fidelity.
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


def as_bucket_task(evaluate: Any, *, pure_function: bool = False) -> BucketTask | None:
    """The `BucketTask` the runner drives for `evaluate`, or None for a plain callable.

    Args:
        evaluate: a `BucketTask` (returned as it is), a `Task` (one for every bucket), or,
            with `pure_function=True`, a pure `f(config, fidelity, key)`.
        pure_function: treat a callable `evaluate` as a pure JAX function (one program for
            every configuration, nothing to save).
    """
    if isinstance(evaluate, BucketTask):
        return evaluate
    if isinstance(evaluate, Task):
        return FixedTask(evaluate)
    if pure_function:
        return FixedTask(task_from_function(evaluate), bucketed=False, saves_states=False)
    return None
