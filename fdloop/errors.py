"""Every exception fdloop raises on purpose, in one place.

All derive from :class:`FdloopError`. Where a standard exception already names the
category (a closed resource, an overflow, a missing feature), the fdloop class derives
from it too, so ``except OverflowError`` and ``except anyio.ClosedResourceError`` keep
working for code that does not know fdloop.
"""

from __future__ import annotations

import anyio


class FdloopError(Exception):
    """Base class of every exception fdloop defines."""


class ClosedResourceError(FdloopError, anyio.ClosedResourceError):
    """The object was closed (or detached) before or while the operation waited."""


class CounterOverflowError(FdloopError, OverflowError):
    """An EventFD write would carry the counter past its maximum, 2**64 - 2.

    The counter is left exactly as it was.
    """


class ClockChanged(FdloopError):
    """A realtime TimerFD armed with ``cancel_on_set=True`` saw the wall clock jump.

    The timer keeps its settings; waiting again waits for the next expiration.
    """


class UnsupportedOperation(FdloopError, NotImplementedError):
    """The running platform or backend cannot do this (e.g. sealing on macOS)."""


class NotThisKindOfFD(FdloopError, ValueError):
    """``from_fd`` was given an open fd that is not the kind of object the class wraps."""
