"""ExitStatus: how a process ended, as ``ProcessFD.wait()`` reports it."""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass

from ..backends.contract import RawExit


@dataclass(frozen=True)
class ResourceUsage:
    """CPU time and peak memory of a reaped child (getrusage(2)'s view of it)."""

    user_cpu: float
    """Seconds spent in user mode."""
    system_cpu: float
    """Seconds spent in the kernel on its behalf."""
    max_rss: int
    """Peak resident set size in **bytes** (Linux reports KiB; converted here)."""


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended.

    ``returncode`` follows subprocess: the exit code, or ``-N`` for death by signal N.
    When ``known`` is False the process has exited but its status could not be learnt
    (a non-child whose parent has not reaped it yet, a kernel without PIDFD_INFO_EXIT, a
    status taken by a foreign reaper on such a kernel): ``returncode``, ``exit_code``
    and ``signal`` are then None — never an invented 0 or 255.
    """

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

    @classmethod
    def from_wait_status(cls, pid: int, status: int, rusage: ResourceUsage | None = None
                         ) -> ExitStatus:
        """Decode a wait(2) status word (``7 << 8`` for exit(7), ``9`` for SIGKILL)."""
        if os.WIFSIGNALED(status):
            signo = os.WTERMSIG(status)
            return cls(pid, -signo, None, signo, os.WCOREDUMP(status), rusage)
        code = os.WEXITSTATUS(status)
        return cls(pid, code, code, None, False, rusage)

    @classmethod
    def from_raw(cls, raw: RawExit) -> ExitStatus:
        pid, status, user_cpu, system_cpu, max_rss = raw
        rusage = None
        if user_cpu is not None and system_cpu is not None and max_rss is not None:
            rusage = ResourceUsage(user_cpu, system_cpu, max_rss)
        if status & 0x7F == 0:  # WIFEXITED, decoded inline: this runs once per child
            code = (status >> 8) & 0xFF
            return cls(pid, code, code, None, False, rusage)
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
