"""Calls into a Supervisor from a thread other than the one running its loop.

A Supervisor belongs to the loop (asyncio, uvloop or trio run) that entered it: its task
group, its anyio Events and every program's state are that loop's, and only its thread
may spawn (a PR_SET_PDEATHSIG child dies with the thread that spawned it). Yet a
supervisor is often driven from elsewhere — a signal-handling thread, a worker, a
foreign loop. So the public methods carry the call over to the supervisor's thread
instead of acting where they are called:

* :func:`any_thread` (plain methods and properties: ``status()``, ``add()``,
  ``signal()``, …) runs the method in the supervisor's thread through the loop's
  thread-safe entry (:class:`fdloop._aio.LoopThread`, as ``FDResource.close`` does) and
  blocks the calling thread until it has run there, re-raising what it raised.
* :func:`at_home` (coroutine methods: ``start()``, ``stop()``, ``restart()``, …) starts
  the method as a task in the supervisor's task group and waits, in the caller's own
  loop, until it is done; the outcome is handed back through the caller's loop's own
  thread-safe entry, so the caller's loop is never blocked for the length of the
  request, only until the supervisor's loop has taken it. Cancelling the caller only
  stops it waiting, exactly as with a request made in the supervisor's thread.

In the supervisor's own thread, before ``async with``, once its loop has stopped, and
in a forked child (where every request refuses by itself), the method runs where it
was called, as before. A supervisor's thread blocked waiting for a thread that is
itself calling in would deadlock, as ``trio.from_thread.run_sync`` does.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from .._aio.threads import LoopHome, LoopThread, trio_token_here

if TYPE_CHECKING:
    from .shared import Shared

__all__ = ["Home", "any_thread", "at_home", "refuse_elsewhere"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _HasShared(Protocol):
    _shared: Shared


_S = TypeVar("_S", bound=_HasShared)


class Home:
    """The thread and loop (asyncio) or run (trio) a Supervisor was entered in, and
    the task there that starts what other threads hand over.

    A task cannot be started from the loop's bare callback (anyio needs a running task
    to know its library), so the callback only queues the coroutine and wakes
    :meth:`serve`, which starts it in the supervisor's task group.
    """

    __slots__ = ("_calls", "_loop", "_open", "_wakeup", "thread")

    def __init__(self) -> None:
        """Captured in the entering task: its thread and its loop (or trio run)."""
        self.thread = threading.current_thread()
        self._loop = LoopHome()
        self._calls: deque[tuple[Callable[[], Coroutine[Any, Any, None]], Callable[[], object]]] = (
            deque()
        )
        self._wakeup = anyio.Event()
        self._open = False

    def elsewhere(self) -> LoopThread | None:
        """The supervisor's loop if it is running in another thread right now."""
        return self._loop.elsewhere()

    async def serve(
        self, task_group: anyio.abc.TaskGroup, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Start each handed-over coroutine in ``task_group``, until cancelled with it."""
        self._open = True
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                while self._calls:
                    task_group.start_soon(self._calls.popleft()[0])
        finally:
            self._open = False  # take() refuses from now on
            while self._calls:
                self._calls.popleft()[1]()

    def take(
        self, call: Callable[[], Coroutine[Any, Any, None]], dropped: Callable[[], object]
    ) -> bool:
        """Queue ``call`` for :meth:`serve` (in the supervisor's thread, never waits);
        ``dropped()`` is called instead if the task group ends first. False once it has
        ended."""
        if not self._open:
            return False
        self._calls.append((call, dropped))
        self._wakeup.set()
        return True


def _elsewhere(shared: Shared) -> LoopThread | None:
    home = shared.home
    if home is None or shared.forked():
        return None
    return home.elsewhere()


def _caller_loop() -> LoopThread:
    """How to hand a call to the loop running in this (the calling) thread."""
    token = trio_token_here()
    if token is not None:
        return LoopThread(None, token)
    return LoopThread(asyncio.get_running_loop(), None)


def refuse_elsewhere(shared: Shared, what: str) -> None:
    """RuntimeError if this thread is not the one whose loop runs the supervisor."""
    home = shared.home
    if home is None or shared.forked() or home.thread is threading.current_thread():
        return
    raise RuntimeError(
        f"{what} must be called in the thread that runs the Supervisor "
        f"({home.thread.name!r}), not in thread {threading.current_thread().name!r}"
    )


def any_thread(method: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
    """Make a plain method run in the supervisor's thread whichever thread calls it."""

    @functools.wraps(method)
    def call(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        there = _elsewhere(self._shared)
        if there is None:
            return method(self, *args, **kwargs)
        result: list[_T] = []
        if there.call(lambda: result.append(method(self, *args, **kwargs))):
            return result[0]
        return method(self, *args, **kwargs)  # its loop is over: nothing runs concurrently

    return call


def at_home(
    *, shield: bool = False
) -> Callable[
    [Callable[Concatenate[_S, _P], Awaitable[_T]]],
    Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
]:
    """Make a coroutine method run as a task of the supervisor's loop when awaited in
    another thread's loop. ``shield``: the caller waits for the end even if cancelled
    (the method promises so in its own thread too)."""

    def wrap(
        method: Callable[Concatenate[_S, _P], Awaitable[_T]],
    ) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
        what = f"Supervisor.{method.__name__}()"

        @functools.wraps(method)
        async def call(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
            there = _elsewhere(self._shared)
            if there is None:
                return await method(self, *args, **kwargs)
            return await _awaited_there(
                self._shared, there, lambda: method(self, *args, **kwargs), what, shield
            )

        return call

    return wrap


async def _awaited_there(
    shared: Shared, there: LoopThread, run: Callable[[], Awaitable[_T]], what: str,
    shield: bool,
) -> _T:
    await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled already: ask nothing
    caller = _caller_loop()
    finished = anyio.Event()  # the caller's loop's
    outcome: list[tuple[_T | None, Exception | None]] = []
    taken: list[bool] = []

    async def task() -> None:  # in the supervisor's loop
        try:
            outcome.append((await run(), None))
        except Exception as exc:  # handed to the caller, never to the task group
            outcome.append((None, exc))
        finally:
            caller.call_soon(finished.set)

    home = shared.home
    assert home is not None

    def take() -> None:  # in the supervisor's thread
        if home.take(task, lambda: caller.call_soon(finished.set)):
            taken.append(True)

    if not there.call(take) or not taken:
        # The supervisor has left ``async with`` (or its loop is over): nothing of it
        # runs any more, and the method refuses (or answers) by itself here.
        return await run()
    with anyio.CancelScope(shield=shield):
        await finished.wait()
    if not outcome:
        raise RuntimeError(f"{what}: the supervisor closed before the call was done")
    value, error = outcome[0]
    if error is not None:
        raise error
    return value  # type: ignore[return-value]
