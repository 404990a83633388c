"""The reaper: children whose ProcessFD was closed before they could be reaped.

A sync ``close()``, garbage collection or interpreter exit must never block, yet must
never leave a zombie. So a child that is still running at that moment (SIGKILLed, or a
daemon left running) is handed here with its pidfd:

* if an event loop runs in this thread, the pidfd is watched there (asyncio: an
  ``add_reader`` callback; trio: a system task) and the child is reaped the moment it
  exits — no thread, no SIGCHLD handler, the same one poll loop;
* in any case the child stays in a module-level table that is swept (WNOHANG reaps only)
  at every ``spawn()`` and after every garbage collection (so a child whose loop has
  ended is still reaped while the program runs on), and at interpreter exit every
  remaining non-daemon child is SIGKILLed (again) and reaped with a bounded wait.
  Daemon children are left running at exit; only their pidfds are closed.

A watch belongs to its loop: a sweep from another thread (a spawn or a collection there)
leaves a child watched by a loop that still runs to that loop. In a forked child the
tables are the parent's and are forgotten at fork (the child's copies of the pidfds are
closed, nothing is signalled, reaped or unwatched).

It only ever reaps children that fdloop started: always through their pidfd, never
``waitpid(-1)``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import signal
import threading
import time

from .. import _aio
from ..backends.contract import ProcessFDBackend

EXIT_GRACE_SECONDS = 2.0
"""How long interpreter exit waits, in total, for SIGKILLed children to die."""


class _Orphan:
    __slots__ = ("daemon", "handle", "watch")

    def __init__(self, handle: ProcessFDBackend, daemon: bool) -> None:
        self.handle = handle
        self.daemon = daemon
        self.watch: _aio.Watch | None = None


_orphans: dict[int, _Orphan] = {}
_lock = threading.RLock()  # re-entrant: a GC finalizer may close a ProcessFD mid-sweep
_live: dict[ProcessFDBackend, int] = {}
"""The process fds of our children that are neither reaped nor closed, each with its
DAEMON and GROUP bits: what interpreter exit must end, and whose pids are ours to reap.
(The backend handle, not the ProcessFD: a dropped ProcessFD must still be collectable,
and a weak reference per child cost 180 bytes and a callback where a dict entry costs
a few dozen.)"""
DAEMON = 1
"""Leave the child running at exit."""
GROUP = 2
"""Signal its process group (a new session's leader)."""


def process_id() -> int:
    """This process's pid, kept current across fork (a ProcessFD compares it with the
    pid that spawned its child: a forked copy of the handle must never kill or reap)."""
    return _aio.forks.pid


def _after_fork_in_child() -> None:
    # The children in these tables belong to the parent. Forget them: our copies of their
    # pidfds are closed, nothing is signalled or reaped, and exit here kills nothing.
    # (The lock may have been held by another thread at fork: that thread is gone.)
    global _lock, _sweeping
    _lock = threading.RLock()
    _sweeping = False
    for orphan in list(_orphans.values()):
        orphan.watch = None  # the parent's loop watches it; stopping would unregister there
        with contextlib.suppress(Exception):
            orphan.handle.close()
    _orphans.clear()
    _live.clear()


_aio.forks.at_fork_in_child(_after_fork_in_child)


def track(handle: ProcessFDBackend, how: int) -> None:
    """Remember a just-spawned child (``how``: DAEMON, GROUP bits) until
    :func:`untrack`, so that interpreter exit ends it and :func:`children` names it."""
    _live[handle] = how


def untrack(handle: ProcessFDBackend) -> None:
    """Forget ``handle``: its child has been reaped, or the handle closed or handed over."""
    _live.pop(handle, None)


def pending() -> int:
    """How many closed-but-unreaped children are waiting here."""
    return len(_orphans)


def children() -> set[int]:
    """The pids fdloop will reap itself: unreaped children of open spawning ProcessFDs
    and closed-but-unreaped ones. Another reaper in this process must leave these alone,
    or it steals their exit status.

    A handle whose child is already reaped (its status known) but that is still open
    does not count: its pid is free, and may already name another process (an orphan a
    subreaper must reap, which would otherwise stay a zombie)."""
    with _lock:
        pids = {orphan.handle.pid for orphan in _orphans.values()}
        pids.update(handle.pid for handle in list(_live) if handle.pid > 0)
    return pids


def adopt(handle: ProcessFDBackend, *, daemon: bool) -> None:
    """Take over ``handle`` (our running child) and reap it when it exits."""
    orphan = _Orphan(handle, daemon)
    with _lock:
        if _reap(orphan):
            return
        _orphans[handle.fileno()] = orphan
        _watch(orphan)


def _watch(orphan: _Orphan) -> None:
    # Called with the lock held, so that no sweep in another thread can see the orphan
    # between the loop's registration and ``orphan.watch``: it would take the orphan for
    # unwatched and close the pidfd under the loop, whose selector then keeps a stale
    # entry for the number (and silently ignores the next fd given that number).
    orphan.watch = _aio.watch_in_running_loop(
        orphan.handle.fileno(), lambda: _on_readable(orphan)
    )


def _on_readable(orphan: _Orphan) -> None:
    with _lock:
        orphan.watch = None  # the watch fires once
        if orphan.handle.closed or _reap(orphan):
            return
        _watch(orphan)  # woken early (never expected for a pidfd): watch again


def _reap(orphan: _Orphan) -> bool:
    """Reap if exited (caller holds the lock); True once the orphan is gone.

    An orphan watched by a loop running in another thread is left to that loop: only
    its thread may end the watch, which must end before the pidfd is closed.
    """
    if orphan.watch is not None and orphan.watch.elsewhere() is not None:
        return False
    handle = orphan.handle
    try:
        if handle.try_reap() is None:
            return False
    except ChildProcessError:
        pass  # someone else reaped it: nothing left to do but forget it
    if orphan.watch is not None:
        orphan.watch.stop()
        orphan.watch = None
    _orphans.pop(handle.fileno(), None)
    handle.close()
    return True


def sweep() -> None:
    """Reap every orphan that has exited; never blocks. Called at each spawn."""
    global _sweeping
    if not _orphans or _sweeping:
        return
    with _lock:
        _sweeping = True
        try:
            for orphan in list(_orphans.values()):
                with contextlib.suppress(OSError):
                    _reap(orphan)
        finally:
            _sweeping = False


_sweeping = False  # a collection during a sweep must not start a nested one


def _sweep_after_collection(phase: str, info: dict[str, int]) -> None:
    # An orphan whose loop ended (asyncio loop closed, trio run over) has nobody watching
    # its pidfd; without a thread or a SIGCHLD handler, the garbage collector, which runs
    # as long as the program allocates, is what brings us back to reap it (WNOHANG only).
    # Never while a loop runs in this thread: a collection can strike inside the loop's
    # own code, e.g. halfway through registering the very pidfd a sweep would close
    # (trio then fails with EBADF in a system task); the loop's watch reaps those.
    if phase == "stop" and _orphans and not _aio.loop_running():
        with contextlib.suppress(Exception):  # nobody to report to inside the collector
            sweep()


gc.callbacks.append(_sweep_after_collection)


@atexit.register
def _at_exit() -> None:
    # Children whose ProcessFD is still open: as close() would, SIGKILL the non-daemons,
    # then reap them below with the closed ones.
    for handle, how in list(_live.items()):
        with contextlib.suppress(Exception):
            if not handle.closed:
                if not how & DAEMON:
                    handle.send_signal(signal.SIGKILL, group=bool(how & GROUP))
                adopt(handle.transfer(), daemon=bool(how & DAEMON))
    _live.clear()
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    with _lock:
        for orphan in list(_orphans.values()):
            if not orphan.daemon:
                with contextlib.suppress(OSError):
                    orphan.handle.send_signal(signal.SIGKILL)
    while True:
        sweep()
        if not any(not o.daemon for o in _orphans.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    with _lock:
        for orphan in list(_orphans.values()):
            # Daemons keep running (init or a subreaper adopts them); a child that did
            # not die within the grace period is left to init as well.
            if orphan.watch is not None:
                orphan.watch.stop()
            orphan.handle.close()
        _orphans.clear()
