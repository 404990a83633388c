"""A ready set on kqueue: many fds watched behind one pollable kqueue fd.

The kqueue twin of ``fdloop.backends.linux.readyset`` (see there for why ``fdloop._aio``
wants one): each member is an EVFILT_READ event, which kqueue(2) describes as "Takes a
descriptor as the identifier, and returns whenever there is data available to read".
Without EV_CLEAR it is level-triggered, as the contract asks: whoever is told a member is
ready must ``discard`` it. Members here are the kqueue fds of ProcessFDs, and a kqueue
fd is itself readable while it has events pending, so a kqueue can watch kqueues.
A member added with ``add_once`` carries EV_ONESHOT, which kqueue(2) describes as "After
the user retrieves the event from the kqueue, it is deleted": the kernel drops it in the
same kevent() call that reports it, as EPOLLONESHOT disarms a member on Linux. (Deleting
reported members with a second call instead would be racy: on a changelist with no room
for events, kevent() stops at the first change that fails, e.g. a member's fd closed by
another thread meanwhile, and the members after it would stay armed and be reported again
and again, to nobody.) EV_ADD on an existing event keeps the flags it was created with,
so a member moving between ``add`` and ``add_once`` is deleted and added again.
"""

from __future__ import annotations

import contextlib

from .platform import EV_ADD, EV_DELETE, EV_ONESHOT, EVFILT_READ
from .queue import KqueueHandle


class KqueueReadySet(KqueueHandle):
    """A private kqueue whose EVFILT_READ events are the members."""

    kind = "ready set"

    def __init__(self) -> None:
        super().__init__()
        self._members: set[int] = set()
        self._once: set[int] = set()

    @classmethod
    def create(cls) -> KqueueReadySet:
        return cls()

    def add(self, fd: int) -> None:
        """Watch ``fd`` for readability (re-adding an existing event only modifies it)."""
        if fd in self._once:
            self.discard(fd)  # (armed with EV_ONESHOT, which a modify would keep)
        self._control([self._kevent(fd, EVFILT_READ, EV_ADD)])
        self._members.add(fd)
        self._once.discard(fd)

    def add_once(self, fd: int, child: bool = False) -> None:
        """Watch ``fd`` until ``ready()`` has reported it once (``child`` changes
        nothing: a kqueue ProcessFD's fd is its own kqueue, reaped by its owner)."""
        if fd in self._members and fd not in self._once:
            self.discard(fd)  # (armed without EV_ONESHOT, which a modify would not add)
        self._control([self._kevent(fd, EVFILT_READ, EV_ADD | EV_ONESHOT)])
        self._members.add(fd)
        self._once.add(fd)

    def discard(self, fd: int) -> None:
        """Stop watching ``fd``; nothing happens if it was not watched (or is closed)."""
        self._members.discard(fd)
        self._once.discard(fd)
        with contextlib.suppress(OSError, ValueError):
            self._control([self._kevent(fd, EVFILT_READ, EV_DELETE)])

    def ready(self) -> list[int]:
        """The members readable now; never blocks.

        One kevent() call with room for every member: level-triggered events come back
        on every call, so asking again for "the rest" would only repeat them.
        """
        events = self._control(None, max(1, len(self._members)))
        ready = [int(event.ident) for event in events]
        if self._once:
            # (the kernel deleted the EV_ONESHOT ones as it reported them)
            once = self._once.intersection(ready)
            self._once -= once
            self._members -= once
        return ready

    def ready_reaped(self) -> list[tuple[int, object]]:
        """``ready()``, none of them reaped here."""
        return [(fd, None) for fd in self.ready()]

    def detach(self) -> int:
        raise TypeError("a ready set cannot be detached")
