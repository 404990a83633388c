"""Every exception fdloop raises on purpose, in one place.

All derive from :class:`FdloopError`. Where a standard exception already names the
category (a closed resource, an overflow, a missing feature), the fdloop class derives
from it too, so ``except OverflowError`` and ``except anyio.ClosedResourceError`` keep
working for code that does not know fdloop.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import anyio


class FdloopError(Exception):
    """Base class of every exception fdloop defines."""


class ClosedResourceError(FdloopError, anyio.ClosedResourceError):
    """The object was closed (or detached) before or while the operation waited."""


class CounterOverflowError(FdloopError, OverflowError):
    """An EventFD write would carry the counter past its maximum, 2**64 - 2.

    The counter is left exactly as it was.
    """


class ClockChanged(FdloopError):
    """A realtime TimerFD armed with ``cancel_on_set=True`` saw the wall clock jump.

    The timer keeps its settings; waiting again waits for the next expiration.
    """


class UnsupportedOperation(FdloopError, NotImplementedError):
    """The running platform or backend cannot do this (e.g. sealing on macOS)."""


class NotThisKindOfFD(FdloopError, ValueError):
    """``from_fd`` was given an open fd that is not the kind of object the class wraps."""


class SignalDeliveryWarning(FdloopError, RuntimeWarning):
    """A signal a SignalFD took over may still be delivered the ordinary way, or stay blocked.

    Emitted when another thread does not block the signal (it can take the signal and
    run its ordinary disposition, e.g. terminate the process), or when closing from the
    wrong thread cannot restore a thread's mask or a disposition.
    """


class SealBusyError(FdloopError, PermissionError):
    """``MemFD.seal(SEAL_WRITE)`` found a shared mapping that can still write (errno EBUSY).

    A PermissionError, so ``except PermissionError`` catches every refused ``seal()``;
    no seal was added. Close the writable mappings (in every process) and seal again.
    """


class BusyResourceError(FdloopError, anyio.BusyResourceError, RuntimeError):
    """Another task is already receiving from (or sending to) this stream.

    Pipe streams refuse a second concurrent reader or writer rather than interleave
    their bytes unpredictably; give each stream one owner task. A RuntimeError too, as
    asyncio's StreamReader raises for a second reader.
    """

    def __init__(self, message: str) -> None:
        # anyio's __init__ takes a verb ("reading from") and builds its own sentence
        # around it; ours are whole sentences, kept as given.
        Exception.__init__(self, message)


class BrokenResourceError(FdloopError, BrokenPipeError, anyio.BrokenResourceError):
    """The reading end of a pipe is gone, so nothing written can arrive (EPIPE).

    A BrokenPipeError (as asyncio raises) and an anyio.BrokenResourceError (as anyio
    and trio streams raise), so either ``except`` clause catches it.
    """


class ConnectionLostError(BrokenResourceError, ConnectionResetError):
    """``fdloop.compat.asyncio``'s ``stdin.drain()`` once the pipe is gone: closed (by
    ``close()`` or ``communicate()``) or broken by the child.

    asyncio raises ConnectionResetError("Connection lost") there; this is one, and also
    a BrokenResourceError (so a BrokenPipeError), so every ``except`` clause written for
    asyncio's subprocess pipes or for fdloop's catches it.
    """


class ChannelCorruptedError(BrokenResourceError):
    """The peer of a ``fdloop.Channel`` broke the ring protocol (a bad index, a record
    running past the data area, garbage on the hang-up socket).

    A BrokenResourceError: the end that saw it is unusable from then on and keeps raising.
    """


class IncompleteReadError(FdloopError, asyncio.IncompleteReadError, anyio.IncompleteRead):
    """``readexactly(n)`` met EOF first; ``partial`` holds the bytes that did arrive.

    Catchable as asyncio.IncompleteReadError (an EOFError) and anyio.IncompleteRead.
    """


class LimitOverrunError(FdloopError, asyncio.LimitOverrunError):
    """``readuntil()`` found no separator within the stream's ``limit`` (asyncio's error).

    Nothing was consumed: the bytes stay buffered, ``consumed`` of them known not to hold
    the separator, so ``read(exc.consumed)`` takes a bounded piece of the long record.
    Catchable as asyncio.LimitOverrunError.
    """


class LineTooLongError(FdloopError, ValueError):
    """``readline()`` (or ``async for line in stream``) met a line longer than ``limit``.

    A ValueError, as asyncio's ``StreamReader.readline`` raises. As there, the long line
    was dropped from the buffer (up to and including its newline if that had arrived,
    else everything buffered) so the next read goes on after it.
    """


class TimeoutExpired(FdloopError, TimeoutError, subprocess.TimeoutExpired):
    """``fdloop.run(..., timeout=...)`` ran out of time; the child was killed and reaped.

    ``stdout`` (alias ``output``) and ``stderr`` hold what was captured before the
    deadline, or None for a stream that was not captured. Catchable as the builtin
    TimeoutError and as subprocess.TimeoutExpired.
    """

    def __init__(
        self, cmd: Any, timeout: float, output: bytes | None = None,
        stderr: bytes | None = None,
    ) -> None:
        subprocess.TimeoutExpired.__init__(self, cmd, timeout, output, stderr)
        self.args = (cmd, timeout)

    def __str__(self) -> str:
        return subprocess.TimeoutExpired.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cmd, self.timeout, self.output, self.stderr))


class CalledProcessError(FdloopError, subprocess.CalledProcessError):
    """``fdloop.run(..., check=True)`` saw a non-zero return code.

    Carries ``returncode`` (negative signal number for a killed child; None when the
    exit status is unknown, which ``check`` cannot count as success), ``cmd``,
    ``stdout``/``output``, ``stderr`` and ``status``, the full ExitStatus. A
    subprocess.CalledProcessError too, so existing ``except`` clauses keep working.
    """

    returncode: int | None  # type: ignore[assignment]

    def __init__(
        self, returncode: int | None, cmd: Any, output: bytes | None = None,
        stderr: bytes | None = None, status: Any = None,
    ) -> None:
        super().__init__(returncode, cmd, output, stderr)  # type: ignore[arg-type]
        # As subprocess's (whose callers pass the output by keyword): the exception's
        # args, and so its repr and log lines, are the code and the command only, never
        # megabytes of captured output.
        self.args = (returncode, cmd)
        self.status = status

    def __str__(self) -> str:
        if self.returncode is None:
            return f"Command '{self.cmd}' exited with an unknown status."
        return super().__str__()

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self), (self.returncode, self.cmd, self.output, self.stderr, self.status)
        )


class NoSuchProgram(FdloopError, KeyError, ValueError):
    """A Supervisor was asked about a program name that was never added.

    A KeyError (a failed lookup by name) and a ValueError (a bad ``name`` argument), so
    either ``except`` clause catches it.
    """

    def __str__(self) -> str:
        # KeyError's own __str__ would show the message in quotes.
        return str(self.args[0]) if self.args else ""


class UnknownUserOrGroup(FdloopError, KeyError, ValueError):
    """A ``user``, ``group`` or ``extra_groups`` name the system does not know.

    A KeyError, as subprocess.Popen's own lookup (pwd, grp) raises, and a ValueError (a
    bad argument), so either ``except`` clause catches it. Raised before any child
    starts.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SupervisorConfigError(FdloopError, ValueError):
    """An ``fdloop supervise`` config file is invalid; the message names the table and key.

    Nothing is started when the config is refused.
    """
