"""TimerFD on kqueue: EVFILT_TIMER, with the schedule kept by fdloop.

kqueue(2) facts relied on (FreeBSD; macOS kevent(2) says the same in its words):

* EVFILT_TIMER "Establishes an arbitrary timer identified by ident. When adding a timer,
  data specifies the timeout period. The timer will be periodic unless EV_ONESHOT is
  specified. On return, data contains the number of times the timeout has expired since
  the last call to kevent(). This filter automatically sets the EV_CLEAR flag
  internally."
* Units: NOTE_NSECONDS (FreeBSD 8, macOS 4) makes ``data`` nanoseconds; "If fflags is not
  set, the default is milliseconds".
* Absolute deadlines: FreeBSD NOTE_ABSTIME (0x10) / macOS NOTE_ABSOLUTE (8), counted from
  the Epoch; "The timer will be periodic unless EV_ONESHOT or NOTE_ABSTIME is specified".
* "If an existing timer is re-added, the existing timer will be effectively canceled
  (throwing away any undelivered record of previous timer expiration)".

kqueue has no timer_gettime and a periodic timer always starts one period after it is
added, so fdloop keeps the schedule (first expiry, interval, expirations taken) and maps
each setting onto the kernel in one of two ways:

* **kernel-counted** — a one-shot timer (relative, or NOTE_ABSTIME for an absolute
  wall-clock time), or a periodic one whose first expiry is one interval away: the count
  is ``data``, exactly as the kernel reports it.
* **schedule-counted** — a periodic timer whose first expiry differs from its interval
  (or an absolute periodic one): the kernel holds a one-shot timer to the next expiry on
  fdloop's grid ``first + k * interval``; each read counts the grid points passed (so
  overruns are counted and the grid never drifts) and re-arms for the next one.

Differences from Linux timerfd: ``cancel_on_set`` raises UnsupportedOperation (kqueue
cannot report a wall-clock jump); an absolute realtime *periodic* timer is turned into
the monotonic grid when it is set, so a later wall-clock jump does not move it; kernel
timers run on the kernel's uptime clock whatever ``clock`` says (``clock`` sets the
scale of ``now()`` and of absolute times).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ...errors import UnsupportedOperation
from .platform import EV_ADD, EV_DELETE, EV_ONESHOT, EVFILT_TIMER
from .queue import KqueueHandle

_IDENT = 1
CLOCK_IDS = {
    "realtime": time.CLOCK_REALTIME,
    "monotonic": time.CLOCK_MONOTONIC,
    # macOS's CLOCK_MONOTONIC keeps counting through sleep, which is boottime's meaning;
    # FreeBSD and Linux name that clock CLOCK_BOOTTIME.
    "boottime": getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC),
}


class KqueueTimerFD(KqueueHandle):
    """One EVFILT_TIMER in a private kqueue; times in and out are integer nanoseconds."""

    kind = "TimerFD"

    def __init__(self, clock: str) -> None:
        super().__init__()
        self.clock = clock
        self._clockid = CLOCK_IDS[clock]
        self._first = 0
        self._interval = 0
        self._taken = 0
        self._armed = False
        self._kernel_counted = True

    @classmethod
    def create(cls, clock: str) -> KqueueTimerFD:
        return cls(clock)

    @classmethod
    def adopt(cls, fd: int) -> KqueueTimerFD:
        return cls.adopt_detached(fd)

    def now(self) -> int:
        return time.clock_gettime_ns(self._clockid)

    def settime(
        self, value_ns: int, interval_ns: int, *, absolute: bool, cancel_on_set: bool
    ) -> None:
        if cancel_on_set:
            raise UnsupportedOperation(
                "cancel_on_set needs the kernel to report wall-clock jumps (Linux "
                "TFD_TIMER_CANCEL_ON_SET); kqueue's EVFILT_TIMER has no such notice"
            )
        self._check_process()
        self._disarm_kernel()
        self._armed = False
        if value_ns == 0:
            return
        now = self.now()
        self._first = value_ns if absolute else now + value_ns
        self._interval = interval_ns
        self._taken = 0
        self._armed = True
        if interval_ns == 0:
            self._kernel_counted = True
            if absolute and self.clock == "realtime":
                self._add(value_ns, self.platform.NOTE_ABSTIME, EV_ONESHOT)
            else:
                self._add(max(1, self._first - now), 0, EV_ONESHOT)
        elif not absolute and value_ns == interval_ns:
            self._kernel_counted = True
            self._add(interval_ns, 0, 0)
        else:
            self._kernel_counted = False
            self._add(max(1, self._first - now), 0, EV_ONESHOT)

    def gettime(self) -> tuple[int, int]:
        self.fileno()
        if not self._armed:
            return 0, 0
        now = self.now()
        if now < self._first:
            return self._first - now, self._interval
        if not self._interval:
            return 0, 0  # expired one-shot: timerfd_gettime(2) also reports 0
        passed = (now - self._first) // self._interval + 1
        return self._first + passed * self._interval - now, self._interval

    def read(self) -> int:
        events = self._control(None, 4)
        if not self._armed:
            raise BlockingIOError("the timer is disarmed")
        if self._kernel_counted:
            count = sum(int(event.data) for event in events if event.filter == EVFILT_TIMER)
            if not count:
                raise BlockingIOError("no expiration since the last read")
            self._taken += count
            if not self._interval:
                self._armed = False
            return count
        due = self._grid_points_passed(self.now()) - self._taken
        if due <= 0:
            if events:  # the kernel's clock ran a little ahead of ours: wait for ours
                self._rearm()
            raise BlockingIOError("no expiration since the last read")
        self._taken += due
        self._rearm()
        return due

    def _grid_points_passed(self, now: int) -> int:
        if now < self._first:
            return 0
        return (now - self._first) // self._interval + 1

    def _rearm(self) -> None:
        deadline = self._first + self._taken * self._interval
        self._add(max(1, deadline - self.now()), 0, EV_ONESHOT)

    def _add(self, data: int, fflags: int, flags: int) -> None:
        self._control([self._timer_event(EV_ADD | flags, fflags, data)])

    def _timer_event(self, flags: int, fflags: int = 0, data: int = 0) -> Any:
        return self._kevent(_IDENT, EVFILT_TIMER, flags, fflags | self.platform.NOTE_NSECONDS,
                            data)

    def _disarm_kernel(self) -> None:
        # Deleting also drops an undelivered expiration; ENOENT means none was armed.
        with contextlib.suppress(FileNotFoundError):
            self._control([self._timer_event(EV_DELETE)])
