"""TimerFD against real kernel timers, on asyncio, uvloop and trio, on every backend.

These tests use the public API alone, so they hold for every backend (the Linux
backend's own facts are in test_timerfd_linux.py). Counts are checked against the
timer's own clock (``timer.now()``), never against how long something took.
"""

from __future__ import annotations

import contextlib
import math
import select
from fractions import Fraction

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name
from fdloop.primitives.timerfd import MAX_SECONDS

TIMEOUT = 10  # seconds: only to turn a hang into a failure


def expected_count(first: float, interval: float, at: float) -> int:
    """How many expirations a periodic timer first due at ``first`` has had by ``at``."""
    return 0 if at < first else math.floor((at - first) / interval) + 1


# -- arming, reading, disarming ---------------------------------------------------------


def test_a_new_timer_is_disarmed() -> None:
    with fdloop.TimerFD() as timer:
        assert timer.clock == "monotonic"
        assert timer.get() == (0.0, 0.0)
        with pytest.raises(BlockingIOError):
            timer.wait_nowait()
        assert "disarmed" in repr(timer)


@pytest.mark.parametrize("clock", ["monotonic", "realtime", "boottime"])
def test_get_reports_time_left_and_interval(clock: fdloop.primitives.timerfd.Clock) -> None:
    with fdloop.TimerFD(clock) as timer:
        assert timer.clock == clock
        timer.set(100, 2.5)
        remaining, interval = timer.get()
        assert 90 < remaining <= 100
        assert interval == 2.5
        assert "armed" in repr(timer)
        assert "every 2.5s" in repr(timer)


def test_absolute_get_is_relative_to_now() -> None:
    with fdloop.TimerFD("realtime") as timer:
        timer.set(timer.now() + 50, absolute=True)
        remaining, interval = timer.get()
        assert 40 < remaining <= 50
        assert interval == 0.0


async def test_one_shot_fires_once_then_is_disarmed() -> None:
    async with fdloop.TimerFD() as timer:
        timer.set(0.01)
        with anyio.fail_after(TIMEOUT):
            assert await timer.wait() == 1
        assert timer.get() == (0.0, 0.0)
        with anyio.move_on_after(0.05) as scope:
            await timer.wait()
        assert scope.cancelled_caught


@pytest.mark.parametrize("absolute", [False, True])
async def test_set_zero_fires_at_once(absolute: bool) -> None:
    """after=0 would mean "disarm" to the kernel; TimerFD makes it "as soon as possible"."""
    async with fdloop.TimerFD() as timer:
        timer.set(0, absolute=absolute)
        with anyio.fail_after(TIMEOUT):
            assert await timer.wait() == 1


async def test_late_reader_gets_every_missed_expiration() -> None:
    async with fdloop.TimerFD() as timer:
        first = timer.now() + 0.01
        timer.set(first, 0.01, absolute=True)
        await anyio.sleep(0.065)  # past at least 5 expirations: first + 0.00 .. 0.05
        before = timer.now()
        count = timer.wait_nowait()
        after = timer.now()
        assert count >= 5
        assert expected_count(first, 0.01, before) <= count <= expected_count(first, 0.01, after)


async def test_absolute_time_in_the_past_fires_with_the_missed_periods_counted() -> None:
    async with fdloop.TimerFD() as timer:
        first = timer.now() - 1.0
        timer.set(first, 0.1, absolute=True)
        before = timer.now()
        with anyio.fail_after(TIMEOUT):
            count = await timer.wait()
        after = timer.now()
        assert count >= 11
        assert expected_count(first, 0.1, before) <= count <= expected_count(first, 0.1, after)


def test_rearming_and_disarming_drop_unread_expirations() -> None:
    with fdloop.TimerFD() as timer:
        timer.set(0)
        until_fired(timer)
        timer.set(100)
        with pytest.raises(BlockingIOError):
            timer.wait_nowait()
        timer.set(0, 1)
        until_fired(timer)
        timer.disarm()
        assert timer.get() == (0.0, 0.0)
        with pytest.raises(BlockingIOError):
            timer.wait_nowait()


def until_fired(timer: fdloop.TimerFD) -> None:
    """Block (outside the loop's poll) until the timer has an unread expiration."""
    readable, _, _ = select.select([timer.fileno()], [], [], TIMEOUT)
    assert readable, "the timer did not fire"


async def test_set_wakes_a_task_waiting_on_a_disarmed_timer() -> None:
    async with fdloop.TimerFD() as timer, anyio.create_task_group() as tg:
        got: list[int] = []

        async def waiter() -> None:
            got.append(await timer.wait())

        tg.start_soon(waiter)
        await anyio.sleep(0.02)
        assert got == []
        timer.set(0.01)
        with anyio.fail_after(TIMEOUT):
            while not got:
                await anyio.sleep(0.005)
    assert got == [1]


@pytest.mark.parametrize("clock", ["monotonic", "boottime"])
async def test_periodic_ticks_do_not_drift_over_10000_expirations(
    clock: fdloop.primitives.timerfd.Clock,
) -> None:
    """The sum of the counts wait() returns matches the clock, read after read.

    A timer re-armed relative to each read (the usual drift bug) would fall behind by
    the read latency every time; with thousands of reads the shortfall is far past 1.
    """
    interval = 20e-6
    async with fdloop.TimerFD(clock) as timer:
        first = timer.now() + 0.001
        timer.set(first, interval, absolute=True)
        total = reads = 0
        with anyio.fail_after(TIMEOUT * 3):
            while total < 10_000:
                total += await timer.wait()
                reads += 1
        before = timer.now()
        with contextlib.suppress(BlockingIOError):
            total += timer.wait_nowait()
        after = timer.now()
    assert reads > 1
    low, high = expected_count(first, interval, before), expected_count(first, interval, after)
    assert low - 1 <= total <= high + 1, (low, total, high, reads)


# -- many tasks, cancellation, closing --------------------------------------------------


async def test_cancelled_wait_consumes_no_expirations() -> None:
    async with fdloop.TimerFD() as timer:
        timer.set(0)
        until_fired(timer)
        with anyio.move_on_after(0) as scope:  # cancelled at wait()'s first checkpoint
            await timer.wait()
        assert scope.cancelled_caught
        assert timer.wait_nowait() == 1

        timer.disarm()
        async with anyio.create_task_group() as tg:
            waiter_scope = anyio.CancelScope()

            async def waiter() -> None:
                with waiter_scope:
                    await timer.wait()

            tg.start_soon(waiter)
            await anyio.sleep(0.02)
            timer.set(0)
            until_fired(timer)  # readable now, but the waiter is cancelled before it runs
            waiter_scope.cancel()
        assert waiter_scope.cancelled_caught
        assert timer.wait_nowait() == 1


async def test_one_expiration_goes_to_one_of_many_waiters_and_close_wakes_the_rest() -> None:
    timer = fdloop.TimerFD()
    got: list[int] = []
    closed: list[BaseException] = []

    async def waiter() -> None:
        try:
            got.append(await timer.wait())
        except fdloop.ClosedResourceError as exc:
            closed.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(waiter)
        await anyio.sleep(0.02)
        timer.set(0.01)
        with anyio.fail_after(TIMEOUT):
            while not got:
                await anyio.sleep(0.005)
        await anyio.sleep(0.05)
        timer.close()
    assert got == [1]
    assert len(closed) == 3
    assert isinstance(closed[0], anyio.ClosedResourceError)


# -- bad input: named, and the previous setting untouched ----------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"after": math.nan}, ValueError, "after must be finite"),
        ({"after": math.inf}, ValueError, "after must be finite"),
        ({"after": -1}, ValueError, "after must be >= 0"),
        ({"after": -1e-9}, ValueError, "after must be >= 0"),
        ({"after": MAX_SECONDS + 1}, ValueError, "after must be <="),
        ({"after": float(2**63)}, ValueError, "after must be <="),
        ({"after": 10**400}, ValueError, "after must be <="),
        ({"after": True}, TypeError, "after must be a number"),
        ({"after": "1"}, TypeError, "after must be a number"),
        ({"after": None}, TypeError, "after must be a number"),
        ({"after": 1, "interval": math.nan}, ValueError, "interval must be finite"),
        ({"after": 1, "interval": -0.5}, ValueError, "interval must be >= 0"),
        ({"after": 1, "interval": 1e12}, ValueError, "interval must be <="),
        ({"after": 1, "interval": False}, TypeError, "interval must be a number"),
        ({"after": 1, "interval": b"1"}, TypeError, "interval must be a number"),
        ({"after": 1, "absolute": 1}, TypeError, "absolute must be a bool"),
        ({"after": 1, "absolute": "yes"}, TypeError, "absolute must be a bool"),
        ({"after": 1, "cancel_on_set": 1}, TypeError, "cancel_on_set must be a bool"),
        ({"after": 1, "absolute": True, "cancel_on_set": True}, ValueError,
         "cancel_on_set needs the realtime clock"),
    ],
)
def test_bad_set_arguments_are_named_and_change_nothing(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with fdloop.TimerFD("monotonic") as timer:
        timer.set(100, 5)
        with pytest.raises(error, match=words):
            timer.set(**kwargs)  # type: ignore[arg-type]
        remaining, interval = timer.get()
        assert 90 < remaining <= 100
        assert interval == 5


def test_cancel_on_set_needs_an_absolute_realtime_setting() -> None:
    with fdloop.TimerFD("realtime") as timer:
        timer.set(100, 5)
        with pytest.raises(ValueError, match="cancel_on_set needs absolute=True"):
            timer.set(timer.now() + 1, cancel_on_set=True)
        assert timer.get()[1] == 5
        try:
            timer.set(timer.now() + 100, absolute=True, cancel_on_set=True)
        except fdloop.UnsupportedOperation:  # a backend that cannot see the clock jump
            assert timer.get()[1] == 5
        else:
            assert 90 < timer.get()[0] <= 100
    with fdloop.TimerFD("boottime") as timer:
        with pytest.raises(ValueError, match="cancel_on_set needs the realtime clock"):
            timer.set(timer.now() + 1, absolute=True, cancel_on_set=True)
        assert timer.get() == (0.0, 0.0)


@pytest.mark.parametrize(
    ("clock", "error"),
    [("utc", ValueError), ("MONOTONIC", ValueError), ("", ValueError), (1, TypeError),
     (None, TypeError)],
)
def test_unknown_clocks_are_refused(clock: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="clock"):
        fdloop.TimerFD(clock)  # type: ignore[arg-type]


def test_extreme_but_valid_times_are_accepted() -> None:
    with fdloop.TimerFD() as timer:
        timer.set(MAX_SECONDS, MAX_SECONDS)
        remaining, interval = timer.get()
        assert remaining > MAX_SECONDS / 2
        assert interval == pytest.approx(MAX_SECONDS)  # the kernel may saturate it a bit up
        timer.set(Fraction(1, 3), 1e-12)  # type: ignore[arg-type]  # below 1 ns: 1 ns
        assert timer.get()[1] == 1e-9


# -- handing the fd over (detach and from_fd round trips: test_contract.py) -----------------


def test_from_fd_refuses_an_eventfd() -> None:
    """(A pipe, a closed fd and a non-int: tests/primitives/test_contract.py.)"""
    if selected_name() != "linux":
        pytest.skip("elsewhere an EventFD's fd is a kqueue, like a timer's")
    with fdloop.EventFD() as efd, pytest.raises(fdloop.NotThisKindOfFD, match="eventfd"):
        fdloop.TimerFD.from_fd(efd.fileno())


async def test_set_get_disarm_and_wait_nowait_from_another_thread() -> None:
    """The one-syscall methods are safe from any thread: a worker arms the timer the
    loop awaits, and reads it; after close they raise ClosedResourceError there too."""
    timer = fdloop.TimerFD()
    await anyio.to_thread.run_sync(timer.set, 0.01)
    with anyio.fail_after(10):
        assert await timer.wait() >= 1
    await anyio.to_thread.run_sync(timer.set, 100)
    remaining, interval = await anyio.to_thread.run_sync(timer.get)
    assert 0 < remaining <= 100 and interval == 0
    await anyio.to_thread.run_sync(timer.disarm)
    assert timer.get() == (0.0, 0.0)
    with pytest.raises(BlockingIOError):
        await anyio.to_thread.run_sync(timer.wait_nowait)
    timer.close()
    for method in (timer.disarm, timer.get, timer.wait_nowait, timer.now):
        with pytest.raises(fdloop.ClosedResourceError):
            await anyio.to_thread.run_sync(method)
