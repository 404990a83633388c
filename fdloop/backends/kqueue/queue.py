"""The private kqueue behind every kqueue-backend primitive.

Each primitive owns one kqueue of its own; the host loop polls that kqueue's fd like any
other fd (kqueue(2): a kqueue is a descriptor, and it polls readable while events are
pending). The primitive's state that the kernel does not keep (the EventFD counter, a
TimerFD's schedule, the signals a SignalFD took over) lives in the Python object beside
it. Three consequences shape this module:

* **Not across fork.** kqueue(2): "The queue is not inherited by a child created with
  fork(2)." A handle used in another process raises UnsupportedOperation, naming the
  process that owns it, instead of failing later with EBADF.
* **detach()/from_fd only within one process.** A bare kqueue fd does not carry
  fdloop's half of the state, so ``detach()`` parks the handle in a per-process table
  under its fd number and ``from_fd`` takes it back from there. An fd that is not in the
  table cannot be adopted: an ordinary file is NotThisKindOfFD, a kqueue fdloop did not
  detach here is UnsupportedOperation.
* **The kqueue is created at call time** from ``select.kqueue``, so a kqueue emulator
  installed after import (tests on Linux) is used.
"""

from __future__ import annotations

import copy
import errno
import os
import stat
import threading
from typing import Any, TypeVar

from ...errors import ClosedResourceError, NotThisKindOfFD, UnsupportedOperation
from .platform import Platform, current, host, kqueue_module

H = TypeVar("H", bound="KqueueHandle")

_detached_lock = threading.Lock()
_detached: dict[int, tuple[KqueueHandle, tuple[int, int, int]]] = {}


class KqueueHandle:
    """Owns one kqueue; closes it once; refuses to work in another process."""

    kind = "kqueue handle"
    """What the primitive is, for error messages (e.g. ``EventFD``)."""

    def __init__(self) -> None:
        self.platform: Platform = current()
        self._kq: Any = kqueue_module().kqueue()
        self._pid = os.getpid()
        self._open = True
        _forget_stale(self._kq.fileno())

    # -- ownership (the OwnedFD contract) -------------------------------------------------

    @property
    def closed(self) -> bool:
        return not self._open

    def fileno(self) -> int:
        if not self._open:
            raise ClosedResourceError(f"{self.kind} is closed")
        return int(self._kq.fileno())

    def close(self) -> None:
        """Close the kqueue; a second call does nothing."""
        if self._open:
            self._open = False
            self._closing()
            if os.getpid() == self._pid:
                self._kq.close()

    def _closing(self) -> None:
        """Subclasses release what they hold beside the kqueue (called once)."""

    def _moved_to(self, other: KqueueHandle) -> None:
        """``other`` now stands for this handle (detach parked a copy); subclasses update
        whatever refers to ``self``."""

    def detach(self) -> int:
        """Stop owning the kqueue and return its fd, which stays open.

        fdloop's half of the state is parked under that fd number so that ``from_fd`` in
        this process can take it back (see the module docstring).
        """
        fd = self.fileno()
        self._check_process()
        parked = copy.copy(self)
        self._open = False
        self._moved_to(parked)
        with _detached_lock:
            _detached[fd] = (parked, _identity(fd))
        return fd

    @classmethod
    def adopt_detached(cls: type[H], fd: int) -> H:
        """The handle that ``detach()`` parked under ``fd`` in this process.

        TypeError/ValueError for a bad fd argument, OSError (EBADF) if it is not open,
        NotThisKindOfFD if it holds another primitive or is not a kqueue at all,
        UnsupportedOperation for a kqueue fdloop cannot adopt.
        """
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"fd must be >= 0, got {fd}")
        identity = _identity(fd)
        with _detached_lock:
            entry = _detached.get(fd)
            if entry is not None and entry[1] == identity and isinstance(entry[0], cls):
                del _detached[fd]
                handle = entry[0]
                handle._check_process()
                return handle
        if entry is not None and entry[1] == identity:
            raise NotThisKindOfFD(
                f"fd {fd} is the kqueue of a detached {entry[0].kind}, not of a {cls.kind}"
            )
        if not _is_kqueue(fd):
            raise NotThisKindOfFD(f"fd {fd} is {describe_fd(fd)}, not a {cls.kind} kqueue")
        raise UnsupportedOperation(
            f"fd {fd} is a kqueue, but the kqueue backend can only adopt a {cls.kind} that "
            "was detached in this same process: part of its state lives in the process "
            "that created it, and a kqueue is not inherited across fork(2)"
        )

    # -- kevent ---------------------------------------------------------------------------

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise UnsupportedOperation(
                f"this {self.kind} belongs to process {self._pid}: on the kqueue backend it "
                "lives in a kqueue and in that process's memory, and kqueue(2) says "
                '"The queue is not inherited by a child created with fork(2)"'
            )

    def _control(self, changes: list[Any] | None, max_events: int = 0) -> list[Any]:
        """One non-blocking kevent() call on our kqueue."""
        if not self._open:
            raise ClosedResourceError(f"{self.kind} is closed")
        self._check_process()
        result: list[Any] = self._kq.control(changes, max_events, 0)
        return result

    def _kevent(self, ident: int, filter_: int, flags: int, fflags: int = 0,
                data: int = 0) -> Any:
        return kqueue_module().kevent(ident, filter_, flags, fflags, data)


def _identity(fd: int) -> tuple[int, int, int]:
    try:
        info = os.fstat(fd)
    except OSError as error:
        if error.errno == errno.EBADF:
            raise OSError(errno.EBADF, f"fd {fd} is not open") from None
        raise
    return info.st_dev, info.st_ino, info.st_mode


def _forget_stale(fd: int) -> None:
    """A new kqueue got ``fd``: anything parked under that number was closed behind our
    back. Its kqueue object is kept (not garbage-collected) so that it can never close
    the number, which now belongs to someone else."""
    with _detached_lock:
        entry = _detached.pop(fd, None)
    if entry is not None:
        _graveyard.append(entry[0])


_graveyard: list[KqueueHandle] = []


def _is_kqueue(fd: int) -> bool:
    """Whether ``fd`` is a kqueue: kevent() on anything else fails with EBADF."""
    select = kqueue_module()
    duplicate = os.dup(fd)
    try:
        probe = select.kqueue.fromfd(duplicate)
    except OSError:
        os.close(duplicate)
        return False
    try:
        probe.control(None, 0, 0)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def describe_fd(fd: int) -> str:
    """What ``fd`` is, in a few words (``pipe:[123]`` where /proc tells, else its type)."""
    if host().proc_fd_links:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    mode = os.fstat(fd).st_mode
    for test, words in ((stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISCHR, "a character device")):
        if test(mode):
            return words
    return "an fd of another kind"
