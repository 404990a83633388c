"""Every Supervisor method cancelled at every checkpoint leaves a consistent state.

The sweep: call a method and cancel it at its k-th suspension (k = 0: before it
starts), for k = 0, 1, 2, ... until the method completes before its k-th suspension.
Suspensions are counted exactly, by a wrapper around the method's coroutine that sees
every yield to the event loop (asyncio's futures and trio's traps alike) and requests
the cancellation right as the k-th one is handed to the loop, so it lands on that very
checkpoint. Two kinds of cancellation: an anyio cancel scope (asyncio, uvloop, trio), and
on asyncio/uvloop a native ``task.cancel()`` — what ``asyncio.wait_for`` does, which a
cancel-scope shield does not hold back.

After each cancellation the invariants: once the supervisor's own work has settled, a
program said to be running is our live child and is watched (SIGKILLed, it is noticed:
reaped, no zombie, and restarted); ``stop()`` then ``wait()`` return; no child of ours is
left, running or zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import anyio
import pytest
import sniffio

from fdloop.supervisor import Supervisor

from ..leaks import children_of, stat_fields

HANG = 30.0  # hang guard only
MAX_CHECKPOINTS = 200


@types.coroutine
def _counting(
    coro: Coroutine[Any, Any, Any], on_suspend: Callable[[], None]
) -> Generator[Any, Any, Any]:
    """Drive ``coro`` as the loop would, calling ``on_suspend`` before each of its yields."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        on_suspend()
        try:
            value, error = (yield yielded), None
        except BaseException as exc:  # handed on to the coroutine, as the loop would
            value, error = None, exc


async def cancelled_at(
    k: int,
    make: Callable[[], Coroutine[Any, Any, Any]],
    native: bool,
    prelude: Callable[[], Coroutine[Any, Any, Any]] | None = None,
) -> bool:
    """Run ``make()``, cancelled at its k-th suspension; True if it completed first.

    ``prelude`` runs first, uncounted and not cancelled, in the same task and inside
    the same cancel scope (a Supervisor's ``__aexit__`` must run in the task, and the
    scope, that entered it).
    """
    count = 0
    completed = False

    def on_suspend() -> None:
        nonlocal count
        count += 1
        if count == k:
            cancel()

    async def body() -> None:
        nonlocal completed
        if prelude is not None:
            await prelude()
        if k == 0:
            cancel()
        await _counting(make(), on_suspend)
        completed = True

    if native:
        task: asyncio.Task[None] | None = None

        def cancel() -> None:
            assert task is not None
            task.cancel()

        task = asyncio.ensure_future(body())
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return completed

    with anyio.CancelScope() as scope:
        cancel = scope.cancel
        await body()
    return completed


def _our_children() -> set[int]:
    return {pid for pid, _state in children_of(os.getpid())}


async def _settled(sup: Supervisor) -> None:
    """Until no request is queued or under way (the supervisor's own work is done)."""
    with anyio.fail_after(HANG):
        while not all(program.idle for program in sup._programs.values()):
            await anyio.sleep(0.001)


async def _check_watched(sup: Supervisor) -> None:
    """Every program said to be running is our live child, and its death is noticed."""
    for name, status in sup.status().items():
        if status.state != "running":
            assert status.state in ("stopped", "exited", "backoff"), (name, status)
            continue
        pid = status.pid
        assert pid is not None
        fields = stat_fields(pid)
        assert fields is not None and int(fields[1]) == os.getpid(), (name, pid, fields)
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(HANG):
            while (now := sup.status()[name]).pid in (pid, None) or now.state != "running":
                await anyio.sleep(0.002)
            while stat_fields(pid) is not None:  # reaped by its watcher, not left a zombie
                await anyio.sleep(0.002)
        assert now.restarts > status.restarts


async def _stop_and_wait(sup: Supervisor, before: set[int]) -> None:
    with anyio.fail_after(HANG):
        await sup.stop()
        statuses = await sup.wait()
    assert {s.state for s in statuses.values()} == {"stopped"}, statuses
    assert _our_children() == before


def _flavours() -> list[bool]:
    """Cancel-scope cancellation everywhere; native task.cancel() on asyncio too."""
    return [False, True] if sniffio.current_async_library() == "asyncio" else [False]


def _add(sup: Supervisor, names: tuple[str, ...]) -> None:
    for name in names:
        sup.add(name, ["sleep", "1000"], restart="always", backoff=0.0, stop_timeout=5.0)


REQUESTS: dict[str, tuple[bool, Callable[[Supervisor], Coroutine[Any, Any, Any]]]] = {
    # method: (programs running before the call, the call)
    "start-one": (False, lambda sup: sup.start("a")),
    "start-all": (False, lambda sup: sup.start()),
    "stop-one": (True, lambda sup: sup.stop("a")),
    "stop-all": (True, lambda sup: sup.stop()),
    "restart-one": (True, lambda sup: sup.restart("a")),
    "restart-all": (True, lambda sup: sup.restart()),
    "wait": (True, lambda sup: _wait_while_stopping(sup)),
}


async def _wait_while_stopping(sup: Supervisor) -> None:
    # wait() returns only once everything is down: stop it meanwhile, from another task.
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(sup.stop)
        await sup.wait()


@pytest.mark.parametrize("method", list(REQUESTS))
async def test_a_cancelled_request_leaves_a_consistent_supervisor(method: str) -> None:
    running, call = REQUESTS[method]
    before = _our_children()
    async with Supervisor() as sup:
        _add(sup, ("a", "b"))
        for native in _flavours():
            for k in range(MAX_CHECKPOINTS):
                if running:
                    await sup.start()
                with anyio.fail_after(HANG):
                    completed = await cancelled_at(k, lambda: call(sup), native)
                await _settled(sup)
                await _check_watched(sup)
                await _stop_and_wait(sup, before)
                if completed:
                    break
            else:
                pytest.fail(f"{method} never completed within {MAX_CHECKPOINTS} checkpoints")
    assert _our_children() == before


async def test_a_cancelled_shutdown_still_stops_everything() -> None:
    before = _our_children()
    for native in _flavours():
        for k in range(MAX_CHECKPOINTS):
            sup = Supervisor()
            _add(sup, ("a", "b"))

            async def enter_and_start(sup: Supervisor = sup) -> None:
                await sup.__aenter__()
                await sup.start()

            with anyio.fail_after(HANG):
                completed = await cancelled_at(
                    k, lambda sup=sup: sup.__aexit__(None, None, None), native,  # type: ignore[misc]
                    prelude=enter_and_start,
                )
            # Even cancelled at its first checkpoint, the shutdown has run to its end.
            assert sup._shared.task_group is None, (k, native)
            statuses = sup.status()
            assert {s.state for s in statuses.values()} == {"stopped"}, (k, native, statuses)
            assert _our_children() == before, (k, native)
            if completed:
                break
        else:
            pytest.fail(f"__aexit__ never completed within {MAX_CHECKPOINTS} checkpoints")


async def test_a_whole_lifecycle_cancelled_anywhere_leaves_nothing_behind() -> None:
    # Entering, starting and leaving, cancelled at each checkpoint of the whole: a
    # cancellation inside __aenter__ must undo it, and one later must still stop all.
    before = _our_children()
    for native in _flavours():
        for k in range(MAX_CHECKPOINTS):
            sup = Supervisor()
            _add(sup, ("a", "b"))

            async def lifecycle(sup: Supervisor = sup) -> None:
                async with sup:
                    await sup.start()
                    await sup.restart("a")

            with anyio.fail_after(HANG):
                completed = await cancelled_at(k, lifecycle, native)
            assert sup._shared.task_group is None, (k, native)
            assert all(s.state == "stopped" for s in sup.status().values()), (k, native)
            assert _our_children() == before, (k, native)
            if completed:
                break
        else:
            pytest.fail(f"the lifecycle never completed within {MAX_CHECKPOINTS} checkpoints")


def test_an_unread_event_stream_stays_bounded() -> None:
    # A stream kept but never read (a crash-looping program emits for ever).
    from fdloop.supervisor.events import QUEUE_LIMIT, EventHub, EventKind

    hub = EventHub()
    stream = hub.subscribe()
    for _ in range(QUEUE_LIMIT + 5):
        hub.emit(EventKind.STARTED, "p", pid=1)
    assert len(stream._queue) == QUEUE_LIMIT
    assert stream.dropped == 5
