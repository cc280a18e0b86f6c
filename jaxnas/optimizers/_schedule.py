"""The Hyperband schedule: rung fidelities and bracket sizes, computed on the host.

Rungs are numbered from the lowest fidelity: rung `k` of `s_max + 1` evaluates at
`max_fidelity / eta**(s_max - k)`, `s_max = floor(log_eta(max / min))`. Bracket `s` starts
`n` configurations at rung `s_max - s` and keeps `floor(n / eta**i)` of them at its `i`-th
rung. Two published rules size `n`:

* `"hpbandster"` (the default): `n = floor((s_max + 1) / (s + 1)) * eta**s`, as HpBandSter
  (`HyperBand.get_next_iteration`) and NePS 0.17 (`neps.optimizers.utils.brackets.
  calculate_hb_bracket_layouts`) compute it, so that a run compares one to one with theirs.
  For fidelity 1..81 and eta 3 the brackets start 81, 27, 9, 6, 5 configurations; for 1..27,
  27, 9, 6, 4.
* `"paper"`: `n = ceil((s_max + 1) / (s + 1) * eta**s)`, Li et al., JMLR 2018, Algorithm 1,
  line 3 and Table 1: 81, 34, 15, 8, 5 for 1..81 and 27, 12, 6, 4 for 1..27. The middle
  brackets are larger, so one Hyperband cycle spends more on low fidelities.

The two agree whenever `s + 1` divides `s_max + 1`. NePS computes `s_max` with
floating-point logarithms, so that 1..243 gets `s_max = 4` (log(243) / log(3) rounds below
5); jaxnas counts rungs exactly. Rung fidelities agree with NePS: integer fidelities are
`int(max / eta**i)`, i.e. rounded down.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

# Relative slack when counting float rungs: 0.1 * 3**4 is 8.100000000000001 > 8.1.
_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A Hyperband schedule: which brackets run, in which order, with how many trials.

    Attributes:
        eta: The reduction factor.
        fidelities: Fidelity of each rung, lowest first.
        base_rungs: For each bracket of one Hyperband cycle, in the order they start, the
            rung its new configurations are sampled at.
        sizes: For each bracket, the number of trials at every rung (0 below its base
            rung); `sizes[b][k]` is the capacity of rung `k` in bracket `b`.
    """

    eta: int
    fidelities: tuple[float, ...]
    base_rungs: tuple[int, ...]
    sizes: tuple[tuple[int, ...], ...]

    @property
    def n_rungs(self) -> int:
        return len(self.fidelities)

    @property
    def largest_rung(self) -> int:
        """The most trials one rung of any bracket holds: the default batch size."""
        return max(max(row) for row in self.sizes)

    def size_table(self) -> np.ndarray:
        """`sizes` as an `(n_brackets, n_rungs)` int32 array."""
        return np.asarray(self.sizes, np.int32)

    def bracket_cost(self, bracket: int) -> float:
        """Fidelity one bracket spends when promoted trials continue from their parent.

        A promotion from rung `k - 1` to rung `k` costs `fidelity[k] - fidelity[k - 1]`,
        as in NePS's PriorBand (`cost_per_rung`).
        """
        previous = (0.0,) + self.fidelities[:-1]
        return float(sum(n * (f - p) for n, f, p in
                         zip(self.sizes[bracket], self.fidelities, previous)))


def check_eta(owner: str, eta: object) -> int:
    """Returns `eta` or raises: it must be an integer >= 2."""
    if isinstance(eta, bool) or not isinstance(eta, numbers.Integral) or eta < 2:
        raise ValueError(f"{owner}: eta={eta!r} must be an integer >= 2 (the factor by which "
                         f"each rung shrinks the population).")
    return int(eta)


def check_early_stopping_rate(owner: str, rate: object, n_rungs: int) -> int:
    """Returns `rate` (`early_stopping_rate`: how many of the `n_rungs` lowest rungs to
    skip) or raises: it must be an integer that leaves at least two rungs."""
    if (isinstance(rate, bool) or not isinstance(rate, numbers.Integral)
            or not 0 <= rate < n_rungs - 1):
        raise ValueError(f"{owner}: early_stopping_rate={rate!r} must be an integer in "
                         f"[0, {n_rungs - 2}] (the schedule has {n_rungs} rungs).")
    return int(rate)


def rung_fidelities(owner: str, lower: float, upper: float, is_integer: bool,
                    eta: int) -> tuple[float, ...]:
    """The fidelity of each rung, lowest first: `upper / eta**i` while it stays >= `lower`.

    Raises:
        ValueError: a range too narrow for two rungs (`upper < lower * eta`).
    """
    s_max = 0
    while lower * eta ** (s_max + 1) <= upper * (1 + _RTOL):
        s_max += 1
    if s_max == 0:
        raise ValueError(
            f"{owner}: the fidelity range [{lower!r}, {upper!r}] is too narrow for eta={eta}: "
            f"multi-fidelity needs upper >= lower * eta (at least two rungs). Widen the "
            f"range, lower eta, or use random_search."
        )
    if is_integer:
        values = [int(upper) // eta ** i for i in range(s_max, -1, -1)]
    else:
        values = [max(float(lower), float(upper) / eta ** i) for i in range(s_max, -1, -1)]
    return tuple(float(v) for v in values)


BRACKET_SIZES = ("hpbandster", "paper")


def check_bracket_sizes(owner: str, bracket_sizes: object) -> str:
    """Returns `bracket_sizes` or raises: it must name one of `BRACKET_SIZES`."""
    if bracket_sizes not in BRACKET_SIZES:
        raise ValueError(f"{owner}: bracket_sizes={bracket_sizes!r} must be one of "
                         f"{', '.join(map(repr, BRACKET_SIZES))} (how many configurations "
                         f"each Hyperband bracket starts; see jaxnas.optimizers.hyperband).")
    return str(bracket_sizes)


def hyperband_schedule(fidelities: tuple[float, ...], eta: int,
                       brackets: tuple[int, ...] | None = None,
                       bracket_sizes: str = "hpbandster") -> Schedule:
    """Builds the schedule over `fidelities` (one rung each).

    Args:
        fidelities: Rung fidelities, lowest first (from `rung_fidelities`).
        eta: The reduction factor.
        brackets: Which brackets `s` to run, in order; all `s_max, ..., 0` (Hyperband) when
            None. Successive halving runs one.
        bracket_sizes: `"hpbandster"` or `"paper"` (see the module docstring).

    Returns:
        A `Schedule`.
    """
    s_max = len(fidelities) - 1
    order = tuple(range(s_max, -1, -1)) if brackets is None else brackets
    sizes = []
    for s in order:
        if bracket_sizes == "paper":
            n = -(-(s_max + 1) * eta ** s // (s + 1))  # ceil((s_max + 1) / (s + 1) * eta**s)
        else:
            n = (s_max + 1) // (s + 1) * eta ** s
        base = s_max - s
        sizes.append(tuple(0 if k < base else n // eta ** (k - base)
                           for k in range(s_max + 1)))
    return Schedule(eta=eta, fidelities=fidelities,
                    base_rungs=tuple(s_max - s for s in order), sizes=tuple(sizes))
