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

:class:`KqueueBackend` is the :class:`fdloop.backends.contract.Backend` that
``fdloop.backends.current()`` hands to the primitives; each factory returns an object of
the same Protocol as its Linux twin. Every platform question (the kqueue numbers, and what
the host OS has besides) is asked of :mod:`.platform`; ``select.kqueue`` is looked up when
an object is created, never at import, so the Linux test emulator can stand in. What the
BSDs share with Linux is in fdloop/backends/posix/.
"""

from __future__ import annotations

from ...errors import UnsupportedOperation
from ..contract import Capability, PipeEnds, ProcessFDBackend
from ..posix import channel as _channel
from ..request import SpawnRequest
from . import eventfd as _eventfd
from . import memfd as _memfd
from . import vpoll as _vpoll
from .platform import current as current_platform
from .platform import host
from .processfd import KqueueProcessFD as _KqueueProcessFD
from .readyset import KqueueReadySet as _KqueueReadySet
from .signalfd import KqueueSignalFD as _KqueueSignalFD
from .spawn import ChildStarter
from .timerfd import KqueueTimerFD as _KqueueTimerFD

NAME = "kqueue"

__all__ = ["NAME", "KqueueBackend", "platform_name"]

_NOT_ACROSS = "passable across processes (fork, exec, SCM_RIGHTS): the state is in this process"


def platform_name() -> str:
    """``freebsd`` or ``darwin`` (what the emulator imitates, in tests), or the OS name."""
    try:
        return current_platform().name
    except UnsupportedOperation:
        return host().name


class KqueueBackend:
    """The kqueue backend as one object (a :class:`fdloop.backends.contract.Backend`).

    ``start_child``: how the host starts children, where it has a better way than this
    backend's ``os.posix_spawn`` (see :mod:`.spawn`); None for that default.
    """

    name = NAME
    eventfd = staticmethod(_eventfd.create)
    eventfd_from_fd = staticmethod(_eventfd.adopt)
    timerfd = staticmethod(_KqueueTimerFD.create)
    timerfd_from_fd = staticmethod(_KqueueTimerFD.adopt)
    memfd = staticmethod(_memfd.create)
    memfd_from_fd = staticmethod(_memfd.adopt)
    signalfd = staticmethod(_KqueueSignalFD.create)
    signalfd_from_fd = staticmethod(_KqueueSignalFD.adopt)
    process_open = staticmethod(_KqueueProcessFD.open_pid)
    process_from_fd = staticmethod(_KqueueProcessFD.adopt)
    ready_set = staticmethod(_KqueueReadySet.create)
    virtual_fd = staticmethod(_vpoll.virtual_fd)
    poll_requests = staticmethod(_vpoll.poll_requests)

    def __init__(self, start_child: ChildStarter | None = None) -> None:
        self._start_child = start_child

    def spawn_process(self, request: SpawnRequest) -> tuple[ProcessFDBackend, PipeEnds]:
        return _KqueueProcessFD.spawn(request, self._start_child)

    def channel_refusal(self) -> str | None:
        why = _channel.cpu_refusal()
        if why is not None:
            return why
        if not _eventfd.native_eventfd():
            return ("fdloop.Channel needs eventfd doorbells that cross processes; the "
                    "kqueue backend's EventFD here is an EVFILT_USER counter kept in this "
                    "process (FreeBSD 13+ has a native eventfd)")
        if _memfd.strategy() != "memfd_create":
            return ("fdloop.Channel needs a memfd sealed with SEAL_SHRINK|SEAL_GROW (so "
                    "a peer cannot truncate the ring and make us take SIGBUS); shared "
                    f"memory here ({_memfd.strategy()}) cannot be sealed")
        return None

    def __repr__(self) -> str:
        return f"<fdloop kqueue backend ({platform_name()} rules)>"

    def capabilities(self) -> list[Capability]:
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
        if not host().proc_thread_masks:
            signal_missing.append("warning about threads that could take a signal (other "
                                  "threads' masks cannot be read here)")
        return [
            _channel.capability(NAME, self.channel_refusal()),
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
