"""Per-fd waiters: any number of tasks wait until one fd is readable (or writable).

Everything fdloop awaits is "this fd became readable" (or, for pipes to a child,
"writable"). An :class:`FDWaiter` owns that question for one fd and one direction; the
running library's glue (see :mod:`.library`) answers it through the loop's own poll:

* asyncio (:mod:`.asyncio_library`; the stdlib loop, uvloop, any loop with
  ``add_reader``): the fd is added with ``add_reader`` (``add_writer``) when the first
  task starts waiting and stays registered while tasks keep coming back; one callback
  wakes every waiting task at once.
* trio (:mod:`.trio_library`): ``trio.lowlevel.wait_readable`` accepts a single waiter
  per fd, so the first task to arrive becomes the *leader* and makes that call; later
  tasks wait on an event that the leader sets when it returns for any reason.

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

One waiter exists per ProcessFD, EventFD, stream...: it is kept small (slots, the
booleans in one int) and a wait adds no coroutine frame of ours where the library lets
the caller await its own object (an asyncio future, trio's ``wait_task_rescheduled``).

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

import threading
from collections.abc import Awaitable
from typing import Any

from ..errors import ClosedResourceError
from . import forks
from .library import running
from .threads import LoopThread, loop_thread

__all__ = ["FDWaiter", "ReadableWaiter"]

WRITABLE = 1
SHARED = 2
REGISTERED = 4
"""asyncio: the fd is registered with ``_loop`` (add_reader/add_writer, or its hub)."""
TRIO_BUSY = 8
"""trio: a leader task waits right now, in the run of ``_trio_token``."""
TRIO_USED = 16
"""trio: trio's own poll has seen the fd (``notify_closing`` is owed at close)."""
WOKEN = 32
"""shared: the last wait ended with a wake-up (see the back-off in the docstring)."""
STALE = 64
"""asyncio: the next readiness report predates the woken task's read (skip it)."""
CHILD = 128
"""shared: the fd is our child's process fd, which the ready set may reap as it reports
it (the status is then left in ``reaped``)."""

_registering = threading.RLock()
"""Held while a wait adds a registration and while close() decides where it must run,
so a close from another thread can never slip between a wait's check that the fd is
open and its registration (which would leave the loop polling a closed, maybe reused,
number). Re-entrant: a garbage collection inside a registration may close another
object from a finalizer."""


class FDWaiter:
    """Lets any number of tasks wait until one fd is readable (or writable).

    The state of a wait lives here, in plain slots; what they mean to each library is
    up to that library's glue (:mod:`.asyncio_library`, :mod:`.trio_library`).
    """

    __slots__ = (
        "_backoff",
        "_fd",
        "_flags",
        "_futures",
        "_hub",
        "_loop",
        "_pid",
        "_trio_done",
        "_trio_token",
        "reaped",
    )

    def __init__(self, fd: int, *, writable: bool = False, shared: bool = False,
                 child: bool = False) -> None:
        """``shared=True`` (readable only): wait through the loop's ready set (see
        :mod:`.readyset`), for fds that are waited on once each, many at a time.
        ``child=True`` (shared only): ``fd`` is our child's process fd; the ready set
        may reap the child as it reports the exit and leave its RawExit in
        :attr:`reaped` for the owner to take."""
        self._fd = fd
        self._flags = WRITABLE if writable else (
            (SHARED | CHILD if child else SHARED) if shared else 0)
        self.reaped: Any = None
        self._pid = forks.pid
        self._loop: Any = None  # asyncio: the loop of the registration (kept between waits)
        # asyncio: the waiting tasks' futures: None, one future, or a list of them (one
        # waiting task, the usual case, costs no list)
        self._futures: Any = None
        self._hub: Any = None  # the ready set's hub of the current wait (shared)
        self._trio_token: Any = None  # trio: the run of the leader, while TRIO_BUSY
        self._trio_done: Any = None  # trio: the followers' event, if any came
        self._backoff = 0.0

    @property
    def waiting(self) -> int:
        """How many asyncio tasks wait right now (trio: 0 or more, leader counted)."""
        return len(self.pending_futures()) + (1 if self._flags & TRIO_BUSY else 0)

    def pending_futures(self) -> list[Any]:
        """asyncio: the futures of the tasks waiting now: not those of cancelled waits,
        nor those left by tasks of a loop that was closed under them (nothing can wake
        or await those again, and they must not make the next loop's wait a "two loops
        at once" error)."""
        futures = self._futures
        if futures is None:
            return []
        if type(futures) is not list:
            futures = [futures]
        return [future for future in futures
                if not future.done() and not future.get_loop().is_closed()]

    def wait(self) -> Awaitable[None]:
        """Return once the fd may be ready; raise ClosedResourceError if closed.

        Await the result at once: it is the running library's own awaitable (no
        coroutine frame of ours). RuntimeError if another event loop or trio run is
        waiting on this object at the same time.
        """
        if self._fd < 0:
            raise ClosedResourceError("the object was closed")
        if self._pid != forks.pid:
            self._forget_inherited()
        return running().wait(self)

    def _forget_inherited(self) -> None:
        # A forked child: everything registered so far lives in the parent's loop and
        # ready set, whose epoll sets we share. Forget it all; touch nothing.
        self._pid = forks.pid
        self._flags &= WRITABLE | SHARED
        self._loop = None
        self._futures = None
        self._hub = None
        self._trio_done = None
        self._trio_token = None

    def _no_progress_delay(self) -> float:
        """How long a shared wait sleeps first: 0 unless the last wait ended with a
        wake-up (which, for a waiter woken once per event, brought nothing), then
        1 ms doubling to 50 ms while that repeats (see the module docstring)."""
        if not self._flags & WOKEN:
            self._backoff = 0.0
            return 0.0
        self._flags &= ~WOKEN
        self._backoff = min(max(self._backoff * 2, 0.001), 0.05)
        return self._backoff

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
        if self._fd < 0:
            return  # closed for good (the number never comes back): nothing to take
        there = self._close_or_elsewhere()
        if there is not None and not there.call(self.close):
            # The loop can no longer run anything: nothing polls it, close here.
            self._close_or_elsewhere(here=True)

    def close_if_idle(self) -> bool:
        """Close now, from any thread, if nothing waits or is registered (the usual
        state of a finished wait): True if closed (or already closed), else False and
        nothing changed (then call :meth:`close`)."""
        with _registering:
            if self._fd < 0:
                return True
            if (self._flags & (REGISTERED | TRIO_BUSY | TRIO_USED) or self._futures is not None
                    or self._hub is not None or self._pid != forks.pid):
                return False
            self._fd = -1
            self._loop = None
            return True

    def elsewhere(self) -> LoopThread | None:
        """The loop thread that must run this object's close, if not the calling one:
        the loop (or trio run) that holds a registration or a waiter, when it runs in
        another thread right now. None otherwise, and always in a forked child."""
        with _registering:
            if self._fd < 0 or self._pid != forks.pid:
                return None
            return self._home_elsewhere()

    def _home_elsewhere(self) -> LoopThread | None:
        if self._flags & REGISTERED or self._futures:
            return loop_thread(self._loop, None)
        if self._flags & TRIO_BUSY:
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
        (_LIBRARIES.get("asyncio") or _library("asyncio")).release(self, fd)
        if self._flags & (TRIO_USED | TRIO_BUSY) or self._trio_token is not None:
            (_LIBRARIES.get("trio") or _library("trio")).release(self, fd)
        return None


ReadableWaiter = FDWaiter
"""The readable direction is the default; the alias reads better at most call sites."""


_LIBRARIES: dict[str, Any] = {}


def _library(name: str) -> Any:
    """asyncio's or trio's library object, imported on first use and kept (they import
    this module; an import statement on every close cost about 4 µs each). trio's is
    asked for only once a waiter has used trio, so asyncio programs never import it."""
    library: Any
    if name == "asyncio":
        from .asyncio_library import ASYNCIO as library
    else:
        from .trio_library import TRIO as library
    _LIBRARIES[name] = library
    return library
