"""Starting a child: stdio and fds set up here, then one of two ways into the kernel.

* Where the optional extension ``_clone_spawn`` is built (``setup.py``; see its C file),
  ``clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`` starts the child and hands back its
  pidfd from the same system call, so the handle can never name a recycled pid. It also
  carries out what posix_spawn cannot: ``user``, ``group``, ``extra_groups``, ``umask``,
  and ``die_with_parent`` by a prctl in the child.
* Otherwise glibc's posix_spawn (fdloop/backends/posix/posix_spawn.py), after which the
  caller opens a pidfd from the pid (pidfd.open_child), and ``die_with_parent`` goes
  through an exec wrapper (:mod:`.pdeathsig`).

Both report a failed exec or chdir in the parent, with no process left behind, and the
OSError names what was wrong: the program, ``cwd``, or the option whose step failed.
The child never gets our non-blocking pipe descriptions (see pipe.blocking_opening).
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import subprocess
from collections.abc import Iterable, Sequence
from types import ModuleType

from ...errors import UnsupportedOperation
from ..posix.exec_path import find_executable
from ..posix.pipe import blocking_opening
from ..posix.posix_spawn import posix_spawn
from ..request import SpawnRequest

_clone_spawn: ModuleType | None
try:
    from . import _clone_spawn  # type: ignore[attr-defined, no-redef]
except ImportError:  # built without a C compiler: posix_spawn, then pidfd_open
    _clone_spawn = None

# Signals CPython itself leaves ignored, which exec would otherwise pass on.
_PYTHON_IGNORED = (int(signal.SIGPIPE), int(signal.SIGXFSZ))
_STDIO_NAMES = ("stdin", "stdout", "stderr")
_INHERIT: tuple[int | None, int | None, int | None] = (None, None, None)
_NO_STDIO = (-1, -1, -1)  # (_INHERIT as the extension takes it)

StdioSpec = int | None
"""None (inherit), an fd >= 0, or subprocess's PIPE / DEVNULL / STDOUT."""


def spawns_with_pidfd() -> bool:
    """True when children are started by clone(CLONE_PIDFD) (the compiled extension)."""
    return _clone_spawn is not None


def spawn_child(
    request: SpawnRequest,
) -> tuple[int, int | None, tuple[int | None, int | None, int | None]]:
    """Set up stdio, start the child; return its pid, its pidfd and the parent's pipe ends.

    The pidfd is made by the spawn itself on the clone path, else it is None and the
    caller opens one from the pid. For each PIPE a pipe is made (O_CLOEXEC; the
    parent's end non-blocking; ``pipesize`` applied) and the parent's end returned at
    that position (None elsewhere). Every fd made here for the child is closed in the
    parent before returning, and on failure everything is closed: the OSError then
    names what was wrong. UnsupportedOperation for an option only the clone path has.
    """
    if _clone_spawn is not None and request.stdio == _INHERIT and not request.pass_fds:
        # The common case (nothing to set up in the parent), straight to the clone.
        started = _call_clone(
            request, _INHERIT, (), _child_default_signals(request),
            3 if request.close_fds else 0)
        return started[0], started[1], _INHERIT
    if _clone_spawn is None and request.needs_clone:
        raise UnsupportedOperation(
            f"{', '.join(request.needs_clone)}: needs fdloop's compiled spawn path (the "
            "_clone_spawn extension, built at install time when a C compiler is present); "
            "posix_spawn cannot change a child's credentials or umask"
        )
    if _clone_spawn is None and request.cgroup is not None:
        raise UnsupportedOperation(
            "cgroup: starting a child in a cgroup needs fdloop's compiled spawn path "
            "(clone3's CLONE_INTO_CGROUP); posix_spawn cannot"
        )
    if request.pass_fds:
        _check_open("pass_fds", request.pass_fds)
    made: list[int] = []  # fds we created and close in the parent in any case
    parent_ends: list[int | None] = [None, None, None]
    child_fds: list[int | None] = [None, None, None]
    stdio = request.stdio
    inherit_all = stdio == (None, None, None)
    try:
        for target, spec in enumerate(() if inherit_all else stdio):
            if spec is None:
                continue
            if spec == subprocess.PIPE:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                if target == 0:
                    parent_ends[0], child_fd = write_end, read_end
                else:
                    parent_ends[target], child_fd = read_end, write_end
                made.append(child_fd)
                os.set_blocking(parent_ends[target], False)  # type: ignore[arg-type]
                if request.pipesize is not None:
                    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, request.pipesize)
            elif spec == subprocess.DEVNULL:
                child_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                made.append(child_fd)
            elif spec == subprocess.STDOUT:
                child_fd = child_fds[1] if child_fds[1] is not None else 1
            else:
                _check_open(_STDIO_NAMES[target], (spec,))
                child_fd = _blocking(spec, made)
            child_fds[target] = child_fd
        # An fd below 3 that is not already at its target would be overwritten by an
        # earlier dup2 (e.g. stdout=2, stderr=1): give the child a copy above 2.
        for target, fd in enumerate(() if inherit_all else child_fds):
            if fd is not None and fd < 3 and fd != target:
                copy = fcntl_dupfd_cloexec(fd)
                made.append(copy)
                child_fds[target] = copy
        pass_sources = [] if not request.pass_fds else [
            _blocking(fd, made) for fd in request.pass_fds]
        child_stdio = _INHERIT if inherit_all else (child_fds[0], child_fds[1], child_fds[2])
        default_signals = _child_default_signals(request)
        if _clone_spawn is not None:
            pid, pidfd = _clone(request, child_stdio, pass_sources, default_signals)
        else:
            pidfd = None
            pid = _posix(request, child_stdio, pass_sources, default_signals)
    except BaseException:
        for fd in parent_ends:
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in made:
            os.close(fd)
    return pid, pidfd, (parent_ends[0], parent_ends[1], parent_ends[2])


def _child_default_signals(request: SpawnRequest) -> tuple[int, ...]:
    """The signals the child must start with at SIG_DFL even where we ignore them."""
    if not request.restore_signals:
        return request.default_signals
    if not request.default_signals:
        return _PYTHON_IGNORED
    return (*_PYTHON_IGNORED, *request.default_signals)


def _spawner_pid() -> int:
    """The pid the child must see as its parent once its death signal is armed (a seam
    for the test of the race that check closes)."""
    return os.getpid()


def _exec_target(request: SpawnRequest) -> tuple[str, str]:
    """(what to look up, its path): ``executable`` or argv[0], searched in the child's
    PATH when it has no slash."""
    name = os.fsdecode(request.executable if request.executable is not None
                       else request.argv[0])
    if "/" in name:
        return name, name
    try:
        return name, find_executable(name, request.env_map)
    except OSError:
        # The child would have failed its chdir before any exec: say so, as Popen does.
        _check_cwd(request.cwd)
        raise


def _check_cwd(cwd: bytes | None) -> None:
    """FileNotFoundError / NotADirectoryError naming ``cwd`` if it is not a directory."""
    if cwd is None or os.path.isdir(cwd):
        return
    code = errno.ENOTDIR if os.path.exists(cwd) else errno.ENOENT
    raise OSError(code, os.strerror(code), os.fsdecode(cwd)) from None


def _exec_path_bytes(request: SpawnRequest) -> bytes:
    """The path of :func:`_exec_target`, as the bytes execve takes."""
    if request.executable is None and b"/" in request.argv[0]:
        return request.argv[0]  # (what fsencode(fsdecode(...)) would give back)
    return os.fsencode(_exec_target(request)[1])


def _clone(
    request: SpawnRequest,
    stdio: tuple[int | None, int | None, int | None],
    pass_sources: Sequence[int],
    default_signals: tuple[int, ...],
) -> tuple[int, int]:
    """Start the child through the extension; its pid and the pidfd the clone made.

    With ``close_fds`` the child shares our fd table and keeps only the fds below the
    highest one it needs (``keep_below``): a clone that copied the whole table would
    make the parent's CPU grow with the number of fds it has open.
    """
    if not request.close_fds:
        return _call_clone(request, stdio, pass_sources, default_signals, 0)
    if stdio is _INHERIT and not pass_sources:
        return _call_clone(request, stdio, pass_sources, default_signals, 3)
    highest = max((fd for fd in (*stdio, *pass_sources) if fd is not None), default=2)
    return _call_clone(request, stdio, pass_sources, default_signals, highest + 1)


def _call_clone(
    request: SpawnRequest,
    stdio: tuple[int | None, int | None, int | None],
    pass_sources: Sequence[int],
    default_signals: tuple[int, ...],
    keep_below: int,
) -> tuple[int, int]:
    assert _clone_spawn is not None
    path = (request.argv[0] if request.executable is None and b"/" in request.argv[0]
            else _exec_path_bytes(request))
    try:
        pid, pidfd, error, step = _clone_spawn.spawn(
            path, request.argv, request.env,
            _NO_STDIO if stdio is _INHERIT else (
                -1 if stdio[0] is None else stdio[0], -1 if stdio[1] is None else stdio[1],
                -1 if stdio[2] is None else stdio[2],
            ), request.cwd, request.pass_fds,
            pass_sources, request.close_fds, max(keep_below, 3) if keep_below else 0,
            request.start_new_session,
            -1 if request.process_group is None else request.process_group,
            -1 if request.umask is None else request.umask, default_signals,
            -1 if request.user is None else request.user,
            -1 if request.group is None else request.group,
            request.extra_groups,
            # (the parent's pid is only checked in the child with the death signal)
            *((int(signal.SIGKILL), _spawner_pid()) if request.die_with_parent else (0, 0)),
            *(() if request.cgroup is None else (request.cgroup,)),
        )
    except OSError as exc:  # the clone itself failed: EAGAIN (RLIMIT_NPROC), ENOMEM
        if request.cgroup is not None and (exc.strerror or "").startswith("cgroup_fd "):
            raise _cgroup_refused(exc) from None
        raise _named(exc, request.program) from None
    if error:
        if step == _clone_spawn.STEP_CWD and request.cwd is not None:
            culprit = os.fsdecode(request.cwd)
        else:
            culprit = _STEP_CULPRITS.get(step, request.program)
        raise _named(OSError(error, os.strerror(error)), culprit)
    return pid, pidfd


def _cgroup_refused(exc: OSError) -> OSError | UnsupportedOperation:
    """The extension's refusal of a cgroup fd, reworded to name ``cgroup``: ENOSYS (only
    clone(2) usable here) as UnsupportedOperation, anything else as the same OSError."""
    why = (exc.strerror or "").split(": ", 1)[-1]
    if exc.errno == errno.ENOSYS:
        return UnsupportedOperation(f"cgroup: {why}")
    return type(exc)(exc.errno, f"cgroup: {why}", "cgroup")


_STEP_CULPRITS: dict[int, str] = {}
if _clone_spawn is not None:
    _STEP_CULPRITS = {
        _clone_spawn.STEP_UNSHARE_FDS: "close_fds",
        _clone_spawn.STEP_PDEATHSIG: "die_with_parent",
        _clone_spawn.STEP_SETSID: "start_new_session",
        _clone_spawn.STEP_SETPGID: "process_group",
        _clone_spawn.STEP_STDIO: "stdin/stdout/stderr",
        _clone_spawn.STEP_GROUPS: "extra_groups",
        _clone_spawn.STEP_GID: "group",
        _clone_spawn.STEP_UID: "user",
        _clone_spawn.STEP_CLOSE_FDS: "close_fds",
        _clone_spawn.STEP_PASS_FDS: "pass_fds",
    }


def _posix(
    request: SpawnRequest,
    stdio: tuple[int | None, int | None, int | None],
    pass_sources: Sequence[int],
    default_signals: tuple[int, ...],
) -> int:
    """Start the child with posix_spawn; its pid (the caller opens the pidfd)."""
    if request.die_with_parent:
        from .pdeathsig import wrap_argv  # only when asked for

        name, _path = _exec_target(request)
        _check_executable(name, request.cwd)  # the wrapper's own exec would hide it
        program, argv = wrap_argv(name, list(request.argv), request.env)
        request = _replace_argv(request, program, argv)
    name, path = _exec_target(request)
    try:
        return posix_spawn(path, request, stdio, pass_sources, default_signals)
    except PermissionError as exc:
        if exc.errno != errno.EPERM:  # (EACCES: the program or cwd)
            raise _named(exc, _guess_culprit(request.cwd, request.program)) from None
        # execve says EACCES for a file it may not run; EPERM here is the clone refused
        # (glibc's posix_spawn tries clone3 and falls back to clone only on ENOSYS).
        raise PermissionError(
            errno.EPERM,
            f"{exc.strerror}: the kernel refused to start a process (a seccomp filter "
            "refusing clone3 with EPERM instead of ENOSYS, or an LSM?)",
            request.program,
        ) from None
    except OSError as exc:
        raise _named(exc, _guess_culprit(request.cwd, request.program)) from None


def _check_executable(name: str, cwd: bytes | None) -> None:
    """FileNotFoundError/PermissionError naming ``name`` if a path with a slash cannot be
    exec'd (relative to the child's ``cwd``): behind an exec wrapper the failure would
    otherwise be a started child that exits 127, not a spawn error."""
    if "/" not in name:
        return  # looked up in PATH already, with the same errors
    path = os.path.join(os.fsdecode(cwd) if cwd is not None else ".", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    if not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)


def _replace_argv(request: SpawnRequest, program: str, argv: list[bytes]) -> SpawnRequest:
    return request._replace(argv=tuple(argv), executable=os.fsencode(program))


def _blocking(fd: int, made: list[int]) -> int:
    """``fd``, or a private blocking opening of it (added to ``made``) if it is one of
    our non-blocking pipe ends: see pipe.blocking_opening."""
    copy = blocking_opening(fd)
    if copy is None:
        return fd
    made.append(copy)
    return copy


def _check_open(name: str, fds: Iterable[int]) -> None:
    """EBADF naming ``name`` and the fd for any fd of ``fds`` that is not open."""
    for fd in fds:
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError as exc:
            raise OSError(exc.errno, f"{name}: fd {fd} is not open ({exc.strerror})") from None


def _guess_culprit(cwd: bytes | None, program: str) -> str:
    """posix_spawn reports a chdir failure and an exec failure alike: tell them apart."""
    if cwd is not None and not (os.path.isdir(cwd) and os.access(cwd, os.X_OK)):
        return os.fsdecode(cwd)
    return program


def _named(exc: OSError, culprit: str) -> OSError:
    """``exc`` again, with ``culprit`` as its filename and the limit named for EAGAIN."""
    if exc.errno == errno.EAGAIN:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
        return BlockingIOError(
            exc.errno,
            f"cannot start another process: RLIMIT_NPROC ({soft}) or the system's limit "
            "on processes (kernel.threads-max, pid_max, the cgroup's pids.max) is reached",
            culprit,
        )
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror, culprit)


def fcntl_dupfd_cloexec(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
