"""Waiting for any poll event (POLLPRI, POLLERR, POLLHUP, ...) through the running loop.

asyncio and trio let a task wait until a fd is readable or writable, nothing else. This
module waits for any poll mask with the help of the backend's *poll requests* (Linux:
io_uring ``IORING_OP_POLL_ADD``, or AIO ``IOCB_CMD_POLL`` where io_uring is refused;
kqueue: a private kqueue): the kernel polls the file for us and posts the mask it saw in
a completion queue whose one fd the loop watches. No thread, no timer, and nothing is
asked of the loop but readability of that fd; a file whose poll keeps saying POLLIN (as
``/proc/self/mountinfo`` always does) costs nothing while a task waits for its POLLPRI.

One hub per loop (asyncio) or run (trio) holds the ring and its requests:

* a request is shared by every task that waits for the same ``(fd, events)``, so two
  tasks waiting on a file that resets its event when polled (mountinfo, PSI) both see it;
* one-shot requests serve ``wait_events``; a watch (``async for``) holds a multishot
  request where the ring has them (io_uring: reported once per wake-up of the file, so a
  condition that stays true does not repeat), else re-arms one-shot requests as its
  consumer asks for the next item (level-triggered, like poll(2));
* a cancelled wait leaves the others' request in place (the last one out withdraws it);
* ``notify_closing(fd)`` wakes everyone waiting on ``fd`` with ClosedResourceError and
  withdraws the requests: a poll request holds a reference to the file, so closing the
  fd alone would never complete it. It reaches the hubs of every loop, in any thread: a
  table of which hubs hold requests on which fd (:func:`elsewhere` reads it too, so that
  an fdloop object closed in one thread while a loop in another waits on it hands its
  close to that loop's thread). Left to a close in the wrong thread, the request would
  never end, and a new file given the same number would join the old file's request.

asyncio: the hub's ring is registered with ``add_reader`` while it has requests and closed
soon after the last one ends (a garbage collection callback closes those of loops closed
with requests still in them). trio: a system task watches it until the run ends. A forked
child forgets its parent's hubs (closing only its own copies of their fds).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import os
import threading
from collections import deque
from typing import Any

from ..backends.contract import PollRequestsBackend
from ..errors import ClosedResourceError
from . import forks
from .library import _quietly, current_library
from .threads import LoopHome, LoopThread

__all__ = ["Subscription", "elsewhere", "notify_closing", "subscribe"]

_tokens = itertools.count(1)
_ALWAYS = 0x008 | 0x010 | 0x020  # POLLERR | POLLHUP | POLLNVAL: poll(2) always reports them

_homes: dict[int, dict[_Hub, int]] = {}
"""fd -> the hubs holding requests on it, each with how many: what notify_closing must
reach, whichever thread closes the fd. Changed under :data:`_homes_lock` (hubs of loops
in different threads change it concurrently)."""
_homes_lock = threading.Lock()


def _count_home(fd: int, hub: _Hub, change: int) -> None:
    with _homes_lock:
        hubs = _homes.setdefault(fd, {})
        count = hubs.get(hub, 0) + change
        if count > 0:
            hubs[hub] = count
        else:
            hubs.pop(hub, None)
            if not hubs:
                del _homes[fd]


def _hubs_on(fd: int) -> list[_Hub]:
    with _homes_lock:
        return [hub for hub in _homes.get(fd, ()) if hub._pid == forks.pid]


def _new_ring() -> PollRequestsBackend:
    from ..backends import current

    return current().poll_requests()


class _Poll:
    """One kernel request for ``(fd, events)`` and the subscriptions it serves."""

    __slots__ = ("armed", "events", "fd", "key", "multishot", "subscribers", "token")

    def __init__(self, key: tuple[int, int, bool]) -> None:
        self.key = key
        self.fd, self.events, self.multishot = key
        self.subscribers: list[Subscription] = []
        self.token = 0
        self.armed = False


class Subscription:
    """One task's (or one watch's) interest in a request: masks arrive in ``results``."""

    __slots__ = ("_hub", "_poll", "_waker", "error", "results")

    def __init__(self, hub: _Hub, poll: _Poll) -> None:
        self._hub = hub
        self._poll = poll
        self.results: deque[int] = deque()
        self.error: BaseException | None = None
        self._waker: Any = None

    async def next(self) -> int:
        """The next mask reported for this subscription (waiting for it if none is
        buffered). Raises ClosedResourceError after ``notify_closing`` or the end of
        the run, OSError when the kernel refused the request (EBADF: not open)."""
        while not self.results:
            if self.error is not None:
                raise self.error
            self._hub.arm(self._poll)
            await self._hub.park(self)
        return self.results.popleft()

    def close(self) -> None:
        """Leave the request (withdrawn once nobody is subscribed). Idempotent."""
        self._hub.leave(self)

    def _deliver(self, mask: int | None, error: BaseException | None = None) -> None:
        if mask is not None:
            self.results.append(mask)
        if error is not None and self.error is None:
            self.error = error
        waker, self._waker = self._waker, None
        if waker is not None:
            self._hub.wake(waker)


class _Hub:
    """A ring of poll requests and the subscriptions waiting on it (one loop or run)."""

    def __init__(self, ring: Any) -> None:
        self._ring = ring
        self._pid = forks.pid
        self._home = LoopHome()  # (made in its loop's thread, inside the loop or run)
        self._polls: dict[tuple[int, int, bool], _Poll] = {}
        self._by_token: dict[int, _Poll] = {}

    def subscribe(self, fd: int, events: int, multishot: bool) -> Subscription:
        multishot = multishot and self._ring.multishot
        key = (fd, events, multishot)
        poll = self._polls.get(key)
        if poll is None:
            poll = self._polls[key] = _Poll(key)
            _count_home(fd, self, 1)
        subscription = Subscription(self, poll)
        poll.subscribers.append(subscription)
        return subscription

    def arm(self, poll: _Poll) -> None:
        if poll.armed:
            return
        token = next(_tokens)
        try:
            self._ring.submit(token, poll.fd, poll.events, multishot=poll.multishot)
        except OSError:
            self._forget(poll)
            raise
        poll.token, poll.armed = token, True
        self._by_token[token] = poll

    def leave(self, subscription: Subscription) -> None:
        poll = subscription._poll
        with contextlib.suppress(ValueError):
            poll.subscribers.remove(subscription)
        if not poll.subscribers:
            self._forget(poll)

    def _forget(self, poll: _Poll) -> None:
        if self._polls.get(poll.key) is poll:
            del self._polls[poll.key]
            _count_home(poll.fd, self, -1)
        if poll.armed:
            poll.armed = False
            self._by_token.pop(poll.token, None)
            if self._pid == forks.pid and not self._ring.closed:
                with contextlib.suppress(OSError):
                    self._ring.cancel(poll.token)
        self.idle_check()

    def dispatch(self) -> None:
        """Hand every completion waiting in the ring to its subscribers."""
        if self._ring.closed:
            return
        for token, result, more in self._ring.completions():
            poll = self._by_token.get(token)
            if poll is None:
                continue  # withdrawn meanwhile; its last word does not matter
            if not more:
                # A one-shot answer (or a multishot request the kernel ended) leaves the
                # request unarmed: whoever waits next asks anew.
                poll.armed = False
                del self._by_token[token]
            if result < 0:
                error = OSError(-result, f"polling fd {poll.fd}: {os.strerror(-result)}")
                for subscription in list(poll.subscribers):
                    subscription._deliver(None, error)
                continue
            mask = result & (poll.events | _ALWAYS)
            if mask:
                for subscription in list(poll.subscribers):
                    subscription._deliver(mask)
            elif not poll.armed:
                # Cancelled under us (a multishot request the kernel ended): re-arm on
                # the next wait of whoever is still subscribed.
                for subscription in list(poll.subscribers):
                    subscription._deliver(None)

    def notify_closing(self, fd: int) -> None:
        for poll in [p for p in self._polls.values() if p.fd == fd]:
            subscribers, poll.subscribers = poll.subscribers, []
            self._forget(poll)
            for subscription in subscribers:
                subscription._deliver(None, ClosedResourceError(
                    f"fd {fd} was closed while a task waited for its poll events"))

    def fail_everyone(self, error: BaseException) -> None:
        for poll in list(self._polls.values()):
            _count_home(poll.fd, self, -1)
            for subscription in poll.subscribers:
                subscription._deliver(None, error)
        self._polls.clear()
        self._by_token.clear()

    # -- per library ---------------------------------------------------------------------

    async def park(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def wake(self, waker: Any) -> None:
        raise NotImplementedError

    def idle_check(self) -> None:
        pass


class _AsyncioHub(_Hub):
    def __init__(self, loop: asyncio.AbstractEventLoop, ring: Any) -> None:
        super().__init__(ring)
        self._loop = loop
        self._closing_soon = False
        loop.add_reader(ring.fileno(), self.dispatch)

    async def park(self, subscription: Subscription) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        subscription._waker = future
        try:
            await future
        finally:
            if subscription._waker is future:
                subscription._waker = None

    def wake(self, waker: Any) -> None:
        if not waker.done():
            waker.set_result(None)

    def idle_check(self) -> None:
        # Closed soon rather than at once: a task that waits again right after its wake
        # (the usual case) keeps the ring instead of paying a new one per wait.
        if not self._polls and not self._closing_soon and not self._loop.is_closed():
            self._closing_soon = True
            self._loop.call_soon(self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._closing_soon = False
        if not self._polls:
            self.abandon(unregister=True)

    def abandon(self, *, unregister: bool = False) -> None:
        if _asyncio_hubs.get(self._loop) is self:
            del _asyncio_hubs[self._loop]
        if unregister and self._pid == forks.pid and not self._ring.closed:
            _quietly(self._loop.remove_reader, self._ring.fileno())
        self._pid = -1
        self.fail_everyone(ClosedResourceError("the event loop was closed"))
        _quietly(self._ring.close)


class _TrioHub(_Hub):
    def __init__(self, ring: Any) -> None:
        import trio

        super().__init__(ring)
        trio.lowlevel.spawn_system_task(self._watch, name="fdloop poll events")

    async def park(self, subscription: Subscription) -> None:
        import trio

        task = trio.lowlevel.current_task()
        subscription._waker = task

        def abort(_: Any) -> trio.lowlevel.Abort:
            if subscription._waker is task:
                subscription._waker = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self, waker: Any) -> None:
        import trio

        trio.lowlevel.reschedule(waker)

    async def _watch(self) -> None:
        import trio

        try:
            while True:
                await trio.lowlevel.wait_readable(self._ring.fileno())
                self.dispatch()
        finally:
            self.fail_everyone(ClosedResourceError("the trio run is ending"))
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.notify_closing(self._ring.fileno())
            self._ring.close()


_asyncio_hubs: dict[asyncio.AbstractEventLoop, _AsyncioHub] = {}
_trio_hub_var: Any = None


def _hub() -> _Hub:
    if current_library() == "trio":
        return _trio_hub()
    loop = asyncio.get_running_loop()
    hub = _asyncio_hubs.get(loop)
    if hub is None or hub._pid != forks.pid:
        ring = _new_ring()
        try:
            hub = _AsyncioHub(loop, ring)
        except BaseException:
            ring.close()
            raise
        _asyncio_hubs[loop] = hub
    return hub


def _trio_hub() -> _Hub:
    global _trio_hub_var
    import trio

    if _trio_hub_var is None:
        _trio_hub_var = trio.lowlevel.RunVar("fdloop_poll_events", default=None)
    hub: _TrioHub | None = _trio_hub_var.get()
    if hub is None or hub._pid != forks.pid:
        ring = _new_ring()
        try:
            hub = _TrioHub(ring)
        except BaseException:
            ring.close()
            raise
        _trio_hub_var.set(hub)
    return hub


def subscribe(fd: int, events: int, *, watch: bool = False) -> Subscription:
    """A subscription to ``events`` on ``fd`` in the running loop; ``watch``: keep it
    armed across results (see the module docstring). Raises UnsupportedOperation where
    the backend has no poll requests, OSError if the kernel refuses a ring."""
    return _hub().subscribe(fd, events, watch)


def notify_closing(fd: int) -> None:
    """Wake every task waiting for poll events on ``fd`` with ClosedResourceError and
    withdraw their requests, before the fd is closed; from any thread. The hub of a loop
    running in another thread does it there, and this returns once it has (a loop thread
    blocked waiting for the caller would deadlock, as with ``close()``)."""
    if not _homes:
        return  # nobody waits for poll events: every fdloop close comes here
    for hub in _hubs_on(fd):
        there = hub._home.elsewhere()
        if there is None or not there.call(functools.partial(hub.notify_closing, fd)):
            hub.notify_closing(fd)  # this thread's loop, or one that runs nothing now


def elsewhere(fd: int) -> LoopThread | None:
    """The thread of a loop that waits for poll events on ``fd``, if that is not the
    calling thread: where an fdloop object's close must run (see FDResource.close)."""
    if not _homes:
        return None
    for hub in _hubs_on(fd):
        there = hub._home.elsewhere()
        if there is not None:
            return there
    return None


def _drop_hubs_of_closed_loops(phase: str, info: dict[str, int]) -> None:
    # A loop closed while tasks still waited leaves its hub (and ring fd) behind.
    if phase != "start" or not _asyncio_hubs:
        return
    for loop, hub in list(_asyncio_hubs.items()):
        if loop.is_closed():
            hub.abandon()


gc.callbacks.append(_drop_hubs_of_closed_loops)


def _forget_hubs_after_fork() -> None:
    global _homes_lock
    _homes_lock = threading.Lock()  # (another thread may have held it at fork)
    for hub in list(_asyncio_hubs.values()):
        hub.abandon()
    _asyncio_hubs.clear()
    _homes.clear()  # every hub in it is the parent's


forks.at_fork_in_child(_forget_hubs_after_fork)
