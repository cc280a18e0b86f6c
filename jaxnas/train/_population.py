"""Training a bucket: its members' init, train and evaluate in one jit-compiled, vmapped call.

The members of a bucket share their structure, so one program serves them all; their traced
values (learning rates, masked widths, ...) and PRNG keys are vmapped. A batch is padded to a
power of two (copies of its first member, dropped from the results), so that a run compiles
each bucket for a handful of sizes only. A member promoted from a lower rung passes its saved
state and continues; a new one starts from `init`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.train._task import Task


def pad_to_power_of_two(n: int) -> int:
    """The size a batch of `n` members is padded to: 1, 2, 4, 8, ..."""
    return 1 << max(int(n) - 1, 0).bit_length()


class BucketTrainer:
    """Trains batches of one bucket's members; compiles once per padded batch size.

    Args:
        task: the bucket's `Task` (for a structure-dependent task, from `for_bucket`).

    Example:
        >>> trainer = BucketTrainer(task)
        >>> states, results = trainer(keys, configs, fidelities)          # new members
        >>> states, results = trainer(keys, configs, higher, parents=states)  # continued
    """

    def __init__(self, task: Task):
        self.task = task
        self._run = jax.jit(self._train)
        self._templates: dict[int, Any] = {}  # padded size -> zero states

    def __call__(self, keys: jax.Array, configs: Any, fidelities: Any,
                 parents: Any = None, has_parent: Any = None) -> tuple[Any, Any]:
        """Trains `n` members to their fidelities and evaluates them.

        Args:
            keys: `(n,)` PRNG keys, one per trial (a continued member reuses its own).
            configs: the members' configs, leading axis `n`.
            fidelities: `(n,)` the fidelity to train up to.
            parents: saved states to continue from, leading axis `n` (rows without a parent
                are ignored); None when every member is new.
            has_parent: `(n,)` bool, which rows continue from `parents` (default: all,
                when `parents` is given).

        Returns:
            `(states, results)`: the trained states and `task.evaluate`'s results, both
            with leading axis `n` (padding removed).
        """
        n = int(np.shape(fidelities)[0])
        size = pad_to_power_of_two(n)
        pad = _padder(n, size)
        keys, configs = pad(keys), pad(configs)
        fidelities = pad(np.asarray(fidelities))
        if parents is None:
            # A template of zeros, every row replaced by `init`: shapes from eval_shape, so
            # fresh and continued batches share one compiled program and nothing runs twice.
            if size not in self._templates:
                shapes = jax.eval_shape(jax.vmap(self.task.init), keys, configs)
                self._templates[size] = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                                     shapes)
            parents = self._templates[size]
            has_parent = np.zeros(n, bool)
        elif has_parent is None:
            has_parent = np.ones(n, bool)
        has_parent = np.concatenate([np.asarray(has_parent, bool), np.zeros(size - n, bool)])
        parents = parents if np.shape(jax.tree.leaves(parents)[0])[0] == size else pad(parents)
        states, results = self._run(keys, configs, fidelities, parents,
                                    jnp.asarray(has_parent))
        if size == n:
            return states, results
        return _unpad((states, results), n)

    def _train(self, keys, configs, fidelities, parents, has_parent):
        fresh = jax.vmap(self.task.init)(keys, configs)
        states = jax.tree.map(
            lambda p, f: jnp.where(has_parent.reshape((-1,) + (1,) * (p.ndim - 1)), p, f),
            parents, fresh)
        states = jax.vmap(self.task.train)(states, configs, fidelities)
        return states, jax.vmap(self.task.evaluate)(states, configs)


def _padder(n: int, size: int):
    """Pads every leaf's leading axis from `n` to `size` with copies of row 0.

    Host (numpy) leaves are padded on the host; device arrays (PRNG keys) by one small
    jitted gather, so that no eager indexing compiles a program per shape.
    """
    index = np.concatenate([np.arange(n), np.zeros(size - n, np.int64)])

    def pad_leaf(a):
        return a[index] if isinstance(a, np.ndarray) else _take(a, index)

    def pad(tree):
        if size == n:
            return tree
        return jax.tree.map(pad_leaf, tree)

    return pad


@functools.partial(jax.jit, static_argnums=1)
def _unpad(tree: Any, n: int) -> Any:
    """Drops the padding rows of every leaf: one small program, not one per leaf."""
    return jax.tree.map(lambda a: a[:n], tree)


@jax.jit
def _take(array: jax.Array, index: jax.Array) -> jax.Array:
    return jnp.take(array, index, axis=0)
