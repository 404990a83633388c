"""The emulated kqueue filters (knotes) and the constants they use.

Part of the kqueue emulator: see tests/kqueue_emulator/__init__.py for what it is and
why. Each knote class quotes the man-page statements it implements and says where Linux
cannot follow them ("Emulation limit").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import termios
import time
from typing import Any

from . import linux

# -- CPython's select.KQ_* names (same values on FreeBSD and macOS) ----------------------
KQ_FILTER_READ = -1
KQ_FILTER_WRITE = -2
KQ_FILTER_AIO = -3
KQ_FILTER_VNODE = -4
KQ_FILTER_PROC = -5
KQ_FILTER_SIGNAL = -6
KQ_FILTER_TIMER = -7
KQ_EV_ADD = 0x0001
KQ_EV_DELETE = 0x0002
KQ_EV_ENABLE = 0x0004
KQ_EV_DISABLE = 0x0008
KQ_EV_ONESHOT = 0x0010
KQ_EV_CLEAR = 0x0020
KQ_EV_SYSFLAGS = 0xF000
KQ_EV_FLAG1 = 0x2000
KQ_EV_ERROR = 0x4000
KQ_EV_EOF = 0x8000
KQ_NOTE_LOWAT = 0x0001
KQ_NOTE_EXIT = 0x80000000
KQ_NOTE_FORK = 0x40000000
KQ_NOTE_EXEC = 0x20000000
KQ_NOTE_PCTRLMASK = 0xF0000000
KQ_NOTE_PDATAMASK = 0x000FFFFF
KQ_NOTE_TRACK = 0x00000001
KQ_NOTE_CHILD = 0x00000004
KQ_NOTE_TRACKERR = 0x00000002

# -- what CPython does not export (sys/event.h of each platform) ------------------------
EV_RECEIPT = 0x0040
EV_DISPATCH = 0x0080
NOTE_FFNOP = 0x00000000
NOTE_FFAND = 0x40000000
NOTE_FFOR = 0x80000000
NOTE_FFCOPY = 0xC0000000
NOTE_FFCTRLMASK = 0xC0000000
NOTE_FFLAGSMASK = 0x00FFFFFF
NOTE_TRIGGER = 0x01000000
NOTE_EXITSTATUS = 0x04000000  # macOS only

EVFILT_USER = {"freebsd": -11, "darwin": -10}
# Timer unit flags: FreeBSD (sys/event.h) and macOS (xnu sys/event.h) disagree.
TIMER_UNITS = {
    "freebsd": {0x1: 1_000_000_000, 0x2: 1_000_000, 0x4: 1_000, 0x8: 1},
    "darwin": {0x1: 1_000_000_000, 0x2: 1_000, 0x4: 1},
}
TIMER_ABSOLUTE = {"freebsd": 0x10, "darwin": 0x08}  # NOTE_ABSTIME / NOTE_ABSOLUTE
DEFAULT_UNIT_NS = 1_000_000  # both: "If fflags is not set, the default is milliseconds."

_ACTIONS = KQ_EV_ADD | KQ_EV_DELETE | KQ_EV_ENABLE | KQ_EV_DISABLE | EV_RECEIPT
_UINTPTR_MAX = 2**64 - 1


class kevent:
    """One change or one event; the same fields and defaults as ``select.kevent``."""

    __slots__ = ("data", "fflags", "filter", "flags", "ident", "udata")

    def __init__(  # noqa: PLR0917 - CPython's signature
        self, ident: Any, filter: int = KQ_FILTER_READ, flags: int = KQ_EV_ADD,
        fflags: int = 0, data: int = 0, udata: Any = 0,
    ) -> None:
        if not isinstance(ident, int):
            ident = ident.fileno()
        if not 0 <= ident <= _UINTPTR_MAX:
            raise OverflowError("ident out of range")
        self.ident, self.filter, self.flags = ident, filter, flags
        self.fflags, self.data, self.udata = fflags, data, udata

    def _key(self) -> tuple[Any, ...]:
        return (self.ident, self.filter, self.flags, self.fflags, self.data, self.udata)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, kevent) and self._key() == other._key()

    def __hash__(self) -> int:
        raise TypeError("unhashable type: 'kevent'")

    def __repr__(self) -> str:
        return (f"<select.kevent ident={self.ident} filter={self.filter} flags=0x{self.flags:x}"
                f" fflags=0x{self.fflags:x} data=0x{self.data:x} udata={self.udata!r}>")


class _Knote:
    """One registered (ident, filter) pair and the Linux fd that stands in for it.

    kqueue(2): "A kevent is identified by the (ident, filter) pair; there may only be
    one unique kevent per kqueue." Returned flags are the registered ones minus the
    action bits, plus what the filter adds (EV_EOF, EV_ONESHOT).
    """

    source: int | None = None
    """The fd in the kqueue's epoll set while the knote is enabled (None: none)."""
    epoll_mask = select.EPOLLIN
    """What the epoll set waits for on ``source`` (0: only EPOLLHUP/EPOLLERR)."""
    owns_source = True
    edge = False
    """True for sources registered edge-triggered (EV_CLEAR on EVFILT_READ)."""

    def __init__(self, kq: Any, change: kevent) -> None:
        self.kq = kq
        self.ident, self.filter = change.ident, change.filter
        self.flags = change.flags & ~_ACTIONS
        self.sfflags, self.sdata, self.udata = change.fflags, change.data, change.udata
        self.enabled = True
        self.fired = False

    def modify(self, change: kevent) -> None:
        """EV_ADD on an existing knote: "Re-adding an existing event will modify the
        parameters of the original event, and not result in a duplicate entry."
        The parameters are fflags, data and udata only: FreeBSD's kqueue_register sets
        the knote's flags (EV_CLEAR, EV_ONESHOT, EV_DISPATCH) when it creates it and
        leaves them on a modify, as macOS's does."""
        self.sfflags, self.sdata, self.udata = change.fflags, change.data, change.udata

    def touch(self, change: kevent) -> None:
        """A change without EV_ADD on an existing knote (only EVFILT_USER uses it)."""

    def poll(self) -> kevent | None:
        """The event to report now, or None; called with the kqueue's lock held."""
        raise NotImplementedError

    def reported(self) -> None:
        """The event was handed to the caller: reset state as EV_CLEAR asks."""

    def close(self) -> None:
        if self.source is not None and self.owns_source:
            os.close(self.source)
        self.source = None

    def event(self, fflags: int, data: int, extra_flags: int = 0) -> kevent:
        return kevent(self.ident, self.filter, self.flags | extra_flags, fflags, data,
                      self.udata)


class _DescriptorKnote(_Knote):
    """What EVFILT_READ and EVFILT_WRITE share: the watched descriptor itself is the
    source, "Takes a descriptor as the identifier"; EV_CLEAR watches it edge-triggered."""

    owns_source = False

    def __init__(self, kq: Any, change: kevent) -> None:
        super().__init__(kq, change)
        os.fstat(change.ident)  # EBADF: "The specified descriptor is invalid."
        self.source = change.ident
        self.edge = bool(self.flags & KQ_EV_CLEAR)

    def _revents(self, wanted: int) -> int | None:
        """poll(2)'s revents for ``wanted`` now; None while there is nothing to report
        (not ready, an edge not seen yet, or the descriptor closed behind our back)."""
        poller = select.poll()
        poller.register(self.ident, wanted)
        ready = poller.poll(0)
        if not ready or (self.edge and not self.fired):
            return None
        revents: int = ready[0][1]
        return None if revents & select.POLLNVAL else revents

    def reported(self) -> None:
        self.fired = False


class _ReadKnote(_DescriptorKnote):
    """EVFILT_READ: "Takes a descriptor as the identifier, and returns whenever there is
    data available to read." For pipes "data contains the number of bytes available"
    and "When the last writer disconnects, the filter will set EV_EOF".

    Emulation limit: the fd is watched through epoll, so "Calling close() on a file
    descriptor will remove any kevents that reference the descriptor" is not imitated
    (epoll forgets an fd only when its last duplicate closes; the knote stays here).
    With EV_CLEAR the fd is watched edge-triggered: reported once per new arrival.
    """

    def poll(self) -> kevent | None:
        revents = self._revents(select.POLLIN)
        if revents is None:
            return None
        buffer = bytearray(4)
        try:
            fcntl.ioctl(self.ident, termios.FIONREAD, buffer)
            available = struct.unpack("i", buffer)[0]
        except OSError:
            available = 0  # not a stream (eventfd, timerfd...): size unknown
        eof = KQ_EV_EOF if revents & select.POLLHUP else 0
        if not (revents & select.POLLIN or eof):
            return None
        return self.event(0, available, eof)


class _WriteKnote(_DescriptorKnote):
    """EVFILT_WRITE: "Takes a descriptor as the identifier, and returns whenever it is
    possible to write to the descriptor. For sockets, pipes and FIFOs, data will contain
    the amount of space remaining in the write buffer. The filter will set EV_EOF when
    the reader disconnects".

    Emulation limits: as for EVFILT_READ (a close() does not remove the knote); ``data``
    is the free space for a pipe (F_GETPIPE_SZ minus the bytes queued in it) and 0 for
    anything else, whose buffer Linux does not report this way.
    """

    epoll_mask = select.EPOLLOUT

    def poll(self) -> kevent | None:
        revents = self._revents(select.POLLOUT)
        if revents is None:
            return None
        eof = KQ_EV_EOF if revents & (select.POLLERR | select.POLLHUP) else 0
        if not (revents & select.POLLOUT or eof):
            return None
        return self.event(0, _pipe_space(self.ident), eof)


def _pipe_space(fd: int) -> int:
    """Bytes a write to pipe ``fd`` could queue now; 0 if ``fd`` is not a pipe."""
    try:
        size = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        buffer = bytearray(4)
        fcntl.ioctl(fd, termios.FIONREAD, buffer)
    except OSError:
        return 0
    (queued,) = struct.unpack("i", buffer)
    return max(0, size - int(queued))


class _UserKnote(_Knote):
    """EVFILT_USER: "Establishes a user event identified by ident which is not associated
    with any kernel mechanism but is triggered by user level code." Input fflags: "The
    lower 24 bits of the fflags may be used for user defined flags and manipulated using"
    NOTE_FFNOP ("Ignore the input fflags"), NOTE_FFAND ("Bitwise AND fflags"), NOTE_FFOR
    ("Bitwise OR fflags"), NOTE_FFCOPY ("Copy fflags"); NOTE_TRIGGER "Cause the event to
    be triggered". "On return, fflags contains the users defined flags in the lower 24
    bits." Without EV_CLEAR a triggered event stays triggered; with it, "After the event
    is retrieved by the user, its state is reset" (trigger, fflags and data, as FreeBSD's
    filt_usertouch does).

    An eventfd per knote makes the kqueue fd readable while the event is triggered.
    """

    def __init__(self, kq: Any, change: kevent) -> None:
        super().__init__(kq, change)
        self.source = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.user_fflags = 0
        self.triggered = False
        self.touch(change)

    def modify(self, change: kevent) -> None:
        super().modify(change)
        self.touch(change)

    def touch(self, change: kevent) -> None:
        control, value = change.fflags & NOTE_FFCTRLMASK, change.fflags & NOTE_FFLAGSMASK
        if control == NOTE_FFAND:
            self.user_fflags &= value
        elif control == NOTE_FFOR:
            self.user_fflags |= value
        elif control == NOTE_FFCOPY:
            self.user_fflags = value
        self.sdata = change.data
        if change.fflags & NOTE_TRIGGER and not self.triggered:
            self.triggered = True
            assert self.source is not None
            os.eventfd_write(self.source, 1)

    def poll(self) -> kevent | None:
        return self.event(self.user_fflags, self.sdata) if self.triggered else None

    def reported(self) -> None:
        if self.flags & KQ_EV_CLEAR:
            self.triggered, self.user_fflags, self.sdata = False, 0, 0
            assert self.source is not None
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self.source)


class _TimerKnote(_Knote):
    """EVFILT_TIMER: "Establishes an arbitrary timer identified by ident. When adding a
    timer, data specifies the timeout period. The timer will be periodic unless
    EV_ONESHOT is specified. On return, data contains the number of times the timeout
    has expired since the last call to kevent(). This filter automatically sets the
    EV_CLEAR flag internally." Units: NOTE_SECONDS / NOTE_MSECONDS / NOTE_USECONDS /
    NOTE_NSECONDS, "If fflags is not set, the default is milliseconds" (macOS has no
    NOTE_MSECONDS and numbers the others differently). Absolute deadlines (FreeBSD
    NOTE_ABSTIME, macOS NOTE_ABSOLUTE) count from the Epoch and fire once: "The timer will
    be periodic unless EV_ONESHOT or NOTE_ABSTIME is specified" (FreeBSD 13 kqueue(2)).
    Re-adding: "the existing timer will be effectively canceled (throwing away any
    undelivered record of previous timer expiration) and re-started".

    A timerfd per knote (CLOCK_MONOTONIC, or CLOCK_REALTIME with TFD_TIMER_ABSTIME for
    absolute deadlines) counts the expirations.
    """

    def __init__(self, kq: Any, change: kevent) -> None:
        super().__init__(kq, change)
        self.source = linux.timerfd_create(time.CLOCK_MONOTONIC)
        self.realtime = False
        try:
            self.arm()
        except OSError:
            self.close()
            raise

    def modify(self, change: kevent) -> None:
        # The timerfd may be replaced (another clock): take it out of the epoll set first.
        watched = self.enabled
        if watched:
            self.kq._unwatch(self)
        super().modify(change)
        try:
            self.arm()
        finally:
            if watched:
                self.kq._watch(self)

    def arm(self) -> None:
        platform = self.kq.fdloop_emulated_platform
        absolute = bool(self.sfflags & TIMER_ABSOLUTE[platform])
        unit_flags = self.sfflags & sum(TIMER_UNITS[platform])
        if unit_flags not in (0, *TIMER_UNITS[platform]) or self.sdata < 0:
            raise OSError(errno.EINVAL, "invalid timer")  # "The specified ... filter is invalid"
        value_ns = self.sdata * TIMER_UNITS[platform].get(unit_flags, DEFAULT_UNIT_NS)
        self.expirations = 0
        self.flags |= KQ_EV_CLEAR
        if absolute != self.realtime:
            assert self.source is not None
            os.close(self.source)
            self.source = None
            self.source = linux.timerfd_create(
                time.CLOCK_REALTIME if absolute else time.CLOCK_MONOTONIC)
            self.realtime = absolute
        assert self.source is not None
        if absolute:
            linux.timerfd_settime(self.source, max(value_ns, 1), 0, absolute=True)
        else:
            period = 0 if self.flags & KQ_EV_ONESHOT else max(value_ns, 1)
            linux.timerfd_settime(self.source, max(value_ns, 1), period)

    def poll(self) -> kevent | None:
        assert self.source is not None
        self.expirations += linux.timerfd_read(self.source)
        return self.event(0, self.expirations) if self.expirations else None

    def reported(self) -> None:
        self.expirations = 0


class _ProcKnote(_Knote):
    """EVFILT_PROC with NOTE_EXIT: "Takes the process ID to monitor as the identifier and
    the events to watch for in fflags, and returns when the process performs one or more
    of the requested events. If a process can normally see another process, it can
    attach an event to it." NOTE_EXIT: "The process has exited. The exit status will be
    stored in data." (FreeBSD). macOS fills data only when NOTE_EXITSTATUS is asked, and
    only for a child ("NOTE_EXITSTATUS ... valid for child process only"). ESRCH: "The
    specified process to attach to does not exist." On FreeBSD a zombie can still be
    attached to and reports at once; macOS refuses a zombie with ESRCH (trio's
    ``_subprocess_platform/kqueue.py`` relies on that). The exit event is delivered with
    EV_EOF|EV_ONESHOT set, so it is reported once and the knote is deleted.

    A pidfd per knote stands in: the exit is seen when it turns readable (the process
    became a zombie). Whether the process is our child is decided when the knote is
    added (``waitid(P_PIDFD, WNOWAIT)`` answers ECHILD for anything else). The status of
    a child is read with ``waitid(WNOWAIT)``, which leaves the zombie to the caller; a
    non-child's from the ``exit_code`` field of /proc/PID/stat (proc(5): "The thread's
    exit status in the form reported by waitpid(2)") while it is a zombie; and once
    reaped — by its parent, or by the kernel when SIGCHLD is ignored — from the
    PIDFD_GET_INFO ioctl.

    Only NOTE_EXIT is imitated; other NOTE_* bits are accepted and never reported.
    """

    def __init__(self, kq: Any, change: kevent) -> None:
        super().__init__(kq, change)
        try:
            self.source = os.pidfd_open(change.ident)
        except OSError as error:
            raise OSError(errno.ESRCH, "No such process") from error
        try:
            os.waitid(os.P_PIDFD, self.source, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            self.is_child = True
        except ChildProcessError:
            self.is_child = False
        darwin = self.kq.fdloop_emulated_platform == "darwin"
        if darwin and linux.poll_events(self.source) & select.POLLIN:
            self.close()
            raise OSError(errno.ESRCH, "No such process")

    def poll(self) -> kevent | None:
        assert self.source is not None
        if not self.sfflags & KQ_NOTE_EXIT or not linux.readable(self.source):
            return None
        status = linux.exit_status(self.source, self.ident)
        if self.kq.fdloop_emulated_platform == "darwin" and not (
            self.sfflags & NOTE_EXITSTATUS and self.is_child
        ):
            data = 0
        else:
            data = status.wait_status
        fflags = KQ_NOTE_EXIT | (self.sfflags & NOTE_EXITSTATUS)
        return self.event(fflags, data, KQ_EV_EOF | KQ_EV_ONESHOT)
