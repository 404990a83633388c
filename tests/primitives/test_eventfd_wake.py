"""EventFD wake-ups read the counter once (issue 16.5).

``read()`` tries the read first (a writer has often been there already), else waits on
the reader that the loop keeps registered, and reads once per wake-up. A wake-up never
finds the counter empty: on the stdlib asyncio loop, the readiness that woke a reader is
reported once more, stale, right after the read that emptied the counter, and that
report is skipped (before: 120 of 200 wake-ups read an empty counter there). These tests
count the reads a real EventFD makes (its backend handle wrapped in a counter of calls:
the syscalls are the real ones) while a thread wakes a task, as ``fdloop bench wake``
does, on asyncio, uvloop and trio and on both backends.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import anyio

import fdloop

ROUNDS = 200
HANG_GUARD = 10.0


class CountingHandle:
    """The EventFD's own backend handle, counting ``read()`` calls, EAGAINs, and the
    EAGAINs of reads made right after a wait (a wake-up that found nothing)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.reads = 0
        self.empty_reads = 0
        self.woken_for_nothing = 0
        self.after_wait = False

    def read(self) -> int:
        self.reads += 1
        after_wait, self.after_wait = self.after_wait, False
        try:
            value: int = self.handle.read()
        except BlockingIOError:
            self.empty_reads += 1
            self.woken_for_nothing += after_wait
            raise
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


class MarkingWaiter:
    """The EventFD's own waiter, telling the handle that a wait has ended."""

    def __init__(self, waiter: Any, handle: CountingHandle) -> None:
        self.waiter = waiter
        self.handle = handle

    async def wait(self, *args: Any, **kwargs: Any) -> None:
        await self.waiter.wait(*args, **kwargs)
        self.handle.after_wait = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.waiter, name)


def counting(efd: fdloop.EventFD) -> CountingHandle:
    handle = CountingHandle(efd._handle)
    efd._handle = handle  # type: ignore[assignment]
    efd._waiter = MarkingWaiter(efd._waiter, handle)  # type: ignore[assignment]
    return handle


async def ping_pong(efd: fdloop.EventFD, rounds: int) -> None:
    """``rounds`` times: hand a thread the turn, the thread writes 1, the task reads it."""
    turn: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def writer() -> None:
        while turn.get(timeout=HANG_GUARD):
            efd.write(1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with anyio.fail_after(HANG_GUARD):
            for _ in range(rounds):
                turn.put(True)
                assert await efd.read() == 1
    finally:
        turn.put(False)
        thread.join(HANG_GUARD)


async def test_each_wake_up_reads_the_counter_once() -> None:
    with fdloop.EventFD() as efd:
        handle = counting(efd)
        await ping_pong(efd, ROUNDS)
    # Each round: at most the try that finds nothing, then one read after the wake-up,
    # which finds the counter. Before, on asyncio, 62-294 of 200 wake-ups found nothing
    # (a stale readiness report, see the module docstring).
    figures = (handle.reads, handle.empty_reads, handle.woken_for_nothing)
    assert handle.woken_for_nothing <= 2, figures
    assert handle.reads <= 2 * ROUNDS + 2, figures


async def test_a_counter_already_non_zero_is_read_at_once() -> None:
    with fdloop.EventFD(3) as efd:
        handle = counting(efd)
        assert await efd.read() == 3
        assert handle.reads == 1 and handle.empty_reads == 0


async def test_a_write_between_reads_is_not_missed() -> None:
    # A write made between two reads (here, by this same task) is read at once.
    with fdloop.EventFD() as efd:
        for value in (1, 5, 2**40):
            efd.write(value)
            with anyio.fail_after(HANG_GUARD):
                assert await efd.read() == value


async def test_semaphore_mode_reads_until_the_counter_is_empty() -> None:
    # A semaphore read takes 1 and leaves the rest: the next read must try at once.
    with fdloop.EventFD(3, semaphore=True) as efd:
        handle = counting(efd)
        with anyio.fail_after(HANG_GUARD):
            assert [await efd.read() for _ in range(3)] == [1, 1, 1]
        assert handle.empty_reads == 0


async def test_a_cancelled_read_after_a_draining_read_takes_nothing() -> None:
    with fdloop.EventFD() as efd:
        efd.write(1)
        assert await efd.read() == 1
        with anyio.move_on_after(0.02) as scope:
            await efd.read()
        assert scope.cancelled_caught
        efd.write(7)
        with anyio.fail_after(HANG_GUARD):
            assert await efd.read() == 7


async def test_close_wakes_a_reader_waiting_after_a_draining_read() -> None:
    efd = fdloop.EventFD(1)
    assert await efd.read() == 1
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await efd.read()
        except fdloop.ClosedResourceError as exc:
            errors.append(exc)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            await anyio.sleep(0.02)
            efd.close()
    assert len(errors) == 1
