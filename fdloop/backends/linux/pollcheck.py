"""Checking a poll request's answer against the file's own poll, where it can lie.

A poll request (io_uring or AIO) completes with the *wake-up key* when the file's wake-up
carries one, without polling the file again: sockets wake readers with
``EPOLLIN | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND`` for any data (``sock_def_readable``),
so a POLLPRI request on a TCP socket is answered "PRI" by ordinary data (measured on
6.18, AIO: mask 0xc3 while poll(2) said POLLOUT only). io_uring, for its part, ignores
POLLPRI when it matches a keyed wake-up (``IO_ASYNC_POLL_COMMON`` is masked out in
``io_poll_wake``): a POLLPRI-only request on a socket never completes for urgent data.

So for fds whose poll is side-effect free — everything but regular files — the request
also asks POLLRDBAND when POLLPRI is wanted (so a keyed wake-up gets through; no common
file keeps RDBAND set) and each answer is checked with poll(2), which is what is
reported (nothing, if the wake-up was only a hint: the request is then made again).
Regular files are what procfs, sysfs, cgroupfs and PSI triggers are; they wake without a
key, the request then polls the file itself, and its answer is the truth — polling them
again would consume the event a second time (mountinfo, PSI).
"""

from __future__ import annotations

import os
import select
import stat

# The check itself is a plain zero-timeout poll(2), the same the kqueue backend makes.
from ..posix.nowait import poll_now as checked_answer

__all__ = ["checked_answer", "needs_check", "request_mask"]

_HINT = select.POLLRDBAND


def needs_check(fd: int) -> bool:
    """True if answers for ``fd`` must be checked with poll(2) (not a regular file).
    An fd that is not open is left to the kernel to refuse (False)."""
    try:
        return not stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def request_mask(events: int, checked: bool) -> int:
    """The mask to ask the kernel for."""
    return events | _HINT if checked and events & select.POLLPRI else events
