"""The one module that knows which async library is running.

Everything fdloop awaits is "this fd became readable" (or, for pipes to a child,
"writable"). An :class:`FDWaiter` owns that question for one fd and one direction and
answers it through the running loop's own poll:

* asyncio (the stdlib loop, uvloop, any loop with ``add_reader``): the fd is added with
  ``add_reader`` (``add_writer``) when the first task starts waiting and removed when
  the callback fires or the last waiter leaves, so the registration stays exactly while
  waiters exist. One callback wakes every waiting task at once.
* trio: ``trio.lowlevel.wait_readable`` (``wait_writable``) accepts a single waiter per
  fd, so the first task to arrive becomes the *leader* and makes that call; later tasks
  wait on an event that the leader sets when it returns for any reason (ready,
  cancelled, closed). Whoever wakes simply retries its non-blocking operation, which is
  why a leader that is cancelled costs the others nothing but a retry.

Waking is only a hint: callers always retry their non-blocking syscall and wait again on
``EAGAIN``. Nothing is consumed while waiting, so a cancelled wait loses nothing.

:meth:`FDWaiter.close` wakes every waiter with :class:`fdloop.ClosedResourceError`
and forgets the fd number before the owner closes it, so a later reuse of the number by
someone else can never receive a stale registration from us.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from ..errors import ClosedResourceError

if TYPE_CHECKING:
    import trio

__all__ = [
    "FDWaiter",
    "ReadableWaiter",
    "checkpoint",
    "current_library",
    "move_on_after",
    "shielded",
    "sleep",
    "watch_in_running_loop",
]


def current_library() -> str:
    """Name of the running async library: ``"asyncio"`` or ``"trio"``."""
    # sniffio's own order (thread-local, context variable, then asyncio), with a running
    # loop instead of asyncio.current_task(): this runs at every wait.
    name = sniffio.thread_local.name or sniffio.current_async_library_cvar.get()
    if name is not None:
        return name
    if asyncio._get_running_loop() is not None:
        return "asyncio"
    return sniffio.current_async_library()


def loop_running() -> bool:
    """True while an asyncio or trio loop runs in this thread (in a task or in the
    loop's own code); False elsewhere, e.g. in a coroutine that the garbage collector
    closes after its loop has ended."""
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


async def checkpoint() -> None:
    """Let other tasks run and deliver a pending cancellation."""
    if current_library() == "trio":
        import trio

        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


async def sleep(seconds: float) -> None:
    """Sleep on whichever library is running."""
    if current_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


class FDWaiter:
    """Lets any number of tasks wait until one fd is readable (or writable)."""

    __slots__ = (
        "_fd",
        "_futures",
        "_hub",
        "_loop",
        "_registered",
        "_shared",
        "_trio_busy",
        "_trio_done",
        "_trio_hub",
        "_trio_used",
        "_writable",
    )

    def __init__(self, fd: int, *, writable: bool = False, shared: bool = False) -> None:
        """``shared=True`` (readable only): wait through the loop's ready set (see
        :class:`_AsyncioHub`), for fds that are waited on once each, many at a time."""
        self._fd = fd
        self._writable = writable
        self._shared = shared and not writable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: list[asyncio.Future[None]] = []
        self._hub: _AsyncioHub | None = None
        self._registered = False
        self._trio_busy = False
        self._trio_done: trio.Event | None = None
        self._trio_used = False
        self._trio_hub: _TrioHub | None = None

    @property
    def waiting(self) -> int:
        """How many asyncio tasks wait right now (trio: 0 or more, leader counted)."""
        return len(self._futures) + (1 if self._trio_busy else 0)

    async def wait(self) -> None:
        """Return once the fd may be ready; raise ClosedResourceError if closed."""
        if self._fd < 0:
            raise ClosedResourceError("the object was closed")
        if current_library() == "trio":
            await self._wait_trio()
        else:
            await self._wait_asyncio()

    # -- asyncio -------------------------------------------------------------------------

    async def _wait_asyncio(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._futures:
                raise RuntimeError("this fdloop object is being awaited from two event loops")
            self._drop_registration()  # kept from a wait on a previous loop
        self._loop = loop
        future: asyncio.Future[None] = loop.create_future()
        if not self._registered:
            if self._writable:
                loop.add_writer(self._fd, self._wake_all)
            elif self._shared and (hub := _asyncio_hub(loop)) is not None:
                hub.add(self._fd, self._wake_all)
                self._hub = hub
            else:
                loop.add_reader(self._fd, self._wake_all)
            self._registered = True
        self._futures.append(future)
        try:
            await future
        finally:
            if future.cancelled():
                self._forget(future)

    def _forget(self, future: asyncio.Future[None]) -> None:
        try:
            self._futures.remove(future)
        except ValueError:
            return
        if not self._futures and self._hub is not None:
            self._drop_registration()

    def _wake_all(self) -> None:
        # An add_reader/add_writer registration outlives the wake-up: a task that reads
        # and waits again (a counter, a timer, a stream) then pays no add/remove pair per
        # await (on uvloop each add_reader makes a libuv poll handle). It ends the first
        # time the fd is ready with nobody waiting, since a fd that stays readable (a
        # counter nobody reads) would otherwise call us on every loop pass. Shared
        # (hub) waiters wait once each and leave at once, as before.
        futures, self._futures = self._futures, []
        if not futures or self._hub is not None:
            self._drop_registration()
        for future in futures:
            if not future.done():
                future.set_result(None)

    def _drop_registration(self) -> None:
        if self._registered and self._loop is not None and self._fd >= 0:
            _quietly(self._unregister, self._loop, self._fd)
        self._registered = False

    def _unregister(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        if self._hub is not None:
            hub, self._hub = self._hub, None
            hub.remove(fd)
        elif self._writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)

    # -- trio ----------------------------------------------------------------------------

    async def _wait_trio(self) -> None:
        import trio

        if self._trio_busy:
            # A follower: the leader sets this event when its wait ends, for any reason.
            done = self._trio_done
            if done is None:
                done = self._trio_done = trio.Event()
            await done.wait()
            if self._fd < 0:
                raise ClosedResourceError("the object was closed while waiting")
            return
        self._trio_busy = True
        try:
            if self._shared and (hub := _trio_hub()) is not None:
                self._trio_hub = hub
                await hub.wait_readable(self._fd)
            else:
                self._trio_used = True
                if self._writable:
                    await trio.lowlevel.wait_writable(self._fd)
                else:
                    await trio.lowlevel.wait_readable(self._fd)
        except trio.ClosedResourceError:
            raise ClosedResourceError("the object was closed while waiting") from None
        finally:
            self._trio_busy = False
            # The event exists only if a follower came (most waits have none).
            done, self._trio_done = self._trio_done, None
            if done is not None:
                done.set()

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Wake every waiter with ClosedResourceError and drop the fd number.

        Call this *before* closing the fd itself. Safe to call twice, from a finalizer,
        and after the loop that was used has been closed.
        """
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        futures, self._futures = self._futures, []
        if self._registered and self._loop is not None:
            _quietly(self._unregister, self._loop, fd)
        self._registered = False
        # A closed loop runs nothing: its waiting tasks can never be woken (and
        # set_exception would raise, e.g. in a finalizer after loop.close()).
        if futures and self._loop is not None and not self._loop.is_closed():
            for future in futures:
                if not future.done():
                    future.set_exception(
                        ClosedResourceError("the object was closed while waiting")
                    )
        self._loop = None
        if self._trio_hub is not None:
            # Outside the run (a finalizer, or after it ended) nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._trio_hub.notify_closing(fd)
        if self._trio_used:
            _notify_trio_closing(fd)


ReadableWaiter = FDWaiter
"""The readable direction is the default; the alias reads better at most call sites."""


def _notify_trio_closing(fd: int) -> None:
    try:
        import trio

        trio.lowlevel.notify_closing(fd)
    except RuntimeError:
        # Not inside trio right now (e.g. a finalizer): trio then has nobody waiting, and
        # its epoll drops the registration by itself when the fd is closed.
        pass


def _quietly(call: Any, *args: Any) -> None:
    # The loop may already be closed or torn down; it then holds no waiter of ours.
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        call(*args)


# -- ready sets: many fds, one registration with the loop ---------------------------------
#
# Waiting on a child's process fd with one add_reader/remove_reader (asyncio) or
# wait_readable (trio) per child costs more than the child's syscalls. A shared waiter
# instead adds its fd to the backend's ready set (Linux: a private epoll), whose single fd
# the loop watches: per wait, one epoll_ctl each way, and one loop wake-up serves every
# fd that became ready meanwhile. Backends without a ready set use the loop directly.


def _new_ready_set() -> Any:
    from ..backends import current

    make = getattr(current(), "ready_set", None)
    if make is None:
        return None
    try:
        return make()
    except OSError:  # out of fds: the loop's own registration still works
        return None


class _AsyncioHub:
    """One loop's ready set: ``add``/``remove`` act like ``add_reader``/``remove_reader``.

    Exists while it has members: the last ``remove`` closes it (so no fd outlives the
    waits, even if the loop is closed without running anything more).
    """

    __slots__ = ("_callbacks", "_loop", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop, ready_set: Any) -> None:
        self._loop = loop
        self._set = ready_set
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(ready_set.fileno(), self._dispatch)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._set.add(fd)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is None:
            return
        self._set.discard(fd)
        if not self._callbacks:
            _asyncio_hubs.pop(self._loop, None)
            _quietly(self._loop.remove_reader, self._set.fileno())
            self._set.close()

    def abandon(self) -> None:
        """Forget every member and close the set (its loop is closed); never raises."""
        self._callbacks.clear()
        _quietly(self._set.close)

    def _dispatch(self) -> None:
        ready_set = self._set
        if ready_set.closed:
            return
        for fd in ready_set.ready():
            callback = self._callbacks.get(fd)
            if callback is None:
                if not ready_set.closed:
                    ready_set.discard(fd)
                continue
            try:
                callback()  # FDWaiter._wake_all, which removes fd
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as the loop would for a reader callback
                self._loop.call_exception_handler(
                    {"message": "fdloop ready-set callback failed", "exception": exc}
                )


_asyncio_hubs: dict[asyncio.AbstractEventLoop, _AsyncioHub] = {}


def _drop_hubs_of_closed_loops(phase: str, info: dict[str, int]) -> None:
    # A loop closed while tasks still waited leaves its hub in the table above, and the
    # hub's callbacks hold those tasks: they would never be collected, so their handles
    # never closed and their children never killed. A closed loop runs nothing again:
    # drop its hub as each collection starts, which lets that collection free the rest.
    if phase != "start" or not _asyncio_hubs:
        return
    for loop, hub in list(_asyncio_hubs.items()):
        if loop.is_closed():
            _asyncio_hubs.pop(loop, None)
            hub.abandon()


gc.callbacks.append(_drop_hubs_of_closed_loops)


def _asyncio_hub(loop: asyncio.AbstractEventLoop) -> _AsyncioHub | None:
    hub = _asyncio_hubs.get(loop)
    if hub is None:
        ready_set = _new_ready_set()
        if ready_set is None:
            return None
        try:
            hub = _AsyncioHub(loop, ready_set)
        except BaseException:
            ready_set.close()
            raise
        _asyncio_hubs[loop] = hub
    return hub


class _TrioHub:
    """One trio run's ready set, watched by a system task for as long as the run lasts.

    ``wait_readable(fd)`` behaves like trio's (one waiting task per fd, ClosedResourceError
    after ``notify_closing``); the set is closed when the run ends.
    """

    def __init__(self, ready_set: Any) -> None:
        import trio

        self._set = ready_set
        self._tasks: dict[int, Any] = {}
        trio.lowlevel.spawn_system_task(self._watch, name="fdloop ready set")

    async def wait_readable(self, fd: int) -> None:
        import trio

        if fd in self._tasks:
            raise trio.BusyResourceError("another task is already waiting on this fd")
        task = trio.lowlevel.current_task()
        self._set.add(fd)
        self._tasks[fd] = task

        def abort(_: Any) -> trio.lowlevel.Abort:
            if self._tasks.get(fd) is task:
                del self._tasks[fd]
                self._set.discard(fd)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def notify_closing(self, fd: int) -> None:
        import outcome
        import trio

        task = self._tasks.pop(fd, None)
        if task is not None:
            self._set.discard(fd)
            error = trio.ClosedResourceError("another task closed this fd")
            trio.lowlevel.reschedule(task, outcome.Error(error))

    async def _watch(self) -> None:
        import outcome
        import trio

        ready_set = self._set
        try:
            while True:
                await trio.lowlevel.wait_readable(ready_set.fileno())
                for fd in ready_set.ready():
                    ready_set.discard(fd)
                    task = self._tasks.pop(fd, None)
                    if task is not None:
                        trio.lowlevel.reschedule(task)
        finally:
            # The run is ending: nobody may stay parked on a set that is going away.
            tasks, self._tasks = self._tasks, {}
            for task in tasks.values():
                error = trio.ClosedResourceError("the trio run is ending")
                trio.lowlevel.reschedule(task, outcome.Error(error))
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.notify_closing(ready_set.fileno())
            ready_set.close()


_trio_hub_var: Any = None


def _trio_hub() -> _TrioHub | None:
    global _trio_hub_var
    import trio

    if _trio_hub_var is None:
        _trio_hub_var = trio.lowlevel.RunVar("fdloop_ready_set", default=None)
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


# -- timeouts, shielding and fire-and-forget watches (ProcessFD's close path) -------------


def move_on_after(seconds: float) -> anyio.CancelScope:
    """``with move_on_after(t) as scope:`` — leave the block after ``t`` seconds;
    ``scope.cancelled_caught`` says whether it timed out. Works on asyncio and trio."""
    return anyio.move_on_after(seconds)


def shielded() -> anyio.CancelScope:
    """``with shielded():`` — the enclosed awaits are not interrupted by the cancellation
    of an enclosing trio/anyio scope. A bare asyncio ``Task.cancel()`` is not a scope and
    still gets through, so code using this must also clean up on CancelledError."""
    return anyio.CancelScope(shield=True)


def watch_in_running_loop(fd: int, callback: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``callback()`` once, from the loop running in this thread, when ``fd`` is
    readable; return a function that stops the watch. Returns None when no asyncio or
    trio loop runs in this thread (or it cannot take the watch now): the caller must
    then keep the fd and check it itself.

    asyncio: an ``add_reader`` callback. trio: a system task, so it does not belong to
    any user nursery; it ends quietly when the run ends (nothing is called then).
    Stopping must happen before ``fd`` is closed.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library == "trio":
        return _watch_trio(fd, callback)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if loop.is_closed():
        return None

    def fire() -> None:
        _quietly(loop.remove_reader, fd)
        callback()

    try:
        loop.add_reader(fd, fire)
    except (RuntimeError, ValueError, OSError):
        return None
    return lambda: _quietly(loop.remove_reader, fd)


def _watch_trio(fd: int, callback: Callable[[], None]) -> Callable[[], None] | None:
    import trio

    state = {"active": True}

    async def watch() -> None:
        if not state["active"]:
            # Stopped before this task first ran: the fd may be closed and its number
            # already reused by someone else's waiter (trio would raise BusyResourceError
            # in a system task, which crashes the whole run).
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
    return stop
