"""`jn.metrics`: non-dominated points and the exact hypervolume, against brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jaxnas as jn


def _brute_non_dominated(points):
    n = len(points)
    return np.array([not any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i])
                             for j in range(n)) for i in range(n)], bool)


def _brute_hypervolume(points, reference):
    """Inclusion-exclusion over every subset: the union of the boxes [p, reference]."""
    points = points[np.all(points < reference, axis=1)]
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * np.prod(reference - corner)
    return total


def _point_sets(k, max_points):
    # Values on a coarse grid, so that ties (equal coordinates, equal points) happen often.
    return hnp.arrays(np.float64, st.tuples(st.integers(0, max_points), st.just(k)),
                      elements=st.integers(0, 8).map(lambda v: v / 8.0))


@settings(max_examples=60, deadline=None)
@given(points=_point_sets(2, 9))
def test_non_dominated_is_the_brute_force_set_2d(points):
    np.testing.assert_array_equal(jn.metrics.non_dominated(points),
                                  _brute_non_dominated(points))


@settings(max_examples=60, deadline=None)
@given(points=_point_sets(3, 9))
def test_non_dominated_is_the_brute_force_set_3d(points):
    np.testing.assert_array_equal(jn.metrics.non_dominated(points),
                                  _brute_non_dominated(points))


@pytest.mark.parametrize("k", [2, 3, 4])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_hypervolume_is_the_union_of_boxes(k, data):
    points = data.draw(_point_sets(k, 8 if k < 4 else 6))
    reference = np.full(k, 0.9)  # some points lie beyond it and add nothing
    assert jn.metrics.hypervolume(points, reference) == pytest.approx(
        _brute_hypervolume(points, reference), abs=1e-12)


def test_hypervolume_of_known_fronts():
    assert jn.metrics.hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0]) == 3.0
    assert jn.metrics.hypervolume([[0.0, 0.0, 0.0]], [1.0, 2.0, 3.0]) == 6.0
    assert jn.metrics.hypervolume(np.zeros((0, 2)), [1.0, 1.0]) == 0.0
    assert jn.metrics.hypervolume([[2.0, 0.0]], [1.0, 1.0]) == 0.0  # beyond the reference
    # The continuous front f2 = 1 - sqrt(f1) (ZDT1), densely sampled: the area above it
    # within [0, 1]^2 is 1 - 1/3.
    f1 = np.linspace(0.0, 1.0, 20001)
    front = np.stack([f1, 1.0 - np.sqrt(f1)], axis=1)
    assert jn.metrics.hypervolume(front, [1.0, 1.0]) == pytest.approx(2.0 / 3.0, abs=1e-3)


@pytest.mark.parametrize("points, reference, match", [
    ([[1.0, np.nan]], [2.0, 2.0], "NaN"),
    ([1.0, 2.0], [2.0, 2.0], r"\(n, k\)"),
    ([[1.0, 2.0]], [2.0, 2.0, 2.0], "2 objectives but reference"),
    ([[1.0, 2.0]], [np.inf, 2.0], "finite"),
])
def test_bad_input_is_named(points, reference, match):
    with pytest.raises(ValueError, match=match):
        jn.metrics.hypervolume(points, reference)
