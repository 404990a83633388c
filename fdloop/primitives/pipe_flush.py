"""The write buffer of :class:`fdloop.PipeSendStream` and the background task that
flushes it.

:class:`BufferedPipeWriter` is the base of :class:`~fdloop.primitives.pipe_send.PipeSendStream`:
it owns the pipe end, the bytes ``write()`` could not hand to the kernel yet (an
:class:`~fdloop.primitives.pipe_outbox.Outbox`), the counters that tell ``drain()`` and
``send()`` when their bytes are through, the error that broke the pipe, and the one
background flush (see :mod:`fdloop._aio.background`) that moves the buffer into the pipe
as it takes it. The public methods, in both dialects, are the subclass's.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

import anyio

from .. import _aio, _validate
from .._aio.background import start_background
from ..backends.posix.pipe import PipeEnd
from ..errors import BrokenResourceError, ClosedResourceError
from .pipe_outbox import Outbox
from .resource import FDResource

__all__ = ["YIELD_EVERY", "BufferedPipeWriter"]

YIELD_EVERY = 1024 * 1024
"""Bytes a writer (or the background flush) may move without waiting before it lets
other tasks run; as for reads (see :mod:`fdloop.primitives.pipe_receive`)."""


class BufferedPipeWriter(FDResource[PipeEnd]):
    """A pipe's writing end with a write buffer and its background flush; owns the fd."""

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
        self._busy_thread = 0  # the thread whose loop runs the flush or the direct send
        self._cancel_flush: Callable[[], None] | None = None
        self._progress: anyio.Event | None = None  # set when the flush moves or ends
        self._fd_closed: anyio.Event | None = None  # set when the fd is closed
        self._unyielded = 0

    def _yield_due(self) -> bool:
        """True (and the count restarts) once ``YIELD_EVERY`` bytes have moved without
        a wait: the caller then lets other tasks run."""
        if self._unyielded < YIELD_EVERY:
            return False
        self._unyielded = 0
        return True

    @property
    def closed(self) -> bool:
        """True once ``close()``, ``aclose()`` or ``detach()`` has run (the fd itself
        may stay open a while longer to flush what ``write()`` buffered)."""
        return self._closing or self._handle.closed

    @property
    def fully_closed(self) -> bool:
        """True once the fd itself is closed: after ``close()``, once the flush of what
        was buffered has ended (delivered or dropped)."""
        return self._handle.closed

    @property
    def idle(self) -> bool:
        """True when nothing from ``write()`` is buffered and no send or flush is under
        way."""
        return not self._pending and not self._sending and self._flusher is None

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedResourceError(f"{type(self).__name__} is closed")

    def _busy_elsewhere(self) -> bool:
        """True while the loop of another thread flushes or sends: the buffer, its
        counters and the events that wake its waiters then belong to that loop."""
        return (self._flusher is not None or self._direct) and (
            threading.get_ident() != self._busy_thread
        )

    def _check_thread(self) -> None:
        """Refuse a caller in another thread while a loop there flushes or sends."""
        if self._busy_elsewhere():
            raise RuntimeError(
                f"{type(self).__name__} is being written by the loop in thread "
                f"{self._busy_thread}: use it from that thread (for example through "
                "call_soon_threadsafe or trio.from_thread)"
            )

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
        self._busy_thread = threading.get_ident()
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
                if self._yield_due():
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
        if self._yield_due():
            # Writes that never wait must still let other tasks run. Before the write,
            # so that a cancellation never hides data that was written.
            await _aio.checkpoint()
        self._direct = True
        self._busy_thread = threading.get_ident()
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
