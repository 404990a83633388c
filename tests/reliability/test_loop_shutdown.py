"""A loop that ends while tasks still wait on a child: no fd, no zombie, nothing at GC.

Each test runs its own loop (these are sync tests) and ends it the way programs do:
``asyncio.run``-style shutdown (remaining tasks cancelled), ``loop.close()`` with a task
still pending (its coroutine is then closed by the garbage collector), and a trio run
that ends by an exception or right after a sync close(). The child is SIGKILLed; once no
loop runs, the reaper's table is swept at the next garbage collection (and the next
spawn). An exception while a coroutine is finalized would be a
PytestUnraisableExceptionWarning, which pyproject.toml turns into an error.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import warnings
from collections.abc import Callable

import anyio
import pytest
import trio

import fdloop
from fdloop.primitives import reaper

from ..leaks import children_of, open_fds

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is a test dependency
    pass


def nothing_left_after_collections(fds_before: set[int], timeout: float = 10.0) -> None:
    """Collect garbage (which sweeps the reaper) until no child and no new fd is left."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        left = children_of(os.getpid()), open_fds() - fds_before, reaper.pending()
        if left == (set(), set(), 0) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert left == (set(), set(), 0), f"children, fds, orphans left: {left}"


async def wait_in_async_with(started: list[int]) -> None:
    async with fdloop.spawn(["sleep", "60"]) as proc:
        started.append(proc.pid)
        await proc.wait()


async def wait_bare(started: list[int]) -> None:
    proc = fdloop.spawn(["sleep", "60"])  # never closed by its owner
    started.append(proc.pid)
    await proc.wait()


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_run_style_shutdown_cancels_the_waiter_and_ends_the_child(loop_name: str) -> None:
    fds_before = open_fds()
    started: list[int] = []

    async def main() -> None:
        asyncio.get_running_loop().create_task(wait_in_async_with(started))
        await asyncio.sleep(0.05)  # returns with the task still waiting

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": loop_name == "uvloop"})
    assert len(started) == 1
    nothing_left_after_collections(fds_before)


@pytest.mark.parametrize("body", [wait_in_async_with, wait_bare])
@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_loop_closed_with_a_task_still_waiting(loop_name: str, body: Callable[..., object]
                                               ) -> None:
    fds_before = open_fds()
    started: list[int] = []
    loop = LOOPS[loop_name]()
    task = loop.create_task(body(started))  # type: ignore[arg-type]
    loop.run_until_complete(asyncio.sleep(0.05))
    loop.close()  # the task is still pending: nothing cancels it
    assert len(started) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del task
        nothing_left_after_collections(fds_before)
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    # The bare handle was never closed by its owner: a ResourceWarning says so, as for a
    # file. The async-with one was closed by the coroutine's finalization: no warning.
    assert len(unclosed) == (1 if body is wait_bare else 0), [str(w.message) for w in caught]


def test_trio_run_ending_by_an_exception_while_tasks_wait() -> None:
    fds_before = open_fds()
    started: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(wait_in_async_with, started)
            await trio.sleep(0.05)
            raise KeyError("the application fails")

    with pytest.raises(BaseException) as failure:  # a group on some versions
        trio.run(main)
    assert "the application fails" in repr(failure.value)
    assert len(started) == 3
    nothing_left_after_collections(fds_before)


def test_trio_run_ending_right_after_a_sync_close() -> None:
    # The reaper watches the SIGKILLed child from a trio system task; the run ends before
    # the child is dead, which cancels that task: the table must still get it reaped.
    fds_before = open_fds()

    async def main() -> None:
        fdloop.spawn(["sleep", "60"]).close()

    trio.run(main)
    nothing_left_after_collections(fds_before)


@pytest.mark.parametrize("next_loop", ["asyncio", "uvloop", "trio"])
@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_objects_a_closed_loop_left_waiting_can_be_awaited_in_the_next_loop(
    loop_name: str, next_loop: str
) -> None:
    # The waits of the closed loop's tasks can never be woken: they used to make every
    # later wait, in any loop, a "two event loops at once" RuntimeError, for good.
    counter, timer = fdloop.EventFD(), fdloop.TimerFD()
    proc = fdloop.spawn(["sleep", "60"])
    loop = LOOPS[loop_name]()
    tasks = [loop.create_task(wait()) for wait in (counter.read, timer.wait, proc.wait)]
    loop.run_until_complete(asyncio.sleep(0.05))
    loop.close()  # the three tasks still wait: nothing cancels them

    async def in_the_next_loop() -> None:
        with anyio.fail_after(10):
            with anyio.move_on_after(0.05) as scope:
                await counter.read()  # (0: it waits, and times out)
            assert scope.cancelled_caught
            counter.write(3)
            assert await counter.read() == 3
            timer.set(0.01)
            assert await timer.wait() >= 1
            proc.kill()
            assert (await proc.wait()).returncode == -9

    anyio.run(in_the_next_loop, backend="trio" if next_loop == "trio" else "asyncio",
              backend_options={"use_uvloop": True} if next_loop == "uvloop" else {})
    for obj in (counter, timer, proc):
        obj.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (coroutines never resumed)
        del tasks
        gc.collect()
