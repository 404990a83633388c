"""fdloop: the kernel's fd primitives as async classes, awaited through one poll loop.

Works under asyncio (uvloop included), trio and anyio. See README.md for a tour.

Layout, every import pointing down: :mod:`fdloop.primitives` (the public classes, one
module each, the pipe streams included; no syscalls of their own) calls the one typed
backend of :mod:`fdloop.backends` (``posix/`` shared, ``linux/`` and ``kqueue/`` only
their own) and waits through :mod:`fdloop._aio` (the only place that knows asyncio from
trio). Beside them: ``errors`` (every exception), ``run`` (:func:`run` and its
conveniences), ``compat`` (asyncio- and trio-shaped process calls), ``supervisor``
(:class:`Supervisor`, ``fdloop supervise`` and ``fdloop ctl``), ``info`` (the ``fdloop
info`` report), ``cli`` (the ``fdloop`` command), ``bench`` (the benchmarks) and
``streams`` (the old import path of the pipe streams, for users).
"""

from __future__ import annotations

from .backends import Capability, capabilities
from .backends.posix.fdlimit import raise_fd_limit
from .errors import (
    BrokenResourceError,
    BusyResourceError,
    CalledProcessError,
    ChannelCorruptedError,
    ClockChanged,
    ClosedResourceError,
    CounterOverflowError,
    FdloopError,
    IncompleteReadError,
    LimitOverrunError,
    LineTooLongError,
    NoSuchProgram,
    NotThisKindOfFD,
    SealBusyError,
    SignalDeliveryWarning,
    SupervisorConfigError,
    TimeoutExpired,
    UnknownUserOrGroup,
    UnsupportedOperation,
)
from .primitives.channel import ChannelReceiver, ChannelSender, channel
from .primitives.eventfd import EventFD
from .primitives.events import POLLRDHUP, notify_closing, wait_events, watch_events
from .primitives.memfd import MemFD
from .primitives.processfd import ExitStatus, ProcessFD, ResourceUsage
from .primitives.seals import (
    SEAL_EXEC,
    SEAL_FUTURE_WRITE,
    SEAL_GROW,
    SEAL_SEAL,
    SEAL_SHRINK,
    SEAL_WRITE,
    Seal,
)
from .primitives.signalfd import SignalFD, SignalInfo
from .primitives.spawn import spawn
from .primitives.streams import DEVNULL, PIPE, STDOUT, PipeReceiveStream, PipeSendStream
from .primitives.timerfd import TimerFD
from .primitives.virtualfd import VirtualFD
from .run import CompletedProcess, call, check_call, check_output, run
from .supervisor import Supervisor

__all__ = [
    "CompletedProcess",
    "call",
    "check_call",
    "check_output",
    "run",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "BrokenResourceError",
    "BusyResourceError",
    "CalledProcessError",
    "Capability",
    "ChannelCorruptedError",
    "ChannelReceiver",
    "ChannelSender",
    "ClockChanged",
    "ClosedResourceError",
    "CounterOverflowError",
    "EventFD",
    "ExitStatus",
    "FdloopError",
    "IncompleteReadError",
    "LimitOverrunError",
    "LineTooLongError",
    "MemFD",
    "NoSuchProgram",
    "NotThisKindOfFD",
    "PipeReceiveStream",
    "PipeSendStream",
    "ProcessFD",
    "ResourceUsage",
    "SEAL_EXEC",
    "SEAL_FUTURE_WRITE",
    "SEAL_GROW",
    "SEAL_SEAL",
    "SEAL_SHRINK",
    "SEAL_WRITE",
    "Seal",
    "SealBusyError",
    "SignalDeliveryWarning",
    "SignalFD",
    "SignalInfo",
    "Supervisor",
    "SupervisorConfigError",
    "TimeoutExpired",
    "TimerFD",
    "UnknownUserOrGroup",
    "UnsupportedOperation",
    "POLLRDHUP",
    "VirtualFD",
    "notify_closing",
    "wait_events",
    "watch_events",
    "capabilities",
    "channel",
    "raise_fd_limit",
    "spawn",
]
__version__ = "0.1.0"
