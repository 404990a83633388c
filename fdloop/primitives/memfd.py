"""MemFD: anonymous shared memory as one fd, with file seals.

A MemFD is a file with no path: read and write it like a file, map it with ``mmap()``,
hand its fd to another process (pass_fds, SCM_RIGHTS) and both see the same bytes. Seals
(``seal(SEAL_WRITE, ...)``) are properties of the memory itself, so they bind every fd
that refers to it, in every process; a sealed-off operation raises PermissionError and
changes nothing.

Memory I/O never blocks, so every method here is synchronous; a MemFD is still an
FDResource (close/aclose, sync and async context manager, ResourceWarning) and is used
from asyncio, uvloop and trio tasks alike. All syscalls are in the backend
(``fdloop.backends.<name>.memfd``); this module validates, loops and words the errors.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import TYPE_CHECKING

from .. import _validate
from ..backends import current as current_backend
from ..backends.contract import MemFDBackend
from ..errors import SealBusyError
from .resource import FDResource, naming_fd_limit
from .seals import (
    ALL_BITS,
    FROZEN_BITS,
    GROW_BIT,
    NO_WRITES_BITS,
    SEAL_BIT,
    SHRINK_BIT,
    Seal,
    describe_seals,
)

if TYPE_CHECKING:
    # Any object with the buffer protocol: bytes, bytearray, memoryview, mmap, array...
    from typing_extensions import Buffer

MAX_SIZE = 2**63 - 1
"""The largest size a file can have (off_t is a signed 64-bit integer)."""

_DIRECT_READ = 1 << 16
"""Reads up to this many bytes skip asking for the size: an over-long buffer is cheap."""

MAX_NAME_BYTES = 249
"""memfd_create(2) limit on the name, in bytes, without the terminating NUL."""


class MemFD(FDResource[MemFDBackend]):
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
        _check_bool("allow_sealing", allow_sealing)
        _check_bool("hugetlb", hugetlb)
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
        view = _bytes_like("data", data)
        _check_bool("seal", seal)
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

    # -- size and position ---------------------------------------------------------------

    def truncate(self, size: int | None = None) -> int:
        """Set the size (default: the file position); returns the new size.

        New bytes read as zeros, bytes past ``size`` are dropped; the position stays.

        Raises PermissionError (nothing changed) under SEAL_SHRINK/SEAL_GROW, ValueError
        for a negative size or, with hugetlb, one that is not a multiple of the huge page
        size, TypeError for a non-int, ClosedResourceError once closed.
        """
        if size is not None:
            size = _validate.integer("size", size, low=0, high=MAX_SIZE)
        self._check_open()
        if size is None:
            size = self._handle.seek(0, os.SEEK_CUR)
        seals, current = self._current_seals(), self._handle.size()
        if (size < current and seals & SHRINK_BIT) or (size > current and seals & GROW_BIT):
            raise self._refused(f"resize from {current} to {size} bytes", seals)
        try:
            self._handle.truncate(size)
        except PermissionError as exc:
            raise self._refused(f"resize to {size} bytes", None) from exc
        return size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position (shared with dups); returns the new position.

        ``whence`` is os.SEEK_SET, SEEK_CUR or SEEK_END. Raises ValueError for a position
        before the start, TypeError for non-ints.
        """
        offset = _validate.integer("offset", offset, low=-MAX_SIZE, high=MAX_SIZE)
        whence = _validate.integer("whence", whence)
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ValueError(f"whence must be os.SEEK_SET, SEEK_CUR or SEEK_END, got {whence}")
        if whence == os.SEEK_SET and offset < 0:
            raise ValueError(f"offset must be >= 0 with SEEK_SET, got {offset}")
        self._check_open()
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        """The file position."""
        self._check_open()
        return self._handle.seek(0, os.SEEK_CUR)

    # -- data ----------------------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes from the file position (all the rest when n < 0).

        Returns b"" at the end. Moves the position past what it returns.
        """
        n = _count("n", n, low=-1)
        self._check_open()
        if n < 0 or n > _DIRECT_READ:
            left = max(0, self._handle.size() - self._handle.seek(0, os.SEEK_CUR))
            n = left if n < 0 else min(n, left)
        chunks = []
        while n > 0:
            chunk = self._handle.read(n)
            if not chunk:  # the end (or someone shrank it meanwhile)
                break
            chunks.append(chunk)
            n -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def pread(self, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset``, without moving the file position.

        Returns b"" at or past the end.
        """
        n = _count("n", n)
        offset = _count("offset", offset)
        self._check_open()
        if n > _DIRECT_READ:
            n = min(n, max(0, self._handle.size() - offset))
        chunks = []
        while n > 0:
            chunk = self._handle.pread(n, offset)
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
            offset += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def write(self, data: Buffer) -> int:
        """Write all of ``data`` at the file position (growing the file if needed).

        Returns len(data). Raises PermissionError — nothing written — under SEAL_WRITE or
        SEAL_FUTURE_WRITE, or under SEAL_GROW when the write would pass the end;
        TypeError for data that is not bytes-like.
        """
        view = _bytes_like("data", data)
        self._check_open()
        if not view:
            return 0
        self._check_write(None, len(view))
        try:
            done = self._handle.write(view)
            while done < len(view):
                done += self._handle.write(view[done:])
        except PermissionError as exc:
            raise self._refused("write", None) from exc
        return done

    def pwrite(self, data: Buffer, offset: int) -> int:
        """Write all of ``data`` at ``offset`` without moving the file position.

        Returns len(data); raises as ``write()`` does.
        """
        view = _bytes_like("data", data)
        offset = _count("offset", offset, high=MAX_SIZE - len(view))
        self._check_open()
        if not view:
            return 0
        self._check_write(offset, len(view))
        try:
            done = self._handle.pwrite(view, offset)
            while done < len(view):
                done += self._handle.pwrite(view[done:], offset + done)
        except PermissionError as exc:
            raise self._refused("write", None) from exc
        return done

    def _check_write(self, offset: int | None, length: int) -> None:
        # The kernel refuses a write under SEAL_WRITE outright, but under SEAL_GROW it
        # writes what fits and then stops: refuse up front so that nothing changes.
        seals = self._current_seals()
        if seals & NO_WRITES_BITS:
            raise self._refused("write", seals)
        if not seals & GROW_BIT:
            return
        if offset is None:
            offset = self._handle.seek(0, os.SEEK_CUR)
        if offset + length > self._handle.size():
            raise self._refused(f"write past its end ({offset + length} > "
                                f"{self._handle.size()} bytes)", seals)

    def mmap(self, length: int | None = None, *, writable: bool = True,
             offset: int = 0) -> mmap.mmap:
        """Map ``length`` bytes from ``offset`` (default: to the end) with MAP_SHARED.

        Every mapping and every fd see the same bytes. Close the mapping when done: a
        writable one keeps SEAL_WRITE from being added. A read-only mapping
        (``writable=False``) does not stand in the way of SEAL_WRITE.

        Raises ValueError for an empty range, a range past the end or an offset that is
        not a multiple of the page size; PermissionError for a writable mapping under
        SEAL_WRITE/SEAL_FUTURE_WRITE; OSError (ENOMEM) when huge pages run out, and
        (EMFILE) when no fd is left: Python's mmap object keeps a dup of the fd.
        """
        _check_bool("writable", writable)
        offset = _validate.integer("offset", offset, low=0, high=MAX_SIZE)
        if length is not None:
            length = _validate.integer("length", length, low=1, high=MAX_SIZE)
        self._check_open()
        page = self._handle.page_size
        if offset % page:
            raise ValueError(f"offset must be a multiple of the page size, {page} bytes, "
                             f"got {offset}")
        size = self._handle.size()
        if length is None:
            if offset >= size:
                raise ValueError(f"nothing to map: offset {offset} is at or past the end "
                                 f"({size} bytes); truncate() the MemFD first")
            length = size - offset
        elif offset + length > size:
            raise ValueError(f"length {length} from offset {offset} runs past the end "
                             f"({size} bytes); truncate() the MemFD first")
        if writable:
            seals = self._current_seals()
            if seals & NO_WRITES_BITS:
                raise self._refused("be mapped writable", seals)
        try:
            with naming_fd_limit("MemFD.mmap()"):
                return self._handle.mmap(length, offset, writable)
        except PermissionError as exc:
            raise self._refused("be mapped writable", None) from exc

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

    def _current_seals(self) -> int:
        """The seals now; remembered once SEAL_SEAL is in, as the set can no longer change."""
        if self._final_seals is not None:
            return self._final_seals
        seals = self._handle.seals()
        if seals & SEAL_BIT:
            self._final_seals = seals
        return seals

    def _why_no_sealing(self) -> str:
        if self._allow_sealing is False:
            return (f"{self._label()} was created without allow_sealing, so no seal can "
                    "be added")
        return (f"{self._label()} is sealed with SEAL_SEAL (it was sealed so, or created "
                "without allow_sealing): no more seals can be added")

    def _refused(self, action: str, seals: int | None) -> PermissionError:
        if seals is None:
            seals = self._current_seals()
        return PermissionError(errno.EPERM, f"{self._label()} refuses to {action}: its "
                                            f"seals are {describe_seals(seals)}")

    def _label(self) -> str:
        return f"MemFD {self._handle.name!r}"

    def _state(self) -> str:
        name = f"name={self._handle.name!r}"
        if self._handle.closed:
            return name
        try:
            size, seals = self._handle.size(), describe_seals(self._handle.seals())
        except OSError as exc:  # repr runs from finalizers too: it must not raise
            return f"{name}, unreadable ({exc.strerror})"
        return f"{name}, size={size}, seals={seals}" + (", hugetlb" if self.hugetlb else "")


def _count(name: str, value: object, *, low: int = 0, high: int = MAX_SIZE) -> int:
    """A size, offset or count: ``_validate.integer`` with a fast path for plain ints."""
    if type(value) is int and low <= value <= high:
        return value
    return _validate.integer(name, value, low=low, high=high)


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


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def _bytes_like(name: str, data: object) -> memoryview:
    if type(data) is bytes or type(data) is bytearray:
        return memoryview(data)  # always contiguous single bytes: skip the checks
    if isinstance(data, str):
        raise TypeError(f"{name} must be bytes-like (bytes, bytearray, memoryview), not str;"
                        " encode it first")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be bytes-like (bytes, bytearray, memoryview), "
                        f"not {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ValueError(f"{name} must be a contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view
