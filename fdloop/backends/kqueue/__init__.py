"""The kqueue backend (FreeBSD, macOS): each primitive is a private kqueue the loop polls.

=========== ================================================ ===========================
primitive   kernel object                                    fdloop keeps
=========== ================================================ ===========================
EventFD     eventfd (FreeBSD 13+) or EVFILT_USER             the counter (EVFILT_USER)
TimerFD     EVFILT_TIMER                                     the schedule (for get())
MemFD       memfd (FreeBSD 13+) or shm_open (macOS)          nothing (no kqueue needed)
SignalFD    EVFILT_SIGNAL                                    the count, as single reads
=========== ================================================ ===========================

Every factory has the name and signature of its twin in ``fdloop.backends.linux`` and
returns an object satisfying the same Protocol of ``fdloop.backends.contract``. The
platform's kqueue numbers come from :mod:`.platform`; ``select.kqueue`` is looked up
when an object is created, never at import, so the Linux test emulator can stand in.
"""

from __future__ import annotations

import os

from .. import Capability
from . import eventfd as _eventfd
from . import memfd as _memfd
from .signalfd import KqueueSignalFD as _KqueueSignalFD
from .timerfd import KqueueTimerFD as _KqueueTimerFD

NAME = "kqueue"

eventfd = _eventfd.create
eventfd_from_fd = _eventfd.adopt
timerfd = _KqueueTimerFD.create
timerfd_from_fd = _KqueueTimerFD.adopt
memfd = _memfd.create
memfd_from_fd = _memfd.adopt
signalfd = _KqueueSignalFD.create
signalfd_from_fd = _KqueueSignalFD.adopt

_NOT_ACROSS = "passable across processes (fork, exec, SCM_RIGHTS): the state is in this process"


def _has_proc() -> bool:
    return os.path.isdir("/proc/self/task")


def capabilities() -> list[Capability]:
    """What each primitive is on this platform and what the kqueue backend lacks."""
    if _eventfd.native_eventfd():
        eventfd_row = Capability("EventFD", NAME, True, "eventfd")
    else:
        eventfd_row = Capability(
            "EventFD", NAME, False, "kqueue (EVFILT_USER)",
            (_NOT_ACROSS, "from_fd of an fd not detached in this process"),
        )
    how = _memfd.strategy()
    return [
        eventfd_row,
        Capability("MemFD", NAME, True, "memfd" if how == "memfd_create" else f"shm ({how})",
                   _memfd.missing()),
        Capability(
            "TimerFD", NAME, True, "kqueue (EVFILT_TIMER)",
            ("cancel_on_set (no wall-clock-jump notice)", _NOT_ACROSS,
             "realtime periodic timers do not follow wall-clock jumps"),
        ),
    ]
