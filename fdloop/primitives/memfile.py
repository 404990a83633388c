"""The file half of MemFD: size, position, reads, writes and mappings, seal-checked.

:class:`MemoryFile` is MemFD's base class. Each operation here checks the seals in force
before it asks the kernel, so that a sealed-off operation raises PermissionError and
changes nothing, where the kernel would sometimes do part of it (a write under SEAL_GROW
stops at the end). Creating, sharing and sealing a MemFD are in :mod:`.memfd`.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import TYPE_CHECKING

from .. import _validate
from ..backends.contract import MemFDBackend
from .resource import FDResource, naming_fd_limit
from .seals import GROW_BIT, NO_WRITES_BITS, SEAL_BIT, SHRINK_BIT, describe_seals

if TYPE_CHECKING:
    # Any object with the buffer protocol: bytes, bytearray, memoryview, mmap, array...
    from typing_extensions import Buffer

MAX_SIZE = 2**63 - 1
"""The largest size a file can have (off_t is a signed 64-bit integer)."""

_DIRECT_READ = 1 << 16
"""Reads up to this many bytes skip asking for the size: an over-long buffer is cheap."""


class MemoryFile(FDResource[MemFDBackend]):
    """MemFD's file operations; see :class:`fdloop.MemFD` for the whole object."""

    _final_seals: int | None
    """The seals once SEAL_SEAL is in (the set can no longer change), else None."""

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
        view = bytes_like("data", data)
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
        view = bytes_like("data", data)
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
        check_bool("writable", writable)
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

    # -- seal checks ---------------------------------------------------------------------

    def _current_seals(self) -> int:
        """The seals now; remembered once SEAL_SEAL is in, as the set can no longer change."""
        if self._final_seals is not None:
            return self._final_seals
        seals = self._handle.seals()
        if seals & SEAL_BIT:
            self._final_seals = seals
        return seals

    def _refused(self, action: str, seals: int | None) -> PermissionError:
        if seals is None:
            seals = self._current_seals()
        return PermissionError(errno.EPERM, f"{self._label()} refuses to {action}: its "
                                            f"seals are {describe_seals(seals)}")

    def _label(self) -> str:
        return f"MemFD {self._handle.name!r}"


def _count(name: str, value: object, *, low: int = 0, high: int = MAX_SIZE) -> int:
    """A size, offset or count: ``_validate.integer`` with a fast path for plain ints."""
    if type(value) is int and low <= value <= high:
        return value
    return _validate.integer(name, value, low=low, high=high)


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def bytes_like(name: str, data: object) -> memoryview:
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
