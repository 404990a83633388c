"""timerfd(2): a kernel timer that is readable once it has expired.

Facts from timerfd_create(2) and fs/timerfd.c that this code relies on:

* A read returns the number of expirations since the last read (or since the timer was
  last set) as 8 native-endian bytes, or fails with EAGAIN on a non-blocking fd. A
  periodic timer is forwarded by whole intervals from its original expiry, so overruns
  are counted and the schedule never drifts.
* timerfd_settime with an ``it_value`` of zero disarms; any set (or disarm) discards the
  unread count. ``TFD_TIMER_ABSTIME`` makes ``it_value`` a time on the timer's clock.
* ``TFD_TIMER_CANCEL_ON_SET`` only has an effect together with ``TFD_TIMER_ABSTIME`` on a
  CLOCK_REALTIME(_ALARM) timer; elsewhere the kernel ignores it silently (callers check).
  After a discontinuous change of the wall clock, the next read fails once with
  ECANCELED and the pending count is dropped. A timerfd_settime made before that read
  also fails with ECANCELED, yet the new setting *is* installed (the man page calls this
  an accident kept for compatibility): we treat that as success.
* timerfd_gettime always reports the time left relative to now, even for absolute timers.

Python 3.13 has ``os.timerfd_create`` and friends; older Pythons reach libc through
ctypes. Both implementations sit here behind :class:`TimerfdCalls`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import time
from typing import ClassVar, Protocol

from ...errors import ClockChanged
from ..posix import nowait
from ..posix.refusal import refused
from .pollproxy import ProxiedFD
from .procfs import fdinfo, require_kind

TFD_TIMER_ABSTIME = 1
TFD_TIMER_CANCEL_ON_SET = 2
# <sys/timerfd.h>: TFD_CLOEXEC and TFD_NONBLOCK share their values with O_CLOEXEC and
# O_NONBLOCK.
TFD_CLOEXEC = os.O_CLOEXEC
TFD_NONBLOCK = os.O_NONBLOCK

CLOCK_IDS = {
    "realtime": time.CLOCK_REALTIME,
    "monotonic": time.CLOCK_MONOTONIC,
    "boottime": time.CLOCK_BOOTTIME,
}
# An inherited timerfd may run on an alarm clock (creating one needs CAP_WAKE_ALARM);
# from_fd still adopts it. Numbers from <linux/time.h>.
_ADOPTABLE_CLOCKS = {
    **{clockid: name for name, clockid in CLOCK_IDS.items()},
    8: "realtime_alarm",
    9: "boottime_alarm",
}
_NS = 1_000_000_000


class TimerfdCalls(Protocol):
    """The three timerfd syscalls, with times as integer nanoseconds."""

    name: str

    def create(self, clockid: int, flags: int) -> int: ...
    def settime(self, fd: int, flags: int, value_ns: int, interval_ns: int) -> None: ...
    def gettime(self, fd: int) -> tuple[int, int]: ...


class StdlibCalls:
    """``os.timerfd_*`` (Python 3.13+)."""

    name = "os"

    def create(self, clockid: int, flags: int) -> int:
        return os.timerfd_create(clockid, flags=flags)  # type: ignore[attr-defined,no-any-return,unused-ignore]

    def settime(self, fd: int, flags: int, value_ns: int, interval_ns: int) -> None:
        os.timerfd_settime_ns(  # type: ignore[attr-defined,unused-ignore]
            fd, flags=flags, initial=value_ns, interval=interval_ns
        )

    def gettime(self, fd: int) -> tuple[int, int]:
        value, interval = os.timerfd_gettime_ns(fd)  # type: ignore[attr-defined,unused-ignore]
        return int(value), int(interval)


class _Timespec(ctypes.Structure):
    # struct timespec { time_t tv_sec; long tv_nsec; }; time_t is a long on every Linux
    # ABI whose glibc exports plain timerfd_settime (64-bit time_t on 32-bit ABIs goes
    # through a differently named symbol we do not bind).
    _fields_: ClassVar = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_: ClassVar = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timespec(ns: int) -> _Timespec:
    seconds, nanoseconds = divmod(ns, _NS)
    return _Timespec(seconds, nanoseconds)


def _nanoseconds(spec: _Timespec) -> int:
    return int(spec.tv_sec) * _NS + int(spec.tv_nsec)


class CtypesCalls:
    """libc's timerfd_create/timerfd_settime/timerfd_gettime through ctypes."""

    name = "ctypes"

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._create = libc.timerfd_create
        self._create.argtypes = [ctypes.c_int, ctypes.c_int]
        self._create.restype = ctypes.c_int
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        ]
        self._settime.restype = ctypes.c_int
        self._gettime = libc.timerfd_gettime
        self._gettime.argtypes = [ctypes.c_int, ctypes.POINTER(_Itimerspec)]
        self._gettime.restype = ctypes.c_int

    def create(self, clockid: int, flags: int) -> int:
        fd: int = self._create(clockid, flags)
        if fd < 0:
            _raise_errno()
        return fd

    def settime(self, fd: int, flags: int, value_ns: int, interval_ns: int) -> None:
        new = _Itimerspec(_timespec(interval_ns), _timespec(value_ns))
        if self._settime(fd, flags, ctypes.byref(new), None) < 0:
            _raise_errno()

    def gettime(self, fd: int) -> tuple[int, int]:
        current = _Itimerspec()
        if self._gettime(fd, ctypes.byref(current)) < 0:
            _raise_errno()
        return _nanoseconds(current.it_value), _nanoseconds(current.it_interval)


def _raise_errno() -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))


def available_calls() -> list[TimerfdCalls]:
    """Every implementation this Python can use, preferred first (tests run them all)."""
    found: list[TimerfdCalls] = []
    if hasattr(os, "timerfd_create"):
        found.append(StdlibCalls())
    found.append(CtypesCalls())
    return found


CALLS: TimerfdCalls = available_calls()[0]


class LinuxTimerFD(ProxiedFD):
    """One timerfd; times in and out are integer nanoseconds."""

    __slots__ = ("_calls", "_schedule", "clock", "clockid")

    def __init__(self, fd: int, clock: str, clockid: int, calls: TimerfdCalls, *,
                 shared: bool = False) -> None:
        # Adopted (shared): the description (and its O_NONBLOCK) is the sender's, and
        # the loop polls a proxy; see .pollproxy.
        super().__init__(fd, shared=shared)
        self.clock = clock
        self.clockid = clockid
        self._calls = calls
        # (first expiry, interval) of the last absolute periodic cancel_on_set setting,
        # kept to restart such a timer after a clock change (see _restart_after_jump).
        self._schedule: tuple[int, int] | None = None

    @classmethod
    def create(cls, clock: str, calls: TimerfdCalls | None = None) -> LinuxTimerFD:
        """A new disarmed timer on ``clock`` (``realtime``, ``monotonic`` or ``boottime``)."""
        calls = calls or CALLS
        clockid = CLOCK_IDS[clock]
        try:  # (EPERM is also the alarm clocks' without CAP_WAKE_ALARM: none offered here)
            fd = calls.create(clockid, TFD_NONBLOCK | TFD_CLOEXEC)
        except OSError as exc:
            raise refused(exc, "timerfd_create") from exc
        return cls(fd, clock, clockid, calls)

    @classmethod
    def adopt(cls, fd: int) -> LinuxTimerFD:
        """Take ownership of an inherited or received timerfd, leaving its flags alone
        (O_NONBLOCK is shared with the sender; reads ask for non-blocking per call)."""
        require_kind(fd, "anon_inode:[timerfd]")
        clockid = int(fdinfo(fd)["clockid"])
        return cls(fd, _ADOPTABLE_CLOCKS.get(clockid, f"clock {clockid}"), clockid, CALLS,
                   shared=True)

    def settime(
        self, value_ns: int, interval_ns: int, *, absolute: bool, cancel_on_set: bool
    ) -> None:
        flags = (TFD_TIMER_ABSTIME if absolute else 0) | (
            TFD_TIMER_CANCEL_ON_SET if cancel_on_set else 0
        )
        try:
            self._calls.settime(self.fileno(), flags, value_ns, interval_ns)
        except OSError as exc:
            # The wall clock jumped since the last read of a cancel_on_set timer: the
            # kernel reports it here but has installed the new setting all the same.
            if exc.errno != errno.ECANCELED:
                raise
        periodic_watch = absolute and cancel_on_set and interval_ns > 0
        self._schedule = (value_ns, interval_ns) if periodic_watch else None

    def gettime(self) -> tuple[int, int]:
        return self._calls.gettime(self.fileno())

    def read(self) -> int:
        try:
            if self._proxy is not None:
                data = nowait.read(self.fileno(), 8, "timerfd")
            else:
                data = os.read(self.fileno(), 8)
        except OSError as exc:
            if exc.errno != errno.ECANCELED:
                raise
            self._restart_after_jump()
            raise ClockChanged(
                f"the {self.clock} clock was set while the timer was armed with "
                "cancel_on_set; unread expirations were dropped, the timer stays armed"
            ) from None
        return int.from_bytes(data, sys.byteorder)

    def _restart_after_jump(self) -> None:
        # fs/timerfd.c drops the count on ECANCELED *without* forwarding a periodic
        # timer that had already expired, which leaves it stopped for good (measured:
        # gettime says (0, interval) and it never fires again). Put it back on its
        # schedule: the next multiple of the interval after now on the new wall clock.
        if self._schedule is None:
            return
        value, interval = self.gettime()
        if value or not interval:
            return  # still pending (it had not expired yet), or disarmed meanwhile
        first, interval = self._schedule
        now = self.now()
        periods = max(0, -(-(now - first) // interval))
        self.settime(
            first + periods * interval, interval, absolute=True, cancel_on_set=True
        )

    def now(self) -> int:
        return time.clock_gettime_ns(self.clockid)

