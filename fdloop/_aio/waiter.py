"""Per-fd waiters: any number of tasks wait until one fd is readable (or writable).

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

``FDWaiter(fd, shared=True)`` (readable only) waits through the loop's ready set instead
of a registration of its own: see :mod:`fdloop._aio.readyset`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import ClosedResourceError
from .library import _quietly, current_library
from .readyset import _asyncio_hub, _AsyncioHub, _trio_hub, _TrioHub

if TYPE_CHECKING:
    import trio

__all__ = ["FDWaiter", "ReadableWaiter"]


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

    def wait(self) -> Coroutine[Any, Any, None]:
        """Return once the fd may be ready; raise ClosedResourceError if closed.

        Await it at once. It hands back the running library's own waiting coroutine,
        which saves a coroutine frame on every wait.
        """
        if self._fd < 0:
            raise ClosedResourceError("the object was closed")
        if current_library() == "trio":
            return self._wait_trio()
        return self._wait_asyncio()

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
