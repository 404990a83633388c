"""fdloop's glue for asyncio: the stdlib loop, uvloop, and any loop with ``add_reader``.

:data:`ASYNCIO` implements :class:`fdloop._aio.library.AsyncLibrary`:

* waits: a waiter's fd is registered with ``add_reader`` (``add_writer``), or with the
  loop's ready set for a shared waiter, when the first task waits; each waiting task
  awaits a future of its own, handed back to the caller to await directly (so a wait
  adds no coroutine frame). The registration outlives the wake-up: a task that reads
  and waits again (a counter, a timer, a stream) pays no add/remove pair per await (on
  uvloop each add_reader makes a libuv poll handle); it ends the first time the fd is
  ready with nobody waiting, since a fd that stays readable (a counter nobody reads)
  would otherwise call us on every loop pass. Shared waiters wait once each and leave
  the ready set at once. A cancelled future stays in the waiter's list until the next
  wake, wait or close drops it (a callback per future would cost more than the rare
  late clean-up);
* watches: an ``add_reader`` callback that removes itself;
* background tasks: a task of the running loop, referenced from here until it ends
  (the loop keeps only weak references to tasks), or until its loop is found closed
  (at a full garbage collection): a loop closed without running them to the end never
  will, and each would keep its object (a pipe stream and its buffer) for good.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import sniffio

from ..errors import ClosedResourceError
from . import forks
from .library import AsyncLibrary, _quietly
from .readyset import _asyncio_hub
from .threads import loop_thread
from .waiter import (
    REGISTERED,
    SHARED,
    STALE,
    TRIO_BUSY,
    WRITABLE,
    FDWaiter,
    _registering,
)
from .watch import Watch

__all__ = ["ASYNCIO"]

_running_tasks: set[asyncio.Task[Any]] = set()
_get_running_loop = asyncio._get_running_loop


def _drop_tasks_of_closed_loops(phase: str, info: dict[str, int]) -> None:
    if phase != "start" or info.get("generation") != 2 or not _running_tasks:
        return
    for task in [task for task in _running_tasks if task.get_loop().is_closed()]:
        _running_tasks.discard(task)


gc.callbacks.append(_drop_tasks_of_closed_loops)


def _running_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio._get_running_loop()
    if loop is None:
        raise sniffio.AsyncLibraryNotFoundError(
            "fdloop needs a running asyncio loop or trio run in this thread"
        )
    return loop


class AsyncioLibrary(AsyncLibrary):
    name = "asyncio"

    # -- waits ---------------------------------------------------------------------------

    def wait(self, waiter: FDWaiter) -> Awaitable[None]:
        loop = _get_running_loop()
        if loop is None:
            loop = _running_loop()  # (raises)
        if waiter._flags & SHARED and (delay := waiter._no_progress_delay()):
            return self._wait_after(waiter, delay)
        return self._park(waiter, loop)

    async def _wait_after(self, waiter: FDWaiter, delay: float) -> None:
        await asyncio.sleep(delay)
        if waiter._fd < 0:
            raise ClosedResourceError("the object was closed while waiting")
        await self._park(waiter, _running_loop())

    def _park(self, waiter: FDWaiter, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        if waiter._loop is not loop:
            if waiter._loop is None and waiter._futures is None and not waiter._flags & (
                    REGISTERED | TRIO_BUSY):
                waiter._loop = loop  # (a first wait: nothing to move, the usual case)
            else:
                self._move_to(waiter, loop)
        future = loop.create_future()
        if not waiter._flags & REGISTERED:
            self._register(waiter, loop)
        futures = waiter._futures
        if futures is None:
            waiter._futures = future
        else:
            # Another task waits too, or a cancelled wait left its future (see the module
            # docstring): keep the live ones.
            pending = waiter.pending_futures()
            waiter._futures = [*pending, future] if pending else future
        return future

    def _move_to(self, waiter: FDWaiter, loop: asyncio.AbstractEventLoop) -> None:
        if waiter.pending_futures():
            raise RuntimeError(
                "this fdloop object is being awaited from two event loops at once (an "
                "event loop polls its own fds): await it from one loop at a time"
            )
        if waiter._flags & TRIO_BUSY:
            raise RuntimeError(
                "this fdloop object is being awaited from trio and from an asyncio loop "
                "at once: await it from one event loop at a time"
            )
        self.leave_old_loop(waiter)
        waiter._loop = loop

    def leave_old_loop(self, waiter: FDWaiter) -> None:
        """Drop a registration kept from a wait on another loop, in that loop's thread."""
        if waiter._flags & REGISTERED:
            there = loop_thread(waiter._loop, None)
            if there is None or not there.call(lambda: self._drop(waiter)):
                self._drop(waiter)

    def _register(self, waiter: FDWaiter, loop: asyncio.AbstractEventLoop) -> None:
        with _registering:
            fd = waiter._fd
            if fd < 0:  # closed from another thread since wait() checked
                raise ClosedResourceError("the object was closed")
            if waiter._flags & WRITABLE:
                loop.add_writer(fd, wake, waiter)
            elif waiter._flags & SHARED and (hub := _asyncio_hub(loop)) is not None:
                hub.add(fd, waiter)  # the hub calls wake(waiter): no object per wait
                waiter._hub = hub
            else:
                loop.add_reader(fd, wake, waiter)
            waiter._flags |= REGISTERED

    def _drop(self, waiter: FDWaiter) -> None:
        if waiter._flags & REGISTERED and waiter._loop is not None and waiter._fd >= 0:
            _quietly(self._unregister, waiter, waiter._loop, waiter._fd)
        waiter._flags &= ~(REGISTERED | STALE)

    def _unregister(self, waiter: FDWaiter, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        if waiter._pid != forks.pid:
            return  # the parent's registration, in an epoll set we share: leave it
        if waiter._hub is not None:
            hub, waiter._hub = waiter._hub, None
            hub.remove(fd)
        elif waiter._flags & WRITABLE:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)

    def release(self, waiter: FDWaiter, fd: int) -> None:
        futures = waiter.pending_futures()
        waiter._futures = None
        loop = waiter._loop
        if waiter._flags & REGISTERED and loop is not None:
            _quietly(self._unregister, waiter, loop, fd)
        waiter._flags &= ~(REGISTERED | STALE)
        # A closed loop runs nothing: its waiting tasks can never be woken (and
        # set_exception would raise, e.g. in a finalizer after loop.close()).
        if futures and loop is not None and not loop.is_closed():
            for future in futures:
                if not future.done():
                    future.set_exception(
                        ClosedResourceError("the object was closed while waiting")
                    )
                    # Its task gets the error when it runs; if it never runs again (a
                    # loop stopped for good), asyncio must not log it as unretrieved.
                    future.exception()
        waiter._loop = None

    # -- watches and background tasks ----------------------------------------------------

    def watch(self, fd: int, callback: Callable[[], None]) -> Watch | None:
        loop = _running_loop()

        def fire() -> None:
            _quietly(loop.remove_reader, fd)
            callback()

        try:
            loop.add_reader(fd, fire)
        except (RuntimeError, ValueError, OSError):
            return None
        return Watch(lambda: _quietly(loop.remove_reader, fd), loop, None, lambda: True)

    def start_background(
        self, function: Callable[[], Awaitable[None]], name: str, on_end: Callable[[], None]
    ) -> Callable[[], None] | None:
        loop = _running_loop()

        async def run() -> None:
            await function()

        def ended(task: asyncio.Task[None]) -> None:
            _running_tasks.discard(task)
            if not task.cancelled():
                task.exception()  # retrieved: the function reports its own errors
            on_end()

        task = loop.create_task(run(), name=name)
        # A loop closed without running its tasks to the end destroys this one pending:
        # it is ours, ends with its object, and has nothing for the user (asyncio waives
        # the "destroyed but it is pending" report for its own such tasks the same way).
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        _running_tasks.add(task)
        task.add_done_callback(ended)

        def cancel() -> None:
            task.cancel()

        return cancel

    # -- small awaits --------------------------------------------------------------------

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_SelectorLoop = asyncio.BaseEventLoop
"""The stdlib loops (uvloop's runs its callbacks in another order, and is not one)."""


def wake(waiter: FDWaiter) -> None:
    """The loop's callback for a waiter's own registration: wake every waiting task.
    (Shared waiters are woken by their ready set's hub: see readyset._AsyncioHub.)"""
    if waiter._flags & STALE:
        waiter._flags &= ~STALE  # see AsyncioLibrary.wait()
        return
    futures, waiter._futures = waiter._futures, None
    woken = False
    if futures is not None:
        if type(futures) is not list:
            futures = (futures,)
        for future in futures:
            if not future.done():
                future.set_result(None)
                woken = True
    if not woken:
        ASYNCIO._drop(waiter)
    elif waiter._flags & REGISTERED and isinstance(waiter._loop, _SelectorLoop):
        # The stdlib loop polls at the start of a pass and runs the I/O callbacks
        # after the tasks already queued. The tasks woken here read the fd in the
        # next pass, whose poll still sees it readable: by the time that report's
        # callback runs, after their reads, it is stale, and would wake a task that
        # waits again for an empty read. Skip that one report: the fd stays
        # registered and level-triggered, so if it was a real one after all (the
        # fd still readable), the poll after reports it again.
        waiter._flags |= STALE


ASYNCIO = AsyncioLibrary()
