"""Ready sets: many fds, one registration with the loop.

Waiting on a child's process fd with one add_reader/remove_reader (asyncio) or
wait_readable (trio) per child costs more than the child's syscalls. A shared waiter
(``FDWaiter(fd, shared=True)``, see :mod:`fdloop._aio.waiter`) instead adds its fd to the
backend's ready set (Linux: a private epoll; kqueue: a private kqueue), whose single fd
the loop watches: per wait, one epoll_ctl each way, and one loop wake-up serves every fd
that became ready meanwhile. Backends without a ready set use the loop directly.

asyncio: one :class:`_AsyncioHub` per loop, made at the loop's first shared wait and
kept, empty or not, for as long as the loop lives: a program that waits for one child
at a time would otherwise create and close an epoll (and add and remove its loop
reader) for every child. The table holds the loop weakly; a hub ends when its loop is
freed, or at the first garbage collection after its loop was closed.
trio: one :class:`_TrioHub` per run, watched by a system task until the run ends.

A forked child shares the ready set's epoll with its parent (and the loop's, which
watches it): a hub copied into a child never changes either. The child forgets the
asyncio hubs at fork (closing only its own copies of their fds); a hub reached later
through an old reference does nothing (see :mod:`fdloop._aio.forks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Awaitable
from typing import Any

from ..backends.contract import ReadySetBackend
from ..errors import ClosedResourceError
from . import forks
from .library import _quietly
from .waiter import CHILD, REGISTERED, TRIO_BUSY, WOKEN, FDWaiter


def _new_ready_set() -> ReadySetBackend | None:
    from ..backends import current

    try:
        return current().ready_set()
    except OSError:  # out of fds: the loop's own registration still works
        return None


class _AsyncioHub:
    """One loop's ready set: ``add``/``remove`` act like ``add_reader``/``remove_reader``.

    Registered with its loop once and kept while the loop lives (see the module
    docstring), also when it has no members: an empty epoll never wakes the loop.
    """

    __slots__ = ("__weakref__", "_callbacks", "_key", "_loop", "_pid", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop, ready_set: Any) -> None:
        # Weakly: the table must not keep a dropped loop (and its fds) alive; when the
        # loop is freed, its hub goes with it.
        self._loop = weakref.ref(loop, self._loop_gone)
        self._key = id(loop)
        self._set = ready_set
        self._pid = forks.pid
        self._callbacks: dict[int, FDWaiter] = {}
        loop.add_reader(ready_set.fileno(), self._dispatch)

    def add(self, fd: int, waiter: FDWaiter) -> None:
        """Watch ``fd`` for one report; then wake every task waiting on ``waiter``."""
        self._set.add_once(fd, bool(waiter._flags & CHILD))
        self._callbacks[fd] = waiter

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` if it has not been reported yet (a reported member is
        disarmed already: nothing to undo)."""
        if self._callbacks.pop(fd, None) is None or self._pid != forks.pid:
            return  # (a forked child's copy: the set and the loop are the parent's)
        self._set.discard(fd)

    def abandon(self) -> None:
        """Leave the table, forget every member and close the set (its loop is closed or
        gone, or this is a forked child's copy, where closing drops only the child's
        fd); never raises."""
        if _asyncio_hubs.get(self._key) is self:
            del _asyncio_hubs[self._key]
        self._callbacks.clear()
        self._pid = -1  # never again: remove() must not reach the set or the loop
        _quietly(self._set.close)

    def _loop_gone(self, _ref: object) -> None:
        self.abandon()  # (the loop is being freed: nothing left to unregister from)

    def _dispatch(self) -> None:
        # Each member was added for one report and the set has disarmed it: the waiter
        # leaves the hub here, without a syscall, and its tasks are woken (the shared
        # waiter's part of asyncio_library.wake, written out: this runs once per child).
        ready_set = self._set
        if ready_set.closed:
            return
        callbacks = self._callbacks
        for fd, raw in ready_set.ready_reaped():  # (one call: every exited child reaped)
            waiter = callbacks.pop(fd, None)
            if waiter is None:
                continue  # (removed meanwhile: nothing waits)
            if type(raw) is tuple:
                waiter.reaped = raw
            waiter._hub = None
            waiter._flags &= ~REGISTERED
            futures, waiter._futures = waiter._futures, None
            if futures is None:
                continue
            if type(futures) is not list:
                futures = (futures,)
            try:
                for future in futures:
                    if not future.done():
                        future.set_result(None)
                        waiter._flags |= WOKEN
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as the loop would for a reader callback
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "fdloop ready-set callback failed", "exception": exc}
                    )


_asyncio_hubs: dict[int, _AsyncioHub] = {}
"""id(loop) -> its hub (whose weak reference tells whether it is still that loop's)."""

def _drop_hubs_of_closed_loops(phase: str, info: dict[str, int]) -> None:
    # A closed loop runs nothing again, and its hub's callbacks may hold tasks that still
    # waited: they would never be collected, so their handles never closed and their
    # children never killed. Drop such hubs as each collection starts, which lets that
    # collection free the rest (and closes the set's fd).
    if phase != "start" or not _asyncio_hubs:
        return
    for hub in list(_asyncio_hubs.values()):
        loop = hub._loop()
        if loop is None or loop.is_closed():
            hub.abandon()


gc.callbacks.append(_drop_hubs_of_closed_loops)


def _forget_hubs_after_fork() -> None:
    # The hubs (and their loops) are the parent's; a loop in the child gets its own.
    hubs = list(_asyncio_hubs.values())
    _asyncio_hubs.clear()
    for hub in hubs:
        hub.abandon()


forks.at_fork_in_child(_forget_hubs_after_fork)


def _asyncio_hub(loop: asyncio.AbstractEventLoop) -> _AsyncioHub | None:
    hub = _asyncio_hubs.get(id(loop))
    if hub is not None:
        if hub._loop() is loop:
            return hub
        hub.abandon()  # a freed loop's, whose id this loop now has
    ready_set = _new_ready_set()
    if ready_set is None:
        return None
    try:
        hub = _AsyncioHub(loop, ready_set)
    except BaseException:
        ready_set.close()
        raise
    _asyncio_hubs[id(loop)] = hub
    return hub


class _TrioHub:
    """One trio run's ready set, watched by a system task for as long as the run lasts.

    ``park(waiter)`` parks the waiter's leader task on its fd (one task per fd, as
    trio's own ``wait_readable``) and returns trio's ``wait_task_rescheduled`` for the
    caller to await. The hub itself ends the leader's turn when it wakes the task (the
    fd is ready), when the wait is cancelled, at ``notify_closing`` (ClosedResourceError)
    and when the run ends (ClosedResourceError); the set is closed with the run.
    """

    def __init__(self, ready_set: Any) -> None:
        self._set = ready_set
        self._pid = forks.pid
        self._parked: dict[int, _Parked] = {}
        _trio.lowlevel.spawn_system_task(self._watch, name="fdloop ready set")

    def park(self, waiter: FDWaiter) -> Awaitable[None]:
        fd = waiter._fd
        if fd in self._parked:
            raise _trio.BusyResourceError("another task is already waiting on this fd")
        lowlevel = _trio.lowlevel
        parked = _Parked(self, waiter, fd, lowlevel.current_task())
        self._set.add_once(fd, bool(waiter._flags & CHILD))
        self._parked[fd] = parked
        waiter._hub = self
        return lowlevel.wait_task_rescheduled(parked)  # type: ignore[no-any-return]

    def notify_closing(self, fd: int) -> None:
        parked = self._parked.pop(fd, None)
        if parked is not None and self._pid == forks.pid:  # (a child's copy: leave the set)
            self._set.discard(fd)
            parked.wake(_outcome.Error(ClosedResourceError(
                "the object was closed while waiting")))

    async def _watch(self) -> None:
        lowlevel, outcome = _trio.lowlevel, _outcome
        ready_set = self._set
        try:
            while True:
                await lowlevel.wait_readable(ready_set.fileno())
                # Each one reported once, then disarmed; exited children reaped.
                for fd, raw in ready_set.ready_reaped():
                    parked = self._parked.pop(fd, None)
                    if parked is not None:
                        if type(raw) is tuple:
                            parked.waiter.reaped = raw
                        parked.waiter._flags |= WOKEN
                        parked.wake(outcome.Value(None))
        finally:
            # The run is ending: nobody may stay parked on a set that is going away.
            everyone, self._parked = self._parked, {}
            for parked in everyone.values():
                parked.wake(outcome.Error(ClosedResourceError("the trio run is ending")))
            with contextlib.suppress(RuntimeError):
                lowlevel.notify_closing(ready_set.fileno())
            ready_set.close()


class _Parked:
    """A leader task parked in a :class:`_TrioHub`; called by trio to abort the wait."""

    __slots__ = ("fd", "hub", "task", "waiter")

    def __init__(self, hub: _TrioHub, waiter: FDWaiter, fd: int, task: Any) -> None:
        self.hub = hub
        self.waiter = waiter
        self.fd = fd
        self.task = task

    def wake(self, result: Any) -> None:
        end_trio_turn(self.waiter)
        _trio.lowlevel.reschedule(self.task, result)

    def __call__(self, _raise_cancel: Any) -> Any:
        hub, fd = self.hub, self.fd
        if hub._parked.get(fd) is self:
            del hub._parked[fd]
            hub._set.discard(fd)
        end_trio_turn(self.waiter)
        return _trio.lowlevel.Abort.SUCCEEDED


def end_trio_turn(waiter: FDWaiter) -> None:
    """A trio leader's wait is over (for any reason): wake the followers, if any came."""
    waiter._flags &= ~TRIO_BUSY
    waiter._hub = None
    done, waiter._trio_done = waiter._trio_done, None
    if done is not None:
        done.set()


_trio_hub_var: Any = None
# trio and outcome, imported by the first trio run that asks for a hub (an asyncio-only
# program never imports trio), then kept here: an import statement in each method would
# cost a Python-level call per wait.
_trio: Any = None
_outcome: Any = None


def _import_trio() -> None:
    global _trio_hub_var, _trio, _outcome
    import outcome
    import trio

    _trio, _outcome = trio, outcome
    _trio_hub_var = trio.lowlevel.RunVar("fdloop_ready_set", default=None)


def _trio_hub() -> _TrioHub | None:
    if _trio_hub_var is None:
        _import_trio()
    hub: _TrioHub | None = _trio_hub_var.get()
    if hub is None:
        ready_set = _new_ready_set()
        if ready_set is None:
            return None
        try:
            hub = _TrioHub(ready_set)
        except BaseException:
            ready_set.close()
            raise
        _trio_hub_var.set(hub)
    return hub
