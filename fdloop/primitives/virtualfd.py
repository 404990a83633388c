"""VirtualFD: one fd whose poll events its owner sets — the EFD_VPOLL idea.

Hand ``fileno()`` to anything that polls (``select``, ``poll``, ``epoll``, an event loop,
another process) and it sees the fd ready exactly for the events the owner ``set()``.
The backend decides what the fd is (``capabilities()`` has a VirtualFD row saying, per
event, what it can raise and clear): the kernel's own ``eventfd(EFD_VPOLL)`` or
``/dev/vpoll`` where they exist (probed), else a loopback TCP connection (see
:mod:`fdloop.backends.posix.vpoll_socket` for each event's construction and what a consumer's
``read()``/``write()`` sees).
"""

from __future__ import annotations

import threading

from .. import _aio
from ..backends import current as current_backend
from ..backends.contract import VirtualFDBackend
from ..errors import UnsupportedOperation
from .events import EVENT_NAMES, POLL_EVENTS, event_names, validate_events
from .resource import FDResource, naming_fd_limit


class VirtualFD(FDResource[VirtualFDBackend]):
    """An fd whose readiness the owner sets: ``set``/``add``/``remove``, ``events``.

    Every method may be called from any thread (one lock orders them, and a close in
    another thread waits for the one under way: FDResource._in_use). Raises OSError
    (EMFILE, naming ``fdloop.raise_fd_limit()``) when no fd is left.

    Fork: the readiness is the owner's; a copy in a forked child refuses ``set()``,
    ``add()`` and ``remove()`` (UnsupportedOperation), which would change what the
    parent's consumers see. ``events`` and ``close()`` (of the child's fds) still work.
    """

    def __init__(self, events: int = 0) -> None:
        events = validate_events("events", events, allow_zero=True)
        self._lock = threading.Lock()
        with naming_fd_limit("VirtualFD()"):
            handle = current_backend().virtual_fd(0)
        super().__init__(handle)
        self._keep_out_of_forks()
        if events:
            try:
                self.set(events)
            except BaseException:
                self.close()
                raise

    @classmethod
    def from_fd(cls, fd: int) -> VirtualFD:
        """Not possible: the owner's side of a VirtualFD cannot be passed (an
        EFD_VPOLL eventfd could be, but it is never assumed). UnsupportedOperation."""
        raise UnsupportedOperation(
            "VirtualFD.from_fd: the owner's side stays in the process that made it; "
            "pass fileno() to consumers instead")

    @property
    def events(self) -> int:
        """The events a consumer's poll sees now (what the kernel reports)."""
        with self._lock, self._in_use():
            self._check_open()
            return int(self._handle.events) & POLL_EVENTS

    def set(self, events: int) -> int:
        """Make exactly ``events`` ready and return the mask consumers now see.

        Waiters of every consumer are woken as the kernel does for a real file. On the
        TCP construction a one-way event brings its companions (POLLHUP brings POLLIN,
        POLLRDHUP and POLLOUT), which the result shows. Raises ValueError/TypeError for
        bits other than POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLRDHUP;
        UnsupportedOperation, changing nothing, for an event the backend cannot raise
        or clear now; ClosedResourceError once closed.
        """
        events = validate_events("events", events, allow_zero=True)
        self._refuse_forked_copy("set()")
        with self._lock, self._in_use():  # (the close takes _in_use too)
            self._check_open()
            return int(self._handle.set(events)) & POLL_EVENTS

    def add(self, events: int) -> int:
        """Raise ``events`` as well (``set(current | events)``); returns the new mask."""
        events = validate_events("events", events, allow_zero=True)
        self._refuse_forked_copy("add()")
        with self._lock, self._in_use():  # (the close takes _in_use too)
            self._check_open()
            return int(self._handle.set(self._handle.events & POLL_EVENTS | events)) & \
                POLL_EVENTS

    def remove(self, events: int) -> int:
        """Clear ``events`` (``set(current & ~events)``); returns the new mask."""
        events = validate_events("events", events, allow_zero=True)
        self._refuse_forked_copy("remove()")
        with self._lock, self._in_use():  # (the close takes _in_use too)
            self._check_open()
            return int(self._handle.set(self._handle.events & POLL_EVENTS & ~events)) & \
                POLL_EVENTS

    @property
    def kernel_object(self) -> str:
        """What the fd is: ``eventfd (EFD_VPOLL)``, ``/dev/vpoll`` or ``loopback TCP
        connection``."""
        return str(self._handle.kernel_object)

    def _close_here(self) -> None:
        if not self._handle.closed:
            # Tasks in wait_events() on our fd: their requests hold the file open.
            _aio.events.notify_closing(self._handle.fileno())
        super()._close_here()

    def detach(self) -> int:
        """Return the consumer's fd, no longer driven by us (on the TCP construction the
        peer is closed: consumers then see POLLIN|POLLRDHUP, end of file)."""
        self._check_open()
        _aio.events.notify_closing(self._handle.fileno())
        return super().detach()

    def _state(self) -> str:
        if self._handle.closed:
            return ""
        return f"events={event_names(self._handle.events & POLL_EVENTS) or '0'}, " \
            f"{self._handle.kernel_object}"


__all__ = ["EVENT_NAMES", "VirtualFD"]
