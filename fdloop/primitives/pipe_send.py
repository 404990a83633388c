"""PipeSendStream: the writing end of a pipe (a child's stdin), in both dialects.

Re-exported by :mod:`fdloop.primitives.streams` (and ``fdloop``); the write buffer and
its background flush are :mod:`fdloop.primitives.pipe_flush`. Two ways to write, with
different contracts:

* anyio's ``await send(data)`` returns once the kernel has every byte (or raises).
* asyncio's ``write(data)`` is a plain method, as on ``asyncio.StreamWriter``: it hands
  the kernel what fits at once and keeps the rest in the stream's own buffer, which a
  background task flushes as the pipe takes it, whether or not anyone awaits
  ``drain()``, just as asyncio's transports keep writing.
  ``await drain()`` waits until what was written before it is in the kernel, and is
  where a broken pipe is reported. ``close()`` flushes the rest in the background before
  the fd is closed; ``wait_closed()`` waits for that.

The buffer is not bounded by the stream: ``write()`` never refuses bytes, and
``drain()`` is the back-pressure, as in asyncio (await it after each write, or after
each batch). The stream holds only what its own caller wrote, never what a child sends.

Order is call order: bytes from ``write()`` and ``send()`` reach the pipe in the order
the calls were made, and ``send()`` copies into the buffer only when ``write()`` left
bytes there (otherwise it writes straight from the caller's buffer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import anyio
from anyio.abc import ByteSendStream

from .. import _aio
from ..errors import BusyResourceError
from .pipe_flush import BufferedPipeWriter

__all__ = ["PipeSendStream", "byte_view"]

Bytes = bytes | bytearray | memoryview


def byte_view(data: object) -> memoryview:
    """``data`` as a flat byte view; TypeError for str and other non-bytes."""
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None


class PipeSendStream(BufferedPipeWriter, ByteSendStream):
    """The writing end of a pipe, e.g. ``proc.stdin``; owns (and closes) its fd.

    Closing it is how the reader sees EOF.
    """

    # -- anyio ---------------------------------------------------------------------------

    async def send(self, item: Bytes) -> None:
        """Write all of ``item``; return once the kernel has taken every byte.

        Raises BrokenResourceError (a BrokenPipeError) if no reader is left,
        ClosedResourceError if the stream is closed before or while waiting,
        BusyResourceError if another task is sending, TypeError for str or other
        non-bytes. If cancelled while waiting, a prefix of ``item`` may have been
        written; if bytes from ``write()`` were still buffered, ``item`` was queued
        behind them and may still be written in full.
        """
        view = byte_view(item)
        self._check_open()
        self._check_thread()
        if self._sending:
            raise BusyResourceError("another task is already writing to this stream")
        self._raise_failure()
        self._sending = True
        try:
            if self._pending or self._flusher is not None:
                self._queue(view)
                await self._wait_flushed(self._queued)
            else:
                await self._write_direct(view)
        finally:
            self._sending = False

    # -- asyncio StreamWriter dialect ------------------------------------------------------

    def write(self, data: Bytes) -> None:
        """Write ``data`` without waiting: what the pipe cannot take now is buffered.

        Never blocks and never raises for a broken pipe: as in asyncio, bytes written
        after the reader has gone are dropped and ``drain()`` raises. Raises
        ClosedResourceError after ``close()``/``write_eof()``, TypeError for str or
        other non-bytes. The bytes are copied: ``data`` may change afterwards.
        """
        view = byte_view(data)
        self._check_open()
        self._check_thread()
        if not view:
            return
        if self._error is not None:
            self._lost += len(view)
            return
        if not self._pending and not self._direct and self._flusher is None:
            try:
                written = self._handle.write(view)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self._lost += len(view)
                self._fail(exc)
                return
            self._unyielded += written
            if written == len(view):
                return
            view = view[written:]
        self._queue(view)

    def writelines(self, data: Iterable[Bytes]) -> None:
        """``write()`` each item of ``data`` in turn."""
        for item in data:
            self.write(item)

    async def drain(self) -> None:
        """Wait until every byte written before this call is in the kernel.

        Raises BrokenResourceError (a BrokenPipeError) if the reader has gone (the
        bytes still buffered are dropped), the OSError of any other failed write,
        ClosedResourceError if the stream is closed before or while waiting. With
        nothing buffered it returns at once, letting other tasks run every 1 MiB.
        """
        self._check_open()
        self._check_thread()
        self._raise_failure()
        if self._done < self._queued:
            await self._wait_flushed(self._queued)
        elif self._yield_due():
            await _aio.checkpoint()

    def can_write_eof(self) -> bool:
        """True: a pipe's end of file is closing it (asyncio's StreamWriter API)."""
        return True

    def write_eof(self) -> None:
        """Close the pipe after the buffered bytes, so the reader sees EOF: ``close()``."""
        self.close()

    def is_closing(self) -> bool:
        """True once ``close()`` (or ``write_eof()``, ``aclose()``) was called."""
        return self.closed

    async def wait_writable(self) -> None:
        """Wait until the pipe can take bytes (or its reader has gone), writing nothing:
        trio's ``wait_send_all_might_not_block``. ClosedResourceError if the stream is
        closed before or while waiting, BusyResourceError while another task sends."""
        self._check_open()
        self._check_thread()
        if self._sending:
            raise BusyResourceError("another task is already writing to this stream")
        await self._waiter.wait()

    async def wait_closed(self) -> None:
        """Wait until the fd is closed, i.e. ``close()`` has flushed what was buffered.

        Raises the error that broke the pipe (BrokenResourceError, a BrokenPipeError)
        if that left written bytes undelivered, as asyncio's subprocess pipes do.
        Waiting is only watching: cancelling it does not stop the flush.
        """
        self._check_thread()
        while not self._handle.closed:
            if self._fd_closed is None:
                self._fd_closed = anyio.Event()
            await self._fd_closed.wait()
        if self._lost:
            self._raise_failure()

    # -- closing ---------------------------------------------------------------------------

    def fileno(self) -> int:
        """The pipe's fd. Raises ClosedResourceError once closed."""
        self._check_open()
        return self._handle.fileno()

    def close(self) -> None:
        """Stop writing; the reader sees EOF once the buffered bytes are through.

        Never blocks: bytes that ``write()`` buffered are flushed by a background task
        of the running loop, and the fd is closed after them (or when the reader
        leaves, or the loop ends). Without a running loop they are dropped. Tasks
        waiting in ``send()``/``drain()`` get ClosedResourceError. Idempotent. From
        another thread, the close runs in the thread of the loop that polls the fd (see
        :class:`FDResource`); everything else here belongs to that loop's thread, and
        ``write()``, ``send()``, ``drain()`` and ``wait_closed()`` raise RuntimeError in
        another thread while that loop flushes or sends.
        """
        super().close()  # FDResource: to the loop's thread, once, then _close_here()

    def _close_here(self) -> None:
        if self.closed:
            return
        self._closing = True
        if self._pending and self._error is None:
            if self._direct:
                # A send() waits in the fd's waiter: wake it (its own bytes stop here),
                # and give the flush a waiter of its own.
                self._waiter.close()
                self._waiter = _aio.FDWaiter(self._handle.fileno(), writable=True)
                self._direct = False
            self._start_flush()
            if self._flusher is not None:
                self._notify()
                return
        self._close_now()

    async def aclose(self) -> None:
        """``close()``, then wait for the flush of the buffered bytes (not raising if
        the reader left). If cancelled, the rest is dropped and the fd closed at once.

        From another thread while that loop flushes, it returns once the close has been
        handed to the loop's thread (see ``close()``): the flush ends there.
        """
        self.close()
        if self._busy_elsewhere():
            await _aio.checkpoint()
            return
        try:
            while not self._handle.closed:
                if self._fd_closed is None:
                    self._fd_closed = anyio.Event()
                await self._fd_closed.wait()
        except BaseException:
            self._close_now()
            raise

    def detach(self) -> int:
        """Return the fd unclosed and stop owning it.

        Raises BusyResourceError while bytes from ``write()`` are still buffered (await
        ``drain()`` first: they would be lost), ClosedResourceError once closed.
        """
        self._check_open()
        if self._pending:
            raise BusyResourceError(
                f"{len(self._pending)} bytes from write() are not flushed yet; "
                "await drain() before detach()"
            )
        return super().detach()

    def _finalize(self) -> None:
        # A finalizer must not start tasks (a running flush holds a reference to us, so
        # there is none here anyway), block, or raise; a collection in another thread
        # queues the close to the loop's thread, as FDResource's own finalizer does.
        with contextlib.suppress(Exception):
            if not self._handed_over(self._close_now, wait=False):
                self._close_now()

    def _state(self) -> str:
        parts = []
        if self._pending:
            parts.append(f"{len(self._pending)} bytes buffered")
        if self._closing and not self._handle.closed:
            parts.append("closing")
        if self._error is not None:
            parts.append("reader gone" if isinstance(self._error, BrokenPipeError) else "failed")
        return ", ".join(parts)

