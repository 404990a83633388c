"""The Linux backend's own timerfd facts: both syscall paths, sharing the fd with a
child process, and real wall-clock jumps (``cancel_on_set`` → ClockChanged).

Every test here skips unless the Linux backend is in force.
"""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name

from .test_timerfd import TIMEOUT, until_fired


@pytest.fixture
def linux_backend() -> None:
    """Skip unless the Linux backend is in force (read at run time: tests may switch it)."""
    if selected_name() != "linux":
        pytest.skip("checks the Linux backend's own timerfd")


def test_a_child_process_adopts_the_timer_and_reads_its_count(linux_backend: None) -> None:
    with fdloop.TimerFD("boottime") as timer:
        timer.set(0)
        until_fired(timer)
        child = textwrap.dedent(f"""
            import fdloop
            timer = fdloop.TimerFD.from_fd({timer.fileno()})
            print(timer.clock, timer.wait_nowait())
            timer.close()
        """)
        result = subprocess.run(
            [sys.executable, "-c", child], pass_fds=[timer.fileno()], capture_output=True,
            text=True, timeout=60, check=True,
        )
        assert result.stdout.split() == ["boottime", "1"]
        with pytest.raises(BlockingIOError):  # one kernel timer: the child took the count
            timer.wait_nowait()


def test_every_syscall_implementation_does_the_same(linux_backend: None) -> None:
    """3.13+ uses os.timerfd_*; older Pythons ctypes. Check each one this Python has."""
    from fdloop.backends.linux.timerfd import LinuxTimerFD, available_calls

    names = [calls.name for calls in available_calls()]
    assert names == (["os", "ctypes"] if sys.version_info >= (3, 13) else ["ctypes"])
    for calls in available_calls():
        handle = LinuxTimerFD.create("realtime", calls)
        try:
            start = handle.now()
            handle.settime(start + 50 * 10**9, 2 * 10**9 + 7, absolute=True, cancel_on_set=True)
            value, interval = handle.gettime()
            assert 40 * 10**9 < value <= 50 * 10**9, calls.name
            assert interval == 2 * 10**9 + 7, calls.name
            handle.settime(1, 0, absolute=False, cancel_on_set=False)
            assert select.select([handle.fileno()], [], [], TIMEOUT)[0], calls.name
            assert handle.read() == 1, calls.name
            with pytest.raises(BlockingIOError):
                handle.read()
        finally:
            handle.close()


@pytest.fixture
def wall_clock_jump(linux_backend: None) -> Callable[[], None]:
    """A callable that sets CLOCK_REALTIME to its own current value.

    The kernel counts any clock_settime as a discontinuous change (the offset between
    the realtime and monotonic clocks moves by the call's own latency, a few hundred ns,
    which is all the wall clock loses). Needs CAP_SYS_TIME; skips clearly without it.
    """

    def jump() -> None:
        time.clock_settime_ns(time.CLOCK_REALTIME, time.clock_gettime_ns(time.CLOCK_REALTIME))

    try:
        jump()
    except PermissionError:
        pytest.skip("setting CLOCK_REALTIME needs CAP_SYS_TIME (run as root to test this)")
    return jump


async def test_wall_clock_jump_raises_clock_changed_and_the_timer_stays_armed(
    wall_clock_jump: Callable[[], None],
) -> None:
    async with fdloop.TimerFD("realtime") as timer, fdloop.TimerFD("realtime") as unwatched:
        timer.set(timer.now() + 100, absolute=True, cancel_on_set=True)
        unwatched.set(timer.now() + 100, absolute=True)
        wall_clock_jump()
        with anyio.fail_after(TIMEOUT), pytest.raises(fdloop.ClockChanged):
            await timer.wait()
        assert 90 < timer.get()[0] <= 100
        with pytest.raises(BlockingIOError):  # told once, then back to waiting
            timer.wait_nowait()
        with pytest.raises(BlockingIOError):  # without cancel_on_set, nothing to tell
            unwatched.wait_nowait()


async def test_periodic_timer_keeps_ticking_after_clock_changed(
    wall_clock_jump: Callable[[], None],
) -> None:
    """The kernel leaves an already-expired periodic timer stopped after ECANCELED."""
    async with fdloop.TimerFD("realtime") as timer:
        timer.set(timer.now(), 0.01, absolute=True, cancel_on_set=True)
        until_fired(timer)
        wall_clock_jump()
        with pytest.raises(fdloop.ClockChanged):
            timer.wait_nowait()
        assert timer.get()[1] == 0.01
        assert 0 < timer.get()[0] <= 0.01
        with anyio.fail_after(TIMEOUT):
            assert await timer.wait() >= 1


def test_set_after_an_unread_clock_change_still_applies(
    wall_clock_jump: Callable[[], None],
) -> None:
    """timerfd_settime reports ECANCELED here but installs the new setting anyway."""
    with fdloop.TimerFD("realtime") as timer:
        timer.set(timer.now() + 100, absolute=True, cancel_on_set=True)
        wall_clock_jump()
        timer.set(timer.now() + 200, 3, absolute=True, cancel_on_set=True)
        remaining, interval = timer.get()
        assert 190 < remaining <= 200
        assert interval == 3
        with pytest.raises(BlockingIOError):
            timer.wait_nowait()
