"""eventfd(2): a kernel 64-bit counter that is readable while non-zero.

Facts from the man page that this code relies on: a read returns the counter and resets
it to 0, or with EFD_SEMAPHORE returns 1 and decrements it; a read of 0 fails with
EAGAIN on a non-blocking fd; a write adds its 8-byte value, fails with EINVAL for
0xffffffffffffffff and with EAGAIN (counter untouched) if the sum would exceed
0xfffffffffffffffe; the fd is shared across fork, exec and SCM_RIGHTS.

An adopted fd (``from_fd``) shares its open file description, and with it O_NONBLOCK,
with the sender: fdloop leaves that flag as it found it (see
fdloop/backends/posix/nowait.py). Reads then use RWF_NOWAIT; a write to a description
that is blocking first checks the counter in /proc/self/fdinfo (``eventfd-count``),
because there a write that would overflow blocks instead of failing. A writer in another
process that fills the counter between that check and the write could still make it block
(until someone reads): the one window left.
"""

from __future__ import annotations

import os
import sys

from ...errors import CounterOverflowError
from ..posix import nowait
from ..posix.refusal import refused
from .pollproxy import ProxiedFD
from .procfs import fdinfo, require_kind

_MAX_COUNTER = 2**64 - 2


class LinuxEventFD(ProxiedFD):
    __slots__ = ("semaphore",)

    def __init__(self, fd: int, semaphore: bool, *, shared: bool = False) -> None:
        # Adopted (shared): the description's flags are the sender's, and the loop polls
        # a proxy.
        super().__init__(fd, shared=shared)
        self.semaphore = semaphore

    @classmethod
    def create(cls, initval: int, semaphore: bool) -> LinuxEventFD:
        flags = os.EFD_CLOEXEC | os.EFD_NONBLOCK | (os.EFD_SEMAPHORE if semaphore else 0)
        try:
            fd = os.eventfd(initval, flags)
        except OSError as exc:
            raise refused(exc, "eventfd2") from exc
        return cls(fd, semaphore)

    @classmethod
    def adopt(cls, fd: int) -> LinuxEventFD:
        """Take ownership of an inherited or received eventfd, leaving its flags alone."""
        require_kind(fd, "anon_inode:[eventfd]")
        # Kernels before 6.1 do not print the flag; counter mode is the only safe guess.
        semaphore = fdinfo(fd).get("eventfd-semaphore") == "1"
        return cls(fd, semaphore, shared=True)

    # read and write run once per wake-up: they test the fd inline rather than through
    # fileno() (the same ClosedResourceError).

    def read(self) -> int:
        if self._fd < 0:
            self.fileno()
        if self._proxy is not None:
            return int.from_bytes(nowait.read(self._fd, 8, "eventfd"), sys.byteorder)
        return os.eventfd_read(self._fd)

    def write(self, value: int) -> None:
        if self._fd < 0:
            self.fileno()
        if self._proxy is not None and nowait.is_blocking(self._fd):
            count = int(fdinfo(self._fd).get("eventfd-count", "0"), 16)
            if count + value > _MAX_COUNTER:
                raise self._overflow(value)
        try:
            os.eventfd_write(self._fd, value)
        except BlockingIOError:
            raise self._overflow(value) from None

    @staticmethod
    def _overflow(value: int) -> CounterOverflowError:
        return CounterOverflowError(
            f"adding {value} would carry the eventfd counter past 2**64 - 2; "
            "the counter is unchanged"
        )

    def dup(self) -> LinuxEventFD:
        # A dup shares the description: an adopted one's flags are still the sender's.
        fd = os.dup(self.fileno())
        try:
            return LinuxEventFD(fd, self.semaphore, shared=self._proxy is not None)
        except BaseException:
            os.close(fd)
            raise

