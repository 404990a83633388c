"""EventFD against real eventfds (or the kqueue backend), on asyncio, uvloop and trio."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name
from fdloop.primitives.eventfd import MAX_COUNTER

from ..helpers import no_hang

EXAMPLE = Path(__file__).parents[2] / "examples" / "eventfd_across_processes.py"


async def test_read_returns_counter_and_resets() -> None:
    async with fdloop.EventFD(3) as efd:
        efd.write(4)
        assert await efd.read() == 7
        with pytest.raises(BlockingIOError):
            efd.read_nowait()


async def test_read_waits_for_a_write() -> None:
    async with fdloop.EventFD() as efd, anyio.create_task_group() as tg:
        async def write_later() -> None:
            await anyio.sleep(0.05)
            efd.write(5)

        tg.start_soon(write_later)
        assert await efd.read() == 5


async def test_semaphore_mode_reads_one_at_a_time() -> None:
    async with fdloop.EventFD(2, semaphore=True) as efd:
        assert efd.semaphore
        assert [await efd.read(), await efd.read()] == [1, 1]
        with pytest.raises(BlockingIOError):
            efd.read_nowait()


async def test_many_waiters_share_one_fd() -> None:
    results: list[int] = []
    async with fdloop.EventFD(semaphore=True) as efd:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: _append(results, efd))
            await anyio.sleep(0.05)
            efd.write(10)
    assert results == [1] * 10


async def _append(results: list[int], efd: fdloop.EventFD) -> None:
    results.append(await efd.read())


async def test_cancelled_read_consumes_nothing() -> None:
    async with fdloop.EventFD() as efd:
        with anyio.move_on_after(0.05) as scope:
            await efd.read()
        assert scope.cancelled_caught
        async with anyio.create_task_group() as tg:
            reader_scope = anyio.CancelScope()

            async def reader() -> None:
                with reader_scope:
                    await efd.read()

            tg.start_soon(reader)
            await anyio.sleep(0.02)
            efd.write(3)  # readable now, but the reader is cancelled before it runs
            reader_scope.cancel()
        assert reader_scope.cancelled_caught
        assert await efd.read() == 3


async def test_cancelling_one_waiter_leaves_the_others_waiting() -> None:
    async with fdloop.EventFD() as efd, anyio.create_task_group() as tg:
        got: list[int] = []
        cancelled = anyio.CancelScope()

        async def doomed() -> None:
            with cancelled:
                await efd.read()

        tg.start_soon(doomed)
        await anyio.sleep(0.02)
        tg.start_soon(lambda: _append(got, efd))
        await anyio.sleep(0.02)
        cancelled.cancel()
        await anyio.sleep(0.02)
        efd.write(9)
    assert got == [9]


async def test_write_from_another_thread_wakes_the_loop() -> None:
    async with fdloop.EventFD() as efd:
        thread = threading.Thread(target=lambda: [efd.write(1) for _ in range(1000)])
        thread.start()
        total = 0
        while total < 1000:
            total += await efd.read()
        thread.join()
        assert total == 1000


def test_overflow_is_an_error_that_leaves_the_counter_untouched() -> None:
    with fdloop.EventFD() as efd:
        efd.write(MAX_COUNTER - 1)
        with pytest.raises(fdloop.CounterOverflowError, match="unchanged"):
            efd.write(2)
        with pytest.raises(OverflowError):
            efd.write(2)
        efd.write(1)
        assert efd.read_nowait() == MAX_COUNTER


def test_write_zero_is_a_no_op() -> None:
    with fdloop.EventFD() as efd:
        efd.write(0)
        with pytest.raises(BlockingIOError):
            efd.read_nowait()


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: fdloop.EventFD(-1), ValueError, "initval"),
        (lambda: fdloop.EventFD(2**32), ValueError, "initval"),
        (lambda: fdloop.EventFD("1"), TypeError, "initval"),  # type: ignore[arg-type]
        (lambda: fdloop.EventFD(1.5), TypeError, "initval"),  # type: ignore[arg-type]
        (lambda: fdloop.EventFD(semaphore=1), TypeError, "semaphore"),  # type: ignore[arg-type]
    ],
)
def test_bad_constructor_arguments_are_named(call, error, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=words):
        call()


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (MAX_COUNTER + 1, ValueError), (True, TypeError), (2.0, TypeError),
     (None, TypeError)],
)
def test_bad_write_values_change_nothing(value: object, error: type[Exception]) -> None:
    with fdloop.EventFD(5) as efd:
        with pytest.raises(error, match="n must"):
            efd.write(value)  # type: ignore[arg-type]
        assert efd.read_nowait() == 5


def test_dup_shares_the_counter() -> None:
    with fdloop.EventFD() as efd, efd.dup() as other:
        assert other.fileno() != efd.fileno()
        other.write(6)
        assert efd.read_nowait() == 6


def linux_backend_only() -> None:
    if selected_name() != "linux":
        pytest.skip("adopting a kernel eventfd: the Linux backend's (kqueue: from_fd takes "
                    "back only what was detached in this process)")


def test_an_adopted_blocking_eventfd_never_blocks_on_an_overflowing_write() -> None:
    """(That from_fd leaves the sender's blocking flag alone and reads never block, here
    and for TimerFD and SignalFD: test_contract_fd.py.)"""
    linux_backend_only()
    fd = os.eventfd(0, os.EFD_CLOEXEC)  # blocking, as a C sender usually makes it
    theirs = os.dup(fd)
    try:
        with fdloop.EventFD.from_fd(fd) as efd, no_hang():
            os.eventfd_write(theirs, MAX_COUNTER - 1)
            with pytest.raises(fdloop.CounterOverflowError):
                efd.write(2)  # a blocking description would block here
            efd.write(1)
            assert os.eventfd_read(theirs) == MAX_COUNTER  # the sender reads as before
            with efd.dup() as other:
                with pytest.raises(BlockingIOError):
                    other.read_nowait()
            assert os.get_blocking(theirs)
    finally:
        os.close(theirs)


def test_repr_shows_state() -> None:
    with fdloop.EventFD(semaphore=True) as efd:
        assert f"fd={efd.fileno()}" in repr(efd)
        assert "semaphore" in repr(efd)


def _counter_crosses_processes() -> bool:
    """False on the kqueue backend's EVFILT_USER counter, which lives in this process."""
    [row] = [c for c in fdloop.capabilities() if c.primitive == "EventFD"]
    return not any("across processes" in missing for missing in row.missing)


@pytest.mark.parametrize("via", ["fork", "exec", "socket"])
def test_man_page_example_across_processes(via: str) -> None:
    """eventfd(2): the child writes 1 2 4 7 14, the parent reads 28."""
    if not _counter_crosses_processes():
        pytest.skip("this backend's counter is not shared across processes (capabilities)")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--via", via], capture_output=True, text=True,
        timeout=60, check=True,
    )
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("Child writing")] == [
        f"Child writing {n} to efd" for n in (1, 2, 4, 7, 14)
    ]
    assert lines[-1] == "Parent read 28 (0x1c) from efd"


# The forked child only writes to the counter and exits: an idle worker thread left by
# an earlier test (Python 3.12+ warns of any) cannot hold a lock it needs.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
async def test_counter_is_shared_with_a_forked_child() -> None:
    async with fdloop.EventFD() as efd:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for n in (1, 2, 4, 7, 14):
                    efd.write(n)
            except fdloop.UnsupportedOperation:
                code = 3  # the kqueue backend's clear refusal
            finally:
                os._exit(code)
        status = os.waitpid(pid, 0)[1]
        if not _counter_crosses_processes():
            assert os.WEXITSTATUS(status) == 3
            return
        assert await efd.read() == 28
