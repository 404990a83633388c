"""The subprocess-shaped half of ProcessFD: what subprocess/asyncio/trio/anyio users expect.

:class:`ProcessAPI` is a mixin of :class:`fdloop.ProcessFD`, which owns the handle
itself (waiting, signals, kill-on-close, fork safety). The mixin adds, using only those:

* ``communicate(input=None, timeout=None)`` → ``(stdout, stderr)``, as Popen's and
  asyncio's: feeds stdin and drains both pipes concurrently (no deadlock however much
  either side writes), then waits for the exit. A timeout leaves the child running and
  keeps what was read, so calling it again loses nothing (Popen's contract);
* ``wait(timeout=...)``'s timeout (``fdloop.TimeoutExpired``);
* ``args`` (the command, where the caller recorded it: ``run()``, the compat layer);
* text mode (:class:`TextMode`): ``text``/``encoding``/``errors``/``universal_newlines``
  decoded exactly as subprocess does, used by ``communicate()`` and ``fdloop.run``.

It also makes every ProcessFD an ``anyio.abc.Process`` by inheritance (not a virtual
registration, so static type checkers accept a ProcessFD where anyio's type is asked
for). anyio's ``wait()`` returns an int: ours returns an ExitStatus, which is one.
"""

from __future__ import annotations

import codecs
import contextlib
import locale
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .. import _aio, _validate
from ..errors import BusyResourceError, TimeoutExpired
from .streams import PipeReceiveStream, PipeSendStream

if TYPE_CHECKING:
    from .exitstatus import ExitStatus

__all__ = ["Collector", "ProcessAPI", "TextMode", "as_input", "drop_windows_options"]

CHUNK = 256 * 1024
"""Bytes asked of the kernel per read while collecting output."""


@dataclass(frozen=True)
class TextMode:
    """How a text-mode exchange encodes input and decodes output (subprocess's rules)."""

    encoding: str
    errors: str

    @classmethod
    def choose(
        cls, *, text: object = None, encoding: object = None, errors: object = None,
        universal_newlines: object = None,
    ) -> TextMode | None:
        """The text mode these subprocess arguments ask for, or None for bytes.

        As in subprocess: any of ``text``, ``universal_newlines``, ``encoding`` or
        ``errors`` selects text mode; ``encoding`` defaults to the locale's, ``errors``
        to ``"strict"``. Raises subprocess.SubprocessError when ``text`` and
        ``universal_newlines`` are both given and disagree, TypeError for a non-str
        ``encoding``/``errors``, and LookupError for an encoding Python does not know:
        before the child starts, as Popen (whose text wrappers are made first) does.
        """
        if (text is not None and universal_newlines is not None
                and bool(universal_newlines) != bool(text)):
            raise subprocess.SubprocessError(
                "Cannot disambiguate when both text and universal_newlines are supplied "
                "but different. Pass one or the other."
            )
        for name, value in (("encoding", encoding), ("errors", errors)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        if not (text or universal_newlines or encoding or errors):
            return None
        chosen = encoding if isinstance(encoding, str) else locale.getpreferredencoding(False)
        codecs.lookup(chosen)  # (LookupError: "unknown encoding: ...")
        return cls(chosen, errors if isinstance(errors, str) else "strict")

    def encode(self, data: object) -> bytes:
        """Text input as bytes; TypeError (naming ``input``) unless it is a str."""
        if not isinstance(data, str):
            raise TypeError(f"input must be a str in text mode, not {type(data).__name__}")
        return data.encode(self.encoding, self.errors)

    def decode(self, data: bytes | None) -> str | None:
        """Output as str, with universal newlines: ``\\r\\n`` and ``\\r`` become ``\\n``."""
        if data is None:
            return None
        return data.decode(self.encoding, self.errors).replace("\r\n", "\n").replace("\r", "\n")


def as_input(data: object) -> memoryview:
    """``data`` as a flat byte view; TypeError (naming ``input``) for anything else."""
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"input must be bytes-like, not {type(data).__name__}") from None


def drop_windows_options(options: dict[str, Any]) -> None:
    """Take out of ``options`` the Popen keywords that mean nothing on POSIX, accepted as
    Popen accepts them there, so that code passing them moves unchanged.

    ``startupinfo`` must be None and ``creationflags`` 0 (else ValueError, Popen's).
    ``bufsize`` may be any int or None (TypeError otherwise, as Popen): it only sizes the
    file objects Popen wraps its pipes in, and fdloop's pipe streams are unbuffered byte
    streams. (asyncio's and trio's entry points apply their own stricter bufsize rule
    first.)
    """
    if options.pop("startupinfo", None) is not None:
        raise ValueError("startupinfo is only supported on Windows platforms")
    if options.pop("creationflags", 0) != 0:
        raise ValueError("creationflags is only supported on Windows platforms")
    if "bufsize" in options:
        size = options.pop("bufsize")
        if size is not None and not isinstance(size, int):
            raise TypeError(f"bufsize must be an integer, not {type(size).__name__}")


class Collector:
    """What a child wrote to its piped stdout/stderr so far; drained to EOF.

    Several drains may be started and cancelled in turn (a timeout, then a retry): a
    cancellation keeps every byte read, and the next drain goes on from there.
    """

    def __init__(self, stdout: PipeReceiveStream | None, stderr: PipeReceiveStream | None
                 ) -> None:
        self.streams = [s for s in (stdout, stderr) if s is not None]
        self._chunks: dict[int, list[bytes]] = {id(s): [] for s in self.streams}
        self._stdout = stdout
        self._stderr = stderr

    async def drain(self, stream: PipeReceiveStream) -> None:
        """Append everything up to EOF; a cancellation keeps what was read."""
        chunks = self._chunks[id(stream)]
        while chunk := await stream.read(CHUNK):
            chunks.append(chunk)

    async def drain_all(self) -> None:
        """Drain every stream not yet at EOF, concurrently."""
        async with anyio.create_task_group() as tasks:
            for stream in self.streams:
                if not stream.closed and not stream.at_eof():
                    tasks.start_soon(self.drain, stream)

    def pending(self) -> bool:
        """True while some stream may still deliver bytes."""
        return any(not s.closed and not s.at_eof() for s in self.streams)

    def stdout(self) -> bytes | None:
        return None if self._stdout is None else b"".join(self._chunks[id(self._stdout)])

    def stderr(self) -> bytes | None:
        return None if self._stderr is None else b"".join(self._chunks[id(self._stderr)])

    def timed_out(self, cmd: Any, timeout: float) -> TimeoutExpired:
        """The TimeoutExpired for ``cmd`` carrying the output read so far, as
        subprocess's: None for a stream that carried nothing yet (or is not a pipe)."""
        return TimeoutExpired(cmd, timeout, self.stdout() or None, self.stderr() or None)


class _Exchange:
    """One ``communicate()``, kept on the process across timeouts and after it completes
    (``done``): as Popen's, a later call returns the same output and refuses input."""

    def __init__(self, stdin: PipeSendStream | None, collector: Collector,
                 data: memoryview | None) -> None:
        self.stdin = stdin
        self.collector = collector
        self.done = False
        if stdin is not None and data is not None and not stdin.closed:
            # write(): the stream keeps what the pipe has not taken yet, so a timeout
            # loses no input and the next communicate() only waits for the rest.
            stdin.write(data)

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            if self.stdin is not None:
                tasks.start_soon(self._feed, self.stdin)
            tasks.start_soon(self.collector.drain_all)

    @staticmethod
    async def _feed(stdin: PipeSendStream) -> None:
        # Close only once every byte is in the pipe: the EOF says the input is
        # complete. A timeout leaves stdin open (see ProcessFD.aclose on the order).
        if not stdin.closed:
            # A child that exits (or closes stdin) without reading it all: its choice.
            with contextlib.suppress(BrokenPipeError):
                await stdin.drain()
            stdin.close()


class ProcessAPI(anyio.abc.Process):
    """Mixin of :class:`fdloop.ProcessFD`: communicate, wait's timeout, text mode, args.

    Also its anyio.abc.Process base: ``isinstance(proc, anyio.abc.Process)`` holds and
    code typed against anyio accepts a ProcessFD.
    """

    args: Any = None
    """The command this process was started with, where known (``fdloop.run`` and the
    compat entry points record it; ``spawn()`` callers may set it): what
    TimeoutExpired and CalledProcessError name as ``cmd``."""
    # anyio declares the streams as abstract properties; ProcessFD sets them per object.
    stdin: PipeSendStream | None = None
    stdout: PipeReceiveStream | None = None
    stderr: PipeReceiveStream | None = None
    _text: TextMode | None = None
    _exchange: _Exchange | None = None

    if TYPE_CHECKING:
        async def wait(self, timeout: float | None = None) -> ExitStatus: ...
        def poll(self) -> int | None: ...
        @property
        def status(self) -> ExitStatus | None: ...

    async def _wait_at_most(self, timeout: object) -> ExitStatus:
        """``wait()`` bounded by ``timeout`` seconds: TimeoutExpired if still running
        then (the process keeps running; nothing is reaped or lost)."""
        seconds = _validate.timeout("timeout", timeout)
        if seconds is None:  # (math.inf: no limit, as Popen.wait takes it)
            return await self.wait()
        if seconds == 0 and self.poll() is not None:
            # Popen's wait(timeout=0) returns an exit that is already there; a deadline
            # of now would cancel the wait at its first checkpoint, before it looked.
            await _aio.checkpoint()
            status = self.status
            assert status is not None
            return status
        with anyio.move_on_after(seconds):
            return await self.wait()
        raise TimeoutExpired(self.args, seconds)

    async def communicate(self, input: object = None, timeout: float | None = None
                          ) -> tuple[Any, Any]:
        """Send ``input``, close stdin, read stdout and stderr to EOF, wait for the exit.

        Returns ``(stdout, stderr)``: what the child wrote to each piped stream (bytes,
        or str in text mode, with universal newlines), None for a stream that is not a
        pipe. Input and output run concurrently, so neither side can block the other.
        stdin, when piped, is closed once ``input`` (bytes-like; str in text mode) is
        through — also with ``input=None`` — and a child that exits without reading it
        all is not an error. Once it returns, the piped stdout and stderr are closed too
        (drained to EOF; their fds are released, as Popen's communicate does).

        ``timeout`` (seconds): raises :class:`fdloop.TimeoutExpired` (a
        subprocess.TimeoutExpired) carrying the output read so far, as bytes; the child
        keeps running and nothing is lost: call ``communicate()`` again (without
        ``input``) to go on, or end the child. Cancellation keeps the same state.
        Once it has returned, a later call returns the same output again (Popen's).
        Raises ValueError for ``input`` without a piped stdin, with a stdin you closed,
        or given to a later call (after a timed-out or a completed one: it could not be
        sent), TypeError for input of the wrong type, BusyResourceError (a RuntimeError,
        as asyncio's) when another task is reading stdout or stderr — before anything
        is sent — and what the streams raise.
        """
        limit = _validate.timeout("timeout", timeout)
        exchange = self._exchange
        if exchange is None or not exchange.done:
            # Refused before anything is queued or started, and plainly: inside the drain
            # it would surface wrapped in the drain's exception groups.
            for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
                if stream is not None and stream.reading:
                    raise BusyResourceError(f"communicate(): another task is reading {name}")
        if exchange is None:
            data = None
            if input is not None:
                if self.stdin is None:
                    raise ValueError("communicate(input=...) needs stdin=PIPE")
                if self.stdin.closed:
                    # (Popen: "flush of closed file"): the input could not be sent
                    raise ValueError("communicate(input=...): stdin is already closed")
                data = memoryview(self._text.encode(input)) if self._text else as_input(input)
            exchange = _Exchange(self.stdin, Collector(self.stdout, self.stderr), data)
            self._exchange = exchange
        elif input is not None:
            raise ValueError("Cannot send input after starting communication")
        if exchange.done:
            await _aio.checkpoint()
        elif limit is None:
            await self._finish(exchange)
        else:
            with anyio.move_on_after(limit):
                await self._finish(exchange)
            if not exchange.done:
                raise exchange.collector.timed_out(self.args, limit)
        out, err = exchange.collector.stdout(), exchange.collector.stderr()
        if self._text is not None:
            return self._text.decode(out), self._text.decode(err)
        return out, err

    async def _finish(self, exchange: _Exchange) -> None:
        await exchange.run()
        await self.wait()
        exchange.done = True  # kept: a later communicate() returns the same output
        # Popen's rule: the pipes communicate() drained to EOF are closed with it, so a
        # handle kept afterwards holds no fd for them (asyncio's transports, too, close
        # their pipes at EOF).
        for stream in exchange.collector.streams:
            stream.close()
