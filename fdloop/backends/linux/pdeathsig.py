"""``spawn(..., die_with_parent=True)``: the child gets SIGKILL when its parent dies.

Linux has one mechanism for this before 7.1's CLONE_PIDFD_AUTOKILL: the child calls
``prctl(PR_SET_PDEATHSIG, SIGKILL)``. That is code the child must run between fork and
exec, and fdloop starts children with posix_spawn, which runs none. The choices were:

* ``os.fork()``, then prctl, dup2s, chdir, closefrom, signal mask, setsid and execve in
  Python: a second implementation of everything posix_spawn does for us, running Python
  code in the child of a possibly multi-threaded parent (the hazard preexec_fn has), and
  a full fork of the parent's page tables instead of a vfork;
* a ctypes vfork trampoline: undefined behaviour territory, refused;
* **an exec wrapper** (chosen): posix_spawn starts util-linux's ``setpriv --pdeathsig
  KILL`` with every file action and attribute exactly as for any child; setpriv calls
  prctl and execs ``/bin/sh``, which checks ``$PPID`` and execs the program. The pid
  never changes across the execs, so the ProcessFD names the program itself. Cost: two
  extra execs per spawn (measured in RELIABILITY.md), paid only by those who opt in.

Why the shell: the prctl is racy. If the parent dies after the clone but before the
prctl, the child has already been reparented and the death signal never comes. POSIX
sh sets ``$PPID`` from getppid() when it starts, which is after setpriv's prctl; if it
no longer names us, the parent is gone and the child exits (125) instead of running.

Caveats, all from PR_SET_PDEATHSIG(2const): the "parent" is the *thread* that spawned —
the child is killed when that thread exits, even if the process lives on (spawn from a
thread that outlives the child, e.g. the event loop's thread, not a worker pool); the
setting is cleared when the program is set-user-ID/set-group-ID or has file
capabilities, and when the child changes its credentials; a spawning thread that
exits within the first milliseconds, before setpriv's prctl, leaves the child unguarded
(the $PPID check sees the process id, which a sibling thread shares); the program's ``argv[0]``
becomes its resolved path (``exec "$0"`` in sh cannot set a different one).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Sequence

from ...errors import UnsupportedOperation
from ..posix.exec_path import find_executable

_SHELL = b"/bin/sh"
_SCRIPT = '[ "$PPID" = "{ppid}" ] || exit 125; exec "$0" "$@"'
_setpriv_path: str | None = None


def _setpriv() -> str:
    """util-linux setpriv's path if it knows ``--pdeathsig`` (2.33+), else raise."""
    global _setpriv_path
    if _setpriv_path is None:
        path = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
        if path is None:
            raise UnsupportedOperation(
                "die_with_parent=True needs util-linux's setpriv (not found in PATH)"
            )
        usage = subprocess.run([path, "--help"], capture_output=True, check=False).stdout
        if b"--pdeathsig" not in usage:
            raise UnsupportedOperation(
                f"die_with_parent=True needs setpriv --pdeathsig (util-linux 2.33+); {path} "
                "does not have it"
            )
        _setpriv_path = path
    return _setpriv_path


def _spawner_pid() -> int:
    """The pid the child must see as its parent (a seam for the race test)."""
    return os.getpid()


def wrap_argv(
    program: str, argv: Sequence[bytes], env: Sequence[bytes] | None
) -> tuple[str, list[bytes]]:
    """The program and argv that run ``program`` under a parent-death SIGKILL.

    ``program`` is resolved here, in the child's PATH, so a missing program still raises
    FileNotFoundError naming it before anything starts. Raises UnsupportedOperation when
    setpriv is missing or too old.
    """
    return guarded_argv(program, argv, env, pdeathsig=True, cgroup=None)


def guarded_argv(
    program: str, argv: Sequence[bytes], env: Sequence[bytes] | None, *,
    pdeathsig: bool, cgroup: str | None,
) -> tuple[str, list[bytes]]:
    """Like :func:`wrap_argv`, with a choice of guards; the program runs with its pid.

    ``pdeathsig``: SIGKILL when the spawning thread dies (setpriv, as above).
    ``cgroup``: a cgroup v2 directory the child moves itself into before it execs the
    program (writing 0 to its cgroup.procs), so every process the program ever starts
    is in it from the start — race-free, unlike moving the pid in from the parent after
    the spawn, by when the program may have forked. If it cannot join, it exits 126
    with a message on its stderr instead of running unguarded.
    """
    env_dict = None if env is None else dict(e.split(b"=", 1) for e in env if b"=" in e)
    path = os.fsencode(find_executable(program, env_dict))
    steps = []
    if pdeathsig:
        steps.append(_SCRIPT.format(ppid=_spawner_pid()).split("; exec")[0])
    if cgroup is not None:
        # Quoted into the script itself: the environment belongs to the program.
        quoted = "'" + cgroup.replace("'", "'\\''") + "'"
        steps.append(
            f"{{ echo 0 > {quoted}/cgroup.procs; }} 2>/dev/null || "
            f"{{ echo \"fdloop: cannot join cgroup \"{quoted} >&2; exit 126; }}"
        )
    script = ("; ".join([*steps, 'exec "$0" "$@"'])).encode()
    wrapped = [_SHELL, b"-c", script, path, *argv[1:]]
    if not pdeathsig:
        return os.fsdecode(_SHELL), wrapped
    setpriv = _setpriv()
    return setpriv, [os.fsencode(setpriv), b"--pdeathsig", b"KILL", b"--", *wrapped]


def available() -> str | None:
    """None if ``pdeathsig=True`` can be used here, else why not (one line)."""
    try:
        _setpriv()
    except UnsupportedOperation as exc:
        return str(exc)
    return None


# -- Linux 7.1's CLONE_PIDFD_AUTOKILL: probed, so that we can say whether it exists ------

_SYS_CLONE3 = 435  # the same number on every architecture (the generic syscall table)
_CLONE_PIDFD = 0x1000
_CLONE_INTO_CGROUP = 0x200000000
_CLONE_AUTOREAP = 1 << 34
_CLONE_NNP = 1 << 35
_CLONE_PIDFD_AUTOKILL = 1 << 36
_INT_MAX = 2**31 - 1


def autokill_supported() -> bool:
    """Whether this kernel knows CLONE_PIDFD_AUTOKILL (Linux 7.1+); creates no process.

    The probe asks clone3 for AUTOKILL together with CLONE_INTO_CGROUP and a cgroup fd
    that cannot be open (INT_MAX is above any RLIMIT_NOFILE). A kernel that does not
    know the flag refuses the flags first (EINVAL); one that knows it accepts them and
    then fails on the fd (EBADF), before any child exists. (fdloop's spawn cannot pass
    the flag yet: this only tells the truth about what the kernel offers.)
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux":
        return False
    fields = (ctypes.c_uint64 * 11)()
    pidfd = ctypes.c_int(-1)
    fields[0] = (
        _CLONE_PIDFD | _CLONE_INTO_CGROUP | _CLONE_AUTOREAP | _CLONE_NNP
        | _CLONE_PIDFD_AUTOKILL
    )
    fields[1] = ctypes.addressof(pidfd)
    fields[10] = _INT_MAX  # cgroup
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    result = syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(fields), ctypes.c_size_t(88))
    if result == 0:  # pragma: no cover - impossible with that fd; never run Python here
        os._exit(0)
    if result > 0:  # pragma: no cover - likewise: the child is autoreaped, end it
        if pidfd.value >= 0:
            os.close(pidfd.value)
        return True
    return ctypes.get_errno() == errno.EBADF
