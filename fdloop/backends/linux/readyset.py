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

A one-shot member added with ``child=True`` is one of our children's pidfds:
``ready_reaped()`` reaps it as it reports it (waitid WNOHANG, with rusage), so that one
call per loop wake-up collects every exited child's status. With the compiled extension
(``_clone_spawn.arm``/``collect``) that is one C call for the epoll_wait and every
waitid; without it, the same in Python.
"""

from __future__ import annotations

import select
from typing import Any

from ..contract import OwnedFD
from .pidfd import reap_pidfd
from .spawn import _clone_spawn

_READABLE_ONCE = select.EPOLLIN | select.EPOLLONESHOT
_MAX_REPORTS = 64
"""Members collected per ready_reaped() call (more stay ready for the next call)."""
_arm: Any = getattr(_clone_spawn, "arm", None)
_collect: Any = getattr(_clone_spawn, "collect", None)


class LinuxReadySet(OwnedFD):
    """An epoll instance (close-on-exec) owned by this object."""

    __slots__ = ("_children", "_epoll")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._children: set[int] = set()  # (without the extension: who to reap)
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

    def add_once(self, fd: int, child: bool = False) -> None:
        """Watch ``fd`` for one report (EPOLLONESHOT); re-arm it if it is already in.
        ``child``: ``fd`` is the pidfd of our child, which ``ready_reaped()`` reaps."""
        if _arm is not None:
            _arm(self._fd, fd, child)
            return
        if child:
            self._children.add(fd)
        try:
            self._epoll.register(fd, _READABLE_ONCE)
        except FileExistsError:
            self._epoll.modify(fd, _READABLE_ONCE)

    def ready_reaped(self) -> list[tuple[int, object]]:
        """Like ``ready()``, each fd with the status of the child it reaped (members
        added with ``child=True`` that have exited: a plain tuple shaped as RawExit),
        else something that is not a tuple (None, an errno); never blocks."""
        if _collect is not None:
            return _collect(self._fd, _MAX_REPORTS)  # type: ignore[no-any-return]
        reports: list[tuple[int, object]] = []
        for fd, _events in self._epoll.poll(0, _MAX_REPORTS):
            raw: object = None
            if fd in self._children:
                self._children.discard(fd)
                try:
                    raw = reap_pidfd(fd)
                    if raw is not None:
                        raw = tuple(raw)
                except OSError:  # ECHILD: someone else reaped it; its owner finds out
                    pass
            reports.append((fd, raw))
        return reports

    def discard(self, fd: int) -> None:
        """Stop watching ``fd``; nothing happens if it was not watched (or is closed)."""
        self._children.discard(fd)
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
