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
of a registration of its own: see :mod:`fdloop._aio.readyset`. Such a waiter is woken
once per event (a process fd: its exit), so a caller that waits on it again after a
wake found nothing there: the fd polls readable without the event its owner looks for
(seen with a kqueue implementation whose queue fd stayed readable with no event
pending). Waiting again at once would go round wake, check, wait at full speed; so each
such wait first sleeps, 1 ms the first time and twice as long each time after, up to
50 ms, which bounds a misbehaving kernel's cost to a few wake-ups a second.

Threads and processes (see :mod:`.threads` and :mod:`.forks`):

* ``wait()`` runs in the loop's thread, and one object is awaited from one loop (or trio
  run) at a time: a second loop or run that awaits it while the first still waits gets
  RuntimeError. ``close()`` may be called from any thread: from outside the loop's
  thread it has the loop's thread do the unregistering and the waking (and waits for
  that), so the registration is gone before the owner closes the fd.
* In a forked child the registrations belong to the parent (its epoll sets are shared
  with the child): ``close()`` and a new ``wait()`` forget them without a syscall.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import ClosedResourceError
from . import forks
from .library import _quietly, current_library
from .readyset import _asyncio_hub, _AsyncioHub, _trio_hub, _TrioHub
from .threads import LoopThread, loop_thread

if TYPE_CHECKING:
    import trio

__all__ = ["FDWaiter", "ReadableWaiter"]

_registering = threading.RLock()
"""Held while a wait adds a registration and while close() decides where it must run,
so a close from another thread can never slip between a wait's check that the fd is
open and its registration (which would leave the loop polling a closed, maybe reused,
number). Re-entrant: a garbage collection inside a registration may close another
object from a finalizer."""


class FDWaiter:
    """Lets any number of tasks wait until one fd is readable (or writable)."""

    __slots__ = (
        "_backoff",
        "_fd",
        "_futures",
        "_hub",
        "_loop",
        "_pid",
        "_registered",
        "_shared",
        "_trio_busy",
        "_trio_done",
        "_trio_hub",
        "_trio_token",
        "_trio_used",
        "_woken",
        "_writable",
    )

    def __init__(self, fd: int, *, writable: bool = False, shared: bool = False) -> None:
        """``shared=True`` (readable only): wait through the loop's ready set (see
        :class:`_AsyncioHub`), for fds that are waited on once each, many at a time."""
        self._fd = fd
        self._writable = writable
        self._shared = shared and not writable
        self._pid = forks.pid
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: list[asyncio.Future[None]] = []
        self._hub: _AsyncioHub | None = None
        self._registered = False
        self._trio_busy = False
        self._trio_done: trio.Event | None = None
        self._trio_used = False
        self._trio_hub: _TrioHub | None = None
        self._trio_token: Any = None
        self._woken = False  # shared: the last wait ended with a wake-up
        self._backoff = 0.0

    @property
    def waiting(self) -> int:
        """How many asyncio tasks wait right now (trio: 0 or more, leader counted)."""
        return len(self._futures) + (1 if self._trio_busy else 0)

    def wait(self) -> Coroutine[Any, Any, None]:
        """Return once the fd may be ready; raise ClosedResourceError if closed.

        Await it at once. It hands back the running library's own waiting coroutine,
        which saves a coroutine frame on every wait. RuntimeError if another event loop
        or trio run is waiting on this object at the same time.
        """
        if self._fd < 0:
            raise ClosedResourceError("the object was closed")
        if self._pid != forks.pid:
            self._forget_inherited()
        if current_library() == "trio":
            return self._wait_trio()
        return self._wait_asyncio()

    def _forget_inherited(self) -> None:
        # A forked child: everything registered so far lives in the parent's loop and
        # ready set, whose epoll sets we share. Forget it all; touch nothing.
        self._pid = forks.pid
        self._loop = None
        self._futures = []
        self._hub = None
        self._registered = False
        self._trio_busy = False
        self._trio_done = None
        self._trio_used = False
        self._trio_hub = None
        self._trio_token = None

    # -- asyncio -------------------------------------------------------------------------

    async def _wait_asyncio(self) -> None:
        if self._shared and (delay := self._no_progress_delay()):
            await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._move_to(loop)
        future: asyncio.Future[None] = loop.create_future()
        if not self._registered:
            self._register(loop)
        self._futures.append(future)
        try:
            await future
        finally:
            if future.cancelled():
                self._forget(future)
        if self._shared:
            self._woken = True

    def _no_progress_delay(self) -> float:
        """How long a shared wait sleeps first: 0 unless the last wait ended with a
        wake-up (which, for a waiter woken once per event, brought nothing), then
        1 ms doubling to 50 ms while that repeats (see the module docstring)."""
        if not self._woken:
            self._backoff = 0.0
            return 0.0
        self._woken = False
        self._backoff = min(max(self._backoff * 2, 0.001), 0.05)
        if self._fd < 0:
            raise ClosedResourceError("the object was closed")
        return self._backoff

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._futures:
            raise RuntimeError(
                "this fdloop object is being awaited from two event loops at once (an "
                "event loop polls its own fds): await it from one loop at a time"
            )
        if self._trio_busy:
            raise RuntimeError(
                "this fdloop object is being awaited from trio and from an asyncio loop "
                "at once: await it from one event loop at a time"
            )
        if self._registered:
            # Kept from a wait on a previous loop: that loop drops it, in its own thread.
            there = loop_thread(self._loop, None)
            if there is None or not there.call(self._drop_registration):
                self._drop_registration()
        self._loop = loop

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        with _registering:
            if self._fd < 0:  # closed from another thread since wait() checked
                raise ClosedResourceError("the object was closed")
            if self._writable:
                loop.add_writer(self._fd, self._wake_all)
            elif self._shared and (hub := _asyncio_hub(loop)) is not None:
                hub.add(self._fd, self._wake_all)
                self._hub = hub
            else:
                loop.add_reader(self._fd, self._wake_all)
            self._registered = True

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
        if self._pid != forks.pid:
            return  # the parent's registration, in an epoll set we share: leave it
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

        token = trio.lowlevel.current_trio_token()
        if self._trio_busy:
            if self._trio_token is not token:
                # The leader waits in another run's poll, and its event cannot wake a
                # task of this run (trio would fail an assertion deep inside).
                raise RuntimeError(
                    "this fdloop object is being awaited from two trio runs at once "
                    "(each trio.run polls its own fds): await it from one run at a time"
                )
            # A follower: the leader sets this event when its wait ends, for any reason.
            done = self._trio_done
            if done is None:
                done = self._trio_done = trio.Event()
            await done.wait()
            if self._fd < 0:
                raise ClosedResourceError("the object was closed while waiting")
            return
        if self._futures:
            raise RuntimeError(
                "this fdloop object is being awaited from an asyncio loop and from trio "
                "at once: await it from one event loop at a time"
            )
        if self._registered:
            # An asyncio registration kept from earlier waits: its loop drops it first, so
            # that a close only ever has one loop's thread to visit.
            there = loop_thread(self._loop, None)
            if there is None or not there.call(self._drop_registration):
                self._drop_registration()
        with _registering:
            if self._fd < 0:
                raise ClosedResourceError("the object was closed")
            self._trio_busy = True
            self._trio_token = token
        try:
            if self._shared and (hub := _trio_hub()) is not None:
                if delay := self._no_progress_delay():
                    await trio.sleep(delay)
                    if self._fd < 0:
                        raise ClosedResourceError("the object was closed while waiting")
                self._trio_hub = hub
                await hub.wait_readable(self._fd)
                self._woken = True
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
        after the loop that was used has been closed, and from any thread: from outside
        the thread of the loop that holds the registration, the loop's thread drops it
        and wakes the waiters, and this returns once it has (a loop thread that is
        blocked waiting for the caller would deadlock). In a forked child it only
        forgets the parent's registrations.
        """
        there = self._close_or_elsewhere()
        if there is not None and not there.call(self.close):
            # The loop can no longer run anything: nothing polls it, close here.
            self._close_or_elsewhere(here=True)

    def elsewhere(self) -> LoopThread | None:
        """The loop thread that must run this object's close, if not the calling one:
        the loop (or trio run) that holds a registration or a waiter, when it runs in
        another thread right now. None otherwise, and always in a forked child."""
        with _registering:
            if self._fd < 0 or self._pid != forks.pid:
                return None
            return self._home_elsewhere()

    def _home_elsewhere(self) -> LoopThread | None:
        if self._registered or self._futures:
            return loop_thread(self._loop, None)
        if self._trio_busy:
            return loop_thread(None, self._trio_token)
        return None

    def _close_or_elsewhere(self, *, here: bool = False) -> LoopThread | None:
        """Close now if this thread may; else return the loop thread that must."""
        with _registering:
            fd = self._fd
            if fd < 0:
                return None
            if self._pid != forks.pid:
                self._forget_inherited()
                self._fd = -1
                return None
            if not here:
                there = self._home_elsewhere()
                if there is not None:
                    return there
            self._fd = -1  # from here on no wait can register (they check under the lock)
        self._close_here(fd)
        return None

    def _close_here(self, fd: int) -> None:
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
