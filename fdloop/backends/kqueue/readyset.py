"""A ready set on kqueue: many fds watched behind one pollable kqueue fd.

The kqueue twin of ``fdloop.backends.linux.readyset`` (see there for why ``fdloop._aio``
wants one): each member is an EVFILT_READ event, which kqueue(2) describes as "Takes a
descriptor as the identifier, and returns whenever there is data available to read".
Without EV_CLEAR it is level-triggered, as the contract asks: whoever is told a member is
ready must ``discard`` it. Members here are the kqueue fds of ProcessFDs, and a kqueue
fd is itself readable while it has events pending, so a kqueue can watch kqueues.
A member added with ``add_once`` is deleted by ``ready()`` as it is reported (one kevent
call for all of them), as EPOLLONESHOT disarms it on Linux.
"""

from __future__ import annotations

import contextlib

from .platform import EV_ADD, EV_DELETE, EVFILT_READ
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
        self._control([self._kevent(fd, EVFILT_READ, EV_ADD)])
        self._members.add(fd)
        self._once.discard(fd)

    def add_once(self, fd: int, child: bool = False) -> None:
        """Watch ``fd`` until ``ready()`` has reported it once (``child`` changes
        nothing: a kqueue ProcessFD's fd is its own kqueue, reaped by its owner)."""
        self._control([self._kevent(fd, EVFILT_READ, EV_ADD)])
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
        once = [fd for fd in ready if fd in self._once]
        if once:
            self._once.difference_update(once)
            self._members.difference_update(once)
            with contextlib.suppress(OSError, ValueError):
                self._control([self._kevent(fd, EVFILT_READ, EV_DELETE) for fd in once])
        return ready

    def ready_reaped(self) -> list[tuple[int, object]]:
        """``ready()``, none of them reaped here."""
        return [(fd, None) for fd in self.ready()]

    def detach(self) -> int:
        raise TypeError("a ready set cannot be detached")
