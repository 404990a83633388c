"""Starting a child for the kqueue backend.

On Linux (test runs of this backend under the kqueue emulator) glibc's posix_spawn path of
the Linux backend is used as is. On FreeBSD and macOS the stdlib's ``os.posix_spawn``
does it, because its flag values are the platform's own: an empty signal mask for the
child (``setsigmask``; SignalFD blocks signals in the parent), SIGPIPE/SIGXFSZ and the
signals fdloop took over back to SIG_DFL (``setsigdef``), ``setsid``, dup2 file actions
for stdio. What ``os.posix_spawn`` lacks is handled here:

* ``cwd``: no chdir action before Python 3.14, so the program is started through
  ``/bin/sh -c 'cd -- "$0" && exec "$@"'``; a missing directory is refused in the parent
  first, so the error still names it.
* ``pass_fds``: made inheritable in the parent around the call (fds Python opens are
  close-on-exec); every other fd Python opened stays close-on-exec.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)
_GLIBC_SPAWN = sys.platform.startswith("linux")


def start_child(
    program: str,
    argv: Sequence[bytes],
    env: Sequence[bytes] | None,
    *,
    stdio: tuple[int | None, int | None, int | None],
    cwd: bytes | None,
    pass_fds: Sequence[int],
    start_new_session: bool,
    default_signals: Sequence[int],
) -> tuple[int, tuple[int | None, int | None, int | None]]:
    """Start the child; return its pid and the parent's ends of PIPE stdio."""
    if _GLIBC_SPAWN:
        from ..linux.spawn import spawn_child

        pid, pidfd, ends = spawn_child(
            program, argv, env, stdio=stdio, cwd=cwd, pass_fds=pass_fds,
            start_new_session=start_new_session, default_signals=default_signals,
        )
        if pidfd is not None:  # a kqueue ProcessFD watches by pid (EVFILT_PROC)
            os.close(pidfd)
        return pid, ends
    return _stdlib_spawn(program, argv, env, stdio=stdio, cwd=cwd, pass_fds=pass_fds,
                         start_new_session=start_new_session, default_signals=default_signals)


def _stdlib_spawn(
    program: str, argv: Sequence[bytes], env: Sequence[bytes] | None, *,
    stdio: tuple[int | None, int | None, int | None], cwd: bytes | None,
    pass_fds: Sequence[int], start_new_session: bool, default_signals: Sequence[int],
) -> tuple[int, tuple[int | None, int | None, int | None]]:
    from ..linux.spawn import find_executable  # portable: PATH search only

    made: list[int] = []
    parent_ends: list[int | None] = [None, None, None]
    actions: list[tuple[int, ...]] = []
    try:
        child_fds: list[int | None] = [None, None, None]
        for target, spec in enumerate(stdio):
            if spec == subprocess.PIPE:
                read_end, write_end = os.pipe()
                parent, child = (write_end, read_end) if target == 0 else (read_end, write_end)
                os.set_blocking(parent, False)
                parent_ends[target] = parent
                made.append(child)
                child_fds[target] = child
            elif spec == subprocess.DEVNULL:
                child_fds[target] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                made.append(child_fds[target])  # type: ignore[arg-type]
            elif spec == subprocess.STDOUT:
                child_fds[target] = child_fds[1] if child_fds[1] is not None else 1
            elif spec is not None:
                child_fds[target] = spec
        for target, fd in enumerate(child_fds):
            if fd is not None and fd != target:
                actions.append((os.POSIX_SPAWN_DUP2, fd, target))
        env_map = None if env is None else dict(e.split(b"=", 1) for e in env if b"=" in e)
        path = find_executable(program, env_map)
        args = list(argv)
        if cwd is not None:
            if not os.path.isdir(cwd):
                raise FileNotFoundError(2, "No such file or directory", os.fsdecode(cwd))
            args = [b"/bin/sh", b"-c", b'cd -- "$0" && exec "$@"', cwd, os.fsencode(path),
                    *args[1:]]
            path = "/bin/sh"
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        try:
            pid = os.posix_spawn(
                path, args, env_map if env_map is not None else os.environ,
                file_actions=actions, setsid=start_new_session, setsigmask=(),
                setsigdef=(*_PYTHON_IGNORED, *default_signals),
            )
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)
    except BaseException:
        for fd in parent_ends:
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in made:
            os.close(fd)
    return pid, (parent_ends[0], parent_ends[1], parent_ends[2])
