"""Programs that must not outlive their supervisor, even a SIGKILLed one.

A SIGKILLed supervisor runs no code, so only something set up *before* can end its
programs. What this kernel offers, and what each covers:

* Linux 7.1's ``CLONE_PIDFD_AUTOKILL`` (the kernel SIGKILLs a child when the last fd of
  its clone3 pidfd closes, which a dying process does): probed with
  :func:`fdloop.backends.linux.pdeathsig.autokill_supported` and reported, not used —
  fdloop's spawn has no way to pass the flag yet. Not on 6.18.
* ``PR_SET_PDEATHSIG`` (the default): each program is spawned with
  ``die_with_parent=True`` (a prctl in the clone child, or ``setpriv --pdeathsig KILL``
  on the posix_spawn path), so the kernel SIGKILLs it when the thread that spawned it
  dies. A Supervisor spawns only from the thread that entered it (its event loop's,
  which lives as long as the supervisor; the runner checks). Covers the program itself, not what it
  starts: a grandchild (a shell's child, a daemon that forked and called setsid) is
  reparented and lives on. Cleared if the program is set-user-ID or changes its
  credentials.
* A cgroup (``fdloop supervise`` only, where this process may create one under its own
  cgroup v2 directory, e.g. as root): :class:`CgroupGuard` makes
  ``fdloop-supervise-PID/`` there and hands it to the Supervisor, which makes one cgroup
  per program inside (:mod:`fdloop.supervisor.cgroup`); every guarded program moves
  itself into its own before it execs (so all its descendants are born inside), and a
  small *guardian* process, in a session of its own and outside that cgroup, waits for
  EOF on a pipe whose only write end this process holds. The kernel closes that end when
  we die, however we die; the guardian then writes ``cgroup.kill`` of the whole tree
  (every process in it, grandchildren and setsid daemons included, gets SIGKILL) and
  removes the directories. At a normal exit the Supervisor has stopped and removed the
  tree already and the guardian only exits. Not covered: a guardian that was itself
  SIGKILLed first, and descendants moved out of the cgroup by someone with the rights
  to do so.

A program opts out with ``die_with_supervisor = false`` (Supervisor.add(...,
die_with_supervisor=False)): it is spawned plainly, outside the cgroup, and lives on.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from typing import TYPE_CHECKING

import anyio

from ..primitives.streams import DEVNULL
from .cgroup import CgroupTree, own_cgroup_dir
from .program import ProgramSpec

if TYPE_CHECKING:
    from ..primitives.processfd import ProcessFD
    from .core import Supervisor

__all__ = ["CgroupGuard", "autokill_note", "own_cgroup_dir", "pdeathsig_problem",
           "spawn_guarded"]

GUARDIAN_EXIT_SECONDS = 2.0
"""At a normal exit, how long to wait for the guardian to empty and remove the cgroup."""

_GUARDIAN_SCRIPT = (
    # EOF: every write end is closed, so the supervisor is gone (or done). A done
    # supervisor has removed the tree itself.
    'read _ignored; [ -d "$0" ] || exit 0; echo 1 > "$0/cgroup.kill"; '
    # rmdir works once the last process has left (a killed process takes a moment),
    # the programs' cgroups first.
    'i=0; while [ -d "$0" ] && [ $i -lt 200 ]; do '
    'for d in "$0"/*/; do rmdir "$d"; done 2>/dev/null; rmdir "$0" 2>/dev/null || '
    '{ sleep 0.01; i=$((i+1)); }; done'
)


def spawn_guarded(spec: ProgramSpec, cgroup: str | None = None) -> ProcessFD:
    """Spawn one instance of ``spec``; with ``spec.die_with_supervisor`` under the guards.

    The guards: ``spawn(die_with_parent=True)`` (PR_SET_PDEATHSIG: a prctl in the
    clone child, or util-linux's setpriv on the posix_spawn path) where the backend has
    it — where it does not, the program is spawned without it and
    :func:`pdeathsig_problem` says why —, and ``cgroup`` (a program's directory of
    :class:`CgroupTree`) if given. Where the compiled clone3 path starts children the
    program is started straight into it (``spawn(cgroup=)``, CLONE_INTO_CGROUP: one exec,
    in the cgroup from its first instruction). Elsewhere — the clone(2) or posix_spawn
    path, or clone3 refused at this spawn — a ``/bin/sh`` wrapper moves itself into it
    and then execs the program with the same pid: one more exec per start, and the
    reason is kept for :func:`fdloop.supervisor.cgroup.start_method`.
    """
    from ..errors import UnsupportedOperation
    from .cgroup import direct_start_problem, note_wrapper_fallback

    into = cgroup if spec.die_with_supervisor else None
    if into is not None and direct_start_problem() is None:
        try:
            return _start(spec, list(spec.argv), spec.die_with_supervisor
                          and not _pdeathsig_problem, into)
        except UnsupportedOperation as exc:  # clone3 refused now: the wrapper's turn
            note_wrapper_fallback(str(exc))
    return _start_wrapped(spec, cgroup)


def _start(
    spec: ProgramSpec, argv: list[str] | list[bytes], die_with_parent: bool, cgroup: str | None
) -> ProcessFD:
    from ..primitives.spawn import spawn

    return spawn(
        argv,
        stdin=DEVNULL,  # a supervised program has no terminal to read from
        stdout=spec.stdout,
        stderr=spec.stderr,
        cwd=spec.cwd,
        env=spec.child_env(),
        # Its own session: a terminal's Ctrl-C reaches only the supervisor, which
        # then stops programs in order; and stop signals reach the whole group.
        start_new_session=True,
        kill_signal=spec.stop_signal,
        kill_timeout=spec.stop_timeout,
        die_with_parent=die_with_parent,
        pass_fds=spec.pass_fds,  # readiness.py: a fd:N pipe for the launcher
        cgroup=cgroup,
    )


def _start_wrapped(spec: ProgramSpec, cgroup: str | None) -> ProcessFD:
    """spawn_guarded without CLONE_INTO_CGROUP: the cgroup (if any) is joined by the
    ``/bin/sh`` wrapper; PR_SET_PDEATHSIG dropped (and said) where the backend lacks it."""
    from ..backends.linux import pdeathsig
    from ..errors import UnsupportedOperation

    argv: list[str] | list[bytes] = list(spec.argv)
    if spec.die_with_supervisor and cgroup is not None:
        env = spec.child_env()
        env_list = None if env is None else [
            os.fsencode(f"{key}={value}") for key, value in env.items()
        ]
        # argv[0] becomes /bin/sh; the program is resolved now, in the child's PATH
        # (FileNotFoundError names it), and exec'd by its path.
        _executable(spec)
        _shell, argv = pdeathsig.guarded_argv(
            spec.argv[0], [os.fsencode(arg) for arg in spec.argv], env_list,
            pdeathsig=False, cgroup=cgroup,
        )
    guard = spec.die_with_supervisor and not _pdeathsig_problem
    if not guard:
        return _start(spec, argv, False, None)
    try:
        return _start(spec, argv, True, None)
    except UnsupportedOperation as exc:  # e.g. the kqueue backend, or no setpriv
        _pdeathsig_problem.append(str(exc))
        return _start(spec, argv, False, None)


def _executable(spec: ProgramSpec) -> None:
    """Refuse a program path that the wrapper's exec would fail on, naming the program.

    Without this, a wrong path would start the wrapper fine and then exit 127: a failed
    run instead of a spawn error naming the program. (Names without a slash are looked
    up in PATH by guarded_argv, which raises the same errors.)
    """
    program = spec.argv[0]
    if "/" not in program:
        return
    path = os.path.join(spec.cwd or ".", program)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file or directory", program)
    if not os.access(path, os.X_OK):
        raise PermissionError(13, "Permission denied", program)


_pdeathsig_problem: list[str] = []


def pdeathsig_problem() -> str | None:
    """None while PR_SET_PDEATHSIG guards programs; why not, once a spawn found it missing."""
    return _pdeathsig_problem[0] if _pdeathsig_problem else None


def autokill_note() -> str:
    """One phrase on CLONE_PIDFD_AUTOKILL here."""
    from ..backends.linux import pdeathsig

    if os.uname().sysname == "Linux" and pdeathsig.autokill_supported():
        return "CLONE_PIDFD_AUTOKILL: known to this kernel, not used yet"
    return f"CLONE_PIDFD_AUTOKILL: not in this kernel ({os.uname().release})"


class CgroupGuard:
    """A cgroup for the guarded programs, and the guardian that kills it when we go."""

    def __init__(self, path: str, guardian: ProcessFD, write_end: int) -> None:
        self.path = path
        self._guardian = guardian
        self._write_end = write_end

    @classmethod
    def create(cls) -> tuple[CgroupGuard | None, str]:
        """Make the cgroup and start the guardian; (None, why not) where we cannot."""
        from ..primitives.spawn import spawn

        tree, why = CgroupTree.create(f"fdloop-supervise-{os.getpid()}")
        if tree is None:
            return None, why
        path = tree.root
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            guardian = spawn(
                ["/bin/sh", "-c", _GUARDIAN_SCRIPT, path], stdin=read_end, stdout=DEVNULL,
                stderr=DEVNULL, start_new_session=True, daemon=True,
            )
        except BaseException:
            os.close(write_end)
            with contextlib.suppress(OSError):
                os.rmdir(path)
            raise
        finally:
            os.close(read_end)
        return cls(path, guardian, write_end), ""

    def attach(self, supervisor: Supervisor) -> None:
        """Have ``supervisor`` (entered, nothing started) make one cgroup per program
        inside ours."""
        supervisor._shared.cgroups = CgroupTree(self.path)

    def describe(self) -> str:
        return (
            f"cgroup.kill of {shlex.quote(self.path)} (one cgroup per program inside) by "
            f"guardian pid {self._guardian.pid}"
        )

    async def aclose(self) -> None:
        """Let the guardian kill what is left in the cgroup and remove it; wait for it."""
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1
        with anyio.move_on_after(GUARDIAN_EXIT_SECONDS):
            await self._guardian.wait()
        await self._guardian.aclose()
