"""`jn.run(initial_configs=[...])`: configurations the run evaluates first (Optuna's
`enqueue_trial`).

An initial configuration takes the place of the optimiser's own draw in the first new
samples it proposes: the i-th new (not promoted) trial of the run is the i-th initial
configuration, at the fidelity the optimiser gave that trial (a bracket's lowest rung, or the
maximum for a single-fidelity optimiser), and the optimiser's state holds it as if it had
drawn it, so that it is told, promoted and modelled like any other. Decisions an entry
leaves out keep the optimiser's draw. Which proposals are replaced follows from the state
alone (how many new trials it holds), so replaying the log on resume replaces the same ones.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import optimizers as _optimizers
from jaxnas.space import Categorical, Float, Integer, SearchSpace

# Optimisers whose proposals an initial configuration cannot take the place of.
REFUSED = {"grid_search": "it evaluates the points of its grid; an initial configuration "
                          "would take one's place"}


def check_initial_configs(spec: SearchSpace, initial_configs: Any,
                          optimizer: Any = None) -> list[dict]:
    """`initial_configs` checked against the space: `[{path: stored value}]` (a choice as
    its index), or [] for None.

    Raises:
        TypeError: not a list of dicts.
        ValueError: a name that is not a decision of the space (or is its fidelity), or a
            value outside its parameter's range, off its step, or not among its choices;
            the message names the entry, the path and the value.
    """
    if initial_configs is None:
        return []
    if isinstance(optimizer, str) and optimizer in REFUSED and initial_configs:
        raise ValueError(f"jn.run: initial_configs cannot be used with "
                         f"optimizer={optimizer!r}: {REFUSED[optimizer]}.")
    if isinstance(initial_configs, Mapping) or not isinstance(initial_configs, Sequence):
        raise TypeError(f"jn.run: initial_configs={_short(initial_configs)} must be a list "
                        f"of dicts {{decision: value}}.")
    parameters = spec.parameters()
    fidelity = spec.fidelity.path if spec.fidelity is not None else None
    out = []
    for i, entry in enumerate(initial_configs):
        if not isinstance(entry, Mapping):
            raise TypeError(f"jn.run: initial_configs[{i}]={_short(entry)} must be a dict "
                            f"{{decision: value}}.")
        values = {}
        for path, value in entry.items():
            where = f"jn.run: initial_configs[{i}][{path!r}]={value!r}"
            if path == fidelity:
                raise ValueError(f"{where}: {path!r} is the space's fidelity, which the "
                                 f"optimiser chooses; leave it out.")
            if path not in parameters:
                known = ", ".join(list(parameters)[:12])
                raise ValueError(f"{where}: {path!r} is not a decision of the space (its "
                                 f"decisions by path: {known}"
                                 f"{', ...' if len(parameters) > 12 else ''}).")
            values[path] = _stored(where, parameters[path], value)
        out.append(values)
    return out


def _stored(where: str, param: Any, value: Any) -> float | int:
    """`value` as the space stores it for `param`, or a ValueError that says why not."""
    if isinstance(param, Categorical):
        for index, choice in enumerate(param.choices):
            if _same(choice, value):
                return index
        plain = all(isinstance(c, (numbers.Number, str, bool)) for c in param.choices)
        if not plain and isinstance(value, numbers.Integral) and not isinstance(value, bool) \
                and 0 <= value < len(param.choices):
            return int(value)  # an index among operations or other objects
        options = ", ".join(repr(c) for c in param.choices[:8])
        raise ValueError(f"{where} is not one of the choices ({options}"
                         f"{', ...' if len(param.choices) > 8 else ''})"
                         + ("" if plain else " nor an index into them") + ".")
    if isinstance(param, (Float, Integer)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number.")
        if not param.lower <= value <= param.upper:
            raise ValueError(f"{where} lies outside [{param.lower!r}, {param.upper!r}].")
        if isinstance(param, Integer) and float(value) != int(value):
            raise ValueError(f"{where} must be a whole number.")
        if param.step is not None:
            k = (float(value) - param.lower) / param.step
            if abs(k - round(k)) > 1e-6:
                raise ValueError(f"{where} is not on the grid of step={param.step!r} from "
                                 f"lower={param.lower!r}.")
        return int(value) if isinstance(param, Integer) else float(value)
    raise ValueError(f"{where}: the decision is a {type(param).__name__}, which "
                     f"initial_configs cannot set.")


def _same(choice: Any, value: Any) -> bool:
    """Whether `value` names `choice`: numbers by value (but True is not 1), anything
    else by `==`."""
    if isinstance(choice, bool) or isinstance(value, bool):
        return choice is value
    if isinstance(choice, numbers.Real) and isinstance(value, numbers.Real):
        return float(choice) == float(value)
    try:
        return bool(choice == value)
    except Exception:  # noqa: BLE001 - an object whose == is not a truth value
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class WarmStart:
    """Puts the run's initial configurations in place of the optimiser's first new
    samples (see the module docstring).

    Args:
        configs: `check_initial_configs`'s output.
    """

    def __init__(self, configs: list[dict]):
        self.configs = configs
        self.done = not configs  # every one placed: no more host reads of the state

    def apply(self, before: Any, state: Any, proposals: Any) -> tuple[Any, Any, list[int]]:
        """`ask`'s `(state, proposals)` with initial configurations written in, and the
        proposal rows they took.

        Args:
            before: the state the ask started from.
            state, proposals: what the ask returned (proposals may be on the host).
        """
        if self.done:
            return state, proposals, []
        table = before.trials
        count = int(table.count)
        used = int(np.sum(np.asarray(table.parent_ids)[:count] < 0))
        if used >= len(self.configs):
            self.done = True
            return state, proposals, []
        new = np.flatnonzero(np.asarray(proposals.valid)
                             & (np.asarray(proposals.parent_ids) < 0))
        rows = new[: len(self.configs) - used].tolist()
        state, proposals = substitute(state, proposals, rows,
                                      self.configs[used: used + len(rows)])
        return state, proposals, rows


def substitute(state: Any, proposals: Any, rows: Sequence[int],
               values: Sequence[dict]) -> tuple[Any, Any]:
    """Writes `values[j]` (`{path: stored value}`, a part of a config) into proposal row
    `rows[j]`, and the rows' whole configs into the state's trial table at their trial
    ids, as if the optimiser had drawn them. The proposals come back on the host."""
    if not rows:
        return state, proposals
    configs = proposals.configs
    for row, given in zip(rows, values):
        member = jax.tree.map(lambda a, r=row: jnp.asarray(a)[r], configs)
        member = member.replace(given)
        configs = jax.tree.map(lambda a, m, r=row: jnp.asarray(a).at[r].set(m),
                               configs, member)
    at = jnp.asarray(rows)
    ids = jnp.asarray(np.asarray(proposals.trial_ids)[np.asarray(rows)])
    written = jax.tree.map(lambda a: a[at], configs)

    def write(node: Any) -> Any:
        if isinstance(node, _optimizers.Trials):
            return node._replace(configs=jax.tree.map(
                lambda a, w: a.at[ids].set(w.astype(a.dtype)), node.configs, written))
        return node

    state = jax.tree.map(write, state, is_leaf=lambda n: isinstance(n, _optimizers.Trials))
    return state, proposals._replace(configs=jax.tree.map(np.asarray, configs))
