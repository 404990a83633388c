"""``asyncio.create_subprocess_exec``/``create_subprocess_shell``, over fdloop.

Change ``asyncio.create_subprocess_exec`` to ``fdloop.compat.asyncio.create_subprocess_exec``
and the rest of the code stays as it is: the :class:`Process` returned has asyncio's
API — ``await wait()`` (an int), ``await communicate(input)``, ``returncode``, ``pid``,
``send_signal``/``terminate``/``kill``, ``stdin`` with ``write()``/``await drain()``/
``close()``, ``stdout``/``stderr`` with ``read``/``readline``/``readuntil``/
``readexactly``/``at_eof``/``async for`` bounded by ``limit=``, read ahead up to
``2 * limit`` as asyncio's are (so a child may write that much and exit unread) — and
takes the same arguments, with asyncio's refusals (``text``, ``encoding``, ``errors``,
``universal_newlines``, ``bufsize`` and the wrong ``shell`` raise ValueError). Only on
asyncio loops (uvloop included); under trio use :mod:`fdloop.compat.trio`.

What is different, on purpose:

* **Kill-on-close.** asyncio lets a dropped Process's child run on. Here the child
  belongs to the object: ``await proc.aclose()`` (or leaving ``async with proc``, which
  asyncio's Process lacks) ends a running child (``kill_signal``, ``kill_timeout``,
  SIGKILL), and garbage-collecting the Process of a running child SIGKILLs it (with a
  ResourceWarning). A Process whose child has exited is released quietly. Pass
  ``daemon=True`` for a child meant to outlive its handle.
* Keep the Process while you use its streams: they are closed with it.
* ``returncode`` is up to date without a ``wait()`` (it polls, as trio's does). An
  unknown exit status (see :class:`fdloop.ExitStatus`) is ``ExitStatus.UNKNOWN_INT``
  from ``wait()`` and None as ``returncode``, never an invented 255.
* Signalling a process that has exited does nothing (asyncio raises
  ProcessLookupError once it has noticed the exit): a signal can never reach a
  recycled pid, so there is nothing to report.
* ``stdin`` keeps asyncio's manners once its pipe is gone (closed, or the child
  stopped reading): ``write()`` drops the bytes without raising and ``drain()`` raises
  ConnectionResetError("Connection lost") (:class:`fdloop.errors.ConnectionLostError`,
  a BrokenPipeError too). ``stdin.pipe`` is fdloop's own :class:`PipeSendStream`.
* ``communicate()`` also takes ``timeout=`` (Popen's), and every other
  :func:`fdloop.spawn` argument passes through (``kill_signal``, ``die_with_parent``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import select
from collections.abc import Iterable, Sequence
from typing import Any

from .. import _aio, _validate
from ..errors import ClosedResourceError, ConnectionLostError, IncompleteReadError
from ..primitives.pipe_receive import check_separator
from ..primitives.pipe_send import byte_view
from ..primitives.process_api import drop_windows_options
from ..primitives.processfd import ProcessFD
from ..primitives.spawn import StrOrBytesPath, spawn
from ..primitives.streams import DEFAULT_LIMIT, PipeReceiveStream, PipeSendStream
from . import ProcessWrapper, quiet_when_exited

__all__ = ["Process", "StreamWriter", "create_subprocess_exec", "create_subprocess_shell"]


class StreamWriter:
    """A child's stdin as asyncio's subprocess ``StreamWriter`` behaves, over fdloop's
    :class:`PipeSendStream` (``pipe``), which does the writing and buffering.

    Where the two differ, this follows asyncio. ``write()`` never raises for a pipe that
    is gone: after ``close()``/``write_eof()``/``communicate()``, or once the child has
    closed its end (then ``is_closing()`` is True, as asyncio's loop notices without a
    write), the bytes are dropped. ``drain()`` then raises
    :class:`~fdloop.errors.ConnectionLostError` (a ConnectionResetError and a
    BrokenPipeError) for bytes that were dropped, and — as asyncio's once its transport
    is closed — also with nothing written, once the child's end is gone or a close has
    been seen through (``wait_closed()``, ``communicate()``). Right after ``close()`` it
    waits until the bytes written before it are delivered, as asyncio's drain does.
    """

    __slots__ = ("_dropped", "_lost_connection", "pipe")

    def __init__(self, pipe: PipeSendStream) -> None:
        self.pipe = pipe
        self._dropped = False  # write() was called after close(): drain() says so
        # asyncio's "connection lost", after which its drain() raises even with nothing
        # written: the child's end went away, or a close was seen through (wait_closed(),
        # communicate()). A drain right after close() still waits for the flush.
        self._lost_connection = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` for the child (dropped once the pipe is gone); TypeError for
        str and other non-bytes."""
        if self.pipe.closed or self._child_end_gone():
            if byte_view(data):
                self._dropped = True
            return
        self.pipe.write(data)

    def _child_end_gone(self) -> bool:
        """True (and the pipe closed, as asyncio's transport closes itself) once the
        child's end of the pipe is closed while ours is open with nothing buffered:
        asyncio's loop notices that without a write (it polls the fd) and from then on
        drops writes and fails drains. With bytes buffered, the flush finds it out."""
        pipe = self.pipe
        if pipe.closed or not pipe.idle:
            return False
        poller = select.poll()
        poller.register(pipe.fileno(), select.POLLOUT)
        if not any(revents & select.POLLERR for _fd, revents in poller.poll(0)):
            return False
        pipe.close()  # nothing buffered: the fd is closed at once, and nothing is lost
        self._lost_connection = True
        return True

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        """``write()`` each item of ``data`` in turn."""
        for item in data:
            self.write(item)

    async def drain(self) -> None:
        """Wait until what was written is in the kernel (after ``close()``: delivered and
        the pipe closed). ConnectionLostError if the child stopped reading first, bytes
        were written after the close, or the connection is lost (see the class)."""
        try:
            if not self._child_end_gone() and not self.pipe.closed:
                with contextlib.suppress(ClosedResourceError):  # closed while waiting
                    await self.pipe.drain()
                    return
            if self._dropped:
                await _aio.checkpoint()
                raise ConnectionLostError(
                    errno.EPIPE, "Connection lost: written after the pipe was closed")
            if self._lost_connection:
                await _aio.checkpoint()
                raise ConnectionLostError(errno.EPIPE, "Connection lost")
            await self.pipe.wait_closed()
        except BrokenPipeError as exc:
            raise ConnectionLostError(errno.EPIPE, "Connection lost") from exc

    def close(self) -> None:
        """Close stdin once what was written is through: the child reads EOF."""
        self._child_end_gone()  # (asyncio's transport may have closed itself already)
        self.pipe.close()

    def is_closing(self) -> bool:
        """True once ``close()`` (or ``write_eof()``, ``communicate()``) was called, or
        the child's end of the pipe is closed."""
        return self.pipe.is_closing() or self._child_end_gone()

    async def wait_closed(self) -> None:
        """Wait for the close to finish; BrokenPipeError if written bytes were lost."""
        try:
            await self.pipe.wait_closed()
        finally:
            self._note_closed()

    def _note_closed(self) -> None:
        """A close was seen through (see ``_lost_connection``)."""
        self._lost_connection = self._lost_connection or self.pipe.fully_closed

    def can_write_eof(self) -> bool:
        """True: a pipe's end of file is its close."""
        return True

    def write_eof(self) -> None:
        """``close()``."""
        self.close()

    def __repr__(self) -> str:
        return f"<fdloop.compat.asyncio.StreamWriter {self.pipe!r}>"


class _Drained:
    """What a piped ``stdout``/``stderr`` becomes once ``communicate()`` has read it to
    EOF and released its pipe: asyncio's StreamReader answers at EOF, for good."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def read(self, n: int = -1) -> bytes:
        _validate.integer("n", n)
        return b""

    async def readline(self) -> bytes:
        return b""

    async def readuntil(self, separator: bytes | tuple[bytes, ...] = b"\n") -> bytes:
        check_separator(separator)
        raise IncompleteReadError(b"", None)

    async def readexactly(self, n: int) -> bytes:
        if _validate.integer("n", n, low=0):
            raise IncompleteReadError(b"", n)
        return b""

    def at_eof(self) -> bool:
        return True

    def exception(self) -> BaseException | None:
        return None

    def __aiter__(self) -> _Drained:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration

    def __repr__(self) -> str:
        return "<fdloop.compat.asyncio stream, read to EOF by communicate()>"


class Process(ProcessWrapper):
    """asyncio.subprocess.Process's API over a :class:`fdloop.ProcessFD` (``processfd``).

    After ``communicate()``, ``stdout`` and ``stderr`` (if piped) stay at EOF as
    asyncio's do: their reads return ``b""`` (``readexactly``/``readuntil`` raise
    IncompleteReadError) and ``at_eof()`` is True, while the pipes themselves are
    released, as Popen's communicate releases them.
    """

    stdin: StreamWriter | None
    stdout: PipeReceiveStream | _Drained | None
    stderr: PipeReceiveStream | _Drained | None

    def __init__(self, proc: ProcessFD) -> None:
        self.processfd = proc
        self.stdin = None if proc.stdin is None else StreamWriter(proc.stdin)
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self._communicated = False  # a communicate() has returned

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.processfd.pid

    async def communicate(self, input: bytes | None = None, timeout: float | None = None
                          ) -> tuple[bytes | None, bytes | None]:
        """Send ``input`` (if stdin is a pipe), close stdin, read stdout and stderr to
        EOF, wait for the exit; ``(stdout, stderr)``, None for streams not piped.

        As asyncio's, ``input`` is ignored when stdin is not a pipe (or is closed already)
        and a broken pipe is not an error, and a later call finds every stream at EOF
        (``b""``; its input is dropped). ``timeout``: see
        :meth:`fdloop.ProcessFD.communicate`.
        """
        if self._communicated:
            # asyncio's streams stay at EOF and its stdin drops the input: b"" for each
            # piped stream, once the exit is in.
            await self.processfd.wait()
            return (None if self.stdout is None else b"",
                    None if self.stderr is None else b"")
        if self.processfd.stdin is None or self.processfd.stdin.closed:
            input = None  # (asyncio's closed StreamWriter drops what it is given)
        result: tuple[bytes | None, bytes | None] = await self.processfd.communicate(
            input, timeout
        )
        self._communicated = True
        if self.stdin is not None:
            self.stdin._note_closed()
        # communicate() drained stdout and stderr to EOF and closed them (Popen's rule).
        # asyncio's StreamReader has no close: at EOF it answers b"" for good. So do ours.
        stdout, stderr = self.processfd.stdout, self.processfd.stderr
        if stdout is not None and stdout.closed:
            self.stdout = _Drained(stdout.limit)
        if stderr is not None and stderr.closed:
            self.stderr = _Drained(stderr.limit)
        return result

    def __repr__(self) -> str:
        return f"<fdloop.compat.asyncio.Process {self.pid}>"


async def create_subprocess_exec(
    program: StrOrBytesPath, *args: StrOrBytesPath, stdin: Any = None, stdout: Any = None,
    stderr: Any = None, limit: int = DEFAULT_LIMIT, **kwds: Any,
) -> Process:
    """Start ``program`` with ``args``, as asyncio.create_subprocess_exec.

    ``limit`` bounds the line searches of ``stdout``/``stderr`` (asyncio's 64 KiB
    default). Other keywords go to :func:`fdloop.spawn` (``cwd``, ``env``, ``pass_fds``,
    ``start_new_session``, ``user``...). Raises ValueError for the arguments asyncio
    refuses, RuntimeError outside an asyncio loop, and what spawn raises.
    """
    if kwds.get("shell"):
        raise ValueError("shell must be False")
    kwds.pop("shell", None)
    return _start([program, *args], limit, stdin=stdin, stdout=stdout, stderr=stderr, **kwds)


async def create_subprocess_shell(
    cmd: str | bytes, stdin: Any = None, stdout: Any = None, stderr: Any = None,
    limit: int = DEFAULT_LIMIT, **kwds: Any,
) -> Process:
    """Run ``cmd`` with ``/bin/sh -c``, as asyncio.create_subprocess_shell.

    Raises ValueError if ``cmd`` is not a str/bytes or ``shell`` is given false, as
    asyncio does; otherwise as :func:`create_subprocess_exec`.
    """
    if not isinstance(cmd, (bytes, str)):
        raise ValueError("cmd must be a string")
    if not kwds.pop("shell", True):
        raise ValueError("shell must be True")
    return _start(cmd, limit, stdin=stdin, stdout=stdout, stderr=stderr, shell=True, **kwds)


def _start(argv: str | bytes | Sequence[StrOrBytesPath], limit: int, **kwds: Any) -> Process:
    asyncio.get_running_loop()  # RuntimeError under trio: this module is asyncio's
    # asyncio's own refusals, in its words: its pipes carry bytes, unbuffered.
    for name in ("universal_newlines", "text"):
        if kwds.pop(name, False):
            raise ValueError(f"{name} must be False")
    if kwds.pop("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")
    for name in ("encoding", "errors"):
        if kwds.pop(name, None) is not None:
            raise ValueError(f"{name} must be None")
    drop_windows_options(kwds)  # startupinfo=None, creationflags=0 reach Popen as asyncio's
    proc = quiet_when_exited(spawn(argv, limit=limit, **kwds))
    proc.args = argv
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            # asyncio's pipe transports read ahead until 2 * limit bytes wait unread: a
            # child may write that much and exit before anyone reads (wait() first).
            stream.read_ahead(2 * limit)
    return Process(proc)
