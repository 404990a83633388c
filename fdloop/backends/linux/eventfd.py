"""eventfd(2): a kernel 64-bit counter that is readable while non-zero.

Facts from the man page that this code relies on: a read returns the counter and resets
it to 0, or with EFD_SEMAPHORE returns 1 and decrements it; a read of 0 fails with
EAGAIN on a non-blocking fd; a write adds its 8-byte value, fails with EINVAL for
0xffffffffffffffff and with EAGAIN (counter untouched) if the sum would exceed
0xfffffffffffffffe; the fd is shared across fork, exec and SCM_RIGHTS.
"""

from __future__ import annotations

import os

from ...errors import CounterOverflowError
from ..contract import OwnedFD
from .procfs import fdinfo, require_kind


class LinuxEventFD(OwnedFD):
    __slots__ = ("semaphore",)

    def __init__(self, fd: int, semaphore: bool) -> None:
        super().__init__(fd)
        self.semaphore = semaphore

    @classmethod
    def create(cls, initval: int, semaphore: bool) -> LinuxEventFD:
        flags = os.EFD_CLOEXEC | os.EFD_NONBLOCK | (os.EFD_SEMAPHORE if semaphore else 0)
        return cls(os.eventfd(initval, flags), semaphore)

    @classmethod
    def adopt(cls, fd: int) -> LinuxEventFD:
        """Take ownership of an inherited or received eventfd (made non-blocking here)."""
        require_kind(fd, "anon_inode:[eventfd]")
        # Kernels before 6.1 do not print the flag; counter mode is the only safe guess.
        semaphore = fdinfo(fd).get("eventfd-semaphore") == "1"
        os.set_blocking(fd, False)
        return cls(fd, semaphore)

    # read and write run once per wake-up: they test the fd inline rather than through
    # fileno() (the same ClosedResourceError).

    def read(self) -> int:
        if self._fd < 0:
            self.fileno()
        return os.eventfd_read(self._fd)

    def write(self, value: int) -> None:
        if self._fd < 0:
            self.fileno()
        try:
            os.eventfd_write(self._fd, value)
        except BlockingIOError:
            raise CounterOverflowError(
                f"adding {value} would carry the eventfd counter past 2**64 - 2; "
                "the counter is unchanged"
            ) from None

    def dup(self) -> LinuxEventFD:
        return LinuxEventFD(os.dup(self.fileno()), self.semaphore)
