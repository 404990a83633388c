"""``anyio.run_process`` and ``anyio.open_process``, over fdloop.

Change ``from anyio import open_process, run_process`` to
``from fdloop.compat.anyio import open_process, run_process`` and the calls stay as they
are: anyio's signatures and defaults (a str or bytes command runs through the shell;
``open_process`` pipes all three streams, ``run_process`` captures stdout and stderr and
checks the return code), anyio's refusal of ``input`` with ``stdin``. Works on asyncio
(uvloop included) and trio, as anyio does.

What is different, on purpose:

* ``open_process`` returns a :class:`fdloop.ProcessFD`, which is an
  ``anyio.abc.Process``; leaving ``async with`` (or ``aclose()``) ends a child that is
  still running (``kill_signal``, ``kill_timeout``, then SIGKILL) where anyio's waits for
  it however long it takes. Pass ``daemon=True`` for a child meant to outlive it. So
  ``async with proc: await proc.stdin.send(data)`` may end a child that is still
  working through its input: close stdin and ``await proc.wait()`` inside the block
  to let it finish.
* ``run_process(input=...)`` to a child that exits without reading it all is not an
  error (subprocess's and trio's rule; anyio raises BrokenResourceError in an
  exception group), and ``input=b""`` gives the child an empty stdin where anyio
  leaves it the parent's.
* ``wait()`` returns an :class:`fdloop.ExitStatus` (an int equal to the return code);
  ``run_process``'s ``returncode`` is a plain int (an unknown status is
  ``ExitStatus.UNKNOWN_INT``, never an invented code).
* Every :func:`fdloop.spawn` argument passes through ``**options``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import anyio.lowlevel

from ..errors import CalledProcessError
from ..primitives.process_api import drop_windows_options
from ..primitives.processfd import ProcessFD
from ..primitives.spawn import StrOrBytesPath, spawn
from ..primitives.streams import PIPE
from ..run import run
from . import quiet_when_exited

__all__ = ["open_process", "run_process"]

Command = StrOrBytesPath | Sequence[StrOrBytesPath]


async def open_process(
    command: Command, *, stdin: Any = PIPE, stdout: Any = PIPE, stderr: Any = PIPE,
    **options: Any,
) -> ProcessFD:
    """Start ``command`` (through the shell if it is a str or bytes), as
    anyio.open_process: stdin, stdout and stderr are pipes unless given.

    Returns the ProcessFD (an anyio.abc.Process). Left unclosed once its child has
    exited, it is released without a ResourceWarning, as anyio's Process is (a running
    child is still ended, with the warning). Raises what :func:`fdloop.spawn` raises
    (OSError when the program cannot start; ValueError/TypeError for bad arguments).
    """
    drop_windows_options(options)  # anyio's startupinfo/creationflags, at POSIX values
    await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts nothing
    proc = quiet_when_exited(spawn(command, stdin=stdin, stdout=stdout, stderr=stderr,
                                   shell=isinstance(command, (str, bytes)), **options))
    await anyio.lowlevel.cancel_shielded_checkpoint()  # (never lose the started child)
    return proc


async def run_process(
    command: Command, *, input: bytes | None = None, stdin: Any = None,
    stdout: Any = PIPE, stderr: Any = PIPE, check: bool = True, **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` to its exit, as anyio.run_process: feeds ``input``, collects the
    piped stdout and stderr, waits; a subprocess.CompletedProcess.

    Raises CalledProcessError (a subprocess.CalledProcessError, with the output) for a
    non-zero exit when ``check``; ValueError for ``input`` with ``stdin``; what
    :func:`fdloop.run` raises. Cancellation ends the child (SIGTERM, ``kill_timeout``,
    SIGKILL) and reaps it before it goes on.
    """
    if stdin is not None and input is not None:
        raise ValueError("only one of stdin and input is allowed")
    result = await run(command, input=input, stdin=stdin, stdout=stdout, stderr=stderr,
                       shell=isinstance(command, (str, bytes)), **options)
    returncode = int(result.status)
    if check and returncode:
        raise CalledProcessError(result.returncode, command, result.stdout, result.stderr,
                                 result.status)
    return subprocess.CompletedProcess(command, returncode, result.stdout, result.stderr)
