"""``fdloop.spawn``: start a child and get its ProcessFD.

Argument checking happens here (the subprocess-style options in :mod:`.spawn_options`),
before anything is created, and ends in one frozen SpawnRequest
(fdloop/backends/request.py) that the backend takes as it is; the child itself is started
by the backend (Linux: fdloop/backends/linux/spawn.py).
"""

from __future__ import annotations

import functools
import os
import signal as _signal
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Union

from .. import _validate
from ..backends import current as current_backend
from ..backends.posix import sigmask
from ..backends.posix.fdlimit import out_of_fds
from ..backends.request import SpawnRequest
from . import reaper
from . import spawn_options as options
from .process_api import TextMode, drop_windows_options
from .processfd import ProcessFD, signal_number
from .streams import DEFAULT_LIMIT, DEVNULL, PIPE, STDOUT, check_limit

__all__ = ["spawn"]

_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_SIGTERM = int(_signal.SIGTERM)
_INHERIT_ALL = (None, None, None)

MAX_FD = 2**31 - 1
"""The largest fd number: the kernel's fds are C ints, so anything larger would be cut."""

StdioArg = Union[int, IO[Any], None]  # noqa: UP007 - a runtime alias must work on 3.10
"""None (inherit), PIPE, DEVNULL, STDOUT (stderr only), an fd, or a file object."""
StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def spawn(
    argv: StrOrBytesPath | Sequence[StrOrBytesPath],
    *,
    stdin: StdioArg = None,
    stdout: StdioArg = None,
    stderr: StdioArg = None,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
    pass_fds: Iterable[int] = (),
    start_new_session: bool = False,
    daemon: bool = False,
    kill_signal: int = _signal.SIGTERM,
    kill_timeout: float = 5.0,
    die_with_parent: bool = False,
    shell: bool = False,
    executable: StrOrBytesPath | None = None,
    close_fds: bool = True,
    process_group: int | None = None,
    user: str | int | None = None,
    group: str | int | None = None,
    extra_groups: Iterable[str | int] | None = None,
    umask: int = -1,
    restore_signals: bool = True,
    pipesize: int = -1,
    preexec_fn: object = None,
    limit: int = DEFAULT_LIMIT,
    text: bool | None = None,
    encoding: str | None = None,
    errors: str | None = None,
    universal_newlines: bool | None = None,
    bufsize: int | None = -1,
    startupinfo: None = None,
    creationflags: int = 0,
    cgroup: str | os.PathLike[str] | None = None,
) -> ProcessFD:
    """Start ``argv`` as our child and return its ProcessFD. Does not wait. (``args=``,
    Popen's keyword for the command, is taken too.)

    ``argv[0]`` is looked up in the child's PATH unless it contains a slash. stdio:
    None (inherit), PIPE (``proc.stdin``/``stdout``/``stderr`` become pipe streams),
    DEVNULL, STDOUT (stderr only), a file object or an fd. Only ``pass_fds`` (>= 3) are
    inherited besides stdio (``close_fds=False``: every inheritable fd too). The child
    starts with an empty signal mask and any signal a SignalFD took over at SIG_DFL, and
    with SIGPIPE and SIGXFSZ at SIG_DFL unless ``restore_signals=False``.
    ``start_new_session`` runs it in a new session, and then terminate/kill/close reach
    its whole process group (so does ``process_group=0``, a new group it leads).
    ``die_with_parent=True`` (Linux) has the kernel SIGKILL the child when the thread
    that spawned it exits — the process crashing or being SIGKILLed included; see
    fdloop/backends/linux/pdeathsig.py for its caveats. UnsupportedOperation where the
    backend cannot.

    As in subprocess: ``shell=True`` runs ``argv`` (a str) with ``/bin/sh -c`` (or
    ``executable``); ``executable`` is exec'd in place of argv[0]; ``user``, ``group``
    (names or ids), ``extra_groups`` and ``umask`` (unless negative) set the child's
    credentials and umask; ``process_group`` calls setpgid; ``pipesize`` sets the size
    of the pipes made for PIPE. ``limit`` bounds what a line search on a piped
    stdout/stderr buffers (asyncio's ``limit=``, 64 KiB).
    ``text``/``encoding``/``errors``/``universal_newlines`` select text mode for
    :meth:`ProcessFD.communicate` (str in, str out, universal newlines), by
    subprocess's rules; the pipe streams themselves stay byte streams.
    ``user``/``group``/``extra_groups``/``umask`` need the compiled spawn path (``fdloop
    info``: spawn). ``preexec_fn`` is refused: see the TypeError.
    ``cgroup`` (Linux, the compiled clone3 path): the path of a cgroup v2 directory the
    child starts in, from its first instruction (CLONE_INTO_CGROUP: no write to
    cgroup.procs); an OSError naming ``cgroup`` and the path if the kernel refuses it,
    UnsupportedOperation where only clone(2) or posix_spawn starts children, or on the
    kqueue backend.

    Raises FileNotFoundError / PermissionError / NotADirectoryError (naming the program
    or ``cwd``) if it cannot be executed — no process and no fd is left then —, and
    TypeError/ValueError for bad arguments, before anything is created.
    """
    if preexec_fn is not None:
        raise TypeError(_PREEXEC_REFUSED)
    if bufsize != -1 or startupinfo is not None or creationflags != 0:
        # Popen's keywords that mean nothing here, accepted (and refused) as Popen does
        drop_windows_options(
            {"bufsize": bufsize, "startupinfo": startupinfo, "creationflags": creationflags}
        )
    if (start_new_session is not False or shell is not False or close_fds is not True
            or restore_signals is not True):
        # subprocess's own flags: any value, taken for its truth (Popen's `if shell:`)
        start_new_session, shell = bool(start_new_session), bool(shell)
        close_fds, restore_signals = bool(close_fds), bool(restore_signals)
    if daemon is not False or die_with_parent is not False:
        for name, flag in (("daemon", daemon), ("die_with_parent", die_with_parent)):
            if not isinstance(flag, bool):  # (fdloop's own: a bool, as its other flags)
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
    command = argv  # (shell=True replaces argv; Popen.args keeps what was given)
    if shell:
        argv = options.shell_argv(argv, executable)  # type: ignore[assignment]
        executable = None
    args = _argv(argv)
    if stdin is None and stdout is None and stderr is None:
        stdio: tuple[int | None, int | None, int | None] = _INHERIT_ALL
    else:
        stdio = (
            _stdio("stdin", stdin, allow_stdout=False),
            _stdio("stdout", stdout, allow_stdout=False),
            _stdio("stderr", stderr, allow_stdout=True),
        )
    cwd_bytes = None if cwd is None else os.fsencode(cwd)
    env_list = None if env is None else tuple(_env(env))
    fds = () if pass_fds == () else _pass_fds(pass_fds)
    if fds and not close_fds:
        # Popen's rule: naming the fds to pass means "only these", with a warning
        warnings.warn("pass_fds overriding close_fds.", RuntimeWarning, stacklevel=2)
        close_fds = True
    if kill_signal is _signal.SIGTERM:  # the default: valid, no need to check it again
        kill_signal = _SIGTERM
    else:
        kill_signal = signal_number("kill_signal", kill_signal)
    if kill_timeout != 5.0 or type(kill_timeout) is not float:
        kill_timeout = _validate.seconds("kill_timeout", kill_timeout)
    if limit is not DEFAULT_LIMIT:
        limit = check_limit(limit)
    text_mode = None if (text is None and encoding is None and errors is None
                         and universal_newlines is None) else TextMode.choose(
        text=text, encoding=encoding, errors=errors, universal_newlines=universal_newlines)

    first = argv[0] if type(argv) is list or type(argv) is tuple else None
    # (a str argv[0] is what fsdecode would give back from its encoding)
    name = first if type(first) is str else os.fsdecode(args[0])
    default_signals = sigmask.for_child()
    if (executable is None and process_group is None and user is None and group is None
            and extra_groups is None and umask == -1 and pipesize == -1 and cgroup is None):
        # The usual call: the same request, without eight "None if ... else" checks.
        request = SpawnRequest(
            name, tuple(args), None, env_list, stdio, cwd_bytes, fds, close_fds,
            start_new_session, None, None, None, None, None, restore_signals,
            default_signals, None, die_with_parent,
        )
    else:
        request = SpawnRequest(
            program=name if executable is None else os.fsdecode(executable),
            argv=tuple(args),
            executable=(None if executable is None
                        else options.path_bytes("executable", executable)),
            env=env_list, stdio=stdio, cwd=cwd_bytes, pass_fds=fds, close_fds=close_fds,
            start_new_session=start_new_session,
            process_group=(None if process_group is None
                           else options.process_group(process_group)),
            user=None if user is None else options.user_id(user),
            group=None if group is None else options.group_id(group),
            extra_groups=None if extra_groups is None else options.group_ids(extra_groups),
            umask=None if umask == -1 else options.umask(umask),  # (None if negative)
            restore_signals=restore_signals, default_signals=default_signals,
            pipesize=None if pipesize == -1 else options.pipesize(pipesize),
            die_with_parent=die_with_parent,
            # (last: every other argument is checked before the fd is opened)
            cgroup=None if cgroup is None else _open_cgroup(cgroup),
        )

    try:
        proc = _start(request, command, name, daemon=daemon, kill_signal=kill_signal,
                      kill_timeout=kill_timeout,
                      new_session=start_new_session or process_group == 0, limit=limit)
    except OSError as exc:
        if cgroup is not None and exc.filename == "cgroup":
            raise type(exc)(exc.errno, exc.strerror, os.fsdecode(cgroup)) from None
        raise
    finally:
        if cgroup is not None and request.cgroup is not None:
            os.close(request.cgroup)
    if text_mode is not None:
        proc._text = text_mode
    return proc


def _spawn_argv_only(argv: object) -> ProcessFD:
    """``spawn(argv)`` with every option at its default: the usual call, made without
    binding 33 keyword defaults and checking each (110 fewer bytecodes per child, and
    the binding: about 0.4 µs). Any argv but a list or tuple of plain str goes the
    full way, so the rules stay in one place."""
    args = _plain_argv(argv)
    if args is None:
        return _spawn(argv)  # type: ignore[arg-type]
    name: str = argv[0]  # type: ignore[index]  # (a list/tuple of str: _plain_argv said so)
    default_signals = sigmask.for_child()
    request = SpawnRequest(
        name, tuple(args), None, None, _INHERIT_ALL, None, (), True, False, None, None,
        None, None, None, True, default_signals, None, False,
    )
    return _start(request, argv, name, daemon=False, kill_signal=_SIGTERM, kill_timeout=5.0,
                  new_session=False, limit=DEFAULT_LIMIT)


def _start(
    request: SpawnRequest, command: object, name: str, *, daemon: bool, kill_signal: int,
    kill_timeout: float, new_session: bool, limit: int,
) -> ProcessFD:
    """Start the checked request through the backend and wrap the child's handle."""
    reaper.sweep()
    # EMFILE can hit any fd made here (pipes, /dev/null, the pidfd); the backend has
    # already closed what it made and killed a started child: say which limit it was
    # (naming_fd_limit's rewording, written out: this is every spawn's path).
    try:
        handle, pipes = current_backend().spawn_process(request)
    except OSError as exc:
        error = out_of_fds(exc, f"spawn({name!r})")
        if error is not exc:
            raise error from exc
        raise
    proc = ProcessFD._wrap(
        handle, owner=True, daemon=daemon, kill_signal=kill_signal, kill_timeout=kill_timeout,
        new_session=new_session, pipes=pipes, limit=limit,
    )
    proc.args = command  # as Popen.args: what TimeoutExpired/CalledProcessError name
    return proc


_spawn = spawn
"""The full signature: a call with any keyword (or no argv) is bound and checked here."""


@functools.wraps(_spawn)  # type: ignore[no-redef]
def spawn(*args: Any, **options: Any) -> ProcessFD:
    # The public spawn: `spawn(argv)` alone goes the short way, anything else to _spawn
    # (whose name, signature and docstring this one shows: functools.wraps, so help()
    # and inspect.signature() give the full signature, and a wrong keyword's TypeError
    # names spawn()). Type checkers see the definition above.
    if options or len(args) != 1:
        if not args and "args" in options:  # subprocess's keyword name for the command
            args = (options.pop("args"),)
        return _spawn(*args, **options)
    return _spawn_argv_only(args[0])


_PREEXEC_REFUSED = (
    "preexec_fn is not supported: fdloop starts children with vfork-style spawning "
    "(clone(CLONE_VM|CLONE_VFORK) or posix_spawn), where no Python code can run in the "
    "child, and running Python between fork and exec in a threaded program can deadlock "
    "(the subprocess documentation warns of it too). Use the options that cover what "
    "preexec_fn is mostly used for: start_new_session, process_group, user, group, "
    "extra_groups, umask, restore_signals, die_with_parent, cwd, env, pass_fds."
)


# -- argument checks ----------------------------------------------------------------------


def _open_cgroup(cgroup: object) -> int:
    """An O_PATH fd of the directory ``cgroup`` names (spawn closes it after the call);
    TypeError, or the open's OSError naming ``cgroup`` and the path."""
    if not isinstance(cgroup, (str, os.PathLike)):
        raise TypeError(
            f"cgroup must be the path (str or os.PathLike) of a cgroup v2 directory, not "
            f"{type(cgroup).__name__}"
        )
    try:
        return os.open(cgroup, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cgroup: {exc.strerror}", os.fsdecode(cgroup)) from None


def _plain_argv(argv: object) -> list[bytes] | None:
    """A non-empty list or tuple of NUL-free str, encoded; None for anything else. (The
    common case, without the slow ABC checks, a generator or a comprehension: each is
    one more frame per spawn.)"""
    if (type(argv) is list or type(argv) is tuple) and argv:
        fast: list[bytes] = []
        for arg in argv:
            if type(arg) is not str or "\0" in arg:
                return None
            fast.append(arg.encode(_FS_ENCODING, _FS_ERRORS))
        return fast
    return None


def _argv(argv: object) -> list[bytes]:
    fast = _plain_argv(argv)
    if fast is not None:
        return fast
    if isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv]
    if not isinstance(argv, Sequence):
        raise TypeError(f"argv must be a sequence of str/bytes, not {type(argv).__name__}")
    args = []
    for arg in argv:
        if not isinstance(arg, (str, bytes, os.PathLike)):
            raise TypeError(f"argv items must be str, bytes or path-like, not {type(arg).__name__}")
        encoded = os.fsencode(arg)
        if b"\0" in encoded:
            raise ValueError("argv items must not contain NUL bytes")
        args.append(encoded)
    if not args:
        raise ValueError("argv must not be empty")
    return args


def _stdio(name: str, value: object, *, allow_stdout: bool) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and value in (PIPE, DEVNULL):
        return value
    if value == STDOUT and isinstance(value, int) and not isinstance(value, bool):
        if not allow_stdout:
            raise ValueError(f"{name}=STDOUT is only meaningful for stderr")
        return STDOUT
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_FD:
            raise ValueError(
                f"{name} must be None, PIPE, DEVNULL, a file or an fd from 0 to {MAX_FD}, "
                f"got {value}"
            )
        return value
    fileno = getattr(value, "fileno", None)
    if fileno is None:
        raise TypeError(
            f"{name} must be None, PIPE, DEVNULL, an fd or a file object, "
            f"not {type(value).__name__}"
        )
    fd = fileno()
    if not isinstance(fd, int):
        raise TypeError(f"{name}.fileno() must return an int")
    if not 0 <= fd <= MAX_FD:
        raise ValueError(f"{name}.fileno() returned {fd}, not an fd")
    return fd


def _env(env: object) -> list[bytes]:
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping, not {type(env).__name__}")
    entries = []
    for key, value in env.items():
        try:
            k, v = os.fsencode(key), os.fsencode(value)
        except TypeError:
            raise TypeError(
                f"env keys and values must be str or bytes, not {type(key).__name__} "
                f"{key!r}: {type(value).__name__}"
            ) from None
        if not k or b"=" in k or b"\0" in k or b"\0" in v:
            raise ValueError(f"env: invalid variable {key!r}")
        entries.append(k + b"=" + v)
    return entries


def _pass_fds(pass_fds: object) -> tuple[int, ...]:
    if pass_fds == ():
        return ()
    if not isinstance(pass_fds, Iterable) or isinstance(pass_fds, (str, bytes)):
        raise TypeError(f"pass_fds must be an iterable of fds, not {type(pass_fds).__name__}")
    fds = tuple(sorted({
        _validate.integer("pass_fds item", fd, low=0, high=MAX_FD) for fd in pass_fds
    }))
    if any(fd < 3 for fd in fds):
        raise ValueError("pass_fds must be >= 3 (fds 0-2 are set with stdin/stdout/stderr)")
    return fds

