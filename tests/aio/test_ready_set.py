"""Shared waiters (``FDWaiter(fd, shared=True)``): many fds behind one loop registration.

ProcessFD waits this way. These tests drive the ready set with plain pipes, so each fd's
readiness is under the test's control, on asyncio, uvloop and trio.
"""

from __future__ import annotations

import os

import anyio
import pytest

import fdloop
from fdloop import _aio

from ..leaks import open_fds


async def test_each_waiter_wakes_when_its_own_fd_is_ready() -> None:
    pipes = [os.pipe() for _ in range(6)]
    waiters = [_aio.FDWaiter(r, shared=True) for r, _w in pipes]
    woken: list[int] = []

    async def wait(index: int) -> None:
        await waiters[index].wait()
        woken.append(index)

    try:
        async with anyio.create_task_group() as tasks:
            for index in range(len(pipes)):
                tasks.start_soon(wait, index)
            await anyio.sleep(0.05)
            assert woken == []
            for index in (4, 1):  # two at once: one loop wake-up serves both
                os.write(pipes[index][1], b"x")
            with anyio.fail_after(10):
                while len(woken) < 2:
                    await anyio.sleep(0.01)
            assert sorted(woken) == [1, 4]
            for index in (0, 2, 3, 5):
                os.write(pipes[index][1], b"x")
    finally:
        for waiter in waiters:
            waiter.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)
    assert sorted(woken) == list(range(6))


async def test_cancelled_wait_leaves_no_registration_and_the_fd_works_again() -> None:
    r, w = os.pipe()
    waiter = _aio.FDWaiter(r, shared=True)
    try:
        with anyio.move_on_after(0.05) as scope:
            await waiter.wait()
        assert scope.cancelled_caught
        os.write(w, b"x")
        with anyio.fail_after(10):
            await waiter.wait()
    finally:
        waiter.close()
        os.close(r)
        os.close(w)


async def test_close_wakes_a_shared_waiter_with_closed_resource_error() -> None:
    r, w = os.pipe()
    waiter = _aio.FDWaiter(r, shared=True)
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await waiter.wait()
        except fdloop.ClosedResourceError as exc:
            errors.append(exc)

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait)
                tasks.start_soon(wait)  # a second waiter on the same fd
                await anyio.sleep(0.05)
                waiter.close()
    finally:
        os.close(r)
        os.close(w)
    assert len(errors) == 2


async def test_the_ready_set_is_one_fd_kept_for_the_loop_or_run() -> None:
    if not hasattr(fdloop.backends.current(), "ready_set"):
        pytest.skip("this backend has no ready set (waiters use the loop directly)")
    before = open_fds()
    r, w = os.pipe()
    waiter = _aio.FDWaiter(r, shared=True)
    try:
        async def wait() -> None:
            await waiter.wait()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await anyio.sleep(0.05)
            during = open_fds() - before - {r, w}
            assert len(during) == 1  # the ready set itself
            os.write(w, b"x")
        # Kept for the next waits, closed with the loop (asyncio: see
        # test_ready_set_reuse.py) or the run (trio); the leak check sees that it is.
        assert len(open_fds() - before - {r, w}) == 1
    finally:
        waiter.close()
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("count", [1, 40])
async def test_spawned_children_waited_on_together(count: int) -> None:
    async def one() -> None:
        with fdloop.spawn(["/bin/sh", "-c", "exit 3"]) as proc:
            status = await proc.wait()
        assert status.returncode == 3
        assert status.rusage is not None

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            for _ in range(count):
                tasks.start_soon(one)
