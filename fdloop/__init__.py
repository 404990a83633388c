"""fdloop: the kernel's fd primitives as async classes, awaited through one poll loop.

Works under asyncio (uvloop included), trio and anyio. See README.md for a tour.
"""

from __future__ import annotations

from .backends import Capability, capabilities
from .errors import (
    ClockChanged,
    ClosedResourceError,
    CounterOverflowError,
    FdloopError,
    NotThisKindOfFD,
    SealBusyError,
    UnsupportedOperation,
)
from .primitives.eventfd import EventFD
from .primitives.memfd import (
    SEAL_EXEC,
    SEAL_FUTURE_WRITE,
    SEAL_GROW,
    SEAL_SEAL,
    SEAL_SHRINK,
    SEAL_WRITE,
    MemFD,
    Seal,
)

__all__ = [
    "Capability",
    "ClockChanged",
    "ClosedResourceError",
    "CounterOverflowError",
    "EventFD",
    "FdloopError",
    "MemFD",
    "NotThisKindOfFD",
    "SEAL_EXEC",
    "SEAL_FUTURE_WRITE",
    "SEAL_GROW",
    "SEAL_SEAL",
    "SEAL_SHRINK",
    "SEAL_WRITE",
    "Seal",
    "SealBusyError",
    "UnsupportedOperation",
    "capabilities",
]
__version__ = "0.1.0"
