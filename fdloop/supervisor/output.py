"""``fdloop supervise``: copying each program's output pipe, in bounded lines, to its place.

Each program's stdout and stderr go into one pipe per program (two when its config sends
them to different places: ``stderr_log``), which lives as long as the supervisor (a
restarted instance writes into the same one). :class:`ProgramOutput` reads it with
``receive()`` (at most 64 KiB per read) and :class:`LineSplitter` cuts the bytes into
lines of at most :data:`LINE_LIMIT` bytes: a longer line — a program printing 600 MB
without a newline — goes out as consecutive pieces of LINE_LIMIT bytes, each as its own
line. So the supervisor holds at most one piece and one read per program, whatever a
program prints, and keeps reading signals meanwhile.

A line goes to the supervisor's stdout as ``name | ...`` (a :class:`LineSink`), or to
the program's log file (a :class:`~fdloop.supervisor.logfile.LogFile`) as it is — with
the ``name | `` prefix only in a file that several programs share.
:class:`ProgramOutputs` builds all of that for a list of programs.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import anyio

from .. import _aio
from ..errors import SupervisorConfigError
from ..primitives.streams import PipeReceiveStream
from .logfile import LogFile, LogSettings
from .program import ProgramSpec

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


class LineDestination(Protocol):
    """Where copied lines go: a :class:`LineSink` or a :class:`LogFile`."""

    @property
    def crowded(self) -> bool:
        """Let the writer run before the next line (a sink more than half full)."""
        ...

    def put(self, line: bytes) -> None:
        """Take one line; never waits."""
        ...


class ProgramOutput:
    """One output pipe of a program and the task copying its lines to ``sink``."""

    def __init__(
        self, name: str, width: int, sink: LineDestination, *, prefixed: bool = True
    ) -> None:
        """Lines go out as ``name | line`` (``name`` padded to ``width``), or as they
        are with ``prefixed=False``."""
        read_fd, self.write_fd = os.pipe()
        try:
            self._stream = PipeReceiveStream(read_fd)
        except BaseException:
            os.close(read_fd)
            os.close(self.write_fd)
            raise
        self._prefix = f"{name:<{width}} | ".encode() if prefixed else b""
        self.name = name
        self.listeners: list[Callable[[bytes], None]] = []
        """Also called with each line as it is copied (``fdloop ctl tail``); never wait."""
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
                    line = self._ready.popleft()
                    self._sink.put(self._prefix + line)
                    for listener in self.listeners:
                        listener(line)
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
                for listener in self.listeners:
                    listener(rest)
        finally:
            self.done.set()

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_write_end()
        self._stream.close()


class ProgramOutputs:
    """Every program's output pipes, the copiers that read them, and their log files.

    Programs without log settings go to ``console`` as ``name | line``. A log file
    named by several programs is opened once (the first one's rotation settings apply)
    and its lines carry the ``name | `` prefix there too.
    """

    def __init__(
        self,
        programs: Sequence[ProgramSpec],
        logs: Mapping[str, LogSettings],
        console: LineDestination,
        *,
        on_problem: Callable[[str], None] | None = None,
        width: int = 0,
    ) -> None:
        """``on_problem`` hears a log file's write failures (see LogFile). Names are
        padded to the longest of ``programs``, or to ``width`` if that is more (the
        programs already running, for the pipes a reload adds).

        Raises OSError (EMFILE/ENFILE: out of fds for the pipes), or
        SupervisorConfigError naming the program whose log file cannot be opened; what
        was opened until then is closed again.
        """
        self.copiers: list[ProgramOutput] = []
        self.log_files: dict[Path, LogFile] = {}
        self._fds: dict[str, tuple[int, int]] = {}
        self._console = console
        self._on_problem = on_problem
        self._width = max([width, *(len(spec.name) for spec in programs)])
        self._sharers: dict[Path, set[str]] = {}
        for name, settings in logs.items():
            for path in (settings.stdout, settings.stderr):
                if path is not None:
                    self._sharers.setdefault(path, set()).add(name)
        try:
            for spec in programs:
                self._add(spec.name, logs.get(spec.name))
        except BaseException:
            self.close()
            raise

    def _add(self, name: str, settings: LogSettings | None) -> None:
        if settings is None:
            out = self._copier(name, None, None)
            self._fds[name] = (out.write_fd, out.write_fd)
            return
        out = self._copier(name, settings.stdout, settings)
        err = self._copier(name, settings.stderr, settings) if settings.separate else out
        self._fds[name] = (out.write_fd, err.write_fd)

    def _copier(self, name: str, path: Path | None, settings: LogSettings | None) -> ProgramOutput:
        destination: LineDestination = self._console
        prefixed = True
        if path is not None and settings is not None:
            log = self.log_files.get(path)
            if log is None:
                try:
                    log = LogFile(
                        path, max_bytes=settings.max_bytes, backups=settings.backups,
                        timestamps=settings.timestamps, on_problem=self._on_problem,
                    )
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE):
                        raise
                    raise SupervisorConfigError(
                        f"{name}: cannot open log file {str(path)!r}: {exc.strerror or exc}"
                    ) from None
                self.log_files[path] = log
            destination = log
            prefixed = len(self._sharers.get(path, ())) > 1
        copier = ProgramOutput(name, self._width, destination, prefixed=prefixed)
        self.copiers.append(copier)
        return copier

    def fds(self, name: str) -> tuple[int, int]:
        """The write ends to give program ``name`` as its (stdout, stderr)."""
        return self._fds[name]

    def __iter__(self) -> Iterator[ProgramOutput]:
        return iter(self.copiers)

    def __len__(self) -> int:
        return len(self._fds)

    def close_write_ends(self) -> None:
        """Our copies of the write ends: EOF comes once the programs' copies close too."""
        for copier in self.copiers:
            copier.close_write_end()

    async def drained(self) -> None:
        """Wait until every copier has reached EOF and copied everything."""
        for copier in self.copiers:
            await copier.done.wait()

    def close(self) -> None:
        """Close every pipe and log file (idempotent)."""
        for copier in self.copiers:
            copier.close()
        for log in self.log_files.values():
            log.close()
