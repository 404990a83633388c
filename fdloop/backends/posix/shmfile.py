"""A POSIX shared-memory file: what a MemFD is on every backend once it has an fd.

memfd_create(2) (Linux, FreeBSD 13+) and shm_open(3) (every POSIX system) both give a
regular file with no name on disk; from then on it is read, written, mapped, resized and
sealed with the same calls everywhere: read/write/pread/pwrite, ftruncate, mmap, and
fcntl(2) F_ADD_SEALS/F_GET_SEALS, whose F_SEAL_* values Linux and FreeBSD share. How the
fd is made and how an adopted fd is recognised is each backend's own
(fdloop/backends/linux/memfd.py, fdloop/backends/kqueue/memfd.py).

Kernel facts this module codes against (measured on Linux 6.18, documented in the man
pages):

* F_SEAL_WRITE fails EBUSY while a MAP_SHARED mapping that *may* become writable exists,
  and a read-only MAP_SHARED mapping of a read-write fd counts (VM_MAYWRITE is set). A
  mapping made through a read-only fd cannot become writable and does not count, which is
  why :meth:`ShmFile.mmap` maps read-only views through a read-only reopen (where
  /proc/self/fd can reopen one);
* under F_SEAL_GROW a write that runs past the end is cut short (a partial write, not
  EPERM): the portable layer refuses such writes before making them;
* Linux hugetlbfs (MFD_HUGETLB, the only way ``hugetlb`` is ever true) has no write(2)
  (EINVAL), sizes must be multiples of the huge page size (which ``st_blksize``
  reports), and huge pages are only reserved at mmap() time, where an empty pool gives
  ENOMEM.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import TypeVar

from ...errors import UnsupportedOperation
from ..contract import OwnedFD
from .refusal import refused

_Shm = TypeVar("_Shm", bound="ShmFile")

# Inside the class, ``mmap`` names the method; annotations there use this alias.
_Mapping = mmap.mmap


class ShmFile(OwnedFD):
    """One shared-memory file. Operations are single syscalls; the portable MemFD loops
    and checks."""

    __slots__ = ("hugetlb", "name", "page_size", "writable")

    def __init__(self, fd: int, name: str, *, hugetlb: bool, writable: bool) -> None:
        super().__init__(fd)
        self.name = name
        self.hugetlb = hugetlb
        self.writable = writable
        # mmap offsets (and, for hugetlbfs, sizes) must be multiples of this.
        self.page_size = os.fstat(fd).st_blksize if hugetlb else mmap.PAGESIZE

    @classmethod
    def create(cls: type[_Shm], name: str, size: int, allow_sealing: bool,
               hugetlb: bool) -> _Shm:
        """memfd_create(name) (Linux, FreeBSD 13+), then ftruncate to ``size``; nothing is
        left open on failure."""
        flags = os.MFD_CLOEXEC
        if allow_sealing:
            flags |= os.MFD_ALLOW_SEALING
        if hugetlb:
            flags |= os.MFD_HUGETLB
        try:
            fd = os.memfd_create(name, flags)
        except OSError as exc:
            if hugetlb and exc.errno in (errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
                raise OSError(
                    exc.errno,
                    "hugetlb=True: this kernel cannot create hugetlbfs memfds "
                    f"({os.strerror(exc.errno)}); is CONFIG_HUGETLBFS enabled?",
                ) from None
            if hugetlb and exc.errno == errno.EPERM:
                raise  # memfd_create(2): no CAP_IPC_LOCK, not in the hugetlb group
            raise refused(exc, "memfd_create") from exc
        self = cls(fd, name, hugetlb=hugetlb, writable=True)
        try:
            if size:
                self.truncate(size)
        except BaseException:
            self.close()
            raise
        return self

    # -- size and position ---------------------------------------------------------------

    def size(self) -> int:
        return os.fstat(self.fileno()).st_size

    def truncate(self, size: int) -> None:
        if self.hugetlb and size % self.page_size:
            raise ValueError(f"size must be a multiple of the huge page size, "
                             f"{self.page_size} bytes, got {size}")
        os.ftruncate(self.fileno(), size)

    def seek(self, offset: int, whence: int) -> int:
        try:
            return os.lseek(self.fileno(), offset, whence)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise ValueError(f"offset {offset} would move the position before the "
                                 "start of the memfd") from None
            raise

    # -- data ----------------------------------------------------------------------------

    def read(self, n: int) -> bytes:
        return os.read(self.fileno(), n)

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self.fileno(), n, offset)

    def write(self, data: memoryview) -> int:
        self._require_write_syscall()
        return os.write(self.fileno(), data)

    def pwrite(self, data: memoryview, offset: int) -> int:
        self._require_write_syscall()
        return os.pwrite(self.fileno(), data, offset)

    def _require_write_syscall(self) -> None:
        self._require_writable()
        if self.hugetlb:
            raise UnsupportedOperation(
                "hugetlbfs memfds have no write(2): write through mmap() instead"
            )

    def _require_writable(self) -> None:
        if not self.writable:
            raise OSError(errno.EBADF, f"fd {self.fileno()} was opened read-only; "
                                       "writing needs a read-write fd")

    def mmap(self, length: int, offset: int, writable: bool) -> mmap.mmap:
        fd = self.fileno()
        try:
            if writable:
                self._require_writable()
                return mmap.mmap(fd, length, flags=mmap.MAP_SHARED,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
            return self._map_read_only(fd, length, offset)
        except OSError as exc:
            if self.hugetlb and exc.errno == errno.ENOMEM:
                raise OSError(errno.ENOMEM, self._no_huge_pages(length)) from None
            raise

    def _map_read_only(self, fd: int, length: int, offset: int) -> _Mapping:
        if self.writable:
            # Map through a read-only reopen: such a mapping can never be made writable,
            # so it does not stand in the way of a later F_SEAL_WRITE (see module doc).
            try:
                read_only = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                read_only = -1  # no /proc, or not allowed to reopen: map the fd itself
            if read_only >= 0:
                try:
                    return mmap.mmap(read_only, length, flags=mmap.MAP_SHARED,
                                     prot=mmap.PROT_READ, offset=offset)
                finally:
                    os.close(read_only)
        return mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ,
                         offset=offset)

    @staticmethod
    def _no_huge_pages(length: int) -> str:
        free = "unknown"
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("HugePages_Free:"):
                        free = line.split()[1]
        except OSError:
            pass
        return (f"cannot map {length} bytes of a hugetlb memfd: not enough free huge pages "
                f"(HugePages_Free is {free} in /proc/meminfo; reserve some with "
                "/proc/sys/vm/nr_hugepages)")

    # -- seals ---------------------------------------------------------------------------

    def seals(self) -> int:
        return fcntl.fcntl(self.fileno(), fcntl.F_GET_SEALS)

    def add_seals(self, seals: int) -> None:
        fcntl.fcntl(self.fileno(), fcntl.F_ADD_SEALS, seals)

    def dup(self: _Shm) -> _Shm:
        fd = os.dup(self.fileno())
        return type(self)(fd, self.name, hugetlb=self.hugetlb, writable=self.writable)
