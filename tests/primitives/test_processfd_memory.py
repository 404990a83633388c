"""Idle memory per live child (issue 16.4): below 0.6 KiB of fdloop's own on every loop.

K real children (``sleep``) alive at once, each awaited by its own task, as
``fdloop bench idle`` runs them, measured with tracemalloc (exact, unlike RSS): the
Python memory allocated per child, minus the same harness whose tasks each wait on an
event instead (a task per child is the caller's, not fdloop's). Before: 1.0-1.4 KiB
(a ProcessFD ``__dict__``, a waiter of 15 slots, two coroutine frames per wait, an
object per registration; trio also a hub frame and an abort closure).
"""

from __future__ import annotations

import gc
import os
import signal
import tracemalloc
from collections.abc import Awaitable, Callable

import anyio
import pytest

import fdloop

K = 100
LIMIT_BYTES = 600
SLEEP = "/bin/sleep" if os.path.exists("/bin/sleep") else "/usr/bin/sleep"


async def bytes_per_task(start: Callable[[], Callable[[], Awaitable[object]]]) -> float:
    """Python memory allocated per task while K tasks each await what ``start()`` gave."""
    scopes: list[anyio.CancelScope] = []

    async def run(wait: Callable[[], Awaitable[object]]) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await wait()

    async with anyio.create_task_group() as tasks:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(K):
                tasks.start_soon(run, start())
            await anyio.sleep(0.05)  # every task is parked in its wait
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        for scope in scopes:
            scope.cancel()
    return (after - before) / K


async def test_idle_memory_per_awaited_child_is_below_600_bytes(fdloop_backend: str) -> None:
    if fdloop_backend == "kqueue":
        pytest.skip("the kqueue emulator's own Python objects would count as fdloop's")
    warm = fdloop.spawn(["/bin/true"])  # one-off imports and caches count for nobody
    with warm:
        await warm.wait()
    event = anyio.Event()
    procs: list[fdloop.ProcessFD] = []

    def child() -> Callable[[], Awaitable[object]]:
        proc = fdloop.spawn([SLEEP, "60"])
        procs.append(proc)
        return proc.wait

    baseline = await bytes_per_task(lambda: event.wait)
    try:
        with_children = await bytes_per_task(child)
    finally:
        for proc in procs:
            proc.kill()
            with anyio.fail_after(10):
                await proc.wait()
            proc.close()
    assert all(proc.returncode == -signal.SIGKILL for proc in procs)
    own = with_children - baseline
    assert own < LIMIT_BYTES, f"{own:.0f} B of fdloop's own per awaited child"
