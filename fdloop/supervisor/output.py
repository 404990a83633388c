"""``fdloop supervise``: copying each program's output pipe, in bounded lines, to stdout.

Each program's stdout and stderr go into one pipe per program, which lives as long as the
supervisor (a restarted instance writes into the same one). :class:`ProgramOutput` reads
it with ``receive()`` (at most 64 KiB per read) and :class:`LineSplitter` cuts the bytes
into lines of at most :data:`LINE_LIMIT` bytes: a longer line — a program printing
600 MB without a newline — goes out as consecutive pieces of LINE_LIMIT bytes, each as
its own ``name | ...`` line. So the supervisor holds at most one piece and one read per
program, whatever a program prints, and keeps reading signals meanwhile.
"""

from __future__ import annotations

import os
from collections import deque

import anyio

from .. import _aio
from ..streams import PipeReceiveStream
from .sink import LineSink

LINE_LIMIT = 64 * 1024
"""The longest line copied whole (newline included); longer ones are cut at this size."""


class LineSplitter:
    """Cuts a byte stream into pieces ending at a newline or :data:`LINE_LIMIT` bytes."""

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        self._limit = limit
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every complete piece (the rest waits, under ``limit``)."""
        pending, limit = self._pending, self._limit
        pending += data
        pieces = []
        start, size = 0, len(pending)
        while start < size:
            end = pending.find(b"\n", start, start + limit)
            if end >= 0:
                pieces.append(bytes(pending[start : end + 1]))
                start = end + 1
            elif size - start >= limit:
                pieces.append(bytes(pending[start : start + limit]))
                start += limit
            else:
                break
        del pending[:start]
        return pieces

    def finish(self) -> bytes:
        """What is left at EOF (an unterminated last line), possibly ``b""``."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest


class ProgramOutput:
    """One program's output pipe and the task copying its lines, prefixed, to stdout."""

    def __init__(self, name: str, width: int, sink: LineSink) -> None:
        read_fd, self.write_fd = os.pipe()
        try:
            self._stream = PipeReceiveStream(read_fd)
        except BaseException:
            os.close(read_fd)
            os.close(self.write_fd)
            raise
        self._prefix = f"{name:<{width}} | ".encode()
        self._sink = sink
        self._lines = LineSplitter()
        self._ready: deque[bytes] = deque()
        self.done = anyio.Event()

    async def copy_lines(self) -> None:
        """Copy until EOF: every write end closed (ours, the programs', their children's).

        Cancelled (at shutdown), it loses nothing it had read: pieces not yet queued
        wait in ``_ready``.
        """
        try:
            while True:
                # put() never waits: a full queue or a gone reader drops the line, and
                # the pipe keeps being drained, or a chatty program would block.
                while self._ready:
                    self._sink.put(self._prefix + self._ready.popleft())
                    if self._sink.crowded:
                        await _aio.checkpoint()
                try:
                    data = await self._stream.receive()
                except anyio.EndOfStream:
                    break
                self._ready.extend(self._lines.feed(data))
            rest = self._lines.finish()
            if rest:
                self._sink.put(self._prefix + rest)
        finally:
            self.done.set()

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_write_end()
        self._stream.close()
