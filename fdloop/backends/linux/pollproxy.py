"""Polling an adopted fd on Linux without touching its open file description's flags.

An adopted eventfd, timerfd or signalfd shares its description (and its O_NONBLOCK)
with whoever sent it; reads take care of that (fdloop/backends/posix/nowait.py). The
loop must not poll the adopted fd itself either: uvloop's ``add_reader`` (libuv's
``uv_poll_init``) sets O_NONBLOCK on every fd it watches. So the loop is given a
:class:`PollProxy` instead, a private epoll holding the fd, readable exactly while the fd
is (``poll_fileno()`` of the backend objects).
"""

from __future__ import annotations

import select

from ..contract import OwnedFD


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
