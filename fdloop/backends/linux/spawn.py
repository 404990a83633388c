"""Starting a child with glibc's posix_spawn(3), called through ctypes.

Why posix_spawn and not fork or subprocess.Popen:

* glibc implements it with ``clone(CLONE_VM | CLONE_VFORK)``: the parent is suspended
  only until the child calls ``execve``, however big the parent is (no page-table copy),
  and ctypes drops the GIL for the call, so other threads keep running.
* It reports exec and chdir failures synchronously: the child writes the errno into
  memory it shares with the parent and exits, glibc reaps that failed child itself and
  returns the errno. So a missing program or a bad ``cwd`` raises in the parent and
  leaves no process behind.
* One call does everything the child needs, without running Python code in it:
  ``POSIX_SPAWN_SETSIGMASK`` (empty mask: signals that fdloop's SignalFD blocks for the
  parent must not stay blocked in the child), ``POSIX_SPAWN_SETSIGDEF`` (SIGPIPE and
  SIGXFSZ, which CPython sets to SIG_IGN, back to SIG_DFL, as subprocess's
  ``restore_signals`` does), ``POSIX_SPAWN_SETSID``, dup2 file actions for stdio,
  ``posix_spawn_file_actions_addchdir_np`` (glibc 2.29) for ``cwd`` and
  ``posix_spawn_file_actions_addclosefrom_np`` (glibc 2.34) so that only ``pass_fds``
  reach the child. ``os.posix_spawn`` has neither chdir nor closefrom before 3.13.
* Popen would reap behind our back (``_cleanup``/``__del__``/``poll``) and cannot empty
  the signal mask without a ``preexec_fn``, which disables vfork.

Where the optional extension ``_clone_spawn`` is built (``setup.py``), it is used instead:
``clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`` does what posix_spawn does and also
returns the child's pidfd from the same system call, so the handle can never name a
recycled pid (see the C file's header for why a pidfd opened after posix_spawn can).

A ``dup2(fd, fd)`` file action clears FD_CLOEXEC on ``fd`` in glibc >= 2.29 (POSIX 2024
semantics); that is how ``pass_fds`` — O_CLOEXEC like every fd Python opens — survive
the exec. ``addclosefrom_np`` then closes every higher fd, and an explicit close action
takes each unlisted fd below the highest passed one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType

from ..fdlimit import fd_limit
from ..pipe import blocking_opening

_clone_spawn: ModuleType | None
try:
    from . import _clone_spawn  # type: ignore[attr-defined, no-redef]
except ImportError:  # built without a C compiler: posix_spawn, then pidfd_open
    _clone_spawn = None

_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSIGMASK = 0x08
_POSIX_SPAWN_SETSID = 0x80

# glibc's opaque types are 80 (file actions) and 336 (attributes) bytes on 64-bit
# targets; generous buffers keep us safe from layout growth.
_FILE_ACTIONS_SIZE = 256
_ATTR_SIZE = 1024
_SIGSET_SIZE = 128  # glibc's sigset_t: 1024 bits

_libc = ctypes.CDLL(None, use_errno=True)
_posix_spawn = _libc.posix_spawn
_posix_spawn.argtypes = [
    ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
    ctypes.c_void_p, ctypes.c_void_p,
]
_posix_spawn.restype = ctypes.c_int
_fa_init = _libc.posix_spawn_file_actions_init
_fa_destroy = _libc.posix_spawn_file_actions_destroy
_fa_adddup2 = _libc.posix_spawn_file_actions_adddup2
_fa_adddup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
_fa_addclose = _libc.posix_spawn_file_actions_addclose
_fa_addclose.argtypes = [ctypes.c_void_p, ctypes.c_int]
_fa_addchdir = getattr(_libc, "posix_spawn_file_actions_addchdir_np", None)
if _fa_addchdir is not None:
    _fa_addchdir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_fa_addclosefrom = getattr(_libc, "posix_spawn_file_actions_addclosefrom_np", None)
if _fa_addclosefrom is not None:
    _fa_addclosefrom.argtypes = [ctypes.c_void_p, ctypes.c_int]
_attr_init = _libc.posix_spawnattr_init
_attr_destroy = _libc.posix_spawnattr_destroy
_attr_setflags = _libc.posix_spawnattr_setflags
_attr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
_attr_setsigmask = _libc.posix_spawnattr_setsigmask
_attr_setsigmask.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_attr_setsigdefault = _libc.posix_spawnattr_setsigdefault
_attr_setsigdefault.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_environ = ctypes.c_void_p.in_dll(_libc, "environ")

_EMPTY_SIGSET = bytes(_SIGSET_SIZE)
# Signals CPython itself leaves ignored, which exec would otherwise pass on.
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


def _sigset(signals: Iterable[int]) -> bytes:
    mask = 0
    for signo in signals:
        mask |= 1 << (int(signo) - 1)
    # sigset_t is an array of unsigned longs: little- or big-endian words alike hold
    # signal n at bit n-1 of the whole, so build it word by word in native order.
    words = bytearray()
    for _ in range(_SIGSET_SIZE // 8):
        words += (mask & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, sys.byteorder)
        mask >>= 64
    return bytes(words)


def find_executable(program: str, env: dict[bytes, bytes] | None) -> str:
    """The path posix_spawn should exec for ``program``, searching the child's PATH.

    A name with a slash is used as given (relative to the child's cwd, as execve does).
    Raises FileNotFoundError / PermissionError naming the program.
    """
    if "/" in program:
        return program
    denied = False
    # get_exec_path reads a bytes b"PATH" key too; its stub only admits str keys.
    for directory in os.get_exec_path(env):  # type: ignore[arg-type]
        candidate = os.path.join(directory, program)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = True
    if denied:
        raise PermissionError(13, "Permission denied", program)
    raise FileNotFoundError(2, "No such file or directory", program)


def posix_spawn(
    path: str,
    argv: Sequence[bytes],
    env: Sequence[bytes] | None,
    *,
    stdio: tuple[int | None, int | None, int | None],
    cwd: bytes | None,
    pass_fds: Sequence[int],
    start_new_session: bool,
    default_signals: Iterable[int] = (),
    pass_sources: Sequence[int] | None = None,
) -> int:
    """Start ``path`` and return the child's pid; the child is unreaped and ours.

    ``stdio[i]`` is an fd to dup2 onto fd i in the child (None: inherit ours); fds < 3
    must already sit at their target or have been moved above 2 by the caller.
    ``pass_fds`` (all >= 3) are inherited; every other fd >= 3 is closed. Raises the
    OSError that exec or chdir failed with (no child exists then).
    """
    attr = _attributes(start_new_session, tuple(default_signals))
    plain = stdio == (None, None, None) and cwd is None and not pass_fds
    actions = _PLAIN_ACTIONS if plain else _file_actions(stdio, cwd, pass_fds, pass_sources)
    try:
        c_path, c_argv = _encoded(path, argv)
        if env is None:
            c_env: object = _environ.value
        else:
            c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
        pid = ctypes.c_int(0)
        error = _posix_spawn(ctypes.byref(pid), c_path, actions, attr, c_argv, c_env)
        if error:
            raise OSError(error, os.strerror(error))
        return pid.value
    finally:
        if not plain:
            _fa_destroy(actions)


_argv_cache: dict[tuple[str, tuple[bytes, ...]], tuple[bytes, ctypes.Array[ctypes.c_char_p]]] = {}


def _encoded(path: str, argv: Sequence[bytes]) -> tuple[bytes, ctypes.Array[ctypes.c_char_p]]:
    """``path`` and the NULL-terminated ``char *argv[]`` for posix_spawn, kept for reuse.

    A program is usually started with the same arguments again and again, and right
    after a spawn every object built costs several times its usual price (the child ran
    on this CPU meanwhile). posix_spawn only reads the array, so one copy serves every
    call and thread; the array keeps its bytes alive.
    """
    key = (path, tuple(argv))
    entry = _argv_cache.get(key)
    if entry is None:
        entry = (os.fsencode(path), (ctypes.c_char_p * (len(argv) + 1))(*argv, None))
        if len(_argv_cache) >= 64:  # a program that keeps changing its arguments
            _argv_cache.clear()
        _argv_cache[key] = entry
    return entry


def _file_actions(
    stdio: tuple[int | None, int | None, int | None] | None,
    cwd: bytes | None,
    pass_fds: Sequence[int],
    pass_sources: Sequence[int] | None = None,
) -> ctypes.Array[ctypes.c_char]:
    """Build (the caller destroys) the dup2/chdir/close actions the child runs in order;
    pass_fds[i] becomes a copy of pass_sources[i] (default: itself)."""
    actions = ctypes.create_string_buffer(_FILE_ACTIONS_SIZE)
    _fa_init(actions)
    try:
        for target, source in enumerate(stdio or ()):
            if source is not None:
                _check(_fa_adddup2(actions, source, target))
        if cwd is not None:
            if _fa_addchdir is None:
                raise OSError(38, "this glibc has no posix_spawn_file_actions_addchdir_np")
            _check(_fa_addchdir(actions, cwd))
        source_of = dict(zip(pass_fds, pass_sources or pass_fds, strict=True))
        passed = sorted(source_of)
        for fd in passed:
            _check(_fa_adddup2(actions, source_of[fd], fd))
        if passed:
            # Fds between 3 and the highest passed one are closed one by one; glibc
            # ignores EBADF for fds that are not open.
            wanted = set(passed)
            for fd in range(3, passed[-1]):
                if fd not in wanted:
                    _check(_fa_addclose(actions, fd))
        first_closed = (passed[-1] + 1) if passed else 3
        # glibc refuses (EBADF) a closefrom at or past the soft RLIMIT_NOFILE, where no
        # fd can be open anyway: pass_fds=[limit - 1] is valid.
        if _fa_addclosefrom is not None and first_closed < fd_limit()[0]:
            _check(_fa_addclosefrom(actions, first_closed))
    except BaseException:
        _fa_destroy(actions)
        raise
    return actions


# posix_spawn only reads its attributes and file actions, so the common ones are built
# once and shared by every call (and thread): this keeps ~10 ctypes calls off the hot path.
_attr_cache: dict[tuple[bool, tuple[int, ...]], ctypes.Array[ctypes.c_char]] = {}


def _attributes(new_session: bool, extra_default: tuple[int, ...]) -> ctypes.Array[ctypes.c_char]:
    key = (new_session, extra_default)
    attr = _attr_cache.get(key)
    if attr is None:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        _attr_init(attr)
        flags = _POSIX_SPAWN_SETSIGMASK | _POSIX_SPAWN_SETSIGDEF
        if new_session:
            flags |= _POSIX_SPAWN_SETSID
        _check(_attr_setflags(attr, flags))
        _check(_attr_setsigmask(attr, _EMPTY_SIGSET))
        _check(_attr_setsigdefault(attr, _sigset((*_PYTHON_IGNORED, *extra_default))))
        if len(_attr_cache) > 64:  # a program that keeps changing its SignalFDs
            _attr_cache.clear()
        _attr_cache[key] = attr
    return attr


def _check(error: int) -> None:
    if error:
        raise OSError(error, os.strerror(error))


StdioSpec = int | None
"""None (inherit), an fd >= 0, or subprocess's PIPE / DEVNULL / STDOUT."""


def spawn_child(
    program: str,
    argv: Sequence[bytes],
    env: Sequence[bytes] | None,
    *,
    stdio: tuple[StdioSpec, StdioSpec, StdioSpec],
    cwd: bytes | None,
    pass_fds: Sequence[int],
    start_new_session: bool,
    default_signals: Iterable[int] = (),
) -> tuple[int, int | None, tuple[int | None, int | None, int | None]]:
    """Set up stdio, start the child; return its pid, its pidfd and the parent's pipe ends.

    The pidfd is made by the spawn itself where the ``_clone_spawn`` extension is built,
    else it is None and the caller opens one from the pid (see pidfd.open_child). For
    each PIPE a pipe is made (O_CLOEXEC; the parent's end non-blocking) and the parent's
    end returned at that position (None elsewhere). Every fd made here for the child is
    closed in the parent before returning, and on failure everything is closed: the
    OSError then names what was wrong (the program, ``cwd``, a stdio or pass_fds fd).
    """
    _check_open("pass_fds", pass_fds)
    made: list[int] = []  # fds we created and close in the parent in any case
    parent_ends: list[int | None] = [None, None, None]
    child_fds: list[int | None] = [None, None, None]
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
        pass_fds = sorted(set(pass_fds))
        pass_sources = [_blocking(fd, made) for fd in pass_fds]
        path = program if "/" in program else find_executable(program, _env_dict(env))
        child_stdio = (child_fds[0], child_fds[1], child_fds[2])
        if _clone_spawn is not None:
            pid, pidfd = _clone(
                program, path, argv, env, stdio=child_stdio, cwd=cwd, pass_fds=pass_fds,
                pass_sources=pass_sources,
                start_new_session=start_new_session, default_signals=default_signals,
            )
        else:
            pidfd = None
            try:
                pid = posix_spawn(
                    path, argv, env, stdio=child_stdio, cwd=cwd, pass_fds=pass_fds,
                    pass_sources=pass_sources,
                    start_new_session=start_new_session, default_signals=default_signals,
                )
            except OSError as exc:
                raise _named(exc, _guess_culprit(exc, cwd, program)) from None
    except BaseException:
        for fd in parent_ends:
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in made:
            os.close(fd)
    return pid, pidfd, (parent_ends[0], parent_ends[1], parent_ends[2])


def spawns_with_pidfd() -> bool:
    """True when children are started by clone(CLONE_PIDFD) (the compiled extension)."""
    return _clone_spawn is not None


_STDIO_NAMES = ("stdin", "stdout", "stderr")


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


def _clone(
    program: str,
    path: str,
    argv: Sequence[bytes],
    env: Sequence[bytes] | None,
    *,
    stdio: tuple[int | None, int | None, int | None],
    cwd: bytes | None,
    pass_fds: Sequence[int],
    pass_sources: Sequence[int],
    start_new_session: bool,
    default_signals: Iterable[int],
) -> tuple[int, int]:
    """Start the child through the extension; its pid and the pidfd the clone made."""
    assert _clone_spawn is not None
    try:
        pid, pidfd, error, step = _clone_spawn.spawn(
            os.fsencode(path), argv, env,
            tuple(-1 if fd is None else fd for fd in stdio), cwd, pass_fds, pass_sources,
            True, start_new_session, -1, -1, (*_PYTHON_IGNORED, *default_signals), -1, -1,
            None,
        )
    except OSError as exc:  # the clone itself failed: EAGAIN (RLIMIT_NPROC), ENOMEM
        raise _named(exc, program) from None
    if error:
        if step == _clone_spawn.STEP_CWD and cwd is not None:
            culprit = os.fsdecode(cwd)
        else:
            culprit = _STEP_CULPRITS.get(step, program)
        raise _named(OSError(error, os.strerror(error)), culprit)
    return pid, pidfd


_STEP_CULPRITS: dict[int, str] = {}
if _clone_spawn is not None:
    _STEP_CULPRITS = {
        _clone_spawn.STEP_SETSID: "start_new_session",
        _clone_spawn.STEP_SETPGID: "process_group",
        _clone_spawn.STEP_STDIO: "stdin/stdout/stderr",
        _clone_spawn.STEP_GROUPS: "extra_groups",
        _clone_spawn.STEP_GID: "group",
        _clone_spawn.STEP_UID: "user",
        _clone_spawn.STEP_CLOSE_FDS: "close_fds",
        _clone_spawn.STEP_PASS_FDS: "pass_fds",
    }


def _guess_culprit(exc: OSError, cwd: bytes | None, program: str) -> str:
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


def _env_dict(env: Sequence[bytes] | None) -> dict[bytes, bytes] | None:
    if env is None:
        return None
    pairs = (entry.split(b"=", 1) for entry in env if b"=" in entry)
    return dict(pairs)


_PLAIN_ACTIONS = _file_actions(None, None, ())
"""No stdio, cwd or pass_fds: only ``closefrom(3)``."""
