"""MemFD on FreeBSD and macOS: memfd_create, shm_open(SHM_ANON), or a named shm_open.

A MemFD needs no kqueue (it is never waited for), only an anonymous shared-memory file:

* **FreeBSD 13+** has memfd_create(2) with MFD_ALLOW_SEALING and the Linux seal commands
  (fcntl(2) F_ADD_SEALS / F_GET_SEALS with the same F_SEAL_* values), so ``os.memfd_create``
  is used exactly as on Linux.
* **Older FreeBSD**: shm_open(2) with ``SHM_ANON`` (an anonymous object, no name to
  unlink) through ctypes, since Python's ``_posixshmem`` only takes a path. Plain
  shm_open does not pass SHM_ALLOW_SEALING, so such objects cannot be sealed.
* **macOS** (and Linux test runs of this backend): a named shm_open(O_CREAT|O_EXCL) under a
  random name, unlinked at once, so the object is anonymous from then on. macOS has no
  seals: ``add_seals`` raises UnsupportedOperation and ``seals`` reports 0. macOS limits
  shm names to 31 characters, so the MemFD's name is not part of the object there and
  an adopted fd reports its name as ``""`` (Linux test runs encode it in the shm name).

The fd is a real kernel object, so unlike the kqueue-based primitives it crosses fork,
exec and SCM_RIGHTS. The platform facts come from ``platform.host()`` (not from
``select``), so a child process adopts the fd without any kqueue.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import stat
from urllib.parse import quote, unquote

from ...errors import NotThisKindOfFD, UnsupportedOperation
from ..posix.shmfile import ShmFile
from .platform import host
from .queue import describe_fd

# CPython's shm_open, imported now rather than at the first MemFD: importing an extension
# module opens its .so, so a first import made while out of fds would fail with an
# ImportError ("Too many open files") instead of the EMFILE the caller can act on.
try:
    import _posixshmem  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - every POSIX CPython build has it
    _posixshmem = None

_SHM_PREFIX = "/fdloop."
_LINUX_SHM_DIR = "/dev/shm"


def strategy() -> str:
    """``memfd_create``, ``SHM_ANON`` or ``shm_open``: how this platform makes a MemFD."""
    return host().shared_memory


def create(name: str, size: int, allow_sealing: bool, hugetlb: bool) -> ShmFile:
    how = strategy()
    if how == "memfd_create":
        return FreeBSDMemFD.create(name, size, allow_sealing, hugetlb)
    if hugetlb:
        raise UnsupportedOperation(f"hugetlb=True: {how} objects cannot use huge pages here")
    fd = _shm_anon() if how == "SHM_ANON" else _shm_open_unlinked(name)
    memfd: ShmFile = UnsealableShm(fd, name, hugetlb=False, writable=True)
    try:
        if size:
            memfd.truncate(size)
    except BaseException:
        memfd.close()
        raise
    return memfd


def adopt(fd: int) -> ShmFile:
    """Take over an inherited or received shared-memory fd."""
    how = strategy()
    mode = os.fstat(_checked_fd(fd)).st_mode
    if not stat.S_ISREG(mode):
        raise NotThisKindOfFD(f"fd {fd} is {describe_fd(fd)}, not shared memory")
    name = ""
    if host().proc_fd_links:  # Linux test runs: check and recover the name
        link = describe_fd(fd)
        prefix = _LINUX_SHM_DIR + _SHM_PREFIX
        if not (link.startswith(prefix) and link.endswith(" (deleted)")):
            raise NotThisKindOfFD(f"fd {fd} is {link}, not an fdloop shared-memory object")
        name = unquote(link[len(prefix):-len(" (deleted)")].partition(".")[2])
    writable = _access(fd)
    cls = FreeBSDMemFD if how == "memfd_create" else UnsealableShm
    return cls(fd, name, hugetlb=False, writable=writable)


def _checked_fd(fd: int) -> int:
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"fd must be an int, not {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"fd must be >= 0, got {fd}")
    try:
        os.fstat(fd)
    except OSError as error:
        if error.errno == errno.EBADF:
            raise OSError(errno.EBADF, f"fd {fd} is not open") from None
        raise
    return fd


def _access(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR


def _shm_open_unlinked(name: str) -> int:
    if _posixshmem is None:  # pragma: no cover
        raise UnsupportedOperation("this Python was built without shm_open (_posixshmem)")
    for _ in range(16):
        token = secrets.token_hex(6)
        if host().shm_name_max < 64:  # macOS: no room for the MemFD's name
            path = _SHM_PREFIX + token
        else:
            path = f"{_SHM_PREFIX}{token}.{quote(name, safe='')}"[:host().shm_name_max]
        try:
            fd: int = _posixshmem.shm_open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        _posixshmem.shm_unlink(path)
        os.set_inheritable(fd, False)
        return fd
    raise FileExistsError(errno.EEXIST, "no free shared-memory name after 16 tries")


def _shm_anon() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    shm_open = libc.shm_open
    shm_open.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    shm_open.restype = ctypes.c_int
    shm_anon = 1  # <sys/mman.h>: #define SHM_ANON ((char *)1)
    fd: int = shm_open(shm_anon, os.O_RDWR | os.O_CLOEXEC, 0o600)
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


class FreeBSDMemFD(ShmFile):
    """FreeBSD's memfd_create: the POSIX shm file's calls, without /proc to check an
    adopted fd."""

    __slots__ = ()

    @classmethod
    def adopt(cls, fd: int) -> ShmFile:
        return adopt(fd)


class UnsealableShm(ShmFile):
    """An shm_open object (macOS, or SHM_ANON on old FreeBSD): no seals."""

    __slots__ = ()

    def seals(self) -> int:
        self.fileno()
        return 0

    def add_seals(self, seals: int) -> None:
        self.fileno()
        raise UnsupportedOperation(
            "file seals need memfd_create (Linux, FreeBSD 13+); this platform's shm_open "
            "objects (macOS) cannot be sealed"
        )


def missing() -> tuple[str, ...]:
    """What MemFD lacks on this platform, for ``capabilities()``."""
    how = strategy()
    if how == "shm_open":
        gaps: tuple[str, ...] = ("seals (SEAL_*): macOS shared memory has none", "hugetlb",
                "the name of an adopted fd (macOS shm names are not readable back)")
        if host().darwin:
            gaps += ("read/write/seek may be refused by macOS shm (use mmap); "
                     "truncate works once",)
        return gaps
    if how == "SHM_ANON":
        return ("seals (SEAL_*): shm_open without SHM_ALLOW_SEALING", "hugetlb")
    return ()
