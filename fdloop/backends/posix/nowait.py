"""Non-blocking reads of an adopted fd whose open file description may be blocking.

O_NONBLOCK belongs to the open file description, not to the fd number, and an fd that
``from_fd`` adopts shares its description with whoever sent it (the parent across fork
or exec, the sender of an SCM_RIGHTS message, a ``dup`` kept elsewhere). Setting the flag
there would change the sender's fd too: its blocking reads would start failing with
EAGAIN. Nor can fdloop get a description of its own: opening /proc/self/fd/N of an
anonymous-inode fd (eventfd, timerfd, signalfd) fails with ENXIO. So an adopted fd keeps
its flags, and each read asks for non-blocking behaviour by itself:

* ``preadv2(fd, ..., -1, RWF_NOWAIT)`` where the OS has it (Linux): preadv2(2),
  RWF_NOWAIT: "Do not wait for data which is not immediately available"; with nothing
  read it fails with EAGAIN. The eventfd, timerfd and signalfd read paths test
  IOCB_NOWAIT beside O_NONBLOCK (measured here on Linux 6.18 for all three: EAGAIN on an
  empty blocking fd, data otherwise).
* elsewhere, or where the kernel refuses that flag (EOPNOTSUPP on an older kernel), a
  poll with a zero timeout first, then the read. That read could still block if another
  reader of the same object (in another process) takes the data in between; it is the
  narrowest window possible without touching the shared flag.

How the loop polls such an fd without changing its flags is each backend's own (Linux:
fdloop/backends/linux/pollproxy.py).
"""

from __future__ import annotations

import errno
import os
import select

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
    return bool(poll_now(fd, select.POLLIN) & select.POLLIN)


_ALWAYS = select.POLLERR | select.POLLHUP | select.POLLNVAL


def poll_now(fd: int, events: int) -> int:
    """What a zero-timeout poll(2) says about ``events`` on ``fd`` this instant: those
    of them that are set, plus POLLERR/POLLHUP/POLLNVAL, which poll always reports."""
    poller = select.poll()
    poller.register(fd, events)
    ready = poller.poll(0)
    mask: int = ready[0][1] if ready else 0
    return mask & (events | _ALWAYS)


def is_blocking(fd: int) -> bool:
    """Whether the description behind ``fd`` is in blocking mode right now."""
    return os.get_blocking(fd)
