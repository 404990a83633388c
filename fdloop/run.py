"""``fdloop.run``: start a command, feed and collect its pipes, wait for it — like subprocess.run.

Built only on :func:`fdloop.spawn`, the pipe streams and ``ProcessFD``:

* stdin is fed, and stdout and stderr are drained, by three concurrent tasks, so no
  amount of output or input can deadlock (the child blocking on a full stdout pipe while
  we block writing its stdin). The child is reaped only after its pipes reach EOF.
* ``timeout`` ends the child through ProcessFD's kill-on-close path (``kill_signal``,
  ``kill_timeout``, SIGKILL, reap) and raises :class:`fdloop.TimeoutExpired` with the
  output captured so far. Cancelling ``run()`` does the same, then lets the cancellation
  through. No zombie either way.
* A tree can outlive its root and keep our pipes open (``sh -c 'server & echo hi'``),
  so "read to EOF" would never end. Like subprocess, ``run()`` then waits — for the
  ``timeout``. With ``start_new_session=True`` the timeout reaches the whole process
  group: while the root is still unreaped its group id cannot be reused, so the
  stragglers get ``kill_signal``, ``kill_timeout`` to let go of the pipes, then SIGKILL.
  Without a new session they are not ours to find; they keep running with broken pipes.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from . import _aio, _validate
from .errors import CalledProcessError, TimeoutExpired
from .primitives.exitstatus import ExitStatus
from .primitives.processfd import ProcessFD
from .primitives.spawn import StrOrBytesPath, spawn
from .streams import PIPE, PipeReceiveStream, PipeSendStream

__all__ = ["CompletedProcess", "run"]

_CHUNK = 256 * 1024
"""Bytes asked of the kernel per read while collecting output."""
_DEFAULT_KILL_SIGNAL = signal.SIGTERM
_DEFAULT_KILL_TIMEOUT = 5.0
"""spawn()'s defaults (DESIGN.md), used when the caller does not pass these through."""


@dataclass
class CompletedProcess:
    """What :func:`run` returns once the child has exited and its pipes are drained."""

    args: Any
    """The ``argv`` given to run()."""
    returncode: int | None
    """Exit code, or ``-N`` for death by signal N; None if the status is unknown."""
    stdout: bytes | None
    """Everything the child wrote to a piped stdout, else None."""
    stderr: bytes | None
    """Everything the child wrote to a piped stderr, else None."""
    status: ExitStatus
    """The full exit status (signal, core dump, rusage where known)."""

    def check_returncode(self) -> None:
        """Raise CalledProcessError unless the child exited with code 0."""
        if self.returncode != 0:
            raise CalledProcessError(
                self.returncode, self.args, self.stdout, self.stderr, self.status
            )


async def run(
    argv: StrOrBytesPath | Sequence[StrOrBytesPath],
    *,
    input: bytes | bytearray | memoryview | None = None,
    capture_output: bool = False,
    check: bool = False,
    timeout: float | None = None,
    **spawn_kwargs: Any,
) -> CompletedProcess:
    """Run ``argv`` to completion and return a :class:`CompletedProcess`.

    ``input`` is written to the child's stdin (a pipe), which is then closed;
    ``capture_output=True`` pipes stdout and stderr. Any other ``spawn()`` argument
    passes through (``stdout=PIPE``, ``stderr=STDOUT``, ``cwd``, ``env``,
    ``start_new_session``, ``kill_signal``, ``kill_timeout``...). Piped streams are
    collected whole. Waits until the child has exited and every pipe is at EOF.

    Raises TimeoutExpired (a TimeoutError and a subprocess.TimeoutExpired, carrying the
    partial output) once ``timeout`` seconds have passed — the child is ended and
    reaped first; CalledProcessError (also a subprocess.CalledProcessError) when
    ``check=True`` and the return code is not 0; what ``spawn()`` raises if the command
    cannot start; TypeError/ValueError for bad or conflicting arguments (``input`` with
    ``stdin``, ``capture_output`` with ``stdout``/``stderr``), before anything starts.
    A child that exits without reading all of ``input`` is not an error.
    """
    if input is not None:
        try:
            input = memoryview(input).cast("B")
        except TypeError:
            raise TypeError(f"input must be bytes-like, not {type(input).__name__}") from None
        if spawn_kwargs.get("stdin") is not None:
            raise ValueError("stdin and input cannot both be given")
        spawn_kwargs["stdin"] = PIPE
    for name, flag in (("capture_output", capture_output), ("check", check)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
    if capture_output:
        if spawn_kwargs.get("stdout") is not None or spawn_kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr cannot be given with capture_output=True")
        spawn_kwargs["stdout"] = spawn_kwargs["stderr"] = PIPE
    limit = math.inf if timeout is None else _validate.seconds("timeout", timeout)

    proc = spawn(argv, **spawn_kwargs)
    outputs = _Outputs(proc)
    timed_out = False
    try:
        with anyio.move_on_after(limit) as scope:
            await _communicate(proc, input, outputs)
        timed_out = scope.cancelled_caught
    finally:
        await _end(proc, outputs, spawn_kwargs)
    if timed_out:
        assert timeout is not None
        raise TimeoutExpired(argv, timeout, outputs.stdout(), outputs.stderr())
    status = proc.status
    assert status is not None
    completed = CompletedProcess(
        argv, status.returncode, outputs.stdout(), outputs.stderr(), status
    )
    if check:
        completed.check_returncode()
    return completed


class _Outputs:
    """The child's piped stdout/stderr and what has been read from them so far."""

    def __init__(self, proc: ProcessFD) -> None:
        self.streams = [s for s in (proc.stdout, proc.stderr) if s is not None]
        self._chunks: dict[int, list[bytes]] = {id(s): [] for s in self.streams}
        self._stdout = proc.stdout
        self._stderr = proc.stderr

    async def drain(self, stream: PipeReceiveStream) -> None:
        """Append everything up to EOF; a cancellation keeps what was read."""
        chunks = self._chunks[id(stream)]
        while chunk := await stream.read(_CHUNK):
            chunks.append(chunk)

    async def drain_all(self) -> None:
        async with anyio.create_task_group() as tasks:
            for stream in self.streams:
                if not stream.closed and not stream.at_eof():
                    tasks.start_soon(self.drain, stream)

    def pending(self) -> bool:
        return any(not s.closed and not s.at_eof() for s in self.streams)

    def stdout(self) -> bytes | None:
        return None if self._stdout is None else b"".join(self._chunks[id(self._stdout)])

    def stderr(self) -> bytes | None:
        return None if self._stderr is None else b"".join(self._chunks[id(self._stderr)])


async def _communicate(proc: ProcessFD, data: memoryview | None, outputs: _Outputs) -> None:
    # anyio's task group is the portable one (asyncio and trio), as in fdloop._aio.
    async with anyio.create_task_group() as tasks:
        if proc.stdin is not None:
            tasks.start_soon(_feed, proc.stdin, data)
        tasks.start_soon(outputs.drain_all)
    await proc.wait()


async def _feed(stdin: PipeSendStream, data: memoryview | None) -> None:
    """Write ``data``, then close: the EOF says the input is complete. A cancelled feed
    (timeout) leaves stdin open, so that ProcessFD.aclose() signals before the EOF."""
    try:
        if data is not None:
            await stdin.send(data)
    except BrokenPipeError:
        pass  # the child exited (or closed stdin) without reading everything: its choice
    stdin.close()


async def _end(proc: ProcessFD, outputs: _Outputs, spawn_kwargs: dict[str, Any]) -> None:
    """Make sure the child (and, with a new session, its group) is gone and reaped."""
    try:
        with _aio.shielded():
            if proc.status is None and spawn_kwargs.get("start_new_session"):
                await _end_group(proc, outputs, spawn_kwargs)
            await proc.aclose()
    except BaseException:
        proc.close()  # a bare asyncio Task.cancel() gets through the shield: never block
        raise


async def _end_group(proc: ProcessFD, outputs: _Outputs, spawn_kwargs: dict[str, Any]) -> None:
    # The root is not reaped yet (run() reaps only after EOF), so its pid is still the
    # group's id and cannot name anyone else: signalling the group is safe even if the
    # root itself has exited and only stragglers hold our pipes.
    kill_signal = spawn_kwargs.get("kill_signal", _DEFAULT_KILL_SIGNAL)
    kill_timeout = spawn_kwargs.get("kill_timeout", _DEFAULT_KILL_TIMEOUT)
    proc.send_signal(kill_signal, group=True)
    if outputs.pending():
        with anyio.move_on_after(kill_timeout):
            await outputs.drain_all()  # EOF: every holder of the pipes has gone
        if outputs.pending():
            proc.send_signal(signal.SIGKILL, group=True)
