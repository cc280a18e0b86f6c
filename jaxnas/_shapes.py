"""Shape rules shared by every layer: the padded sizes that keep compiled programs few."""

from __future__ import annotations


# Host helpers (a space's activity masks, the trial keys) take batches padded to at least
# this many rows: a run's batches (one to a few dozen configurations) share one program
# instead of compiling one per power of two (six in the quickstart, 0.15 s each).
HELPER_MIN_ROWS = 64


def pad_to_power_of_two(n: int, minimum: int = 1) -> int:
    """The size `n` items are padded to: 1, 2, 4, 8, ..., at least `minimum` (a power of
    two).

    Padding batches and tables to powers of two lets runs of similar sizes share compiled
    programs (DESIGN, fixed shapes).
    """
    return max(int(minimum), 1 << max(int(n) - 1, 0).bit_length())
