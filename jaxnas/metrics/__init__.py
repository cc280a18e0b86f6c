"""Measures of a search's results: Pareto fronts and their hypervolume (`jn.metrics`).

Host-side numpy, for the run's results, reports and benchmarks; every objective minimised
(negate one that is maximised first).
"""

from jaxnas.metrics._pareto import hypervolume, non_dominated

__all__ = ["hypervolume", "non_dominated"]
