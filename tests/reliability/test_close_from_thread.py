"""close() from another thread while a task waits, and one object in two loops at once.

A close made outside the loop's thread used to change the loop's registrations behind
its back and not wake it: asyncio and uvloop woke the waiting task only when something
else woke the loop, trio never. Now the close runs in the loop's thread (through
``call_soon_threadsafe`` / ``TrioToken.run_sync_soon``) and returns once it has. The
main task here waits only with a hang guard, so nothing else wakes the loop: a waiter
that is not woken by the close itself fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio

import fdloop
from fdloop import _aio
from fdloop.primitives import reaper

from ..leaks import stat_fields

HANG_GUARD = 5.0


Made = tuple[Any, Callable[[Any], Any], Callable[[], None]]
"""The object, how a task waits on it, what the test closes afterwards."""


def _nothing() -> None:
    pass


def _eventfd() -> Made:
    return fdloop.EventFD(), lambda obj: obj.read(), _nothing


def _timerfd() -> Made:
    return fdloop.TimerFD(), lambda obj: obj.wait(), _nothing


def _signalfd() -> Made:
    return fdloop.SignalFD({signal.SIGUSR2}), lambda obj: obj.read(), _nothing


def _processfd() -> Made:
    return fdloop.spawn(["sleep", "60"]), lambda obj: obj.wait(), _nothing


def _pipe_stream() -> Made:
    read_end, write_end = os.pipe()
    return fdloop.PipeReceiveStream(read_end), lambda obj: obj.receive(), (
        lambda: os.close(write_end)
    )


MAKERS = {
    "EventFD": _eventfd, "TimerFD": _timerfd, "SignalFD": _signalfd,
    "ProcessFD": _processfd, "PipeReceiveStream": _pipe_stream,
}


async def parked(waiter: _aio.FDWaiter) -> None:
    for _ in range(1000):
        if waiter.waiting:
            return
        await anyio.sleep(0)
    raise AssertionError("the task never started waiting")


@pytest.mark.filterwarnings("ignore::fdloop.SignalDeliveryWarning")  # earlier tests' threads
@pytest.mark.parametrize("kind", list(MAKERS))
async def test_close_from_another_thread_wakes_the_waiting_task_at_once(kind: str) -> None:
    obj, wait, clean_up = MAKERS[kind]()
    woke = anyio.Event()
    outcome: list[str] = []

    async def waiter() -> None:
        try:
            await wait(obj)
            outcome.append("returned")
        except fdloop.ClosedResourceError:
            outcome.append("ClosedResourceError")
        woke.set()

    closed_when_close_returned: list[bool] = []

    def close_in_thread() -> None:
        # Long enough for the loop to be asleep in its poll (only the close can wake it
        # then); the close itself is never timed.
        time.sleep(0.05)
        obj.close()
        closed_when_close_returned.append(obj.closed)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(waiter)
        await parked(obj._waiter)
        thread = threading.Thread(target=close_in_thread)
        thread.start()
        started = time.monotonic()
        with anyio.move_on_after(HANG_GUARD):  # the only other thing that wakes the loop
            await woke.wait()
        # A waiter that the close did not wake is woken by the guard's own wake-up.
        assert time.monotonic() - started < HANG_GUARD, "the close did not wake the loop"
        await anyio.to_thread.run_sync(thread.join)
    assert outcome == ["ClosedResourceError"]
    assert closed_when_close_returned == [True]
    clean_up()


async def test_close_from_another_thread_with_nobody_waiting_closes_at_once() -> None:
    efd = fdloop.EventFD()
    efd.write(1)
    assert await efd.read() == 1  # (asyncio may keep this wait's registration)
    await anyio.to_thread.run_sync(efd.close)
    assert efd.closed
    with pytest.raises(fdloop.ClosedResourceError):
        await efd.read()


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is a test dependency
    pass


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_close_from_a_thread_while_the_loop_is_stopped_closes_there(loop_name: str) -> None:
    # A loop that is not running polls nothing: the thread closes by itself (it must not
    # wait for a loop that may never run again), and the task learns it on the next run.
    loop = LOOPS[loop_name]()
    try:
        efd = fdloop.EventFD()
        task = loop.create_task(efd.read())
        loop.run_until_complete(asyncio.sleep(0.01))
        assert efd._waiter.waiting == 1
        thread = threading.Thread(target=efd.close)
        thread.start()
        thread.join(HANG_GUARD)
        assert not thread.is_alive(), "close() waited for a loop that is not running"
        assert efd.closed
        with pytest.raises(fdloop.ClosedResourceError):
            loop.run_until_complete(asyncio.wait_for(task, HANG_GUARD))
    finally:
        loop.close()


def _await_in_thread(run: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("second", ["trio", "asyncio"])
def test_a_second_loop_awaiting_the_same_object_at_once_gets_a_clear_error(
    second: str,
) -> None:
    # Each trio run (each asyncio loop) polls its own fds: a task of another run can
    # neither be woken by this run's wait nor share it. trio used to fail an assertion.
    efd = fdloop.EventFD()
    first_waiting = threading.Event()
    results: list[int] = []

    async def first() -> None:
        async with trio.open_nursery() as nursery:
            async def read() -> None:
                results.append(await efd.read())

            nursery.start_soon(read)
            while not efd._waiter.waiting:
                await trio.sleep(0)
            first_waiting.set()

    async def again() -> None:
        await efd.read()

    first_thread, first_errors = _await_in_thread(lambda: trio.run(first))
    assert first_waiting.wait(HANG_GUARD)
    runner: Callable[[], None] = (
        (lambda: trio.run(again)) if second == "trio" else (lambda: asyncio.run(again()))
    )
    second_thread, second_errors = _await_in_thread(runner)
    second_thread.join(HANG_GUARD)
    efd.write(5)
    first_thread.join(HANG_GUARD)
    efd.close()
    assert not first_errors and results == [5]
    assert len(second_errors) == 1 and isinstance(second_errors[0], RuntimeError)
    assert "at once" in str(second_errors[0]), second_errors[0]


async def test_a_sweep_from_another_thread_leaves_a_loop_watched_child_to_its_loop() -> None:
    # A closed daemon child's process fd is watched by the reaper from this loop.
    # A sweep in another thread (a spawn there, a collection) that reaped it and closed
    # the fd would end that watch from the wrong thread: trio's system task then stayed
    # parked on the closed number, and the next wait on a reused number failed.
    proc = fdloop.spawn(["sleep", "60"], daemon=True)  # close() leaves it running
    pid, number = proc.pid, proc.fileno()
    proc.close()
    assert reaper.pending() == 1
    for _ in range(10):
        await anyio.sleep(0)  # the loop's watch is parked on the process fd now
    # From the kill on, the loop is kept from running (no await) until the sweep is
    # over, so that its own watch cannot reap the child first.
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + HANG_GUARD
    while stat_fields(pid)[0] != "Z" and time.monotonic() < deadline:  # type: ignore[index]
        time.sleep(0.001)
    sweeping = threading.Thread(target=reaper.sweep)
    sweeping.start()
    sweeping.join()
    read_end, write_end = os.pipe()  # (the lowest free number: the pidfd's, if closed)
    assert read_end == number or reaper.pending() == 1
    try:
        waiter = _aio.FDWaiter(read_end)
        os.write(write_end, b"x")
        with anyio.fail_after(HANG_GUARD):
            await waiter.wait()
            while reaper.pending():  # the loop's own watch reaps the child
                await anyio.sleep(0.001)
        waiter.close()
    finally:
        os.close(read_end)
        os.close(write_end)



def test_a_write_from_another_thread_never_reaches_the_number_a_close_freed(
    tmp_path: Any,
) -> None:
    # EventFD.write() is safe from any thread, and so is close(). A write that had
    # checked "open" when the close freed the fd number used to make its syscall on
    # whatever the number named next: here a regular file opened right after the close,
    # which then held the counter's 8 bytes (about one round in four). (No loop takes
    # part: the close runs in the caller's thread, as for an EventFD never awaited.)
    current: list[fdloop.EventFD | None] = [None]
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            efd = current[0]
            if efd is None:
                continue
            # (closed: what write() must say; full: the counter is capped)
            with contextlib.suppress(fdloop.ClosedResourceError, OverflowError):
                efd.write(0x4142434445464748)

    path = tmp_path / "bystander"
    writers = [threading.Thread(target=hammer) for _ in range(2)]
    for writer in writers:
        writer.start()
    rounds = written = 0
    try:
        end = time.monotonic() + 5
        while rounds < 40 and time.monotonic() < end:
            efd = fdloop.EventFD()
            current[0] = efd
            time.sleep(0.0002)  # (the writers get the GIL meanwhile)
            efd.close()  # while a writer may be between its check and its syscall
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            try:
                current[0] = None
                time.sleep(0.0002)
                written += os.fstat(fd).st_size != 0
            finally:
                os.close(fd)
            rounds += 1
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert rounds >= 10
    assert written == 0, f"{written} of {rounds} rounds wrote into the file"
