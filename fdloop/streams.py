"""Async byte streams over pipe fds: a child's stdin, stdout and stderr.

:class:`PipeReceiveStream` and :class:`PipeSendStream` each own one pipe end, make it
non-blocking, and wait through the running loop's poll (:mod:`fdloop._aio`): no thread,
no transport, the same code under asyncio, uvloop and trio.

One API, two audiences. The streams are anyio byte streams (``receive()`` raises
``anyio.EndOfStream`` at EOF, ``send()``), so anyio's text and buffered wrappers take
them; they also speak asyncio's StreamReader dialect (``read()``, ``readline()``,
``readuntil()``, ``readexactly()`` return ``b""`` or raise IncompleteReadError at EOF;
``async for line in stream`` yields lines; ``write()`` + ``drain()``). Writes are not
buffered: ``await write(data)`` returns once the kernel has taken every byte.

Rules every method keeps:

* A cancelled read loses nothing: bytes are moved from the fd into the stream's own
  buffer before any await, and the next read starts with them.
* One reader and one writer at a time: a second task that reads (writes) while another
  is still waiting in a read (write) gets :class:`fdloop.BusyResourceError`; interleaving
  two readers' bytes would silently corrupt both.
* ``close()`` while a task waits wakes it with :class:`fdloop.ClosedResourceError`;
  every use after close raises it too.
* Writing after the reader has gone raises :class:`fdloop.BrokenResourceError`, which is
  a BrokenPipeError (asyncio's choice) and an anyio.BrokenResourceError (anyio's).
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from . import _aio, _validate
from .backends.pipe import PipeEnd
from .errors import BrokenResourceError, BusyResourceError, IncompleteReadError
from .primitives.resource import FDResource

__all__ = ["DEVNULL", "PIPE", "STDOUT", "PipeReceiveStream", "PipeSendStream"]

PIPE = subprocess.PIPE
"""Ask ``spawn`` for a new pipe to the child's stdin/stdout/stderr."""
DEVNULL = subprocess.DEVNULL
"""Connect the child's stream to /dev/null."""
STDOUT = subprocess.STDOUT
"""For ``stderr``: send the child's stderr wherever its stdout goes."""

DEFAULT_LIMIT = 65536
"""``receive()``'s default size, and how much one read asks of the kernel."""
_READ_TO_EOF_CHUNK = 256 * 1024
"""Bytes asked per syscall by ``read()`` to EOF (a Linux pipe holds 64 KiB by default,
more after F_SETPIPE_SZ)."""
YIELD_EVERY = 1024 * 1024
"""Bytes a reader (writer) may move without waiting before it lets other tasks run.

Yielding per 64 KiB chunk instead cost a third of the throughput on asyncio and two
thirds on trio (reading 100 MB from ``dd``)."""


class PipeReceiveStream(FDResource[PipeEnd], ByteReceiveStream):
    """The reading end of a pipe, e.g. ``proc.stdout``; owns (and closes) its fd."""

    def __init__(self, fd: int) -> None:
        """Take ownership of ``fd`` and make it non-blocking (on its open file description).

        Raises TypeError/ValueError for a bad ``fd``, OSError if it is not open,
        NotThisKindOfFD for a regular file or directory; the fd is unchanged then.
        """
        fd = _validate.integer("fd", fd, low=0)
        super().__init__(PipeEnd.adopt(fd))
        self._buffer = bytearray()
        self._eof = False
        self._busy = False
        self._unyielded = 0

    # -- anyio ---------------------------------------------------------------------------

    async def receive(self, max_bytes: int = DEFAULT_LIMIT) -> bytes:
        """Wait for data and return 1..``max_bytes`` bytes.

        Raises anyio.EndOfStream once every writer has closed and the buffer is empty,
        ClosedResourceError if the stream is closed before or while waiting,
        BusyResourceError if another task is reading.
        """
        max_bytes = _validate.integer("max_bytes", max_bytes, low=1)
        with self._reading():
            if self._buffer:
                return self._take(max_bytes)
            data = await self._read_some(max_bytes)
            if not data:
                raise anyio.EndOfStream
            return data

    # -- asyncio StreamReader dialect ------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """``n < 0``: wait for EOF and return everything; else up to ``n`` bytes.

        With ``n > 0``, returns as soon as any data is there (``b""`` only at EOF).
        A cancelled read keeps what it had read in the buffer for the next call.
        Raises ClosedResourceError and BusyResourceError as :meth:`receive` does.
        """
        n = _validate.integer("n", n)
        with self._reading():
            if n < 0:
                while not self._eof:
                    await self._fill(_READ_TO_EOF_CHUNK)
                return self._take(len(self._buffer))
            if self._buffer or n == 0:
                return self._take(n)
            return await self._read_some(n)

    async def readline(self) -> bytes:
        """The next line including its ``b"\\n"``; at EOF the unterminated rest or ``b""``."""
        with self._reading():
            return self._take(await self._find(b"\n", eof_ok=True))

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator``.

        Raises IncompleteReadError (``partial`` = everything left) if EOF comes first,
        ValueError for an empty separator.
        """
        if not isinstance(separator, (bytes, bytearray)):
            raise TypeError(f"separator must be bytes, not {type(separator).__name__}")
        if not separator:
            raise ValueError("separator must not be empty")
        with self._reading():
            end = await self._find(bytes(separator), eof_ok=False)
            if end < 0:
                partial = self._take(len(self._buffer))
                raise IncompleteReadError(partial, None)
            return self._take(end)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; IncompleteReadError (with ``partial``) if EOF comes first."""
        n = _validate.integer("n", n, low=0)
        with self._reading():
            while len(self._buffer) < n and not self._eof:
                await self._fill(max(n - len(self._buffer), DEFAULT_LIMIT))
            if len(self._buffer) < n:
                raise IncompleteReadError(self._take(len(self._buffer)), n)
            return self._take(n)

    def at_eof(self) -> bool:
        """True once EOF was seen and every buffered byte has been read."""
        return self._eof and not self._buffer

    def __aiter__(self) -> PipeReceiveStream:
        return self

    async def __anext__(self) -> bytes:
        """The next line (as :meth:`readline`); iteration stops at EOF.

        Lines are valid chunks of the byte stream, so this still honours anyio's
        ByteReceiveStream contract, except that one long line may exceed 64 KiB.
        """
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[None]:
        self._check_open()
        if self._busy:
            raise BusyResourceError("another task is already reading from this stream")
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    async def _read_some(self, max_bytes: int) -> bytes:
        """The next chunk from the fd (``b""`` at EOF, which is remembered); waits if empty.

        Nothing is awaited after the read itself, so a cancellation can never drop a
        chunk that was taken from the fd.
        """
        if self._eof:
            return b""
        if self._unyielded >= YIELD_EVERY:
            # Reads that find data without waiting never yield: a producer that keeps
            # the pipe full would let this task run forever. Yielding before the read
            # (not after it) keeps cancellation lossless.
            self._unyielded = 0
            await _aio.checkpoint()
        waited = False
        while True:
            try:
                data = self._handle.read(max_bytes)
                break
            except BlockingIOError:
                await self._waiter.wait()
                waited = True
        self._unyielded = 0 if waited else self._unyielded + len(data) + 1
        if not data:
            self._eof = True
        return data

    async def _fill(self, max_bytes: int) -> None:
        """Append the next chunk from the fd to the buffer, or set EOF."""
        data = await self._read_some(max_bytes)
        self._buffer += data

    async def _find(self, separator: bytes, *, eof_ok: bool) -> int:
        """Fill until ``separator`` is buffered; the index just past it.

        At EOF without it: the buffer's length if ``eof_ok``, else -1.
        """
        start = 0
        while True:
            index = self._buffer.find(separator, start)
            if index >= 0:
                return index + len(separator)
            if self._eof:
                return len(self._buffer) if eof_ok else -1
            start = max(0, len(self._buffer) - len(separator) + 1)
            await self._fill(DEFAULT_LIMIT)

    def _take(self, n: int) -> bytes:
        if n >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        with memoryview(self._buffer) as view:
            data = bytes(view[:n])
        del self._buffer[:n]
        return data

    def close(self) -> None:
        """Close the fd and drop buffered bytes; waiting readers get ClosedResourceError."""
        super().close()
        self._buffer.clear()

    def _state(self) -> str:
        parts = []
        if self._buffer:
            parts.append(f"{len(self._buffer)} bytes buffered")
        if self._eof:
            parts.append("EOF")
        return ", ".join(parts)


class PipeSendStream(FDResource[PipeEnd], ByteSendStream):
    """The writing end of a pipe, e.g. ``proc.stdin``; owns (and closes) its fd.

    Closing it is how the reader sees EOF.
    """

    def __init__(self, fd: int) -> None:
        """Take ownership of ``fd`` and make it non-blocking (on its open file description).

        Raises TypeError/ValueError for a bad ``fd``, OSError if it is not open,
        NotThisKindOfFD for a regular file or directory; the fd is unchanged then.
        """
        fd = _validate.integer("fd", fd, low=0)
        super().__init__(PipeEnd.adopt(fd))
        self._waiter = _aio.FDWaiter(fd, writable=True)
        self._busy = False
        self._unyielded = 0

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``, waiting for room in the pipe as often as needed.

        Raises BrokenResourceError (a BrokenPipeError) if no reader is left,
        ClosedResourceError if the stream is closed before or while waiting,
        BusyResourceError if another task is writing, TypeError for str or other
        non-bytes. If cancelled while waiting, a prefix of ``data`` may have been written.
        """
        try:
            view = memoryview(data).cast("B")
        except TypeError:
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
        self._check_open()
        if self._busy:
            raise BusyResourceError("another task is already writing to this stream")
        self._busy = True
        try:
            await self._write_all(view)
        finally:
            self._busy = False

    async def send(self, item: bytes) -> None:
        """anyio's name for :meth:`write`."""
        await self.write(item)

    async def drain(self) -> None:
        """asyncio familiarity: writes are unbuffered, so there is never anything to drain.

        Only checks that the stream is open and lets other tasks run.
        """
        self._check_open()
        await _aio.checkpoint()

    async def _write_all(self, view: memoryview) -> None:
        if self._unyielded >= YIELD_EVERY:
            # As for reads: writes that never wait must still let other tasks run. Before
            # the write, so that a cancellation never hides data that was written.
            self._unyielded = 0
            await _aio.checkpoint()
        written = 0
        waited = False
        while written < len(view):
            try:
                written += self._handle.write(view[written:])
            except BlockingIOError:
                await self._waiter.wait()
                waited = True
            except BrokenPipeError as exc:
                raise BrokenResourceError(
                    errno.EPIPE, "the pipe's reading end is closed (e.g. the child exited)"
                ) from exc
        self._unyielded = 0 if waited else self._unyielded + len(view) + 1
