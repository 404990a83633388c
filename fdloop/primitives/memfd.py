"""MemFD: anonymous shared memory as one fd, with file seals.

A MemFD is a file with no path: read and write it like a file, map it with ``mmap()``,
hand its fd to another process (pass_fds, SCM_RIGHTS) and both see the same bytes. Seals
(``seal(SEAL_WRITE, ...)``) are properties of the memory itself, so they bind every fd
that refers to it, in every process; a sealed-off operation raises PermissionError and
changes nothing.

Memory I/O never blocks, so every method here is synchronous; a MemFD is still an
FDResource (close/aclose, sync and async context manager, ResourceWarning) and is used
from asyncio, uvloop and trio tasks alike. All syscalls are in the backend
(``fdloop.backends.<name>.memfd``); this module creates, shares and seals a MemFD, and
:mod:`.memfile` (its base class) reads, writes, resizes and maps it — both validate,
loop and word the errors.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from .. import _validate
from ..backends import current as current_backend
from ..backends.contract import MemFDBackend
from ..errors import SealBusyError
from .memfile import MAX_SIZE, MemoryFile, bytes_like, check_bool
from .resource import FDResource, naming_fd_limit
from .seals import ALL_BITS, FROZEN_BITS, SEAL_BIT, Seal, describe_seals

if TYPE_CHECKING:
    # Any object with the buffer protocol: bytes, bytearray, memoryview, mmap, array...
    from typing_extensions import Buffer

MAX_NAME_BYTES = 249
"""memfd_create(2) limit on the name, in bytes, without the terminating NUL."""


__all__ = ["MAX_NAME_BYTES", "MAX_SIZE", "MemFD"]


class MemFD(MemoryFile):
    """Anonymous shared memory (a ``memfd:`` file) that can be sized, mapped and sealed.

    ``MemFD(name, size)`` creates it (close-on-exec; pass it on with ``pass_fds`` or
    SCM_RIGHTS). ``allow_sealing=False`` creates it already sealed with SEAL_SEAL, so no
    seal can ever be added; ``hugetlb=True`` backs it with huge pages, which the kernel
    only reserves at ``mmap()`` time.

    Raises TypeError/ValueError naming the argument for a bad name (not a str, contains
    NUL, longer than 249 bytes) or size (not an int, negative, past 2**63-1), and OSError
    when the kernel refuses (e.g. no hugetlbfs; EMFILE, naming RLIMIT_NOFILE and
    ``fdloop.raise_fd_limit()``, when this process has no fd left).
    """

    def __init__(self, name: str = "fdloop", size: int = 0, *, allow_sealing: bool = True,
                 hugetlb: bool = False) -> None:
        name = _check_name(name)
        size = _validate.integer("size", size, low=0, high=MAX_SIZE)
        check_bool("allow_sealing", allow_sealing)
        check_bool("hugetlb", hugetlb)
        with naming_fd_limit(f"MemFD({name!r})"):
            handle = current_backend().memfd(name, size, allow_sealing, hugetlb)
        super().__init__(handle)
        self._allow_sealing: bool | None = allow_sealing
        self._final_seals: int | None = None

    @classmethod
    def from_bytes(cls, data: Buffer, seal: bool = True, name: str = "fdloop") -> MemFD:
        """A MemFD holding ``data``, positioned at its start.

        With ``seal=True`` (the default) it is then sealed with SEAL_SHRINK, SEAL_GROW,
        SEAL_WRITE and SEAL_SEAL: an immutable blob that a receiver can trust not to
        change under it. Raises TypeError for data that is not bytes-like or a non-bool
        ``seal``, and whatever ``MemFD()`` raises for ``name``.
        """
        view = bytes_like("data", data)
        check_bool("seal", seal)
        memfd = cls(name, len(view))
        try:
            memfd.pwrite(view, 0)
            if seal:
                memfd.seal(FROZEN_BITS)
        except BaseException:
            memfd.close()
            raise
        return memfd

    @classmethod
    def from_fd(cls, fd: int) -> MemFD:
        """Adopt an inherited or received memfd; the MemFD then owns (and closes) it.

        Raises NotThisKindOfFD if ``fd`` is open but not a memfd (the fd is left alone),
        OSError if it is not open, TypeError/ValueError for a non-int or negative fd.
        """
        with naming_fd_limit(f"MemFD.from_fd({fd!r})"):
            return cls._wrap(current_backend().memfd_from_fd(fd), None)

    @classmethod
    def _wrap(cls, handle: MemFDBackend, allow_sealing: bool | None) -> MemFD:
        self = cls.__new__(cls)
        FDResource.__init__(self, handle)
        self._allow_sealing = allow_sealing
        self._final_seals = None
        return self

    def dup(self) -> MemFD:
        """A second MemFD on the same memory, with its own fd (sharing the file position).

        Raises ClosedResourceError once closed, OSError (EMFILE) as ``MemFD()`` does.
        """
        self._check_open()
        with naming_fd_limit("MemFD.dup()"):
            return self._wrap(self._handle.dup(), self._allow_sealing)

    # -- what it is ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name given at creation (shown as ``/memfd:NAME`` in /proc)."""
        return self._handle.name

    @property
    def hugetlb(self) -> bool:
        """True when backed by huge pages."""
        return self._handle.hugetlb

    @property
    def size(self) -> int:
        """The current size in bytes (asked from the kernel: other fds may change it)."""
        self._check_open()
        return self._handle.size()

    @property
    def seals(self) -> Seal:
        """The seals in force now (``Seal(0)`` when none)."""
        self._check_open()
        return Seal(self._current_seals())

    # -- seals ---------------------------------------------------------------------------

    def seal(self, *seals: int) -> Seal:
        """Add seals (e.g. ``seal(SEAL_SHRINK, SEAL_GROW)``); returns all seals now in force.

        Seals bind every fd of this memory, in every process, and cannot be removed.
        Raises PermissionError when SEAL_SEAL is already set (always so for a MemFD
        created with ``allow_sealing=False``), SealBusyError (a PermissionError) when
        SEAL_WRITE meets a live writable shared mapping, ValueError for unknown bits,
        TypeError for non-ints, UnsupportedOperation where the platform has no seals.
        Nothing is added when it raises.
        """
        if not seals:
            raise TypeError("seal() needs at least one seal, e.g. seal(fdloop.SEAL_WRITE)")
        wanted = 0
        for seal in seals:
            bits = _validate.integer("seals", seal)
            if bits <= 0 or bits & ~ALL_BITS:
                raise ValueError(f"seals: {seal!r} is not a combination of the known seals "
                                 f"({describe_seals(ALL_BITS)})")
            wanted |= bits
        self._check_open()
        if self._current_seals() & SEAL_BIT:
            raise PermissionError(errno.EPERM, self._why_no_sealing())
        try:
            self._handle.add_seals(wanted)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise SealBusyError(
                    errno.EBUSY,
                    f"cannot add {describe_seals(wanted)} to {self._label()}: a writable "
                    "shared mapping of it is still live (an mmap() not yet closed, here "
                    "or in another process); close it and seal again",
                ) from None
            if exc.errno == errno.EPERM:
                raise PermissionError(errno.EPERM, self._why_no_sealing()) from None
            raise
        return self.seals

    def _why_no_sealing(self) -> str:
        if self._allow_sealing is False:
            return (f"{self._label()} was created without allow_sealing, so no seal can "
                    "be added")
        return (f"{self._label()} is sealed with SEAL_SEAL (it was sealed so, or created "
                "without allow_sealing): no more seals can be added")

    def _state(self) -> str:
        name = f"name={self._handle.name!r}"
        if self._handle.closed:
            return name
        try:
            size, seals = self._handle.size(), describe_seals(self._handle.seals())
        except OSError as exc:  # repr runs from finalizers too: it must not raise
            return f"{name}, unreadable ({exc.strerror})"
        return f"{name}, size={size}, seals={seals}" + (", hugetlb" if self.hugetlb else "")


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if "\0" in name:
        raise ValueError("name must not contain NUL characters")
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError as exc:
        raise ValueError(f"name cannot be encoded for the kernel: {exc.reason}") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise ValueError(f"name must be at most {MAX_NAME_BYTES} bytes (memfd_create(2) "
                         f"limit), got {len(encoded)}")
    return name

