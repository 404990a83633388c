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
* Text mode (``text``, ``encoding``, ``errors``, ``universal_newlines``) follows
  subprocess exactly (see :class:`fdloop.primitives.process_api.TextMode`).
* ``await nursery.start(fdloop.run, argv, ...)`` (trio, anyio) hands back the ProcessFD
  as soon as the child runs, as ``trio.run_process`` does, and ``deliver_cancel`` is
  trio's: how a cancelled (or timed-out) run ends the child.
* ``check_output``, ``call`` and ``check_call`` are subprocess's, awaited.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from . import _validate
from .errors import CalledProcessError
from .primitives.exitstatus import ExitStatus
from .primitives.process_api import Collector, TextMode, as_input, drop_windows_options
from .primitives.processfd import ProcessFD
from .primitives.spawn import StrOrBytesPath, spawn
from .primitives.streams import PIPE, PipeReceiveStream, PipeSendStream

__all__ = ["CompletedProcess", "call", "check_call", "check_output", "run"]

_DEFAULT_KILL_SIGNAL = signal.SIGTERM
_DEFAULT_KILL_TIMEOUT = 5.0
"""spawn()'s defaults (DESIGN.md), used when the caller does not pass these through."""

DeliverCancel = Callable[[ProcessFD], Awaitable[object]]


@dataclass(repr=False)
class CompletedProcess(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """What :func:`run` returns once the child has exited and its pipes are drained.

    A subprocess.CompletedProcess too (``isinstance`` checks and annotations such as
    ``CompletedProcess[bytes]`` keep working), with subprocess's repr; ``status`` is
    fdloop's addition.
    """

    args: Any
    """The ``argv`` given to run()."""
    returncode: int | None  # type: ignore[assignment]  # (None: the status is unknown)
    """Exit code, or ``-N`` for death by signal N; None if the status is unknown."""
    stdout: Any
    """Everything the child wrote to a piped stdout (bytes; str in text mode), else None."""
    stderr: Any
    """Everything the child wrote to a piped stderr (bytes; str in text mode), else None."""
    status: ExitStatus
    """The full exit status (signal, core dump, rusage where known)."""

    def check_returncode(self) -> None:
        """Raise CalledProcessError unless the child exited with code 0."""
        if self.returncode != 0:
            raise CalledProcessError(
                self.returncode, self.args, self.stdout, self.stderr, self.status
            )


async def run(
    argv: StrOrBytesPath | Sequence[StrOrBytesPath] | None = None,
    *,
    input: bytes | bytearray | memoryview | str | None = None,
    capture_output: bool = False,
    check: bool = False,
    timeout: float | None = None,
    text: bool | None = None,
    encoding: str | None = None,
    errors: str | None = None,
    universal_newlines: bool | None = None,
    deliver_cancel: DeliverCancel | None = None,
    task_status: anyio.abc.TaskStatus[ProcessFD] = anyio.TASK_STATUS_IGNORED,
    **spawn_kwargs: Any,
) -> CompletedProcess:
    """Run ``argv`` to completion and return a :class:`CompletedProcess`.

    ``input`` is written to the child's stdin (a pipe), which is then closed;
    ``capture_output=True`` pipes stdout and stderr. Any other ``spawn()`` argument
    passes through (``stdout=PIPE``, ``stderr=STDOUT``, ``cwd``, ``env``, ``shell``,
    ``start_new_session``, ``kill_signal``, ``kill_timeout``...). Piped streams are
    collected whole. Waits until the child has exited and every pipe is at EOF.

    Text mode, as subprocess.run: ``text=True`` (or ``universal_newlines=True``, or an
    ``encoding`` or ``errors``) decodes the output to str (``encoding`` defaults to the
    locale's, ``errors`` to "strict"; ``\r\n`` and ``\r`` become ``\n``) and takes
    ``input`` as a str. TimeoutExpired carries bytes, as subprocess's does.

    Started as a task (``await nursery.start(fdloop.run, argv, ...)`` on trio, or
    anyio's ``TaskGroup.start``), it hands back the ProcessFD once the child runs and
    goes on supervising it, as trio.run_process does; the streams that ``input`` and
    ``capture_output`` give to run() are then run()'s (``proc.stdin``/``stdout``/
    ``stderr`` are None for them), while those you ask with ``stdin=PIPE`` etc. stay on
    the ProcessFD for you to use (run() leaves them alone).

    Cancellation and timeout end the child. By default as closing its ProcessFD does:
    ``kill_signal`` (SIGTERM), ``kill_timeout`` (5 s), then SIGKILL — trio's default
    too. ``deliver_cancel`` (an async function taking the ProcessFD) replaces that, as
    in trio: it runs until the child exits (then it is cancelled), and run() waits for
    the exit, however long, before it raises; if ``deliver_cancel`` raises, the child is
    ended the default way and the error is raised (in an ExceptionGroup).

    Raises TimeoutExpired (a TimeoutError and a subprocess.TimeoutExpired, carrying the
    partial output) once ``timeout`` seconds have passed — the child is ended and
    reaped first; CalledProcessError (also a subprocess.CalledProcessError) when
    ``check=True`` and the return code is not 0; what ``spawn()`` raises if the command
    cannot start; TypeError/ValueError for bad or conflicting arguments (``input`` with
    ``stdin``, ``capture_output`` with ``stdout``/``stderr``), before anything starts.
    A child that exits without reading all of ``input`` is not an error. The command
    may also be given as ``args=`` (subprocess's name for it).
    """
    argv = _command(argv, spawn_kwargs, "run")
    mode = TextMode.choose(
        text=text, encoding=encoding, errors=errors, universal_newlines=universal_newlines
    )
    if spawn_kwargs:
        drop_windows_options(spawn_kwargs)  # bufsize, startupinfo, creationflags
    data: memoryview | None = None
    if input is not None:
        data = memoryview(mode.encode(input)) if mode is not None else as_input(input)
        if spawn_kwargs.get("stdin") is not None:
            raise ValueError("stdin and input cannot both be given")
        spawn_kwargs["stdin"] = PIPE
    # subprocess.run's flags: any value, taken for its truth (its `if capture_output:`)
    capture_output, check = bool(capture_output), bool(check)
    if capture_output:
        if spawn_kwargs.get("stdout") is not None or spawn_kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr cannot be given with capture_output=True")
        spawn_kwargs["stdout"] = spawn_kwargs["stderr"] = PIPE
    if deliver_cancel is not None and not callable(deliver_cancel):
        raise TypeError(
            f"deliver_cancel must be an async function, not {type(deliver_cancel).__name__}"
        )
    timeout = _validate.timeout("timeout", timeout)

    await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts nothing
    proc = spawn(argv, **spawn_kwargs)
    take = None if _ignored(task_status) else (data is not None, capture_output, capture_output)
    completed = await supervise(
        proc, argv, data=data, take=take, timeout=timeout, mode=mode,
        deliver_cancel=deliver_cancel, task_status=task_status, spawn_kwargs=spawn_kwargs,
    )
    if check:
        completed.check_returncode()
    return completed


async def supervise(
    proc: ProcessFD,
    argv: Any,
    *,
    data: memoryview | None,
    take: tuple[bool, bool, bool] | None,
    timeout: float | None,
    mode: TextMode | None,
    deliver_cancel: DeliverCancel | None,
    task_status: Any,
    spawn_kwargs: dict[str, Any],
) -> CompletedProcess:
    """run()'s work once the child runs (shared with :mod:`fdloop.compat.trio`).

    ``take`` says which of stdin/stdout/stderr run() feeds and collects: None for every
    piped one (a direct call), else a flag for each; those leave the ProcessFD (as
    trio's run_process hides them) before ``task_status.started(proc)``, so nobody
    reads them twice. Returns without checking the return code.
    """
    timeout = _validate.timeout("timeout", timeout)
    limit = math.inf if timeout is None else timeout
    proc.args = argv
    proc._text = mode
    stdin, stdout, stderr = _take_streams(proc, take)
    outputs = Collector(stdout, stderr)
    timed_out = False
    try:
        task_status.started(proc)
        try:
            with anyio.move_on_after(limit) as scope:
                await _communicate(proc, stdin, data, outputs)
            timed_out = scope.cancelled_caught
        except BaseException:
            if deliver_cancel is not None:
                await _deliver(proc, deliver_cancel)
            raise
        if timed_out and deliver_cancel is not None:
            await _deliver(proc, deliver_cancel)
    finally:
        await _end(proc, outputs, spawn_kwargs, (stdin, stdout, stderr), keep=take is not None)
    if timed_out:
        assert timeout is not None
        raise outputs.timed_out(argv, timeout)
    status = proc.status
    assert status is not None
    out: Any = outputs.stdout()
    err: Any = outputs.stderr()
    if mode is not None:
        out, err = mode.decode(out), mode.decode(err)
    return CompletedProcess(argv, status.returncode, out, err, status)


async def check_output(
    argv: StrOrBytesPath | Sequence[StrOrBytesPath] | None = None, **kwargs: Any
) -> Any:
    """The child's stdout, as ``subprocess.check_output``: ``run(argv, stdout=PIPE,
    check=True, **kwargs).stdout`` (bytes, or str in text mode).

    As there, an explicit ``input=None`` gives the child an empty stdin. Raises
    CalledProcessError (with the output) for a non-zero return code, ValueError if
    ``stdout`` is given (it is this function's), and what :func:`run` raises.
    """
    argv = _command(argv, kwargs, "check_output")
    if "stdout" in kwargs:
        raise ValueError("stdout argument not allowed, it will be overridden.")
    if "check" in kwargs:
        raise ValueError("check argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        # subprocess's rule: an explicit input=None is empty input (the child's stdin is
        # an empty pipe), never our own stdin; str in text mode (TextMode's rule).
        mode = TextMode.choose(
            text=kwargs.get("text"), encoding=kwargs.get("encoding"),
            errors=kwargs.get("errors"), universal_newlines=kwargs.get("universal_newlines"))
        kwargs["input"] = "" if mode is not None else b""
    return (await run(argv, stdout=PIPE, check=True, **kwargs)).stdout


async def call(
    argv: StrOrBytesPath | Sequence[StrOrBytesPath] | None = None, **kwargs: Any
) -> int:
    """Run ``argv`` and return its returncode (a plain int), as ``subprocess.call``.

    An unknown status (see ExitStatus) is returned as ``ExitStatus.UNKNOWN_INT``, never
    as 0. With ``timeout`` the child is ended and reaped before TimeoutExpired is raised.
    """
    return int((await run(_command(argv, kwargs, "call"), **kwargs)).status)


async def check_call(
    argv: StrOrBytesPath | Sequence[StrOrBytesPath] | None = None, **kwargs: Any
) -> int:
    """Run ``argv``; return 0, or raise CalledProcessError, as ``subprocess.check_call``."""
    argv = _command(argv, kwargs, "check_call")
    if "check" in kwargs:
        raise ValueError("check argument not allowed: check_call always checks")
    await run(argv, check=True, **kwargs)
    return 0


def _command(argv: Any, kwargs: dict[str, Any], function: str) -> Any:
    """The command to run: ``argv``, or ``args=`` (taken out of ``kwargs``), the keyword
    subprocess's functions know it by. TypeError if neither or both are given."""
    if "args" in kwargs:
        if argv is not None:
            raise TypeError(f"{function}() got the command twice: as argv and as args=")
        return kwargs.pop("args")
    if argv is None:
        raise TypeError(f"{function}() missing 1 required argument: 'argv' (or args=)")
    return argv


def _ignored(task_status: object) -> bool:
    """True unless run() was started as a task (nursery.start / TaskGroup.start)."""
    if task_status is anyio.TASK_STATUS_IGNORED:
        return True
    trio = sys.modules.get("trio")
    return trio is not None and task_status is trio.TASK_STATUS_IGNORED


def _take_streams(
    proc: ProcessFD, take: tuple[bool, bool, bool] | None
) -> tuple[PipeSendStream | None, PipeReceiveStream | None, PipeReceiveStream | None]:
    """The streams run() feeds and collects (see :func:`supervise`)."""
    if take is None:
        return proc.stdin, proc.stdout, proc.stderr
    stdin = proc.stdin if take[0] else None
    stdout = proc.stdout if take[1] else None
    stderr = proc.stderr if take[2] else None
    if take[0]:
        proc.stdin = None
    if take[1]:
        proc.stdout = None
    if take[2]:
        proc.stderr = None
    return stdin, stdout, stderr


async def _communicate(
    proc: ProcessFD, stdin: PipeSendStream | None, data: memoryview | None,
    outputs: Collector,
) -> None:
    # anyio's task group is the portable one (asyncio and trio), as in fdloop._aio.
    async with anyio.create_task_group() as tasks:
        if stdin is not None:
            tasks.start_soon(_feed, stdin, data)
        tasks.start_soon(outputs.drain_all)
    await proc.wait()


async def _deliver(proc: ProcessFD, deliver_cancel: DeliverCancel) -> None:
    """trio's rule: run ``deliver_cancel(proc)`` until the child exits, shielded."""
    if proc.status is not None or proc.poll() is not None:
        return

    async def killer(scope: anyio.CancelScope) -> None:
        with scope:
            await deliver_cancel(proc)

    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tasks:
            killing = anyio.CancelScope()
            tasks.start_soon(killer, killing)
            await proc.wait()
            killing.cancel()


async def _feed(stdin: PipeSendStream, data: memoryview | None) -> None:
    """Write ``data``, then close: the EOF says the input is complete. A cancelled feed
    (timeout) leaves stdin open, so that ProcessFD.aclose() signals before the EOF."""
    try:
        if data is not None:
            await stdin.send(data)
    except BrokenPipeError:
        pass  # the child exited (or closed stdin) without reading everything: its choice
    stdin.close()


async def _end(
    proc: ProcessFD, outputs: Collector, spawn_kwargs: dict[str, Any],
    streams: tuple[PipeSendStream | None, PipeReceiveStream | None, PipeReceiveStream | None],
    *, keep: bool,
) -> None:
    """Make sure the child (and, with a new session, its group) is gone and reaped, and
    that the streams run() took off the ProcessFD (see _take_streams) are closed.

    ``keep``: run() was started as a task, and the streams left on the ProcessFD are the
    caller's; they stay open (trio's rule), with what the child wrote still to be read.
    """
    callers = (proc.stdin, proc.stdout, proc.stderr) if keep else (None, None, None)
    if keep:
        proc.stdin = proc.stdout = proc.stderr = None  # (so that aclose() leaves them)
    try:
        with anyio.CancelScope(shield=True):
            if proc.status is None and spawn_kwargs.get("start_new_session"):
                await _end_group(proc, outputs, spawn_kwargs)
            await proc.aclose()
    except BaseException:
        proc.close()  # a bare asyncio Task.cancel() gets through the shield: never block
        raise
    finally:
        for stream in streams:
            if stream is not None:
                stream.close()  # (after the signal: see ProcessFD.aclose on the order)
        if keep:
            proc.stdin, proc.stdout, proc.stderr = callers


async def _end_group(proc: ProcessFD, outputs: Collector, spawn_kwargs: dict[str, Any]
                     ) -> None:
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
