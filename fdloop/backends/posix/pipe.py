"""One end of a pipe (or a socket standing in for one), read and written non-blocking.

Pipes are plain POSIX on every platform fdloop runs on, so this object serves the Linux
and the kqueue backend alike. It makes the only syscalls :mod:`fdloop.primitives.streams` needs:
``read``/``write`` that raise ``BlockingIOError`` instead of blocking.

Facts from pipe(7) this relies on: a read returns ``b""`` only once every write end is
closed (EOF); a write of up to PIPE_BUF bytes is atomic, a larger one on a non-blocking
pipe may be partial and returns the count written; a write with no read end left fails
with EPIPE (Python ignores SIGPIPE, so it arrives as BrokenPipeError).
"""

from __future__ import annotations

import fcntl
import os
import stat

from ...errors import NotThisKindOfFD
from ..contract import OwnedFD

_POLLABLE = (stat.S_ISFIFO, stat.S_ISSOCK, stat.S_ISCHR)


class PipeEnd(OwnedFD):
    """A non-blocking fd that this object reads from or writes to."""

    __slots__ = ()

    @classmethod
    def adopt(cls, fd: int) -> PipeEnd:
        """Own ``fd`` and make it non-blocking, without changing it for anyone else.

        O_NONBLOCK lives on the open file description, which other holders of the pipe
        (a sender in another process) may share. A blocking pipe or FIFO is therefore
        given a private description of its own first (``/proc/self/fd/N`` reopened and
        put at the same fd number); only a socket or a character device (which cannot
        be reopened so), or a system without /proc, gets the flag on the shared one.

        Raises OSError if ``fd`` is not open, NotThisKindOfFD for a regular file or a
        directory (the poll loop cannot wait on those), and changes nothing in either case.
        """
        mode = os.fstat(fd).st_mode
        if not any(is_kind(mode) for is_kind in _POLLABLE):
            raise NotThisKindOfFD(
                f"fd {fd} is not a pipe, socket or character device; "
                "the poll loop cannot wait on it"
            )
        if os.get_blocking(fd):
            _make_private_nonblocking(fd, mode)
        return cls(fd)

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes, ``b""`` at EOF; BlockingIOError if none are ready."""
        return os.read(self.fileno(), max_bytes)

    def write(self, data: memoryview) -> int:
        """Write what fits now and return the count; BlockingIOError if nothing fits."""
        return os.write(self.fileno(), data)


def _make_private_nonblocking(fd: int, mode: int) -> None:
    """Put a new, non-blocking description of the same pipe at ``fd``; failing that,
    set O_NONBLOCK on the one ``fd`` has."""
    if stat.S_ISFIFO(mode):
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        try:
            private = os.open(f"/proc/self/fd/{fd}", access | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # no /proc, or a write end whose readers are all gone
            pass
        else:
            try:  # dup2 swaps the description behind the number atomically
                os.dup2(private, fd, inheritable=os.get_inheritable(fd))
            finally:
                os.close(private)
            return
    os.set_blocking(fd, False)


def blocking_opening(fd: int) -> int | None:
    """A private, blocking open file description of the pipe or FIFO ``fd``, or None.

    A child given one of our pipe ends as it is would share its description, O_NONBLOCK
    included (the flag lives there, not on the fd), and most programs read EAGAIN as an
    error or as EOF. Opening ``/proc/self/fd/N`` (Linux) makes a new description of the
    same pipe, whose flags are its own. Returns a close-on-exec fd >= 3 that the caller
    closes, or None where no copy is needed (``fd`` is blocking or not a pipe) or none can
    be made (no /proc; a write end of a pipe without readers, which the child would find
    broken anyway): the child then gets ``fd`` itself.
    """
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if not flags & os.O_NONBLOCK or not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return None
    try:  # O_NONBLOCK so that opening a write end never waits for a reader
        copy = os.open(f"/proc/self/fd/{fd}",
                       (flags & os.O_ACCMODE) | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    os.set_blocking(copy, True)
    if copy < 3:  # stdio set-up in the child writes to 0-2 first
        low, copy = copy, fcntl.fcntl(copy, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(low)
    return copy


def close_ends(ends: tuple[int | None, ...] | list[int | None]) -> None:
    """Close the parent's pipe ends of a child that could not be had (None: not piped)."""
    for fd in ends:
        if fd is not None:
            os.close(fd)
