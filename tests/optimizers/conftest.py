"""Optimiser tests: chex counts traces per function code, so reset its counter per test."""

import chex
import pytest


@pytest.fixture(autouse=True)
def _fresh_trace_counter():
    chex.clear_trace_counter()
