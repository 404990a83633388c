"""A Supervisor driven from other threads, with real programs, on asyncio, uvloop and trio.

The supervisor runs in the test's loop; a plain ``threading.Thread`` calls into it, the
async methods through an event loop of the thread's own (asyncio or trio). Control
calls and snapshots are carried out in the supervisor's thread; an event stream is read
only there, and another thread's read is refused before anything is consumed. No timing
assertions: every wait is bounded only to turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio

from fdloop.errors import NoSuchProgram
from fdloop.supervisor import EventKind, ProgramState, Supervisor

from .event_helpers import until

HANG = 60.0
"""Seconds after which a wait counts as a hang (never reached by a passing test)."""
SLEEP = ["sleep", "1000"]


async def in_thread(call: Callable[[], object]) -> object:
    """``call()`` in a new thread; its result, or the exception it raised (returned)."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # handed back to the test
            box["result"] = exc

    thread = threading.Thread(target=body, name="foreign-caller", daemon=True)
    thread.start()
    with anyio.fail_after(HANG):
        await anyio.to_thread.run_sync(thread.join, HANG)
    assert not thread.is_alive(), "the call from the other thread hung"
    return box["result"]


Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


def run_asyncio(function: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await function()

    return asyncio.run(main())


RUNNERS = [
    pytest.param(run_asyncio, id="thread-asyncio"),
    pytest.param(trio.run, id="thread-trio"),
]
"""How the other thread runs a coroutine: a loop of its own, asyncio or trio."""


def from_thread(runner: Runner, method: Callable[..., Awaitable[object]], *args: object) -> \
        Callable[[], object]:
    async def call() -> object:
        return await method(*args)

    return lambda: runner(call)


@pytest.mark.parametrize("runner", RUNNERS)
async def test_restart_from_another_thread_restarts(runner: Runner) -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP, restart="always")
        await sup.start()
        before = sup.status()["a"]
        assert before.pid is not None
        result = await in_thread(from_thread(runner, sup.restart, "a"))
        assert result is None
        after = sup.status()["a"]
        assert after.state == ProgramState.RUNNING
        assert after.pid is not None and after.pid != before.pid
        assert after.restarts == 1


@pytest.mark.parametrize("runner", RUNNERS)
async def test_restart_of_everything_from_another_thread(runner: Runner) -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP)
        sup.add("b", SLEEP, depends_on=["a"])
        await sup.start()
        before = {name: status.pid for name, status in sup.status().items()}
        assert await in_thread(from_thread(runner, sup.restart)) is None
        after = sup.status()
        for name in ("a", "b"):
            assert after[name].state == ProgramState.RUNNING
            assert after[name].pid not in (None, before[name])


@pytest.mark.parametrize("runner", RUNNERS)
async def test_stop_and_start_from_another_thread(runner: Runner) -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP, restart="always")
        await sup.start()
        events = sup.events()
        assert await in_thread(from_thread(runner, sup.stop, "a")) is None
        assert sup.status()["a"].state == ProgramState.STOPPED
        assert sup.status()["a"].pid is None
        assert await in_thread(from_thread(runner, sup.start, "a")) is None
        status = sup.status()["a"]
        assert status.state == ProgramState.RUNNING and status.pid is not None
        seen = await until(events, lambda event: event.kind == "started" and event.restarts == 0
                           and event.pid == status.pid)
        assert [str(e.kind) for e in seen if e.name == "a"][-3:] == [
            "stopping", "stopped", "started"
        ]


@pytest.mark.parametrize("runner", RUNNERS)
async def test_a_bad_request_from_another_thread_changes_nothing(runner: Runner) -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP, restart="always")
        await sup.start()
        before = sup.status()["a"]
        error = await in_thread(from_thread(runner, sup.restart, "nope"))
        assert isinstance(error, NoSuchProgram)
        assert "nope" in str(error)
        error = await in_thread(from_thread(runner, sup.stop, 3))
        assert isinstance(error, TypeError) and "name" in str(error)
        after = sup.status()["a"]
        assert (after.state, after.pid, after.restarts) == (before.state, before.pid, 0)


@pytest.mark.parametrize("runner", RUNNERS)
async def test_a_caller_cancelled_before_asking_does_nothing(runner: Runner) -> None:
    async def cancelled_restart() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await sup.restart("a")

    async with Supervisor() as sup:
        sup.add("a", SLEEP, restart="always")
        await sup.start()
        before = sup.status()["a"]
        assert await in_thread(lambda: runner(cancelled_restart)) is None
        # Had it been queued, this restart would come after it: one restart only.
        await sup.restart("a")
        assert sup.status()["a"].restarts == 1
        assert sup.status()["a"].pid != before.pid


@pytest.mark.parametrize("runner", RUNNERS)
async def test_shutdown_and_wait_from_another_thread(runner: Runner) -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP, restart="always")
        sup.add("b", SLEEP, restart="always")
        await sup.start()
        assert await in_thread(from_thread(runner, sup.shutdown)) is None
        statuses = await in_thread(from_thread(runner, sup.wait))
        assert isinstance(statuses, dict)
        assert {status.state for status in statuses.values()} == {ProgramState.STOPPED}
        assert sup.all_clean()


async def test_plain_calls_from_another_thread() -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP)
        await sup.start()
        pid = sup.status()["a"].pid
        status = await in_thread(lambda: sup.status())
        assert isinstance(status, dict) and status["a"].pid == pid
        assert await in_thread(lambda: sup.names) == ["a"]
        assert await in_thread(sup.all_clean) is True
        assert await in_thread(lambda: sup.signal("a", signal.SIGCONT)) is True
        assert await in_thread(lambda: sup.process_trees) == sup.process_trees
        assert await in_thread(lambda: sup.cgroup_root) == sup.cgroup_root
        assert await in_thread(lambda: sup.add("b", SLEEP)) is None
        assert sup.names == ["a", "b"]
        error = await in_thread(lambda: sup.add("b", SLEEP))
        assert isinstance(error, ValueError) and "'b'" in str(error)
        error = await in_thread(lambda: sup.signal("nope", "HUP"))
        assert isinstance(error, NoSuchProgram)
        await sup.start("b")
        assert sup.status()["a"].pid == pid  # SIGCONT left it alone
        assert sup.status()["b"].state == ProgramState.RUNNING


async def test_an_event_stream_is_read_in_the_supervisor_thread_only() -> None:
    async with Supervisor() as sup:
        sup.add("a", SLEEP)
        stream = await in_thread(sup.events)
        assert not isinstance(stream, BaseException)
        await sup.start()

        async def read_one() -> object:
            return await stream.__anext__()  # type: ignore[attr-defined]

        error = await in_thread(lambda: asyncio.run(read_one()))  # type: ignore[arg-type]
        assert isinstance(error, RuntimeError)
        assert "events()" in str(error) and threading.current_thread().name in str(error)
        # Nothing was taken from the stream: the loop's thread still reads everything.
        seen = await until(stream, lambda event: event.kind == EventKind.STARTED)  # type: ignore[arg-type]
        assert [str(event.kind) for event in seen] == ["started"]


async def test_calls_before_and_after_the_block_from_another_thread() -> None:
    sup = Supervisor()
    assert await in_thread(lambda: sup.add("a", SLEEP)) is None
    async with sup:
        await sup.start()
        error = await in_thread(lambda: asyncio.run(sup.__aexit__(None, None, None)))
        assert isinstance(error, RuntimeError) and "__aexit__" in str(error)
        assert sup.status()["a"].state == ProgramState.RUNNING
    status = await in_thread(lambda: sup.status())
    assert isinstance(status, dict) and status["a"].state == ProgramState.STOPPED
    error = await in_thread(lambda: asyncio.run(sup.start()))  # type: ignore[arg-type]
    assert isinstance(error, RuntimeError) and "async with" in str(error)
