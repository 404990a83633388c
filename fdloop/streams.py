"""The old import path of the pipe streams, kept for users: ``fdloop.streams``.

The streams live in :mod:`fdloop.primitives.streams` (and ``fdloop`` re-exports them).
Nothing inside fdloop imports this module, so that every import in the package points
down.
"""

from __future__ import annotations

from .primitives.streams import (
    DEFAULT_LIMIT,
    DEVNULL,
    PIPE,
    STDOUT,
    PipeReceiveStream,
    PipeSendStream,
    check_limit,
)

__all__ = [
    "DEFAULT_LIMIT",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "PipeReceiveStream",
    "PipeSendStream",
    "check_limit",
]
