"""``fdloop supervise`` as PID 1 of a container: the init's three jobs, as tini and
dumb-init do them.

* **Orphans.** Every process of the pid namespace whose parent dies is reparented to
  PID 1, with or without PR_SET_CHILD_SUBREAPER; an init that does not wait for them
  fills the process table with zombies. As PID 1 the supervisor always runs its
  :class:`~fdloop.supervisor.orphans.OrphanReaper` (``--subreaper`` implied).
* **Signals.** The kernel gives PID 1 no default action: a signal it has no handler
  for is dropped, so ``docker stop``'s SIGTERM would do nothing to a plain program. The
  supervisor reads SIGTERM/SIGINT/SIGHUP through a SignalFD, that is as *blocked*
  signals, which the kernel never drops (a blocked signal stays pending). :func:`prepare`
  blocks them first thing, so one that comes before the SignalFD exists waits for it
  instead of being lost. SIGTERM/SIGINT then stop every program as a shutdown (a second
  one SIGKILLs), as everywhere.
* **Exit status.** With one program (``fdloop supervise -- CMD``), PID 1 exits as that
  program did, the way tini and dumb-init report their child: its exit code, or 128+N if
  signal N ended it (so ``docker stop`` of a program that dies of SIGTERM gives 143).
  With a config of several programs, fdloop's own statuses apply (0 all clean, 1 not,
  2 usage, 3 output).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from .events import ProgramStatus

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
NOTE = ("running as PID 1: reaping every orphan in the pid namespace; with one program, "
        "exiting with its status (128+N if signal N ended it)")
_statuses: list[Mapping[str, ProgramStatus]] = []


def is_pid1() -> bool:
    """Whether this process is the init of its pid namespace."""
    return os.getpid() == 1


def prepare() -> None:
    """As PID 1, block the shutdown and restart signals at once (see module doc)."""
    if is_pid1():
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


def remember(statuses: Mapping[str, ProgramStatus]) -> None:
    """Keep the programs' final statuses for :func:`exit_status`."""
    _statuses.clear()
    _statuses.append(dict(statuses))


def program_exit_status(statuses: Mapping[str, ProgramStatus]) -> int | None:
    """tini's status for a single program: its exit code, 128+N for signal N; None
    with several programs, or one that never ran to an end."""
    if len(statuses) != 1:
        return None
    (status,) = statuses.values()
    last = status.last_exit
    if last is None or not last.known:
        return None
    if last.signal is not None:
        return 128 + last.signal
    return last.exit_code


def exit_status(supervisor_status: int) -> int:
    """The status ``fdloop supervise`` exits with: as PID 1 with one program that ran,
    the program's (:func:`program_exit_status`); otherwise ``supervisor_status``."""
    if not is_pid1() or not _statuses or supervisor_status == 2:
        return supervisor_status
    program = program_exit_status(_statuses[0])
    return supervisor_status if program is None else program
