"""``trio.run_process`` and ``trio.lowlevel.open_process``, over fdloop.

Same signatures and defaults as trio's (``run_process``: ``stdin=b""``, ``check=True``,
``capture_stdout``/``capture_stderr``, ``deliver_cancel``, ``await nursery.start(
run_process, ...)`` handing back the :class:`Process`), same refusals (TypeError for
text-mode options and for a str command without ``shell=True`` or a sequence with it;
ValueError for ``stdout=PIPE`` outside ``nursery.start`` and for two redirections of a
stream) and the same Process API: ``args``, ``pid``, ``returncode`` (always current),
``poll()``, ``await wait()`` (an int), ``send_signal``/``terminate``/``kill``, and
``stdin``/``stdout``/``stderr``/``stdio`` as ``trio.abc`` streams (``send_all``,
``receive_some``, ``async for chunk``, ``aclose``; trio's stream exceptions). Only
under trio; asyncio code has :mod:`fdloop.compat.asyncio`.

What is different, on purpose:

* **Kill-on-close.** A trio Process has no close: a child you drop runs on. Here
  ``await proc.aclose()`` (or leaving ``async with proc``) ends a running child
  (``kill_signal``, ``kill_timeout``, then SIGKILL), and garbage-collecting the
  Process of a running child SIGKILLs it (with a ResourceWarning); one whose child
  has exited is released quietly. Pass ``daemon=True`` for a child meant to outlive
  it. ``run_process`` needs none of this: it always waits for the exit.
* The default ``deliver_cancel`` is fdloop's kill-on-close path, which is trio's
  default in effect (SIGTERM, 5 s, SIGKILL: ``kill_signal``/``kill_timeout`` change
  it), without trio's RuntimeWarning when it escalates. A ``deliver_cancel`` that
  raises does not leave the child to exit on its own: it is ended that default way,
  and the error is raised (in an ExceptionGroup).
* An unknown exit status (see :class:`fdloop.ExitStatus`) is ``ExitStatus.UNKNOWN_INT``
  from ``wait()`` and in ``result.returncode``, never an invented 0.
* Signalling a process that has exited does nothing, never a recycled pid's process.
* Every :func:`fdloop.spawn` argument passes through ``**options``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import anyio
import trio

from ..errors import CalledProcessError
from ..primitives.process_api import as_input, drop_windows_options
from ..primitives.processfd import ProcessFD
from ..primitives.spawn import StrOrBytesPath, spawn
from ..primitives.streams import PIPE, PipeReceiveStream, PipeSendStream
from ..run import supervise
from . import ProcessWrapper, quiet_when_exited

__all__ = ["Process", "open_process", "run_process"]

_RECEIVE_SIZE = 65536
"""``receive_some()``'s size when the caller gives none."""


class SendStream(trio.abc.SendStream):
    """A child's stdin as a ``trio.abc.SendStream`` (over a PipeSendStream, ``pipe``)."""

    def __init__(self, pipe: PipeSendStream) -> None:
        self.pipe = pipe

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte; trio.BrokenResourceError if the child stopped reading,
        trio.ClosedResourceError if closed, trio.BusyResourceError if another task sends."""
        with _trio_errors():
            await self.pipe.send(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the pipe can take bytes (or the child's end is gone), as trio's."""
        with _trio_errors():
            await self.pipe.wait_writable()

    async def aclose(self) -> None:
        """Close the pipe: the child reads EOF."""
        self.pipe.close()
        await trio.lowlevel.checkpoint()

    def fileno(self) -> int:
        return self.pipe.fileno()


class ReceiveStream(trio.abc.ReceiveStream):
    """A child's stdout/stderr as a ``trio.abc.ReceiveStream`` (``pipe``: the fdloop one)."""

    def __init__(self, pipe: PipeReceiveStream) -> None:
        self.pipe = pipe

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` bytes as they arrive; ``b""`` at EOF. Raises ValueError
        for ``max_bytes < 1``, trio.ClosedResourceError / trio.BusyResourceError."""
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        with _trio_errors():
            return await self.pipe.read(max_bytes or _RECEIVE_SIZE)

    async def aclose(self) -> None:
        self.pipe.close()
        await trio.lowlevel.checkpoint()

    def fileno(self) -> int:
        return self.pipe.fileno()


class _trio_errors:  # lower case: it reads as a clause, like contextlib.suppress
    """Re-raise fdloop's (anyio's) stream errors as the trio ones trio code catches."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        for ours, theirs in (
            (anyio.BrokenResourceError, trio.BrokenResourceError),
            (anyio.ClosedResourceError, trio.ClosedResourceError),
            (anyio.BusyResourceError, trio.BusyResourceError),
        ):
            if isinstance(exc, ours):
                raise theirs(str(exc)) from exc


class Process(ProcessWrapper):
    """trio.Process's API over a :class:`fdloop.ProcessFD` (``processfd``); see the module
    docstring for what differs (kill-on-close)."""

    universal_newlines = False
    encoding = None
    errors = None

    def __init__(self, proc: ProcessFD) -> None:
        self.processfd = proc
        self.args: Any = proc.args
        self.pid: int = proc.pid
        self.stdin = None if proc.stdin is None else SendStream(proc.stdin)
        self.stdout = None if proc.stdout is None else ReceiveStream(proc.stdout)
        self.stderr = None if proc.stderr is None else ReceiveStream(proc.stderr)
        self.stdio: trio.StapledStream[SendStream, ReceiveStream] | None = None
        if self.stdin is not None and self.stdout is not None:
            self.stdio = trio.StapledStream(self.stdin, self.stdout)

    def poll(self) -> int | None:
        """The same as :attr:`returncode`, as trio has it."""
        return self.returncode

    def __repr__(self) -> str:
        code = self.returncode
        if code is None:
            state = f"running with PID {self.pid}"
        elif code < 0:
            state = f"exited with signal {-code}"
        else:
            state = f"exited with status {code}"
        return f"<fdloop.compat.trio.Process {self.args!r}: {state}>"


def _check_options(command: object, options: dict[str, Any]) -> None:
    for key in ("universal_newlines", "text", "encoding", "errors", "bufsize"):
        if options.get(key):
            raise TypeError(
                "trio.Process only supports communicating over unbuffered byte streams; "
                f"the '{key}' option is not supported"
            )
        options.pop(key, None)
    drop_windows_options(options)  # startupinfo=None, creationflags=0 reach Popen as trio's
    text_command = isinstance(command, (str, bytes))
    if text_command and not options.get("shell"):
        raise TypeError("command must be a sequence (not a string or bytes) if shell=False "
                        "on UNIX systems")
    if not text_command and options.get("shell"):
        raise TypeError("command must be a string or bytes (not a sequence) if shell=True "
                        "on UNIX systems")


async def open_process(
    command: StrOrBytesPath | Sequence[StrOrBytesPath], *, stdin: Any = None,
    stdout: Any = None, stderr: Any = None, **options: Any,
) -> Process:
    """Start ``command`` and return its :class:`Process`, as trio.lowlevel.open_process.

    stdio as subprocess's (PIPE gives a trio stream). Raises TypeError as trio does
    (see the module docstring) and what :func:`fdloop.spawn` raises (OSError when the
    program cannot start).
    """
    _check_options(command, options)
    await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts nothing
    proc = quiet_when_exited(
        spawn(command, stdin=stdin, stdout=stdout, stderr=stderr, **options)
    )
    proc.args = command
    await trio.lowlevel.cancel_shielded_checkpoint()  # (never lose the started child)
    return Process(proc)


class _Handover:
    """fdloop.run's task_status: hands trio's nursery.start the Process made once."""

    def __init__(self, task_status: Any) -> None:
        self._task_status = task_status
        self.process: Process | None = None

    def wrap(self, proc: ProcessFD) -> Process:
        if self.process is None:
            self.process = Process(proc)
        return self.process

    def started(self, proc: ProcessFD) -> None:
        self._task_status.started(self.wrap(proc))


async def run_process(
    command: StrOrBytesPath | Sequence[StrOrBytesPath], *,
    stdin: bytes | bytearray | memoryview | int | Any | None = b"",
    capture_stdout: bool = False, capture_stderr: bool = False, check: bool = True,
    deliver_cancel: Callable[[Process], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[Process] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` to its exit, as trio.run_process (read its documentation).

    Returns a subprocess.CompletedProcess; started with ``nursery.start``, hands back
    the :class:`Process` first. Raises subprocess.CalledProcessError (an
    fdloop.CalledProcessError) for a non-zero exit when ``check``, UnicodeError for str
    ``stdin``, ValueError/TypeError for the combinations trio refuses, and what
    :func:`fdloop.spawn` raises. Cancellation runs ``deliver_cancel`` (default: SIGTERM,
    ``kill_timeout`` 5 s, SIGKILL) and waits for the exit before it goes on.
    """
    if isinstance(stdin, str):
        raise UnicodeError("process stdin must be bytes, not str")
    background = task_status is not trio.TASK_STATUS_IGNORED
    if not background:
        if stdin is subprocess.PIPE:
            raise ValueError(
                "stdin=subprocess.PIPE is only valid with nursery.start, since that's the "
                "only way to access the pipe; use nursery.start or pass the data you want "
                "to write directly"
            )
        for name in ("stdout", "stderr"):
            if options.get(name) is subprocess.PIPE:
                raise ValueError(f"{name}=subprocess.PIPE is only valid with nursery.start, "
                                 "since that's the only way to access the pipe")
    data = None
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        data = as_input(stdin)
        options["stdin"] = PIPE
    else:
        options["stdin"] = stdin
    for name, capture in (("stdout", capture_stdout), ("stderr", capture_stderr)):
        if capture:
            if name in options:
                raise ValueError(f"can't specify both {name} and capture_{name}")
            options[name] = PIPE
    _check_options(command, options)
    await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts nothing
    proc = quiet_when_exited(spawn(command, **options))
    handover = _Handover(task_status)
    deliver = None if deliver_cancel is None else partial(_deliver, deliver_cancel, handover)
    # run()'s own machinery takes exactly the streams trio's run_process takes.
    completed = await supervise(
        proc, command, data=data, take=(data is not None, capture_stdout, capture_stderr),
        timeout=None, mode=None, deliver_cancel=deliver, task_status=handover,
        spawn_kwargs=options,
    )
    returncode = int(completed.status)
    if check and returncode:
        raise CalledProcessError(
            completed.returncode, command, completed.stdout, completed.stderr,
            completed.status,
        )
    return subprocess.CompletedProcess(command, returncode, completed.stdout, completed.stderr)


async def _deliver(deliver_cancel: Callable[[Process], Awaitable[object]],
                   handover: _Handover, proc: ProcessFD) -> None:
    await deliver_cancel(handover.wrap(proc))


