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
    UnsupportedOperation,
)
from .primitives.eventfd import EventFD

__all__ = [
    "Capability",
    "ClockChanged",
    "ClosedResourceError",
    "CounterOverflowError",
    "EventFD",
    "FdloopError",
    "NotThisKindOfFD",
    "UnsupportedOperation",
    "capabilities",
]
__version__ = "0.1.0"
