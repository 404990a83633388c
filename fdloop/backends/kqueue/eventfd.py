"""EventFD on kqueue: a counter kept by fdloop, made pollable with EVFILT_USER.

kqueue has no counter object. FreeBSD 13 added a native eventfd(2) (``os.eventfd`` exists
there), which :func:`create` uses when present; everywhere else (macOS, older FreeBSD)
the 64-bit counter lives in this process and each handle's kqueue carries one EVFILT_USER
event that is triggered while the counter is non-zero. Facts from kqueue(2) relied on:

* EVFILT_USER "Establishes a user event identified by ident which is not associated with
  any kernel mechanism but is triggered by user level code"; ``NOTE_TRIGGER`` "Cause[s]
  the event to be triggered", and only then does the kqueue poll readable.
* With ``EV_CLEAR``, "After the event is retrieved by the user, its state is reset", so
  a read retrieves (and thereby clears) the trigger, and re-triggers it if the counter
  is still non-zero (semaphore mode).

What the emulated counter cannot do (``capabilities()`` says so): it is not shared with
other processes — a forked child, an exec'd program or an SCM_RIGHTS receiver — because
the counter is in this process's memory and the kqueue itself "is not inherited by a
child created with fork(2)". Such use raises UnsupportedOperation. Within the process,
``dup()`` shares the counter and ``detach()``/``from_fd`` hand it over.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Any

from ...errors import CounterOverflowError
from ..contract import EventFDBackend, OwnedFD
from ..posix import nowait
from .platform import EV_ADD, EV_CLEAR, NOTE_TRIGGER, host
from .queue import KqueueHandle

MAX_COUNTER = 2**64 - 2
_IDENT = 1  # one EVFILT_USER event per kqueue; each handle has its own kqueue


def native_eventfd() -> bool:
    """True where the kernel has eventfd(2) beside kqueue (FreeBSD 13+)."""
    return host().native_eventfd


def create(initval: int, semaphore: bool) -> EventFDBackend:
    """A new counter: the native eventfd where the kernel has one, else EVFILT_USER."""
    if native_eventfd():
        return NativeEventFD.create(initval, semaphore)
    return KqueueEventFD.create(initval, semaphore)


def adopt(fd: int) -> EventFDBackend:
    """Take over an EventFD fd (see KqueueHandle.adopt_detached for what is possible)."""
    if native_eventfd():
        return NativeEventFD.adopt(fd)
    return KqueueEventFD.adopt_detached(fd)


class _Counter:
    """The counter that every dup of one EventFD shares."""

    def __init__(self, value: int, semaphore: bool) -> None:
        self.lock = threading.Lock()
        self.value = value
        self.semaphore = semaphore
        self.handles: list[KqueueEventFD] = []


class KqueueEventFD(KqueueHandle):
    """One handle on a process-local counter, pollable through its own kqueue."""

    kind = "EventFD"

    def __init__(self, counter: _Counter) -> None:
        super().__init__()
        self._counter = counter
        self.semaphore = counter.semaphore
        try:
            self._control([self._kevent(_IDENT, self.platform.EVFILT_USER, EV_ADD | EV_CLEAR)])
        except BaseException:
            self._kq.close()
            raise
        with counter.lock:
            counter.handles.append(self)
            if counter.value:
                self._trigger()

    @classmethod
    def create(cls, initval: int, semaphore: bool) -> KqueueEventFD:
        return cls(_Counter(initval, semaphore))

    def _trigger(self) -> None:
        self._control([self._kevent(_IDENT, self.platform.EVFILT_USER, 0, NOTE_TRIGGER)])

    def read(self) -> int:
        counter = self._counter
        with counter.lock:
            # Retrieving the event clears the trigger (EV_CLEAR); it is set again below
            # while something is left, so the kqueue polls readable exactly while the
            # counter is non-zero.
            self._control(None, 1)
            if not counter.value:
                raise BlockingIOError("the EventFD counter is 0")
            taken = 1 if counter.semaphore else counter.value
            counter.value -= taken
            if counter.value:
                self._trigger()
            return taken

    def write(self, value: int) -> None:
        counter = self._counter
        self._check_process()
        with counter.lock:
            if counter.value + value > MAX_COUNTER:
                raise CounterOverflowError(
                    f"adding {value} would carry the EventFD counter past 2**64 - 2; "
                    "the counter is unchanged"
                )
            counter.value += value
            for handle in counter.handles:
                handle._trigger()

    def dup(self) -> EventFDBackend:
        self.fileno()
        self._check_process()
        return KqueueEventFD(self._counter)

    def _closing(self) -> None:
        with self._counter.lock:
            if self in self._counter.handles:
                self._counter.handles.remove(self)

    def _moved_to(self, other: KqueueHandle) -> None:
        assert isinstance(other, KqueueEventFD)
        with self._counter.lock:
            handles = self._counter.handles
            if self in handles:
                handles[handles.index(self)] = other


class NativeEventFD(OwnedFD):
    """FreeBSD's eventfd(2): the same calls as on Linux, through ``os.eventfd``.

    FreeBSD has no /proc to tell an eventfd from another fd, so ``adopt`` cannot check
    the kind or learn the semaphore flag: it assumes counter mode. It leaves the fd's
    O_NONBLOCK as it was (the flag belongs to the description the sender shares), so an
    adopted fd is read only after a zero-timeout poll shows it readable, and written
    while blocking only after a poll shows room (``fdloop.backends.posix.nowait`` says
    which narrow windows remain: another reader between the poll and the read, a write
    of more than the room left).
    """

    __slots__ = ("_shared", "semaphore")

    def __init__(self, fd: int, semaphore: bool, *, shared: bool = False) -> None:
        super().__init__(fd)
        self.semaphore = semaphore
        self._shared = shared

    @classmethod
    def create(cls, initval: int, semaphore: bool) -> NativeEventFD:
        eventfd: Any = os
        flags = eventfd.EFD_CLOEXEC | eventfd.EFD_NONBLOCK
        if semaphore:
            flags |= eventfd.EFD_SEMAPHORE
        return cls(eventfd.eventfd(initval, flags), semaphore)

    @classmethod
    def adopt(cls, fd: int) -> NativeEventFD:
        os.fstat(fd)
        return cls(fd, False, shared=True)

    def read(self) -> int:
        if self._shared:
            return int.from_bytes(nowait.read(self.fileno(), 8, "eventfd"), sys.byteorder)
        eventfd: Any = os
        return int(eventfd.eventfd_read(self.fileno()))

    def write(self, value: int) -> None:
        eventfd: Any = os
        if self._shared and nowait.is_blocking(self.fileno()) and not _has_room(self._fd):
            raise CounterOverflowError(
                f"adding {value} would carry the eventfd counter past 2**64 - 2; "
                "the counter is unchanged"
            )
        try:
            eventfd.eventfd_write(self.fileno(), value)
        except BlockingIOError:
            raise CounterOverflowError(
                f"adding {value} would carry the eventfd counter past 2**64 - 2; "
                "the counter is unchanged"
            ) from None

    def dup(self) -> EventFDBackend:
        return NativeEventFD(os.dup(self.fileno()), self.semaphore, shared=self._shared)


def _has_room(fd: int) -> bool:
    """eventfd(2): writable (POLLOUT) while at least 1 can still be added."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLOUT for _fd, events in poller.poll(0))
