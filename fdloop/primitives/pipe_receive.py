"""PipeReceiveStream: the reading end of a pipe (a child's stdout or stderr).

Re-exported by :mod:`fdloop.primitives.streams` (and ``fdloop``), whose docstring
describes both dialects. What this module owns is the buffer between the fd and the
caller, and the two rules it keeps:

* **Bounded.** Only the caller decides how much may pile up. Searching methods
  (``readline``, ``readuntil``, ``async for``) stop at ``limit`` bytes without the
  separator, as asyncio's StreamReader does, so a child that never prints a newline
  cannot grow the buffer past ``limit`` plus one read. ``read(n)``, ``receive(n)`` and
  ``readexactly(n)`` hold at most what they were asked for; only ``read()`` (to EOF)
  keeps everything, because that is what it returns.
* **Lossless on cancellation.** Bytes move from the fd into the buffer before any
  await, and the next read starts with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from anyio.abc import ByteReceiveStream

from .. import _aio, _validate
from .._aio.background import start_background
from ..backends.posix.pipe import PipeEnd
from ..errors import (
    BusyResourceError,
    IncompleteReadError,
    LimitOverrunError,
    LineTooLongError,
)
from .resource import FDResource

__all__ = ["DEFAULT_LIMIT", "PipeReceiveStream", "check_limit"]

DEFAULT_LIMIT = 2**16
"""The default ``limit``: asyncio's own (``asyncio.streams._DEFAULT_LIMIT``), 64 KiB."""
RECEIVE_SIZE = 65536
"""``receive()``'s default ``max_bytes``, as anyio's ByteReceiveStream has it."""
MAX_READ = 256 * 1024
"""The most one syscall asks of the kernel, whatever a caller's ``n``: ``os.read(fd, n)``
allocates ``n`` bytes first (a Linux pipe holds 64 KiB by default, more after
F_SETPIPE_SZ; asyncio's pipe transport reads the same 256 KiB)."""
YIELD_EVERY = 1024 * 1024
"""Bytes a reader may take without waiting before it lets other tasks run.

Yielding per 64 KiB chunk instead cost a third of the throughput on asyncio and two
thirds on trio (reading 100 MB from ``dd``)."""


def check_limit(limit: object) -> int:
    """``limit`` as a positive int, or TypeError/ValueError naming ``limit``.

    For callers that must refuse a bad limit before they create anything (``spawn``).
    """
    return _validate.integer("limit", limit, low=1)


_NEWLINE = (b"\n",)
"""``readline``'s separator, as ``_find`` takes it."""


def check_separator(separator: object) -> tuple[bytes, ...]:
    """``readuntil``'s separator as a tuple of bytes, shortest first; TypeError/ValueError
    as asyncio words them.

    A tuple of separators is accepted, as asyncio's StreamReader does since Python 3.13
    (on every Python here): the read ends where the earliest-ending of them ends.
    """
    separators = separator if isinstance(separator, tuple) else (separator,)
    if not separators:
        raise ValueError("separator must not be an empty tuple")
    for one in separators:
        if not isinstance(one, (bytes, bytearray)):
            raise TypeError(f"separator must be bytes, not {type(one).__name__}")
        if not one:
            raise ValueError("separator must not be empty")
    return tuple(sorted(map(bytes, separators), key=len))


class PipeReceiveStream(FDResource[PipeEnd], ByteReceiveStream):
    """The reading end of a pipe, e.g. ``proc.stdout``; owns (and closes) its fd."""

    def __init__(self, fd: int, *, limit: int = DEFAULT_LIMIT) -> None:
        """Take ownership of ``fd`` and make it non-blocking (on its open file description).

        ``limit`` bounds what ``readline()``/``readuntil()``/``async for`` buffer while
        they look for a separator (asyncio's ``limit=``). Raises TypeError/ValueError
        for a bad ``fd`` or ``limit``, OSError if ``fd`` is not open, NotThisKindOfFD
        for a regular file or directory; the fd is unchanged then.
        """
        fd = _validate.integer("fd", fd, low=0)
        limit = check_limit(limit)
        super().__init__(PipeEnd.adopt(fd))
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False
        self._busy = False
        self._unyielded = 0
        self._reads_ahead = False  # read_ahead() was called
        self._room: anyio.Event | None = None  # the read-ahead waits for a read to end

    @property
    def limit(self) -> int:
        """The most a separator search buffers before it raises (see ``readuntil``)."""
        return self._limit

    # -- anyio ---------------------------------------------------------------------------

    async def receive(self, max_bytes: int = RECEIVE_SIZE) -> bytes:
        """Wait for data and return 1..``max_bytes`` bytes.

        Raises anyio.EndOfStream once every writer has closed and the buffer is empty,
        ClosedResourceError if the stream is closed before or while waiting,
        BusyResourceError if another task is reading.
        """
        max_bytes = _validate.integer("max_bytes", max_bytes)
        if max_bytes < 1:  # (anyio's own streams' words, which its users match on)
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes}")
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
        ``read()`` holds all the child writes until EOF (that is its result); to keep
        memory bounded, read pieces with ``read(n)`` or ``receive()``. A cancelled
        read keeps what it had read in the buffer for the next call. Raises
        ClosedResourceError and BusyResourceError as :meth:`receive` does.
        """
        n = _validate.integer("n", n)
        with self._reading():
            if n < 0:
                while not self._eof:
                    await self._fill(MAX_READ)
                return self._take(len(self._buffer))
            if self._buffer or n == 0:
                return self._take(n)
            return await self._read_some(n)

    async def readline(self) -> bytes:
        """The next line including its ``b"\\n"``; at EOF the unterminated rest or ``b""``.

        Raises LineTooLongError (a ValueError, as asyncio's) once more than ``limit``
        bytes come without a newline, after dropping the long line from the buffer: up
        to and including its newline if that is already buffered, else everything
        buffered (the rest of the line then starts the next read). The limit counts
        the line without its newline.
        """
        with self._reading():
            try:
                end = await self._find(_NEWLINE)
            except LimitOverrunError as overrun:
                if self._buffer.startswith(b"\n", overrun.consumed):
                    dropped = overrun.consumed + 1
                else:
                    dropped = len(self._buffer)
                del self._buffer[:dropped]
                raise LineTooLongError(
                    f"{overrun.args[0]}: dropped {dropped} bytes of a line longer than "
                    f"the stream's limit of {self._limit} bytes"
                ) from None
            return self._take(len(self._buffer) if end < 0 else end)

    async def readuntil(self, separator: bytes | tuple[bytes, ...] = b"\n") -> bytes:
        """Bytes up to and including ``separator``, at most ``limit`` before it.

        ``separator`` may be a tuple (asyncio's since Python 3.13): the shortest chunk
        that ends in any of them is returned.

        Raises LimitOverrunError (an asyncio.LimitOverrunError) if more than ``limit``
        bytes come without the separator or before it: nothing is consumed then, and
        ``consumed`` says how many buffered bytes it is safe to read past.
        IncompleteReadError (``partial`` = everything left, the buffer emptied) if EOF
        comes first, ValueError for an empty separator.
        """
        separators = check_separator(separator)
        with self._reading():
            end = await self._find(separators)
            if end < 0:
                partial = self._take(len(self._buffer))
                raise IncompleteReadError(partial, None)
            return self._take(end)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; IncompleteReadError (with ``partial``) if EOF comes first.

        Buffers up to ``n`` bytes (``limit`` does not apply, as in asyncio).
        """
        n = _validate.integer("n", n, low=0)
        with self._reading():
            while len(self._buffer) < n and not self._eof:
                await self._fill(max(n - len(self._buffer), RECEIVE_SIZE))
            if len(self._buffer) < n:
                raise IncompleteReadError(self._take(len(self._buffer)), n)
            return self._take(n)

    @property
    def reading(self) -> bool:
        """True while a task is inside a read of this stream (another read would raise
        BusyResourceError)."""
        return self._busy

    def read_ahead(self, high_water: int) -> None:
        """Keep reading the pipe into the buffer while it holds less than ``high_water``
        bytes and no read is under way, as asyncio's pipe transports do: a child can
        then write that much (plus what the pipe holds) and exit before anyone reads.
        :mod:`fdloop.compat.asyncio` asks for ``2 * limit``, where asyncio pauses.

        Stops at EOF and at ``close()``; the order of the bytes is kept (it never reads
        while a read is under way). Idempotent. On an asyncio loop only (trio lets one
        task at a time wait on a fd): RuntimeError elsewhere.
        """
        high_water = _validate.integer("high_water", high_water, low=1)
        self._check_open()
        if _aio.current_library() != "asyncio":
            raise RuntimeError("read_ahead() needs an asyncio loop")
        if self._reads_ahead:
            return
        self._reads_ahead = True
        start_background(
            lambda: self._keep_reading(high_water),
            f"fdloop PipeReceiveStream read-ahead fd {self._handle.fileno()}", lambda: None,
        )

    async def _keep_reading(self, high_water: int) -> None:
        try:
            while not self._eof and not self._handle.closed:
                if self._busy or len(self._buffer) >= high_water:
                    self._room = anyio.Event()  # set as the read ends (or at close)
                    await self._room.wait()
                    continue
                try:
                    data = self._handle.read(MAX_READ)
                except BlockingIOError:
                    await self._waiter.wait()
                    continue
                if data:
                    self._buffer += data
                else:
                    self._eof = True
        except (anyio.ClosedResourceError, OSError):
            pass  # closed; or a read error, which the next read of the caller's raises

    def at_eof(self) -> bool:
        """True once the end is reached: every writer has closed and every byte is read.

        As asyncio's StreamReader, whose transport reports EOF without being asked, it
        does not wait for a read to return ``b""`` first (so ``while not
        s.at_eof(): await s.readline()`` gets no empty line at the end): with nothing
        buffered and no read under way, it looks with one non-blocking read, and keeps
        what that finds for the next read.
        """
        if self._buffer:
            return False
        if not self._eof and not self._busy and not self._handle.closed:
            try:
                data = self._handle.read(RECEIVE_SIZE)
            except BlockingIOError:
                return False  # nothing there yet, and a writer still holds the pipe
            if data:
                self._buffer += data
                return False
            self._eof = True
        return self._eof

    def exception(self) -> BaseException | None:
        """None: asyncio's StreamReader keeps an error its transport set; a pipe's
        errors are raised by the read that meets them."""
        return None

    def __aiter__(self) -> PipeReceiveStream:
        return self

    async def __anext__(self) -> bytes:
        """The next line (as :meth:`readline`, so a line past ``limit`` raises
        LineTooLongError); iteration stops at EOF.

        Lines are valid chunks of the byte stream, so this still honours anyio's
        ByteReceiveStream contract, except that a line may exceed 64 KiB when the limit
        is set higher.
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
            self._let_read_ahead()

    def _let_read_ahead(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()

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
        max_bytes = min(max_bytes, MAX_READ)
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

    async def _find(self, separators: tuple[bytes, ...]) -> int:
        """Fill until one of ``separators`` (shortest first) is buffered; the index just
        past the first one to end, or -1 at EOF.

        Raises LimitOverrunError, consuming nothing, as asyncio's ``readuntil`` does:
        when the separator starts past ``limit``, or when more than ``limit`` bytes are
        buffered that cannot hold the start of one. The buffer is then at most ``limit``
        plus one read.
        """
        shortest, longest = len(separators[0]), len(separators[-1])
        clean = 0  # bytes at the front known not to start a separator
        while True:
            if len(self._buffer) - clean >= shortest:
                start = end = -1
                for separator in separators:
                    index = self._buffer.find(separator, clean)
                    if index >= 0 and (end < 0 or index + len(separator) < end):
                        start, end = index, index + len(separator)
                if end >= 0:
                    if start > self._limit:
                        raise LimitOverrunError(
                            "separator found, but the chunk before it exceeds the limit",
                            start,
                        )
                    return end
                clean = max(0, len(self._buffer) + 1 - longest)
                if clean > self._limit:
                    raise LimitOverrunError(
                        "separator not found, and the chunk exceeds the limit", clean
                    )
            if self._eof:
                return -1
            await self._fill(RECEIVE_SIZE)

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
        """Close the fd and drop buffered bytes; waiting readers get ClosedResourceError.

        From any thread (see :class:`FDResource`); reading belongs to the loop's thread.
        """
        super().close()

    def _close_here(self) -> None:
        super()._close_here()
        self._buffer.clear()
        self._let_read_ahead()

    def _state(self) -> str:
        parts = []
        if self._buffer:
            parts.append(f"{len(self._buffer)} bytes buffered")
        if self._eof:
            parts.append("EOF")
        return ", ".join(parts)
