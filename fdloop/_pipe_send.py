"""PipeSendStream: the writing end of a pipe (a child's stdin), in both dialects.

Re-exported by :mod:`fdloop.streams`. Two ways to write, with different contracts:

* anyio's ``await send(data)`` returns once the kernel has every byte (or raises).
* asyncio's ``write(data)`` is a plain method, as on ``asyncio.StreamWriter``: it hands
  the kernel what fits at once and keeps the rest in the stream's own buffer, which a
  background task (see :mod:`fdloop._aio.background`) flushes as the pipe takes it,
  whether or not anyone awaits ``drain()``, just as asyncio's transports keep writing.
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
import errno
from collections.abc import Callable, Iterable

import anyio
from anyio.abc import ByteSendStream

from . import _aio, _validate
from ._aio.background import start_background
from ._pipe_outbox import Outbox
from .backends.pipe import PipeEnd
from .errors import BrokenResourceError, BusyResourceError, ClosedResourceError
from .primitives.resource import FDResource

__all__ = ["PipeSendStream"]

YIELD_EVERY = 1024 * 1024
"""Bytes a writer (or the background flush) may move without waiting before it lets
other tasks run; as for reads (see :mod:`fdloop._pipe_receive`)."""

Bytes = bytes | bytearray | memoryview


def _byte_view(data: object) -> memoryview:
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None


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
        self._pending = Outbox()  # from write(): not in the kernel yet
        self._queued = 0  # bytes ever put in _pending ...
        self._done = 0  # ... and of those, written or dropped
        self._lost = 0  # dropped: the pipe failed, or closed with no loop to flush in
        self._error: OSError | None = None  # the write error that broke the pipe
        self._closing = False  # close() was called; the fd may wait for the flush
        self._sending = False  # a send() is under way
        self._direct = False  # ... writing straight from its caller's buffer
        self._flusher: object | None = None  # the running background flush's token
        self._cancel_flush: Callable[[], None] | None = None
        self._progress: anyio.Event | None = None  # set when the flush moves or ends
        self._fd_closed: anyio.Event | None = None  # set when the fd is closed
        self._unyielded = 0

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
        view = _byte_view(item)
        self._check_open()
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
        view = _byte_view(data)
        self._check_open()
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
        self._raise_failure()
        if self._done < self._queued:
            await self._wait_flushed(self._queued)
        elif self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
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

    async def wait_closed(self) -> None:
        """Wait until the fd is closed, i.e. ``close()`` has flushed what was buffered.

        Raises the error that broke the pipe (BrokenResourceError, a BrokenPipeError)
        if that left written bytes undelivered, as asyncio's subprocess pipes do.
        Waiting is only watching: cancelling it does not stop the flush.
        """
        while not self._handle.closed:
            if self._fd_closed is None:
                self._fd_closed = anyio.Event()
            await self._fd_closed.wait()
        if self._lost:
            self._raise_failure()

    # -- closing ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()``, ``aclose()`` or ``detach()`` has run (the fd itself
        may stay open a while longer to flush what ``write()`` buffered)."""
        return self._closing or self._handle.closed

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
        :class:`FDResource`); everything else here belongs to that loop's thread.
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
        the reader left). If cancelled, the rest is dropped and the fd closed at once."""
        self.close()
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

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedResourceError(f"{type(self).__name__} is closed")

    def _close_now(self) -> None:
        """Drop what is buffered, close the fd, wake every waiter."""
        self._closing = True
        self._drop_pending()
        cancel, self._cancel_flush = self._cancel_flush, None
        if cancel is not None:
            cancel()
        super()._close_here()  # the fd itself; this runs in the loop's thread already
        if self._fd_closed is not None:
            self._fd_closed.set()
        self._notify()

    def _finalize(self) -> None:
        # A finalizer must not start tasks (a running flush holds a reference to us, so
        # there is none here anyway), block, or raise; a collection in another thread
        # queues the close to the loop's thread, as FDResource's own finalizer does.
        with contextlib.suppress(Exception):
            if not self._handed_over(self._close_now, wait=False):
                self._close_now()

    # -- the buffer and its background flush ----------------------------------------------

    def _queue(self, view: memoryview) -> None:
        self._pending.add(view)
        self._queued += len(view)
        if not self._direct:
            self._start_flush()

    def _start_flush(self) -> None:
        """Make sure a background task flushes ``_pending``; none without a loop (then
        the next ``drain()``/``send()``/``close()`` in a loop starts it)."""
        if self._flusher is not None or self._direct or not self._pending:
            return
        token = object()

        def ended() -> None:
            self._flush_ended(token)

        self._flusher = token
        cancel = start_background(
            lambda: self._flush(token), f"fdloop PipeSendStream flush fd {self._handle.fileno()}",
            ended,
        )
        if cancel is None:
            self._flusher = None
        else:
            self._cancel_flush = cancel

    async def _flush(self, token: object) -> None:
        try:
            while self._flusher is token and self._pending and not self._handle.closed:
                if self._unyielded >= YIELD_EVERY:
                    self._unyielded = 0
                    await _aio.checkpoint()
                    continue
                try:
                    written = self._pending.write_to(self._handle)
                except BlockingIOError:
                    self._unyielded = 0
                    await self._waiter.wait()
                    continue
                except OSError as exc:
                    self._fail(exc)
                    return
                self._done += written
                self._unyielded += written
                self._notify()
        except ClosedResourceError:
            pass  # closed under us (aclose() cancelled, detach): nothing left to do
        finally:
            self._flush_ended(token)

    def _flush_ended(self, token: object) -> None:
        """The flush with ``token`` is over (called twice: by itself and by the task)."""
        if self._flusher is not token:
            return
        self._flusher = None
        self._cancel_flush = None
        if self._closing and not self._handle.closed:
            self._close_now()  # flushed, failed, or the loop ends: the fd goes now
        self._notify()

    async def _wait_flushed(self, target: int) -> None:
        """Wait until the buffered bytes up to ``target`` (a ``_queued`` count) are
        through; raise as ``drain()`` does."""
        while True:
            self._check_open()
            self._raise_failure()
            if self._done >= target:
                return
            self._start_flush()
            if self._progress is None:
                self._progress = anyio.Event()
            await self._progress.wait()

    def _notify(self) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.set()

    async def _write_direct(self, view: memoryview) -> None:
        if self._unyielded >= YIELD_EVERY:
            # Writes that never wait must still let other tasks run. Before the write,
            # so that a cancellation never hides data that was written.
            self._unyielded = 0
            await _aio.checkpoint()
        self._direct = True
        written = 0
        waited = False
        try:
            while written < len(view):
                try:
                    written += self._handle.write(view[written:])
                except BlockingIOError:
                    await self._waiter.wait()
                    waited = True
                except OSError as exc:
                    self._fail(exc)
                    self._raise_failure()
        finally:
            if self._direct:
                self._direct = False
                self._start_flush()  # what write() queued meanwhile goes next
        self._unyielded = 0 if waited else self._unyielded + len(view) + 1

    def _fail(self, exc: OSError) -> None:
        """A write failed: the pipe is unusable; drop the buffer and tell the waiters."""
        if self._error is None:
            self._error = exc
        self._drop_pending()
        self._notify()

    def _drop_pending(self) -> None:
        dropped = self._pending.clear()
        self._lost += dropped
        self._done += dropped

    def _raise_failure(self) -> None:
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, BrokenPipeError):
            raise BrokenResourceError(
                errno.EPIPE, "the pipe's reading end is closed (e.g. the child exited)"
            ) from exc
        raise OSError(exc.errno, f"writing to the pipe failed: {exc.strerror}") from exc

    def _state(self) -> str:
        parts = []
        if self._pending:
            parts.append(f"{len(self._pending)} bytes buffered")
        if self._closing and not self._handle.closed:
            parts.append("closing")
        if self._error is not None:
            parts.append("reader gone" if isinstance(self._error, BrokenPipeError) else "failed")
        return ", ".join(parts)

