"""Starting a child for the kqueue backend.

On FreeBSD and macOS the stdlib's ``os.posix_spawn`` does it, because its flag values are
the platform's own: an empty signal mask for the child (``setsigmask``; SignalFD blocks
signals in the parent), SIGPIPE/SIGXFSZ and the signals fdloop took over back to SIG_DFL
(``setsigdef``), ``setsid``, dup2 file actions for stdio. What ``os.posix_spawn`` lacks
is handled here:

* ``cwd``: no chdir action before Python 3.14, so the program is started through
  ``/bin/sh -c 'cd -- "$0" && exec "$@"'``; a missing directory is refused in the parent
  first, so the error still names it.
* ``pass_fds``: made inheritable in the parent around the call (fds Python opens are
  close-on-exec); every other fd Python opened stays close-on-exec.

A host whose own way of starting children is better can hand the backend a
:data:`ChildStarter` instead (fdloop.backends.current() does so on Linux, where this
backend runs over the test emulator: children are started the Linux way, then watched
by pid like any other).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from ...errors import UnsupportedOperation
from ..contract import PipeEnds
from ..posix.exec_path import find_executable
from ..posix.pipe import close_ends
from ..request import SpawnRequest

_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)

ChildStarter = Callable[[SpawnRequest], tuple[int, int | None, PipeEnds]]
"""Starts the child of a request: its pid, a pidfd if the start made one, the parent's
pipe ends; on failure it leaves nothing behind."""


def start_child(
    request: SpawnRequest, starter: ChildStarter | None = None
) -> tuple[int, PipeEnds]:
    """Start the child (through ``starter`` if given); return its pid and the parent's
    ends of PIPE stdio. UnsupportedOperation for an option this backend cannot carry."""
    if request.die_with_parent:
        raise UnsupportedOperation("die_with_parent=True is not available on the kqueue backend")
    if request.cgroup is not None:
        raise UnsupportedOperation(
            "cgroup: not available on the kqueue backend (starting a child in a cgroup v2 "
            "directory is Linux's clone3 CLONE_INTO_CGROUP)"
        )
    if starter is not None:
        pid, pidfd, ends = starter(request)
        if pidfd is not None:  # a kqueue ProcessFD watches by pid (EVFILT_PROC)
            os.close(pidfd)
        return pid, ends
    unsupported = [name for name, asked in (
        *((name, True) for name in request.needs_clone),
        ("close_fds=False", not request.close_fds),
        ("pipesize", request.pipesize is not None),
    ) if asked]
    if unsupported:
        raise UnsupportedOperation(
            f"{', '.join(unsupported)}: not available on the kqueue backend (os.posix_spawn)"
        )
    return _stdlib_spawn(request)


def _stdlib_spawn(request: SpawnRequest) -> tuple[int, PipeEnds]:
    stdio, cwd, pass_fds = request.stdio, request.cwd, request.pass_fds
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
        env_map = request.env_map
        name = request.executable if request.executable is not None else request.argv[0]
        path = find_executable(os.fsdecode(name), env_map)
        args = list(request.argv)
        if cwd is not None:
            if not os.path.isdir(cwd):
                raise FileNotFoundError(2, "No such file or directory", os.fsdecode(cwd))
            args = [b"/bin/sh", b"-c", b'cd -- "$0" && exec "$@"', cwd, os.fsencode(path),
                    *args[1:]]
            path = "/bin/sh"
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        defaults = (*_PYTHON_IGNORED, *request.default_signals) if request.restore_signals \
            else request.default_signals
        try:
            if request.process_group is None:
                pid = os.posix_spawn(
                    path, args, env_map if env_map is not None else os.environ,
                    file_actions=actions, setsid=request.start_new_session, setsigmask=(),
                    setsigdef=defaults,
                )
            else:
                pid = os.posix_spawn(
                    path, args, env_map if env_map is not None else os.environ,
                    file_actions=actions, setsid=request.start_new_session, setsigmask=(),
                    setsigdef=defaults, setpgroup=request.process_group,
                )
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)
    except BaseException:
        close_ends(parent_ends)
        raise
    finally:
        for fd in made:
            os.close(fd)
    return pid, (parent_ends[0], parent_ends[1], parent_ends[2])
