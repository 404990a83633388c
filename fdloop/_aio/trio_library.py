"""fdloop's glue for trio: :data:`TRIO` implements :class:`fdloop._aio.library.AsyncLibrary`.

* waits: ``trio.lowlevel.wait_readable`` (``wait_writable``) accepts one task per fd, so
  the first task to wait on a waiter becomes the *leader* and makes that call; later
  tasks wait on an event that the leader sets when its wait ends for any reason (ready,
  cancelled, closed). Whoever wakes retries its non-blocking operation, which is why a
  leader that is cancelled costs the others nothing but a retry. A shared waiter's
  leader parks in the run's ready set (:mod:`.readyset`), which wakes it and ends its
  turn itself: the caller awaits trio's own ``wait_task_rescheduled``, no frame of ours;
* watches: a system task, so it belongs to no user nursery; it ends quietly with the run;
* background tasks: a system task too. The function must catch its own errors: in trio
  an exception that escapes a system task ends the whole run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from ..errors import ClosedResourceError
from .asyncio_library import ASYNCIO
from .library import AsyncLibrary
from .readyset import _trio_hub, _TrioHub, end_trio_turn
from .waiter import SHARED, TRIO_BUSY, TRIO_USED, WRITABLE, FDWaiter, _registering
from .watch import Watch

__all__ = ["TRIO"]


class TrioLibrary(AsyncLibrary):
    name = "trio"

    # -- waits ---------------------------------------------------------------------------

    def wait(self, waiter: FDWaiter) -> Awaitable[None]:
        token = trio.lowlevel.current_trio_token()
        if waiter._flags & TRIO_BUSY:
            return self._follow(waiter, token)
        if waiter._futures is not None and waiter.pending_futures():
            raise RuntimeError(
                "this fdloop object is being awaited from an asyncio loop and from trio "
                "at once: await it from one event loop at a time"
            )
        # An asyncio registration kept from earlier waits: its loop drops it first, so
        # that a close only ever has one loop's thread to visit.
        ASYNCIO.leave_old_loop(waiter)
        waiter._futures = None
        with _registering:
            if waiter._fd < 0:
                raise ClosedResourceError("the object was closed")
            waiter._flags |= TRIO_BUSY
            waiter._trio_token = token
        try:
            if waiter._flags & SHARED and (hub := _trio_hub()) is not None:
                if delay := waiter._no_progress_delay():
                    return self._park_after(waiter, hub, delay)
                return hub.park(waiter)
        except BaseException:
            end_trio_turn(waiter)
            raise
        return self._lead(waiter)

    async def _follow(self, waiter: FDWaiter, token: object) -> None:
        if waiter._trio_token is not token:
            # The leader waits in another run's poll, and its event cannot wake a task
            # of this run (trio would fail an assertion deep inside).
            raise RuntimeError(
                "this fdloop object is being awaited from two trio runs at once "
                "(each trio.run polls its own fds): await it from one run at a time"
            )
        # A follower: the leader sets this event when its wait ends, for any reason.
        done = waiter._trio_done
        if done is None:
            done = waiter._trio_done = trio.Event()
        await done.wait()
        if waiter._fd < 0:
            raise ClosedResourceError("the object was closed while waiting")

    async def _park_after(self, waiter: FDWaiter, hub: _TrioHub, delay: float) -> None:
        try:
            await trio.sleep(delay)
            if waiter._fd < 0:
                raise ClosedResourceError("the object was closed while waiting")
            parked = hub.park(waiter)
        except BaseException:
            end_trio_turn(waiter)
            raise
        await parked

    async def _lead(self, waiter: FDWaiter) -> None:
        try:
            waiter._flags |= TRIO_USED
            if waiter._flags & WRITABLE:
                await trio.lowlevel.wait_writable(waiter._fd)
            else:
                await trio.lowlevel.wait_readable(waiter._fd)
        except trio.ClosedResourceError:
            raise ClosedResourceError("the object was closed while waiting") from None
        finally:
            end_trio_turn(waiter)

    def release(self, waiter: FDWaiter, fd: int) -> None:
        hub = waiter._hub
        if isinstance(hub, _TrioHub):
            # Outside the run (a finalizer, or after it ended) nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                hub.notify_closing(fd)
        if waiter._flags & TRIO_USED:
            # Outside trio (e.g. a finalizer) trio has nobody waiting, and its epoll
            # drops the registration by itself when the fd is closed.
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.notify_closing(fd)

    # -- watches and background tasks ----------------------------------------------------

    def watch(self, fd: int, callback: Callable[[], None]) -> Watch | None:
        state = {"active": True}

        async def watch() -> None:
            if not state["active"]:
                # Stopped before this task first ran: the fd may be closed and its number
                # already reused by someone else's waiter (trio would raise
                # BusyResourceError in a system task, which crashes the whole run).
                return
            try:
                await trio.lowlevel.wait_readable(fd)
            except (trio.Cancelled, trio.ClosedResourceError):
                return
            finally:
                active, state["active"] = state["active"], False
            if active:
                callback()

        def stop() -> None:
            if state["active"]:
                state["active"] = False
                with contextlib.suppress(RuntimeError):
                    trio.lowlevel.notify_closing(fd)

        try:
            trio.lowlevel.spawn_system_task(watch, name=f"fdloop reaper fd {fd}")
        except RuntimeError:
            return None
        # The watch task ends with the run, which says when a run in another thread is over.
        token = trio.lowlevel.current_trio_token()
        return Watch(stop, None, token, lambda: state["active"])

    def start_background(
        self, function: Callable[[], Awaitable[None]], name: str, on_end: Callable[[], None]
    ) -> Callable[[], None] | None:
        scope = trio.CancelScope()

        async def run() -> None:
            # A trio task always starts running its body; cancellation arrives at an await.
            try:
                with scope:
                    await function()
            finally:
                on_end()

        try:
            trio.lowlevel.spawn_system_task(run, name=name)
        except RuntimeError:
            return None
        return scope.cancel

    # -- small awaits --------------------------------------------------------------------

    async def checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


TRIO = TrioLibrary()
