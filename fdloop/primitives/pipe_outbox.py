"""The write buffer of :class:`fdloop.PipeSendStream`: what ``write()`` could not hand to
the kernel yet, as a queue of chunks that the stream's flush writes oldest first."""

from __future__ import annotations

import collections

from ..backends.posix.pipe import PipeEnd

__all__ = ["CHUNK_SIZE", "COALESCE_BELOW", "Outbox"]

COALESCE_BELOW = 16 * 1024
"""Buffered writes smaller than this are copied together into chunks of up to
``CHUNK_SIZE``, so that many small writes do not cost one syscall each to flush."""
CHUNK_SIZE = 64 * 1024


class Outbox:
    """The bytes ``write()`` could not hand over yet: a queue of chunks, oldest first.

    A large ``bytes`` is kept as it is (immutable, so no copy: buffering a 1 GB input
    does not cost a second GB); anything mutable is copied, since its owner may change
    it after ``write()`` returns; small writes are gathered into shared chunks.
    """

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: collections.deque[bytearray | memoryview] = collections.deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, view: memoryview) -> None:
        size = len(view)
        last = self._chunks[-1] if self._chunks else None
        if size < COALESCE_BELOW:
            if isinstance(last, bytearray) and len(last) + size <= CHUNK_SIZE:
                last += view
            else:
                self._chunks.append(bytearray(view))
        elif type(view.obj) is bytes:
            self._chunks.append(view)
        else:
            self._chunks.append(memoryview(bytes(view)))
        self._size += size

    def write_to(self, handle: PipeEnd) -> int:
        """One write of the oldest chunk; the count written (BlockingIOError/OSError
        from the write pass through, and then nothing is taken)."""
        head = self._chunks[0]
        with memoryview(head) as view:
            written = handle.write(view)
        if written == len(head):
            self._chunks.popleft()
        elif isinstance(head, bytearray):
            del head[:written]
        else:
            self._chunks[0] = head[written:]
        self._size -= written
        return written

    def clear(self) -> int:
        """Drop everything; the count dropped."""
        dropped, self._size = self._size, 0
        self._chunks.clear()
        return dropped
