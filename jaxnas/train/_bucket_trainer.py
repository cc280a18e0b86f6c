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

from jaxnas._shapes import pad_to_power_of_two
from jaxnas.train._protocol import Task


# Members one vmapped pass trains on a CPU (see `BucketTrainer`). For 64 and 256 MLPs on the
# digits, 16 and 32 at a time did about equally well; 64 or more at once were 10-25% slower.
CPU_MEMBERS_AT_ONCE = 32


class BucketTrainer:
    """Trains batches of one bucket's members; compiles once per padded batch size.

    Args:
        task: the bucket's `Task` (for a structure-dependent task, from `for_bucket`).
        members_at_once: how many members one vmapped pass trains; a larger batch is
            trained that many at a time in one loop (`jax.lax.map`'s `batch_size`), inside
            the same compiled call. None: 32 on a CPU, where the optimiser states of a whole
            large bucket no longer fit the caches (256 MLPs of the population benchmark train
            about 30% faster this way), and every member at once on an accelerator.

    Example:
        >>> trainer = BucketTrainer(task)
        >>> states, results = trainer(keys, configs, fidelities)          # new members
        >>> states, results = trainer(keys, configs, higher, parents=states)  # continued
    """

    def __init__(self, task: Task, members_at_once: int | None = None):
        if members_at_once is not None and (isinstance(members_at_once, bool) or
                                            not isinstance(members_at_once, int) or
                                            members_at_once < 1):
            raise ValueError(f"BucketTrainer: members_at_once={members_at_once!r} must be a "
                             f"positive integer or None.")
        if members_at_once is None and jax.default_backend() == "cpu":
            members_at_once = CPU_MEMBERS_AT_ONCE
        self.task, self.members_at_once = task, members_at_once
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
        def member(args):
            key, config, fidelity, parent, continued = args
            state = jax.tree.map(lambda p, f: jnp.where(continued, p, f), parent,
                                 self.task.init(key, config))
            state = self.task.train(state, config, fidelity)
            return state, self.task.evaluate(state, config)

        members = (keys, configs, fidelities, parents, has_parent)
        if self.members_at_once is None or self.members_at_once >= fidelities.shape[0]:
            return jax.vmap(member)(members)
        return jax.lax.map(member, members, batch_size=self.members_at_once)


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
    # mode='clip': the indices are in range; the default fill mode cannot gather PRNG keys
    # on jax < 0.8.2 (the floor is 0.5.3).
    return jnp.take(array, index, axis=0, mode="clip")
