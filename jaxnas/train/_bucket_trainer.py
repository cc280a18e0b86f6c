"""Training a bucket: its members' init, train and evaluate in one jit-compiled, vmapped call.

The members of a bucket share their structure, so one program serves them all; their traced
values (learning rates, masked widths, ...) and PRNG keys are vmapped. A member promoted from
a lower rung passes its saved state and continues; a new one starts from `init`.

How many programs a run compiles is what its time to result hangs on (an MLP's training
program takes seconds to compile on a CPU and a fraction of that to run), so a trainer
compiles as few as it can:

* on a CPU, *one* program per bucket: it takes a fixed `capacity` of members (padding rows are
  copies of the first member) and trains them `members_at_once` at a time (one, by default)
  in a loop whose trip count is traced, so a batch of 3 runs three passes and a batch of 16
  sixteen, in the same program, and padding costs nothing; a batch larger than the
  capacity is trained in several calls of it;
* on an accelerator, where one wide vmapped pass is what pays, every member at once, the
  batch padded to a power of two but to at least `ACCELERATOR_MIN_MEMBERS` (32) rows: a
  padding row of a small model costs an accelerator next to nothing, and a program costs
  seconds to compile (6 s for the quickstart's on an H200, against milliseconds to run),
  so every batch up to 32 members shares one program and only larger ones add a program
  per power of two.

Everything a call passes is host data (numpy) or arrays of the program's own shapes, and the
padding is dropped on the host, so no call compiles a small eager program of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnas._compiling import TRAINING_OPTIONS, jit_with
from jaxnas._shapes import pad_to_power_of_two
from jaxnas._tracing import unbatched_widths
from jaxnas.train._protocol import Task

# Members one pass trains on a CPU. Padding rows cost what real ones do, and the rungs that
# cost most (a few configurations trained to the top fidelity) are small, so one at a time
# wins on the whole: the quickstart's search trains in 13.5 s one at a time, 15.5 s two at
# a time and 27 s four at a time (vmapping 4 members saves ~25% a member, padding 1 to 4
# costs 3x).
CPU_MEMBERS_AT_ONCE = 1
# Members one CPU program takes: every rung the quickstart's PriorBand asks fits (its largest
# has 14 members), and the padded training states it moves stay a few MB.
CPU_CAPACITY = 16
# The fewest rows an accelerator's call is padded to. On an H200 the quickstart's cold run
# compiled its training program six times (padded sizes 1, 2, 4, 8, 16 and 32), 5.6-6.6 s
# each, 38 s of its 57; at 32 rows its members (MLPs up to 256 wide) leave the GPU idle.
ACCELERATOR_MIN_MEMBERS = 32


class BucketTrainer:
    """Trains batches of one bucket's members, compiling as few programs as it can.

    Args:
        task: the bucket's `Task` (for a structure-dependent task, from `for_bucket`).
        members_at_once: how many members one vmapped pass trains; passes run one after
            another in a loop inside the compiled call. `"all"`: every member in one pass,
            the batch padded to a power of two (a program per padded size). None: 1 on a
            CPU, `"all"` on an accelerator.
        capacity: the members one compiled call takes when they train a few at a time (a
            multiple of `members_at_once` times the devices; default 16 on a CPU): smaller
            batches are padded to it, and only the passes their members need are run;
            larger ones take several calls of the same program. Ignored when every member
            trains at once, where a batch is padded to a power of two instead.
        min_members: when every member trains at once, the fewest rows a call is padded
            to (default 32 on an accelerator, 1 on a CPU): every batch up to it runs one
            program. Lower it for models so large that padding rows cost real time;
            ignored when members train a few at a time.
        devices: the devices the members are spread over (the population axis is a mesh
            axis: each device trains its share, `shard_map`); default: every local device
            of the default backend. On a CPU, `import jaxnas` makes one device per core
            (see `jaxnas.cpu_devices`).

    Raises:
        ValueError: `members_at_once`, `capacity` or `min_members` is not a positive
            integer, or the capacity is not a multiple of `members_at_once` times the devices.

    Example:
        >>> trainer = BucketTrainer(task)
        >>> states, results = trainer(keys, configs, fidelities)          # new members
        >>> states, results = trainer(keys, configs, higher, parents=states)  # continued
    """

    def __init__(self, task: Task, members_at_once: int | str | None = None,
                 capacity: int | None = None, devices: Sequence[jax.Device] | None = None,
                 min_members: int | None = None):
        if members_at_once != "all":
            _check_count("members_at_once", members_at_once)
        _check_count("capacity", capacity)
        _check_count("min_members", min_members)
        self.devices = tuple(jax.local_devices() if devices is None else devices)
        if not self.devices:
            raise ValueError("BucketTrainer: devices=() must name at least one device.")
        on_cpu = self.devices[0].platform == "cpu"
        if members_at_once is None:
            members_at_once = CPU_MEMBERS_AT_ONCE if on_cpu else "all"
        if min_members is None:
            min_members = 1 if on_cpu else ACCELERATOR_MIN_MEMBERS
        if members_at_once == "all":
            members_at_once = None
        if members_at_once is not None:
            unit = members_at_once * len(self.devices)  # one pass on every device
            if capacity is None:
                capacity = -(-max(CPU_CAPACITY, unit) // unit) * unit
            if capacity % unit:
                raise ValueError(f"BucketTrainer: capacity={capacity} must be a multiple of "
                                 f"members_at_once={members_at_once} times the "
                                 f"{len(self.devices)} devices.")
        self.task, self.members_at_once = task, members_at_once
        self.capacity = capacity if members_at_once is not None else None
        self.min_members = min_members if members_at_once is None else None
        self._run = jit_with(_spread(self._train, self.devices), TRAINING_OPTIONS,
                             self.devices[0].platform)
        self._rows_sharding = NamedSharding(Mesh(np.asarray(self.devices), ("pop",)),
                                            PartitionSpec("pop"))
        self._templates: dict[int, Any] = {}  # padded size -> zero states, on the devices
        self._state_shapes: dict[tuple, Any] = {}  # input shapes -> one member's state

    def __call__(self, keys: jax.Array, configs: Any, fidelities: Any,
                 parents: Any = None, has_parent: Any = None) -> tuple[Any, Any]:
        """Trains `n` members to their fidelities and evaluates them.

        Args:
            keys: `(n,)` PRNG keys, one per trial (a continued member reuses its own), or
                their raw key data (`jax.random.key_data`, `(n, ...)` uint32).
            configs: the members' configs, leading axis `n`.
            fidelities: `(n,)` the fidelity to train up to (the task sees float32).
            parents: saved states to continue from, leading axis `n` (rows without a parent
                are ignored); None when every member is new.
            has_parent: `(n,)` bool, which rows continue from `parents` (default: all,
                when `parents` is given).

        Returns:
            `(states, results)`: the trained states and `task.evaluate`'s results, both
            with leading axis `n` (padding removed), as host (numpy) arrays; PRNG keys in
            them stay typed keys.
        """
        key_data = np.asarray(jax.random.key_data(keys) if _is_key(keys) else keys)
        n = key_data.shape[0]
        configs = jax.tree.map(np.asarray, configs)
        fidelities = np.asarray(fidelities, np.float32)  # whatever the caller's: one program
        if has_parent is None:
            has_parent = np.full(n, parents is not None)
        has_parent = np.asarray(has_parent, bool)
        size = self._size(n)
        outputs = None  # host arrays of n rows, each call's members copied in once
        for start in range(0, n, size):
            rows = np.arange(start, min(start + size, n))
            out, layout = self._call(size, key_data[rows], _rows(configs, rows),
                                     fidelities[rows], _rows(parents, rows), has_parent[rows])
            if outputs is None:
                outputs = jax.tree.map(lambda a: _host_empty(a, n), out)
            jax.tree.map(lambda a, host: _copy_members(a, host, start, layout), out, outputs)
        return jax.tree.map(_host_keys, out, outputs)

    def _size(self, n: int) -> int:
        """The rows of the call that trains a batch of `n` (its first, if several)."""
        if self.capacity is not None:
            return self.capacity
        devices = len(self.devices)
        return -(-pad_to_power_of_two(n, self.min_members) // devices) * devices

    def _call(self, size: int, key_data, configs, fidelities, parents, has_parent):
        """One compiled call on at most `size` rows, padded to `size`: its outputs, on
        the devices, and where its members sit in them."""
        rows, layout = self._arguments(size, key_data, configs, fidelities, parents, has_parent)
        return self._run(*rows, layout.counts), layout

    def _arguments(self, size: int, key_data, configs, fidelities, parents, has_parent):
        """A call's arguments, padded to `size` rows and laid out on the devices."""
        n = key_data.shape[0]
        layout = _Layout(n, size, len(self.devices))
        pad = lambda tree: jax.tree.map(lambda a: _host(a)[layout.index], tree)  # noqa: E731
        key_data, configs, fidelities = pad(key_data), pad(configs), pad(fidelities)
        if parents is None:
            parents = self._template(size, key_data, configs)
            has_parent = np.zeros(size, bool)
        else:
            parents, has_parent = pad(parents), has_parent[layout.index] & layout.real
        rows = jax.device_put((key_data, configs, fidelities, parents, has_parent),
                              self._rows_sharding)  # one layout for every call: one program
        return rows, layout

    def compile(self, key_data: Any, configs: Any) -> bool:
        """Compiles (or loads from JAX's persistent cache) the program that a call on a
        batch like this one runs, without running it, so that the first call does not
        wait for it: `jn.run` does this for its first bucket in a background thread
        while the optimiser's own programs compile.

        A trainer with a fixed capacity (the CPU's) runs one program for every batch;
        one that trains every member at once compiles the program of a batch of `n`,
        which for every batch up to `min_members` (32 on an accelerator) is the same.

        Args:
            key_data: raw key data `(n, ...)` uint32, as a call takes (any values).
            configs: configs of the bucket, leading axis `n` (any members).

        Returns:
            Whether a program was compiled (or found compiled): always True.
        """
        configs = jax.tree.map(np.asarray, configs)
        key_data = np.asarray(key_data)
        n = key_data.shape[0]
        size = self._size(n)
        if n > size:  # a fixed capacity: the program of its first call
            key_data, configs = key_data[:size], jax.tree.map(lambda a: a[:size], configs)
            n = size
        rows, layout = self._arguments(size, key_data, configs,
                                       np.zeros(n, np.float32), None, None)
        self._run.lower(*rows, layout.counts).compile()
        return True

    def _template(self, size: int, key_data, configs) -> Any:
        """Zero states of `size` members, every row then replaced by `init`: shapes from
        `eval_shape`, so fresh and continued batches share one compiled program."""
        if size not in self._templates:
            shapes = self.state_shapes(key_data, configs)
            # On the devices already, laid out as the program takes them: a fresh batch
            # moves only its keys and configs.
            self._templates[size] = jax.device_put(jax.tree.map(
                lambda s: _zeros_host((size, *s.shape), s.dtype), shapes), self._rows_sharding)
        return self._templates[size]

    def state_shapes(self, key_data: Any, configs: Any) -> Any:
        """One member's training state as `jax.ShapeDtypeStruct`s, from a batch's raw key
        data and configs (leading axis: members); e.g. to restore a saved state."""
        keys = jax.ShapeDtypeStruct(np.shape(key_data)[1:], key_data.dtype)
        config = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], a.dtype),
                              configs)
        leaves, treedef = jax.tree.flatten(config)
        signature = (keys, treedef, tuple(leaves))
        if signature not in self._state_shapes:  # one trace of `init` per trainer
            self._state_shapes[signature] = jax.eval_shape(
                lambda k, c: self.task.init(jax.random.wrap_key_data(k), c), keys, config)
        return self._state_shapes[signature]

    def _train(self, key_data, configs, fidelities, parents, has_parent, counts):
        """One device's share: its rows, the first `counts[0]` of them real members."""

        # Jitted inside the program (inlined there), so that `_in_passes`' look at
        # evaluate's output shapes and the call after training share one trace.
        evaluate = jax.jit(self.task.evaluate)

        def member(key_data, config, fidelity, parent, continued):
            key = jax.random.wrap_key_data(key_data)
            state = jax.tree.map(lambda p, f: jnp.where(continued, p, f), parent,
                                 self.task.init(key, config))
            state = self.task.train(state, config, fidelity)
            return state, evaluate(state, config)

        members = (key_data, configs, fidelities, parents, has_parent)
        if self.members_at_once is None or self.members_at_once >= fidelities.shape[0]:
            return jax.vmap(member)(*members)
        return _in_passes(_batched(member, self.members_at_once),
                          _batched(evaluate, self.members_at_once), members,
                          self.members_at_once, counts[0])


class _Layout:
    """Where each of `n` members sits in a padded call of `size` rows over `devices`.

    Member `m` goes to device `m % devices`, so every device holds its share of real
    members first and the padding (copies of member 0) after them; device `d`'s rows are
    the `d`-th block of `size // devices`.
    """

    def __init__(self, n: int, size: int, devices: int):
        per_device = size // devices
        device, slot = np.divmod(np.arange(size), per_device)
        member = device + slot * devices  # the member each row would hold, in order
        self.n, self.devices, self.per_device = n, devices, per_device
        self.real = member < n  # (size,) bool
        self.index = np.where(self.real, member, 0)  # (size,) the row each position copies
        self.counts = np.bincount(device[self.real], minlength=devices).astype(np.int32)


def _spread(train, devices: tuple) -> Any:
    """`train` on every device's block of rows (`shard_map` over a `pop` mesh axis)."""
    if len(devices) == 1:
        return train
    try:
        from jax import shard_map  # noqa: PLC0415 - jax >= 0.7
        unchecked = {"check_vma": False}
    except ImportError:  # the floor, jax 0.5.3
        from jax.experimental.shard_map import shard_map  # noqa: PLC0415
        unchecked = {"check_rep": False}
    mesh = Mesh(np.asarray(devices), ("pop",))
    # Unchecked: each device's loop runs its own trip count, which is what is wanted.
    return shard_map(train, mesh=mesh, in_specs=PartitionSpec("pop"),
                     out_specs=PartitionSpec("pop"), **unchecked)


def _batched(fn, at_once: int):
    """`fn` over a leading axis of `at_once` rows: vmapped, or for one row called on it
    directly, so that its loops and branches run unbatched (a `cond` takes one branch, a
    `while_loop` tests one member's condition)."""
    if at_once > 1:
        return jax.vmap(fn)

    def one(*row):
        with unbatched_widths():  # masked layers may branch on this one member's widths
            out = fn(*jax.tree.map(lambda a: a[0], row))
        return jax.tree.map(lambda a: a[None], out)

    return one


def _in_passes(pass_fn, evaluate, members, at_once: int, count):
    """`pass_fn` over `members` (leading axis: rows) `at_once` rows at a time, for the
    passes that hold the first `count` rows only (a traced trip count: one program for
    every batch size). Rows of passes not run come back as they went in (their parents'
    states) with zero results."""
    rows = jax.tree.leaves(members)[0].shape[0]
    passes = rows // at_once
    split = jax.tree.map(lambda a: a.reshape(passes, at_once, *a.shape[1:]), members)
    states = split[3]  # the parents: the states' own buffer
    shapes = jax.eval_shape(evaluate, jax.tree.map(lambda a: a[0], states),
                            jax.tree.map(lambda a: a[0], split[1]))
    results = jax.tree.map(lambda s: jnp.zeros((passes, *s.shape), s.dtype), shapes)

    def one_pass(i, outputs):
        out = pass_fn(*jax.tree.map(lambda a: a[i], split))
        return jax.tree.map(lambda o, new: o.at[i].set(new), outputs, out)

    needed = (count + at_once - 1) // at_once
    outputs = jax.lax.fori_loop(0, needed, one_pass, (states, results))
    return jax.tree.map(lambda a: a.reshape(rows, *a.shape[2:]), outputs)


def _check_count(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        also = " or 'all'" if name == "members_at_once" else ""
        raise ValueError(f"BucketTrainer: {name}={value!r} must be a positive integer"
                         f"{also} or None.")


def _is_key(a: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key)


def _zeros_host(shape, dtype) -> Any:
    """Zeros on the host (numpy); typed PRNG keys (which numpy lacks) on the device."""
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return jnp.zeros(shape, dtype)
    return np.zeros(shape, dtype)


def _host(a: Any) -> Any:
    """A leaf as a host array for row indexing; typed keys as they are (jnp indexing)."""
    return a if _is_key(a) else np.asarray(a)


def _host_empty(a: jax.Array, n: int) -> np.ndarray:
    """An empty host array for `n` members of a program output (raw data for keys)."""
    if _is_key(a):
        a = jax.eval_shape(jax.random.key_data, a)
    return np.empty((n, *a.shape[1:]), a.dtype)


def _copy_members(a: jax.Array, host: np.ndarray, start: int, layout: _Layout) -> None:
    """Copies the members of one call's output `a` into `host[start:]`, padding left out.

    Each device's rows are read where the program wrote them (on a CPU a device buffer
    is host memory: no copy before this one). Device `d` holds members `d, d + D, ...`
    (`_Layout`), in its leading rows, so they fill a strided slice of `host`."""
    if _is_key(a):
        a = jax.random.key_data(a)
    for shard in a.addressable_shards:
        device = shard.index[0].indices(a.shape[0])[0] // layout.per_device
        count = int(layout.counts[device])
        if count:
            host[start + device:start + layout.n:layout.devices] = np.asarray(shard.data)[:count]


def _rows(tree: Any, rows: np.ndarray) -> Any:
    return None if tree is None else jax.tree.map(lambda a: _host(a)[rows], tree)


def _host_keys(like: Any, host: np.ndarray) -> Any:
    """`host` as `like` is: typed PRNG keys stay keys, other leaves numpy arrays."""
    if _is_key(like):
        return jax.random.wrap_key_data(host, impl=jax.random.key_impl(like))
    return host
