"""What a program being traced may assume about its values, shared by every layer.

`unbatched_widths()`: the trainer enters it where it traces one member at a time (not under
`vmap`), so that masked layers may branch on that member's widths (`nn/_tiers.py`): a
`lax.switch` on unbatched values runs one branch, on batched ones every branch.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_UNBATCHED = contextvars.ContextVar("jaxnas_unbatched_widths", default=False)


@contextlib.contextmanager
def unbatched_widths(branch: bool = True) -> Iterator[None]:
    """While tracing inside it, masked layers branch on their (unbatched) widths; with
    `branch=False`, they do not (a forward pass that runs too rarely to pay for its
    branches' compile time: the masked build's evaluation passes)."""
    token = _UNBATCHED.set(branch)
    try:
        yield
    finally:
        _UNBATCHED.reset(token)


def branching() -> bool:
    """Whether the layer being traced may branch on its widths (see `unbatched_widths`)."""
    return _UNBATCHED.get()
