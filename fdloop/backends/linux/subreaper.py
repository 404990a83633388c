"""Child subreaper (prctl PR_SET_CHILD_SUBREAPER) and reaping children we do not manage.

A subreaper adopts every orphan among its descendants instead of PID 1, and must then
reap them. Reaping has to spare the children a ProcessFD is waiting on: reaping one of
those would steal its exit status. ``waitid(P_ALL, WNOWAIT)`` cannot be used to find
the others, because it reports one zombie only — if that one is managed, the rest stay
hidden behind it. So the candidates come from ``/proc/self/task/*/children`` (every
thread, because an orphan is adopted by whichever of our threads the kernel picks), and
each one that is not managed is reaped by pid with ``waitid(P_PID, WNOHANG)``, which
leaves a running child alone.

A pid listed here is our child and only this code reaps unmanaged children, so it cannot
be recycled between listing and waiting or signalling (all of it runs without yielding).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable, Container
from typing import cast

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc: ctypes.CDLL | None = None


def _prctl() -> Callable[..., int]:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    function = _libc.prctl
    function.argtypes = [
        ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
    ]
    function.restype = ctypes.c_int
    return cast("Callable[..., int]", function)


def set_child_subreaper(enabled: bool) -> None:
    """Make this process a child subreaper (or stop being one). Raises OSError."""
    if _prctl()(PR_SET_CHILD_SUBREAPER, 1 if enabled else 0, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(error)}")


def is_child_subreaper() -> bool:
    """Whether this process is a child subreaper now. Raises OSError."""
    flag = ctypes.c_int(0)
    if _prctl()(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_GET_CHILD_SUBREAPER): {os.strerror(error)}")
    return flag.value != 0


def children() -> set[int]:
    """Pids of this process's children, zombies included (from /proc)."""
    found: set[int] = set()
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        threads = []
    listed = False
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/children") as listing:
                found.update(int(pid) for pid in listing.read().split())
                listed = True
        except OSError:
            continue
    if not listed:
        found = _children_by_scan()
    return found


def _children_by_scan() -> set[int]:
    # Kernels built without CONFIG_PROC_CHILDREN have no "children" file: scan every
    # process's stat line for our pid as its parent.
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # The command name sits in parentheses and may itself contain ") ".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            found.add(int(entry))
    return found


def unmanaged_children(managed: Container[int]) -> list[int]:
    """Our children (running or zombie) whose pid is not in ``managed``."""
    return sorted(pid for pid in children() if pid not in managed)


def reap_unmanaged(managed: Container[int]) -> list[tuple[int, int]]:
    """Reap every zombie child not in ``managed``; ``[(pid, returncode), ...]``.

    ``returncode`` follows subprocess: the exit code, or minus the signal number.
    Loops until a pass finds nothing to reap, so zombies that appear meanwhile (an
    orphan adopted while we were reaping) are not left for the next SIGCHLD.
    """
    reaped: list[tuple[int, int]] = []
    while True:
        if not _any_zombie():
            return reaped  # the common case (a managed child is running): no /proc walk
        found = False
        for pid in unmanaged_children(managed):
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                continue  # reaped by someone else after all
            if info is None:
                continue  # still running
            found = True
            if info.si_code == os.CLD_EXITED:
                reaped.append((pid, info.si_status))
            else:
                reaped.append((pid, -info.si_status))
        if not found:
            return reaped


def _any_zombie() -> bool:
    """Whether some child of ours is a zombie; reaps nothing (WNOWAIT).

    Says only *whether*: the one pid it reports may be a managed child that hides an
    unmanaged zombie behind it, which is why the reaping itself goes pid by pid.
    """
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False  # no children at all
    return info is not None


def signal_child(pid: int, signo: int) -> None:
    """Send ``signo`` to our unreaped child ``pid`` (see the module note on safety)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)

