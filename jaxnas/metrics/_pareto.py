"""Pareto dominance and the exact hypervolume of a set of points (every objective minimised).

The hypervolume of points `P` and a reference point `r` is the volume of the region that
some point of `P` dominates and that dominates `r` (Zitzler & Thiele 1998). In two
dimensions it is a sweep over the points sorted by the first objective; above that the
points are sliced along the last objective and each slab's volume is the hypervolume of the
points below it in one dimension fewer ("hypervolume by slicing objectives", While et al.,
IEEE TEC 2006): O(n log n) in 2-D, O(n^2 log n) in 3-D, exact in any dimension but
exponential in it. Non-dominated points: a sweep in O(n log n) for two objectives, pairwise
comparisons above.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _points(points: Any, name: str = "points") -> np.ndarray:
    array = np.asarray(points, np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"{name} must be an (n, k) array of n points with k >= 1 "
                         f"objectives, got shape {array.shape}.")
    if np.isnan(array).any():
        raise ValueError(f"{name} holds NaN; drop failed trials before measuring.")
    return array


def non_dominated(points: Any) -> np.ndarray:
    """`(n,)` bool: the points no other point dominates (every objective minimised).

    A point dominates another when it is no worse in every objective and better in one;
    of several equal points, all are non-dominated.

    Raises:
        ValueError: `points` is not an `(n, k)` array, or holds NaN.
    """
    array = _points(points)
    n = array.shape[0]
    if array.shape[1] == 2 and n:
        return _non_dominated_2d(array)
    keep = np.ones(n, bool)
    order = np.lexsort(array.T[::-1])  # by the first objective, then the next: a point
    for position, i in enumerate(order):  # can only be dominated by one before it
        if not keep[i]:
            continue
        later = order[position + 1:]
        candidates = array[later]
        dominated = (np.all(array[i] <= candidates, axis=1)
                     & np.any(array[i] < candidates, axis=1))
        keep[later[dominated]] = False
    return keep


def _non_dominated_2d(array: np.ndarray) -> np.ndarray:
    """Two objectives in O(n log n): sorted by the first objective, then the second, a
    point is dominated iff some earlier point that differs from it has a second objective
    no larger than its own."""
    order = np.lexsort((array[:, 1], array[:, 0]))
    ordered = array[order]
    starts = np.ones(len(ordered), bool)  # where a run of equal points begins
    starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(ordered)), 0))
    running = np.minimum.accumulate(ordered[:, 1])
    before = np.where(group_start > 0, running[np.maximum(group_start - 1, 0)], np.inf)
    keep = np.empty(len(ordered), bool)
    keep[order] = ~(before <= ordered[:, 1])
    return keep


def hypervolume(points: Any, reference: Any) -> float:
    """The exact hypervolume that `points` dominate, bounded by `reference`.

    Args:
        points: `(n, k)` objective values, every objective minimised (negate maximised
            ones). Points that do not strictly dominate `reference` in every objective add
            nothing; `n` may be 0.
        reference: `(k,)` the reference point (a worst acceptable value per objective).

    Returns:
        The hypervolume (0.0 when no point lies below the reference).

    Raises:
        ValueError: a shape mismatch, a NaN, or a non-finite reference.
    """
    ref = np.asarray(reference, np.float64)
    if ref.ndim != 1 or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference={np.asarray(reference).tolist()} must be one finite "
                         f"value per objective.")
    if np.size(points) == 0:
        return 0.0
    array = _points(points)
    if array.shape[1] != ref.shape[0]:
        raise ValueError(f"points have {array.shape[1]} objectives but reference="
                         f"{ref.tolist()} has {ref.shape[0]} values.")
    inside = array[np.all(array < ref, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    return float(_volume(inside[non_dominated(inside)], ref))


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of mutually non-dominated points that all dominate `ref`."""
    k = points.shape[1]
    if k == 1:
        return float(ref[0] - points[:, 0].min())
    if k == 2:
        order = np.argsort(points[:, 0], kind="stable")
        x, y = points[order, 0], points[order, 1]  # y falls as x grows on a front
        widths = np.diff(np.append(x, ref[0]))
        return float(np.sum(widths * (ref[1] - np.minimum.accumulate(y))))
    order = np.argsort(points[:, -1], kind="stable")
    ordered = points[order]
    levels = np.append(ordered[:, -1], ref[-1])
    total = 0.0
    for i in range(ordered.shape[0]):  # the slab between level i and i + 1
        height = levels[i + 1] - levels[i]
        if height <= 0:
            continue
        below = ordered[: i + 1, :-1]
        total += height * _volume(below[non_dominated(below)], ref[:-1])
    return total
