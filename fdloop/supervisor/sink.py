"""Where ``fdloop supervise`` writes its own stdout and stderr without ever blocking.

A :class:`LineSink` takes whole lines from any task (:meth:`LineSink.put` never waits)
and one writer task (:meth:`LineSink.run`) moves them to the real stream through the
running loop's poll. A reader that stops reading (a paused ``less``, a pipe nobody
drains) therefore stalls only that writer task: restarts, signals and the copying of
every program's pipe go on.

The choice is *dropping*, not backpressure. Lines queue up to :data:`LIMIT` bytes per
stream; past that they are dropped and counted, and the programs' pipes keep being
drained, so no program blocks on its own output and the supervisor stays alive. Once the
reader has taken everything queued, one line ``fdloop supervise: N output lines dropped
(stdout not read)`` goes out first, so nothing vanishes silently. (Backpressure, i.e.
leaving the programs' pipes unread until stdout drains, would stall the programs
themselves on a full pipe, and a dead reader would freeze them for good.)

A reader that is gone (EPIPE, ``fdloop supervise ... | head``) ends the writing
silently, as SIGPIPE would. Any other write error (ENOSPC on /dev/full or a full disk,
EIO) is a failure: recorded in :attr:`LineSink.failure`, handed once to
:attr:`LineSink.on_failure` (the command reports it on its other stream and exits
non-zero at the end), and the stream's lines are dropped from then on.

O_NONBLOCK lives on the open file description, which fd 1 and 2 share with the parent
shell and everyone else who inherited them, so it is never set on them. Instead, on
Linux, opening ``/proc/self/fd/N`` gives a *new* description of the same pipe or
terminal, which is ours alone to make non-blocking. Where that is impossible or not
needed the sink writes blocking, as a plain ``print`` would (see :meth:`LineSink.open`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import BinaryIO, TextIO

import anyio

from .. import _aio
from ..backends.posix.pipe import PipeEnd

__all__ = ["CHUNK", "LIMIT", "LineSink"]

LIMIT = 1024 * 1024
"""Bytes that may wait for a slow reader, per stream; later lines are dropped."""
CHUNK = 64 * 1024
"""Most bytes handed to one write (a Linux pipe holds 64 KiB by default)."""


class LineSink:
    """Lines bound for one of the supervisor's own streams (stdout or stderr)."""

    def __init__(self, stream: TextIO, name: str, what: str, *, limit: int = LIMIT) -> None:
        """``name`` (``stdout``) and ``what`` (``output``) name the lines in the drop
        notice. Use :meth:`open`, which picks how to write."""
        self._stream = stream
        self._name = name
        self._what = what
        self._limit = limit
        self._buffer = bytearray()
        self._dropping = False
        self._dropped = 0
        self._broken = False
        self.failure: OSError | None = None
        """The write error (not EPIPE) that ended writing to this stream, if any."""
        self.on_failure: Callable[[OSError], None] | None = None
        """Called once with that error."""
        self._wake = anyio.Event()
        self._private: PipeEnd | None = None
        self._waiter: _aio.FDWaiter | None = None
        self._blocking: BinaryIO | None = None

    @classmethod
    def open(cls, stream: TextIO, name: str, what: str, *, limit: int = LIMIT) -> LineSink:
        """A sink for ``stream`` (``sys.stdout`` or ``sys.stderr``); call :meth:`close`.

        Non-blocking through a private description for a pipe or a terminal. Blocking,
        as before, for: a regular file (no reader can stall it, and the poll loop cannot
        wait on it; opening it again would also start at offset 0); a socket (Linux
        refuses to open one through /proc with ENXIO); a pipe whose reader is already
        gone (ENXIO too; the first write then gets EPIPE); no /proc (not Linux); a
        stream with no fd at all (e.g. replaced by a test).
        """
        sink = cls(stream, name, what, limit=limit)
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, ValueError, OSError):
            fd, mode = -1, 0
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            try:
                # O_NOCTTY: reopening a terminal must never make it our controlling one.
                private = os.open(
                    f"/proc/self/fd/{fd}",
                    os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                )
            except OSError:
                private = -1
            if private >= 0:
                try:
                    sink._private = PipeEnd.adopt(private)
                except BaseException:
                    os.close(private)
                    raise
                sink._waiter = _aio.FDWaiter(private, writable=True)
                stream.flush()  # anything printed before goes out before our lines
                return sink
        sink._blocking = getattr(stream, "buffer", None)
        return sink

    @property
    def queued(self) -> int:
        """Bytes waiting for the reader."""
        return len(self._buffer)

    @property
    def crowded(self) -> bool:
        """More than half the queue is taken (and lines are not being dropped yet).

        A producer should then let the writer task run before the next line: a reader
        that keeps up must never lose lines just because one task read a program's pipe
        for a long while (up to a MiB) before the writer got a turn.
        """
        return len(self._buffer) > self._limit // 2 and not self._dropping

    def put(self, line: bytes) -> None:
        """Queue one line (``\\n`` added if missing); never waits.

        Dropped and counted if the queue is full, and from then on until the reader
        has taken everything queued. Ignored once the reader is gone (EPIPE).
        """
        if not line.endswith(b"\n"):
            line += b"\n"
        if self._broken:
            return
        if self._private is None:
            self._write_blocking(line)
            return
        if self._dropping or len(self._buffer) + len(line) > self._limit:
            self._dropping = True
            self._dropped += 1
            return
        self._buffer += line
        self._wake.set()

    def _write_blocking(self, line: bytes) -> None:
        try:
            if self._blocking is not None:
                self._blocking.write(line)
                self._blocking.flush()
            else:
                self._stream.write(line.decode(errors="replace"))
                self._stream.flush()
        except OSError as exc:  # EPIPE (reader gone) or a failure, e.g. ENOSPC
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self._broken = True
        self._buffer.clear()
        if exc.errno == errno.EPIPE or self.failure is not None:
            return
        self.failure = exc
        if self.on_failure is not None:
            self.on_failure(exc)

    async def run(self) -> None:
        """The writer task: write queued lines as the reader takes them, until cancelled.

        Returns at once for a blocking sink (:meth:`put` wrote already), and when the
        reader is gone.
        """
        end = self._private
        if end is None:
            return
        while not self._broken:
            if not self._buffer:
                if self._dropping:
                    self._catch_up_notice()
                    continue
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            await self._write_chunk(end)

    async def _write_chunk(self, end: PipeEnd) -> None:
        # Not PipeSendStream.write: a cancelled write there may have written an unknown
        # prefix. Here every byte the kernel took leaves the buffer at once, and the only
        # await is the wait for room, so a cancelled writer (shutdown) loses or repeats
        # nothing and flush() can take over where it stopped.
        with memoryview(self._buffer) as view:
            chunk = bytes(view[:CHUNK])
        try:
            written = end.write(memoryview(chunk))
        except BlockingIOError:
            assert self._waiter is not None
            try:
                await self._waiter.wait()
            except OSError:
                # The loop's poll refuses to watch this fd for writing (a device without
                # poll support).
                # Nothing else can tell us when there is room without a thread: from now
                # on write blocking, through our own description, as a print() would.
                os.set_blocking(end.fileno(), True)
            return
        except OSError as exc:  # EPIPE: the reader is gone; or the device failed: stop writing
            self._fail(exc)
            return
        del self._buffer[:written]
        await _aio.checkpoint()  # a reader that keeps up must not starve the other tasks

    def _catch_up_notice(self) -> None:
        count, self._dropped, self._dropping = self._dropped, 0, False
        self._buffer += (
            f"fdloop supervise: {count} {self._what} lines dropped "
            f"({self._name} not read)\n".encode()
        )

    async def flush(self, timeout: float) -> None:
        """Write what is queued (and a pending drop notice), for at most ``timeout`` s.

        For shutdown, with the :meth:`run` task already stopped: a reader that never
        reads again cannot hold the exit. Whatever is left is dropped.
        """
        end = self._private
        if end is None:
            return
        with anyio.move_on_after(timeout):
            while not self._broken and (self._buffer or self._dropping):
                if not self._buffer:
                    self._catch_up_notice()
                await self._write_chunk(end)

    def close(self) -> None:
        """Close the private fd (the process's fd 1/2 stay open); drop what is queued."""
        self._buffer.clear()
        if self._waiter is not None:
            self._waiter.close()  # before the fd: its number may be reused at once
        if self._private is not None:
            self._private.close()
