"""One waiter per async library behind one interface (issue 14.4), on real pipes.

``fdloop._aio.running()`` is the one place that decides which library runs; each
library's glue (``asyncio_library.ASYNCIO``, ``trio_library.TRIO``) answers an
``FDWaiter``'s wait with that library's own awaitable, so a wait adds no coroutine
frame of fdloop's (memory per waiting child, issue 16.4).
"""

from __future__ import annotations

import inspect
import os
import select
from collections.abc import Iterator

import anyio
import pytest

import fdloop
from fdloop import _aio
from fdloop._aio.asyncio_library import ASYNCIO

HANG_GUARD = 10.0


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


async def test_running_names_the_library_of_this_run(anyio_backend_name: str) -> None:
    library = _aio.running()
    assert library.name == anyio_backend_name == _aio.current_library()
    if anyio_backend_name == "asyncio":  # uvloop included: it is asyncio's glue
        assert library is ASYNCIO
    assert isinstance(library, _aio.AsyncLibrary)


@pytest.mark.parametrize("shared", [False, True])
async def test_a_wait_adds_no_coroutine_frame_of_ours(
    pipe: tuple[int, int], shared: bool, anyio_backend_name: str
) -> None:
    r, w = pipe
    waiter = _aio.FDWaiter(r, shared=shared)
    try:
        awaitable = waiter.wait()
        own_frame = inspect.iscoroutine(awaitable) and "fdloop" in (
            awaitable.cr_code.co_filename
        )
        os.write(w, b"x")
        with anyio.fail_after(HANG_GUARD):
            await awaitable
    finally:
        waiter.close()
    if anyio_backend_name == "trio" and not shared:
        # trio's wait_readable takes one task per fd: the leader's turn is ours to end.
        assert own_frame
    else:
        assert not own_frame


async def test_a_cancelled_wait_is_not_counted_and_the_others_still_wake(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    waiter = _aio.FDWaiter(r)
    woken: list[str] = []

    async def wait(name: str) -> None:
        await waiter.wait()
        woken.append(name)

    try:
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tasks:
                with anyio.CancelScope() as doomed:
                    tasks.start_soon(wait, "first")
                    await anyio.sleep(0.02)
                    doomed.cancel()
                cancelled = anyio.CancelScope()

                async def cancelled_wait() -> None:
                    with cancelled:
                        await wait("cancelled")

                tasks.start_soon(cancelled_wait)
                await anyio.sleep(0.02)
                cancelled.cancel()
                await anyio.sleep(0.02)
                assert waiter.waiting == 1  # "first" only: a cancelled wait is gone
                os.write(w, b"x")
    finally:
        waiter.close()
    assert woken == ["first"]


async def test_a_cancelled_wait_then_close_wakes_nobody_else(pipe: tuple[int, int]) -> None:
    r, _w = pipe
    waiter = _aio.FDWaiter(r, shared=True)
    with anyio.move_on_after(0.02) as scope:
        await waiter.wait()
    assert scope.cancelled_caught
    assert waiter.waiting == 0
    waiter.close()  # the cancelled wait's leftovers go with it, quietly
    with pytest.raises(fdloop.ClosedResourceError):
        await waiter.wait()


async def test_followers_wake_when_the_leader_is_cancelled(pipe: tuple[int, int]) -> None:
    # trio: the first task waits in the poll, the others on its turn; on asyncio every
    # task has its own future. Either way a cancelled first waiter costs the others
    # at most a retry, and readiness then wakes them.
    r, w = pipe
    waiter = _aio.FDWaiter(r, shared=True)
    done: list[int] = []

    async def follower(index: int) -> None:
        while True:
            await waiter.wait()
            if select_readable(r):  # a wake-up is a hint: check, else wait again
                done.append(index)
                return

    try:
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tasks:
                leader = anyio.CancelScope()

                async def lead() -> None:
                    with leader:
                        await waiter.wait()

                tasks.start_soon(lead)
                await anyio.sleep(0.02)
                tasks.start_soon(follower, 1)
                tasks.start_soon(follower, 2)
                await anyio.sleep(0.02)
                leader.cancel()
                await anyio.sleep(0.02)
                assert done == []
                os.write(w, b"x")
    finally:
        waiter.close()
    assert sorted(done) == [1, 2]


def select_readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
