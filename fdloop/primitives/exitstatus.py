"""ExitStatus: how a process ended, as ``ProcessFD.wait()`` reports it.

An ExitStatus is also an ``int``, its returncode, because ``anyio.abc.Process.wait()``,
``asyncio``'s and trio's ``Process.wait()`` return one: code typed against them
(``sys.exit(await proc.wait())``, ``if await proc.wait() != 0``) takes ours unchanged.
"""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass
from typing import Any, ClassVar

from ..backends.contract import RawExit


def _made(cls: type[ExitStatus], pid: int, returncode: int, *, exit_code: int | None,
          signo: int | None, core_dumped: bool = False, rusage: ResourceUsage | None
          ) -> ExitStatus:
    """A known ExitStatus, built without the frozen dataclass's __init__: it runs once per
    child, and setting seven fields one ``object.__setattr__`` at a time cost three times
    the rest of decoding a status (the result is the same: see test_exitstatus)."""
    status = int.__new__(cls, returncode)
    vars(status).update(pid=pid, returncode=returncode, exit_code=exit_code, signal=signo,
                        core_dumped=core_dumped, rusage=rusage, known=True)
    return status


@dataclass(frozen=True)
class ResourceUsage:
    """CPU time and peak memory of a reaped child (getrusage(2)'s view of it)."""

    user_cpu: float
    """Seconds spent in user mode."""
    system_cpu: float
    """Seconds spent in the kernel on its behalf."""
    max_rss: int
    """Peak resident set size in **bytes** (Linux reports KiB; converted here)."""


@dataclass(frozen=True, eq=False)
class ExitStatus(int):
    """How a process ended; as an int, its returncode.

    ``returncode`` follows subprocess: the exit code, or ``-N`` for death by signal N.
    When ``known`` is False the process has exited but its status could not be learnt
    (a non-child whose parent has not reaped it yet, a kernel without PIDFD_INFO_EXIT, a
    status taken by a foreign reaper on such a kernel): ``returncode``, ``exit_code``
    and ``signal`` are then None — never an invented 0 or 255.

    **As an int** (comparisons, hashing, arithmetic, ``%d``, ``sys.exit()``, ``json``)
    the status is its ``returncode``, so ``await proc.wait() == 0`` and
    ``if await proc.wait():`` (true on failure, as for any int) read as they do with
    subprocess, asyncio, trio and anyio. Two statuses with the same returncode compare
    equal as ints do. An unknown status has no returncode; as an int it is
    :attr:`UNKNOWN_INT` (511): no process can exit with it (returncodes are -64 to 255),
    it is not 0 (so never taken for success), and ``sys.exit(status)`` exits 255, the
    shells' word for an unknown status. ``str()`` gives a sentence, ``repr()`` every
    field; test ``proc.status is not None`` (not the status's truth) for "has exited".
    """

    UNKNOWN_INT: ClassVar[int] = 511
    """The int value of a status with ``known=False``."""

    pid: int
    returncode: int | None
    exit_code: int | None = None
    """The value passed to exit(), or None if killed by a signal (or unknown)."""
    signal: int | None = None
    """The number of the signal that killed it, or None."""
    core_dumped: bool = False
    rusage: ResourceUsage | None = None
    """CPU/memory use when we reaped it ourselves; None when someone else did."""
    known: bool = True

    def __new__(cls, pid: int, returncode: int | None, *args: Any, **kwargs: Any
                ) -> ExitStatus:
        # The int part is fixed at creation; the dataclass __init__ then sets the fields.
        return int.__new__(cls, cls.UNKNOWN_INT if returncode is None else returncode)

    def __getnewargs__(self) -> tuple[int, int | None]:  # type: ignore[override]
        # pickle and copy rebuild the int part from these, then restore the fields.
        return (self.pid, self.returncode)

    @classmethod
    def from_wait_status(cls, pid: int, status: int, rusage: ResourceUsage | None = None
                         ) -> ExitStatus:
        """Decode a wait(2) status word (``7 << 8`` for exit(7), ``9`` for SIGKILL)."""
        if os.WIFSIGNALED(status):
            signo = os.WTERMSIG(status)
            return _made(cls, pid, -signo, exit_code=None, signo=signo,
                         core_dumped=os.WCOREDUMP(status), rusage=rusage)
        code = os.WEXITSTATUS(status)
        return _made(cls, pid, code, exit_code=code, signo=None, rusage=rusage)

    @classmethod
    def from_raw(cls, raw: RawExit) -> ExitStatus:
        """The status a backend's reap reported, with its resource usage if it read any."""
        pid, status, user_cpu, system_cpu, max_rss = raw
        rusage = None
        if user_cpu is not None and system_cpu is not None and max_rss is not None:
            rusage = object.__new__(ResourceUsage)
            vars(rusage).update(user_cpu=user_cpu, system_cpu=system_cpu, max_rss=max_rss)
        if status & 0x7F == 0:  # WIFEXITED, decoded (and _made) inline: once per child
            code = (status >> 8) & 0xFF
            exited = int.__new__(cls, code)
            vars(exited).update(pid=pid, returncode=code, exit_code=code, signal=None,
                                core_dumped=False, rusage=rusage, known=True)
            return exited
        return cls.from_wait_status(pid, status, rusage)

    @classmethod
    def unknown(cls, pid: int) -> ExitStatus:
        """The process has exited; nothing more is known."""
        return cls(pid, None, known=False)

    def __str__(self) -> str:
        if not self.known:
            return f"process {self.pid} exited with an unknown status"
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            dumped = " (core dumped)" if self.core_dumped else ""
            return f"process {self.pid} was killed by {name}{dumped}"
        return f"process {self.pid} exited with code {self.exit_code}"
