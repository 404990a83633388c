"""MemFD on Linux: memfd_create(2), and telling an adopted fd is a memfd.

A memfd is an anonymous tmpfs (or, with MFD_HUGETLB, hugetlbfs) file: it behaves like a
regular file that has already been unlinked, and ``/proc/self/fd/N`` reads
``/memfd:NAME (deleted)``. Seals live on the inode, so they bind every fd that refers to
it: dups, fds reopened through /proc, fds in other processes. Without MFD_ALLOW_SEALING
the file starts with F_SEAL_SEAL, so F_ADD_SEALS fails EPERM. Everything done with the
fd once it exists is :class:`fdloop.backends.posix.shmfile.ShmFile`'s.
"""

from __future__ import annotations

import fcntl
import mmap
import os

from ...errors import NotThisKindOfFD
from ..posix.shmfile import ShmFile
from .procfs import require_kind

_PREFIX = "/memfd:"
_SUFFIX = " (deleted)"


class LinuxMemFD(ShmFile):
    """One memfd (made by :meth:`ShmFile.create`, or adopted)."""

    __slots__ = ()

    @classmethod
    def adopt(cls, fd: int) -> LinuxMemFD:
        """Take ownership of an inherited or received memfd; refuse any other kind of fd."""
        link = require_kind(fd, _PREFIX)
        if not link.endswith(_SUFFIX):
            # A memfd is born unlinked; a path like "/memfd:x" without the suffix is a
            # real file that merely has that name.
            raise NotThisKindOfFD(f"fd {fd} is {link}, a file with a path, not a memfd")
        try:
            fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as exc:
            raise NotThisKindOfFD(f"fd {fd} is {link} but not on tmpfs/hugetlbfs: "
                                  f"not a memfd ({exc.strerror})") from None
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        # hugetlbfs reports its huge page size as the block size; tmpfs the base page.
        hugetlb = os.fstat(fd).st_blksize > mmap.PAGESIZE
        name = link[len(_PREFIX) : -len(_SUFFIX)]
        return cls(fd, name, hugetlb=hugetlb, writable=access == os.O_RDWR)


def missing() -> tuple[str, ...]:
    """What this machine cannot do with memfds right now, for ``capabilities()``."""
    counts: dict[str, str] = {}
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                key, _, value = line.partition(":")
                counts[key] = value.split()[0] if value.split() else "0"
        with open("/proc/sys/vm/nr_overcommit_hugepages") as overcommit:
            surplus = int(overcommit.read())
    except (OSError, ValueError):
        return ()
    if counts.get("HugePages_Total", "0") == "0" and surplus == 0:
        return ("hugetlb mappings: no huge pages reserved (vm.nr_hugepages is 0)",)
    return ()
