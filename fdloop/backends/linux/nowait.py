"""Non-blocking reads of an adopted fd whose open file description may be blocking.

O_NONBLOCK belongs to the open file description, not to the fd number, and an fd that
``from_fd`` adopts shares its description with whoever sent it (the parent across fork
or exec, the sender of an SCM_RIGHTS message, a ``dup`` kept elsewhere). Setting the flag
there would change the sender's fd too: its blocking reads would start failing with
EAGAIN. Nor can fdloop get a description of its own: opening /proc/self/fd/N of an
anonymous-inode fd (eventfd, timerfd, signalfd) fails with ENXIO. So an adopted fd keeps
its flags, and each read asks for non-blocking behaviour by itself:

* ``preadv2(fd, ..., -1, RWF_NOWAIT)``: preadv2(2), RWF_NOWAIT: "Do not wait for data
  which is not immediately available"; with nothing read it fails with EAGAIN. The
  eventfd, timerfd and signalfd read paths test IOCB_NOWAIT beside O_NONBLOCK (measured
  here on Linux 6.18 for all three: EAGAIN on an empty blocking fd, data otherwise;
  eventfd has it since its read_iter conversion, timerfd and signalfd since theirs).
* where the kernel refuses that flag (EOPNOTSUPP on an older kernel), a poll with a zero
  timeout first, then the read. That read could still block if another reader of the
  same object (in another process) takes the data in between; it is the narrowest
  window possible without touching the shared flag.

The loop must not poll the adopted fd itself either: uvloop's ``add_reader`` (libuv's
``uv_poll_init``) sets O_NONBLOCK on every fd it watches. So the loop is given a
:class:`PollProxy` instead, a private epoll holding the fd, readable exactly while the fd
is (``poll_fileno()`` of the backend objects).

Portable except for RWF_NOWAIT and the epoll proxy, which only Linux has: elsewhere the
poll path is used.
"""

from __future__ import annotations

import errno
import os
import select

from ..contract import OwnedFD

_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
_REFUSED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.ESPIPE}
_refused_kinds: set[str] = set()  # kinds of fd whose kernel refused RWF_NOWAIT


def read(fd: int, size: int, kind: str) -> bytes:
    """Read up to ``size`` bytes from ``fd`` without blocking and without changing its
    flags; BlockingIOError when nothing is there. ``kind`` (``eventfd``...) remembers
    per kind of fd whether the kernel takes RWF_NOWAIT."""
    if _RWF_NOWAIT is not None and kind not in _refused_kinds:
        buffer = bytearray(size)
        try:
            count = os.preadv(fd, [buffer], -1, _RWF_NOWAIT)
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise  # EAGAIN (as BlockingIOError), ECANCELED of a timerfd...
            _refused_kinds.add(kind)
        else:
            return bytes(buffer[:count])
    if not readable_now(fd):
        raise BlockingIOError(errno.EAGAIN, f"nothing to read from the {kind}")
    return os.read(fd, size)


def readable_now(fd: int) -> bool:
    """Whether ``fd`` polls readable this instant (a zero-timeout poll)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(events & select.POLLIN for _fd, events in poller.poll(0))


def is_blocking(fd: int) -> bool:
    """Whether the description behind ``fd`` is in blocking mode right now."""
    return os.get_blocking(fd)


class PollProxy:
    """A private epoll watching one fd for readability, level-triggered: the loop polls
    this one, which leaves the watched fd's flags alone whatever the loop does to the
    fds it is given."""

    __slots__ = ("_epoll",)

    def __init__(self, fd: int) -> None:
        self._epoll = select.epoll()
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self._epoll.close()
            raise

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._epoll.close()


class ProxiedFD(OwnedFD):
    """An owned fd that the loop polls through a :class:`PollProxy` when it was adopted
    (``shared``), or directly otherwise: the base of the eventfd, timerfd and signalfd
    objects."""

    __slots__ = ("_proxy",)

    def __init__(self, fd: int, *, shared: bool) -> None:
        super().__init__(fd)
        self._proxy = PollProxy(fd) if shared else None

    @property
    def shared(self) -> bool:
        """True for an adopted fd: its description may be blocking and is not ours."""
        return self._proxy is not None

    def poll_fileno(self) -> int:
        """The fd for the loop to poll: this one, or for an adopted one its proxy."""
        return self._proxy.fileno() if self._proxy is not None else self.fileno()

    def close(self) -> None:
        self._close_proxy()
        super().close()

    def detach(self) -> int:
        fd = self.fileno()
        self._close_proxy()
        super().detach()
        return fd

    def _close_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.close()
