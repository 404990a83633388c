"""The kqueue backend (FreeBSD, macOS): each primitive is a private kqueue the loop polls.

=========== ================================================ ===========================
primitive   kernel object                                    fdloop keeps
=========== ================================================ ===========================
EventFD     eventfd (FreeBSD 13+) or EVFILT_USER             the counter (EVFILT_USER)
TimerFD     EVFILT_TIMER                                     the schedule (for get())
MemFD       memfd (FreeBSD 13+) or shm_open (macOS)          nothing (no kqueue needed)
SignalFD    EVFILT_SIGNAL                                    the count, as single reads
ProcessFD   EVFILT_PROC (NOTE_EXIT) on the pid                the exit, once seen
(ready set) EVFILT_READ on member fds                         nothing
=========== ================================================ ===========================

Every factory has the name and signature of its twin in ``fdloop.backends.linux`` and
returns an object satisfying the same Protocol of ``fdloop.backends.contract``. The
platform's kqueue numbers come from :mod:`.platform`; ``select.kqueue`` is looked up
when an object is created, never at import, so the Linux test emulator can stand in.
"""

from __future__ import annotations

import os
import sys

from ...errors import UnsupportedOperation
from .. import Capability
from ..channel import capability as _channel_capability
from ..linux.spawn import find_executable  # PATH search only: portable
from . import eventfd as _eventfd
from . import memfd as _memfd
from . import vpoll as _vpoll
from .platform import current as current_platform
from .processfd import KqueueProcessFD as _KqueueProcessFD
from .readyset import KqueueReadySet as _KqueueReadySet
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
spawn_process = _KqueueProcessFD.spawn
process_open = _KqueueProcessFD.open_pid
process_from_fd = _KqueueProcessFD.adopt
ready_set = _KqueueReadySet.create
virtual_fd = _vpoll.virtual_fd
poll_requests = _vpoll.poll_requests

__all__ = [
    "NAME", "capabilities", "eventfd", "eventfd_from_fd", "find_executable", "memfd",
    "memfd_from_fd", "process_from_fd", "process_open", "ready_set", "signalfd",
    "signalfd_from_fd", "spawn_process", "timerfd", "timerfd_from_fd",
    "poll_requests", "virtual_fd",
]

_NOT_ACROSS = "passable across processes (fork, exec, SCM_RIGHTS): the state is in this process"


def platform_name() -> str:
    """``freebsd`` or ``darwin`` (what the emulator imitates, in tests), or the OS name."""
    try:
        return current_platform().name
    except UnsupportedOperation:
        return sys.platform


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
    process_missing = [
        "a process handle: the pid names the process (safe while it is our unreaped "
        "child; a watched non-child's pid could be reused after its exit)",
        _NOT_ACROSS,
        "kill of children when this process itself is killed (die_with_parent=True "
        "raises UnsupportedOperation: it relies on Linux's PR_SET_PDEATHSIG)",
        "rusage of a child reaped by someone else",
    ]
    if platform_name() == "darwin":
        process_missing[1:1] = [
            "exit status of non-children (macOS NOTE_EXITSTATUS is for children only)",
            "exit status of a child that exited before it was watched and was then reaped "
            "by someone else (macOS refuses to watch a zombie)",
        ]
    signal_missing = [
        "SignalInfo fields other than signo (kqueue keeps no siginfo)",
        "coalescing of standard signals: EVFILT_SIGNAL counts every send, so three SIGUSR1 "
        "sent before a read are three reads (one on Linux)",
        _NOT_ACROSS,
    ]
    if platform_name() == "darwin":
        signal_missing.append(
            "signals aimed at a thread (pthread_kill, raise(), a fault, SIGSYS): macOS "
            "records only process-directed signals for EVFILT_SIGNAL (xnu "
            "psignal_internal), so those never reach a SignalFD; send with kill(2)"
        )
    if not _has_proc():
        signal_missing.append("warning about threads that could take a signal (other "
                              "threads' masks cannot be read here)")
    return [
        _channel_capability(NAME),
        eventfd_row,
        Capability("MemFD", NAME, True, "memfd" if how == "memfd_create" else f"shm ({how})",
                   _memfd.missing()),
        Capability("ProcessFD", NAME, True, "kqueue (EVFILT_PROC)", tuple(process_missing)),
        Capability("SignalFD", NAME, True, "kqueue (EVFILT_SIGNAL)", tuple(signal_missing)),
        Capability(
            "TimerFD", NAME, True, "kqueue (EVFILT_TIMER)",
            ("cancel_on_set (no wall-clock-jump notice)", _NOT_ACROSS,
             "realtime periodic timers do not follow wall-clock jumps"),
        ),
        *_vpoll.capabilities(NAME),
    ]
