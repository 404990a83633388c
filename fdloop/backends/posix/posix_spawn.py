"""Starting a child with glibc's posix_spawn(3), called through ctypes: the fallback path.

fdloop/backends/linux/spawn.py uses this where the compiled clone(CLONE_PIDFD) path is
not built. Why posix_spawn rather than fork or subprocess.Popen:

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
  ``restore_signals`` does), ``POSIX_SPAWN_SETSID``/``SETPGROUP``, dup2 file actions for
  stdio, ``posix_spawn_file_actions_addchdir_np`` (glibc 2.29) for ``cwd`` and
  ``posix_spawn_file_actions_addclosefrom_np`` (glibc 2.34) so that only ``pass_fds``
  reach the child. ``os.posix_spawn`` has neither chdir nor closefrom before 3.13.
* Popen would reap behind our back (``_cleanup``/``__del__``/``poll``) and cannot empty
  the signal mask without a ``preexec_fn``, which disables vfork.

What it cannot do: change the child's user, groups or umask (glibc has no such
attributes), and hand back a pidfd — the caller opens one from the pid afterwards.

A ``dup2(fd, fd)`` file action clears FD_CLOEXEC on ``fd`` in glibc >= 2.29 (POSIX 2024
semantics); that is how ``pass_fds`` — O_CLOEXEC like every fd Python opens — survive
the exec. ``addclosefrom_np`` then closes every higher fd, and an explicit close action
takes each unlisted fd below the highest passed one.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Sequence

from ..request import SpawnRequest
from .fdlimit import fd_limit

_POSIX_SPAWN_SETPGROUP = 0x02
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
_attr_setflags = _libc.posix_spawnattr_setflags
_attr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
_attr_setsigmask = _libc.posix_spawnattr_setsigmask
_attr_setsigmask.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_attr_setsigdefault = _libc.posix_spawnattr_setsigdefault
_attr_setsigdefault.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_attr_setpgroup = _libc.posix_spawnattr_setpgroup
_attr_setpgroup.argtypes = [ctypes.c_void_p, ctypes.c_int]
_environ = ctypes.c_void_p.in_dll(_libc, "environ")

_EMPTY_SIGSET = bytes(_SIGSET_SIZE)


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


def posix_spawn(
    path: str,
    request: SpawnRequest,
    stdio: tuple[int | None, int | None, int | None],
    pass_sources: Sequence[int],
    default_signals: tuple[int, ...],
) -> int:
    """Start ``path`` for ``request`` and return the child's pid (unreaped, ours).

    ``stdio[i]`` is an fd to dup2 onto fd i in the child (None: inherit ours); fds < 3
    must already sit at their target or have been moved above 2 by the caller.
    ``request.pass_fds[i]`` becomes a copy of ``pass_sources[i]``; with ``close_fds``
    every other fd >= 3 is closed. ``default_signals`` go to SIG_DFL. Raises the OSError
    that exec or chdir failed with (no child exists then).
    """
    attr = _attributes(request.start_new_session, request.process_group, default_signals)
    cwd, pass_fds = request.cwd, request.pass_fds
    plain = stdio == (None, None, None) and cwd is None and not pass_fds and request.close_fds
    actions = _PLAIN_ACTIONS if plain else _file_actions(
        stdio, cwd, pass_fds, pass_sources, close_fds=request.close_fds
    )
    try:
        c_path, c_argv = _encoded(path, request.argv)
        env = request.env
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
    *,
    close_fds: bool = True,
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
        if passed and close_fds:
            # Fds between 3 and the highest passed one are closed one by one; glibc
            # ignores EBADF for fds that are not open.
            wanted = set(passed)
            for fd in range(3, passed[-1]):
                if fd not in wanted:
                    _check(_fa_addclose(actions, fd))
        first_closed = (passed[-1] + 1) if passed else 3
        # glibc refuses (EBADF) a closefrom at or past the soft RLIMIT_NOFILE, where no
        # fd can be open anyway: pass_fds=[limit - 1] is valid.
        if close_fds and _fa_addclosefrom is not None and first_closed < fd_limit()[0]:
            _check(_fa_addclosefrom(actions, first_closed))
    except BaseException:
        _fa_destroy(actions)
        raise
    return actions


# posix_spawn only reads its attributes and file actions, so the common ones are built
# once and shared by every call (and thread): this keeps ~10 ctypes calls off the hot path.
# Never posix_spawnattr_destroy()ed: a spawn in another thread may still be using an
# entry (ctypes lets go of the GIL during posix_spawn). With glibc an entry lives wholly in
# its buffer; where the libc allocates behind it (the BSDs), clearing the cache leaves that
# allocation behind.
_attr_cache: dict[tuple[bool, int | None, tuple[int, ...]], ctypes.Array[ctypes.c_char]] = {}


def _attributes(
    new_session: bool, process_group: int | None, default_signals: tuple[int, ...]
) -> ctypes.Array[ctypes.c_char]:
    key = (new_session, process_group, default_signals)
    attr = _attr_cache.get(key)
    if attr is None:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        _attr_init(attr)
        flags = _POSIX_SPAWN_SETSIGMASK | _POSIX_SPAWN_SETSIGDEF
        if new_session:
            flags |= _POSIX_SPAWN_SETSID
        if process_group is not None:
            flags |= _POSIX_SPAWN_SETPGROUP
            _check(_attr_setpgroup(attr, process_group))
        _check(_attr_setflags(attr, flags))
        _check(_attr_setsigmask(attr, _EMPTY_SIGSET))
        _check(_attr_setsigdefault(attr, _sigset(default_signals)))
        if len(_attr_cache) > 64:  # a program that keeps changing its SignalFDs
            _attr_cache.clear()
        _attr_cache[key] = attr
    return attr


def _check(error: int) -> None:
    if error:
        raise OSError(error, os.strerror(error))


_PLAIN_ACTIONS = _file_actions(None, None, ())
"""No stdio, cwd or pass_fds: only ``closefrom(3)``."""
