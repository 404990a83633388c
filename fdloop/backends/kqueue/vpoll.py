"""Poll events beyond readable/writable on the kqueue backend.

``poll_requests()``: a private kqueue whose EVFILT_READ / EVFILT_WRITE events (EV_CLEAR:
reported once per change, never in a loop while a condition holds) stand in for poll
requests; when one fires, the fd's poll(2) mask is read and reported. POLLIN, POLLOUT,
POLLHUP, POLLERR and POLLRDHUP (where poll(2) has it) can be waited for; POLLPRI needs
EVFILT_EXCEPT with NOTE_OOB (FreeBSD 12+, macOS), which the Linux test emulator lacks:
there, and wherever ``select`` has no such filter, it raises UnsupportedOperation.

``virtual_fd()``: the loopback TCP construction of :mod:`fdloop.backends.posix.vpoll_socket`
(the BSDs have no EFD_VPOLL).
"""

from __future__ import annotations

import contextlib
import select
from typing import Any

from ...errors import UnsupportedOperation
from ..posix.nowait import poll_now
from ..posix.vpoll_socket import SocketVirtualFD
from .platform import EV_ADD, EV_CLEAR, EV_DELETE, EVFILT_READ
from .queue import KqueueHandle

EVFILT_WRITE = -2
_READS = select.POLLIN | select.POLLHUP | getattr(select, "POLLRDHUP", 0x2000)


class KqueuePolls(KqueueHandle):
    """Poll requests on a private kqueue (the fd the loop watches)."""

    kind = "poll requests"
    multishot = True
    kernel_object = "kqueue (EVFILT_READ/WRITE, EV_CLEAR)"

    def __init__(self) -> None:
        super().__init__()
        self._requests: dict[int, tuple[int, int, bool]] = {}
        self._filters: dict[tuple[int, int], set[int]] = {}

    def submit(self, token: int, fd: int, events: int, *, multishot: bool = False) -> None:
        """Watch ``fd`` for ``events``; UnsupportedOperation for POLLPRI."""
        if events & select.POLLPRI:
            raise UnsupportedOperation(
                "POLLPRI on the kqueue backend needs EVFILT_EXCEPT (NOTE_OOB), which this "
                "kqueue does not have")
        filters = []
        if events & (_READS | select.POLLERR) or not events & select.POLLOUT:
            filters.append(EVFILT_READ)
        if events & select.POLLOUT:
            filters.append(EVFILT_WRITE)
        for filter_ in filters:
            members = self._filters.setdefault((fd, filter_), set())
            if not members:
                try:
                    self._control([self._kevent(fd, filter_, EV_ADD | EV_CLEAR)])
                except BaseException:
                    del self._filters[(fd, filter_)]
                    raise
            members.add(token)
        self._requests[token] = (fd, events, multishot)

    def cancel(self, token: int) -> None:
        request = self._requests.pop(token, None)
        if request is None:
            return
        fd = request[0]
        for filter_ in (EVFILT_READ, EVFILT_WRITE):
            members = self._filters.get((fd, filter_))
            if members is None or token not in members:
                continue
            members.discard(token)
            if not members:
                del self._filters[(fd, filter_)]
                with contextlib.suppress(OSError, ValueError):
                    self._control([self._kevent(fd, filter_, EV_DELETE)])

    def completions(self) -> list[tuple[int, int, bool]]:
        out: list[tuple[int, int, bool]] = []
        fired: set[int] = set()
        for event in self._control(None, max(1, len(self._filters))):
            fired.update(self._filters.get((int(event.ident), int(event.filter)), ()))
        for token in sorted(fired):
            fd, events, multishot = self._requests[token]
            mask = poll_now(fd, events)
            if not mask:
                continue
            out.append((token, mask, multishot))
            if not multishot:
                self.cancel(token)
        return out

    def detach(self) -> int:
        raise TypeError("a poll ring cannot be detached")


def poll_requests() -> Any:
    return KqueuePolls()


def virtual_fd(events: int = 0) -> SocketVirtualFD:
    return SocketVirtualFD(events)


def capabilities(backend: str) -> list[Any]:
    """The VirtualFD and wait_events rows of the kqueue backend's ``capabilities()``."""
    from ..contract import Capability
    from ..posix.vpoll_socket import fidelity

    return [
        Capability("VirtualFD", backend, False, SocketVirtualFD.kernel_object, (
            "every event exact: no EFD_VPOLL on the BSDs", *fidelity(),
            "measured on Linux only (urgent data as POLLPRI, SO_SNDBUF waking writers)")),
        Capability("PollEvents", backend, True, KqueuePolls.kernel_object, (
            "POLLPRI (needs EVFILT_EXCEPT/NOTE_OOB)",
            "events of files that reset them when polled: the mask is read with poll(2) "
            "after kqueue fires",
            "ClosedResourceError on a plain close(): call fdloop.notify_closing(fd) first")),
    ]
