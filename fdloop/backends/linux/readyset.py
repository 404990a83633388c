"""A ready set: a private epoll that watches many fds behind one pollable fd.

fdloop._aio registers this one fd with the event loop and adds each waited-on process
fd to the set (one ``epoll_ctl``), instead of registering every fd with the loop itself:
an asyncio ``add_reader``/``remove_reader`` pair costs far more than the syscalls, and
one loop wake-up then serves every child that exited meanwhile.

Members are watched for readability, level-triggered: whoever is told an fd is ready
must ``discard`` it (a pidfd stays readable once its process has exited). A member added
with ``add_once`` is EPOLLONESHOT instead: the kernel disarms it as it reports it, which
saves the ``epoll_ctl(EPOLL_CTL_DEL)`` per wait; the disarmed entry stays in the set
until the fd is closed (closing removes it) or re-armed, and never reports again.
"""

from __future__ import annotations

import select

from ..contract import OwnedFD

_READABLE_ONCE = select.EPOLLIN | select.EPOLLONESHOT


class LinuxReadySet(OwnedFD):
    """An epoll instance (close-on-exec) owned by this object."""

    __slots__ = ("_epoll",)

    def __init__(self) -> None:
        self._epoll = select.epoll()
        super().__init__(self._epoll.fileno())

    @classmethod
    def create(cls) -> LinuxReadySet:
        return cls()

    def add(self, fd: int) -> None:
        """Watch ``fd`` for readability (again, if it already was)."""
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except FileExistsError:
            self._epoll.modify(fd, select.EPOLLIN)

    def add_once(self, fd: int) -> None:
        """Watch ``fd`` for one report (EPOLLONESHOT); re-arm it if it is already in."""
        try:
            self._epoll.register(fd, _READABLE_ONCE)
        except FileExistsError:
            self._epoll.modify(fd, _READABLE_ONCE)

    def discard(self, fd: int) -> None:
        """Stop watching ``fd``; nothing happens if it was not watched (or is closed)."""
        try:  # noqa: SIM105 - contextlib.suppress costs more than this call, once per wait
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def ready(self) -> list[int]:
        """The members readable now (or closed behind our back); never blocks."""
        return [fd for fd, _events in self._epoll.poll(0)]

    def close(self) -> None:
        # The epoll object owns the number: close through it, exactly once.
        if self._fd >= 0:
            self._fd = -1
            self._epoll.close()

    def detach(self) -> int:
        raise TypeError("a ready set cannot be detached")
