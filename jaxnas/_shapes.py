"""Shape rules shared by every layer: the padded sizes that keep compiled programs few."""

from __future__ import annotations


def pad_to_power_of_two(n: int) -> int:
    """The size `n` items are padded to: 1, 2, 4, 8, ... (at least 1).

    Padding batches and tables to powers of two lets runs of similar sizes share compiled
    programs (DESIGN, fixed shapes).
    """
    return 1 << max(int(n) - 1, 0).bit_length()
