"""Load: many children, many writes, many signals — and nothing lost, nothing leaked.

All of these are ``stress`` tests: full size when FDLOOP_STRESS_SCALE is unset (the
numbers in RELIABILITY.md), a tenth in CI. Each runs on asyncio, uvloop and trio; each
checks its own invariants exactly (counts, values, statuses) and the autouse fixture
checks that no fd and no child (zombies included) is left afterwards.
"""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop import spawn
from fdloop.primitives import reaper

from ..helpers import scaled
from ..leaks import children_of, open_fds
from .conditions import on_backend

pytestmark = pytest.mark.stress

LIVENESS = 120.0  # bound on any single wait: catches hangs, never judges speed


def threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


def threads_not_trios() -> int:
    """Threads of this process, minus trio's own (anyio's pytest plugin runs trio in guest
    mode: its epoll_wait runs in a "Trio thread", which stays cached for 10 s after)."""
    trio_threads = [t for t in threading.enumerate() if t.name.startswith("Trio thread")]
    return threads_now() - len(trio_threads)


async def no_children_left() -> None:
    with anyio.fail_after(LIVENESS):
        while children_of(os.getpid()) or reaper.pending():
            await anyio.sleep(0.01)


# -- 10,000 spawn/wait cycles with random cancellation ------------------------------------

SLEEPER = ["sleep", "30"]


async def cycle_wait(rng: random.Random, outcomes: Counter[str]) -> None:
    async with spawn(["true"]) as proc:
        assert (await proc.wait()).returncode == 0
    outcomes["waited"] += 1


async def cycle_cancel_waiter(rng: random.Random, outcomes: Counter[str]) -> None:
    async with spawn(SLEEPER, kill_timeout=5) as proc:
        with anyio.move_on_after(rng.choice((0, 0.001, 0.01))):
            await proc.wait()
            pytest.fail("sleep 30 exited")
        assert proc.returncode is None  # the cancelled wait took nothing
    assert proc.returncode == -signal.SIGTERM  # aclose: kill_signal, then the reap
    outcomes["waiter cancelled"] += 1


async def cycle_cancel_owner(rng: random.Random, outcomes: Counter[str]) -> None:
    with anyio.CancelScope() as scope:
        async with spawn(SLEEPER) as proc:
            if rng.random() < 0.5:
                scope.cancel()  # before the first wait
            else:
                await anyio.sleep(0)
                scope.cancel()
            await proc.wait()
    assert scope.cancelled_caught
    assert proc.closed and proc.returncode == -signal.SIGTERM
    outcomes["owner cancelled"] += 1


async def cycle_close_under_waiters(rng: random.Random, outcomes: Counter[str]) -> None:
    proc = spawn(SLEEPER)
    woken: list[str] = []

    async def waiter() -> None:
        try:
            await proc.wait()
        except fdloop.ClosedResourceError:
            woken.append("closed")

    async with anyio.create_task_group() as tg:
        for _ in range(rng.randint(1, 3)):
            tg.start_soon(waiter)
        await anyio.sleep(0)
        proc.close()  # sync close: SIGKILL now, the reaper reaps through the loop
    assert woken and set(woken) == {"closed"}
    outcomes["closed under waiters"] += 1


async def cycle_dropped(rng: random.Random, outcomes: Counter[str]) -> None:
    proc = spawn(SLEEPER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del proc  # garbage: SIGKILL, handed to the reaper
    await anyio.sleep(0)
    outcomes["dropped"] += 1


CYCLES: list[Callable[[random.Random, Counter[str]], Awaitable[None]]] = [
    cycle_wait, cycle_wait, cycle_wait, cycle_cancel_waiter, cycle_cancel_owner,
    cycle_close_under_waiters, cycle_dropped,
]


async def test_spawn_wait_cycles_with_random_cancellation() -> None:
    total = scaled(10_000, 70)
    rng = random.Random(7)
    outcomes: Counter[str] = Counter()
    async with spawn(["true"]) as warm_up:  # the loop's own per-run fds exist from here on
        await warm_up.wait()
    fds_before = open_fds()
    batch = 16
    with anyio.fail_after(LIVENESS * 10):
        for start in range(0, total, batch):
            async with anyio.create_task_group() as tg:
                for _ in range(min(batch, total - start)):
                    tg.start_soon(rng.choice(CYCLES), random.Random(rng.random()), outcomes)
    await no_children_left()
    assert sum(outcomes.values()) == total, outcomes
    assert len(outcomes) == 5, outcomes
    assert open_fds() == fds_before
    assert threads_not_trios() == 1, f"fdloop must not start threads: {threading.enumerate()}"
    print(f"\n{total} spawn/wait cycles: {dict(outcomes)}")


# -- 2,000 children alive at once -----------------------------------------------------------


def limit_leaving_free(k: int) -> int:
    """The RLIMIT_NOFILE soft limit below which exactly ``k`` fd numbers are free."""
    opened, free, fd = open_fds(), 0, 0
    while True:
        if fd not in opened:
            free += 1
            if free == k:
                return fd + 1
        fd += 1


async def test_thousands_of_children_alive_at_once() -> None:
    wanted = scaled(2000, 40)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    procs: list[fdloop.ProcessFD] = []
    try:
        # Start below what is needed, as on a system whose soft limit is 1024: spawn must
        # fail with an error that names the limit, and raise_fd_limit must cure it.
        # What one child costs in fds on this backend (Linux: its pidfd).
        before = len(open_fds())
        procs.append(spawn(SLEEPER))
        per_child = len(open_fds()) - before
        enough = limit_leaving_free(wanted * per_child + 64)
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (limit_leaving_free(wanted // 2 * per_child), hard)
        )
        with pytest.raises(OSError) as refused:
            while len(procs) < wanted:
                procs.append(spawn(SLEEPER))
        assert refused.value.errno == errno.EMFILE
        assert "RLIMIT_NOFILE" in str(refused.value)
        assert len(procs) == 1 + wanted // 2  # refused exactly when the fds ran out
        refused_at = len(procs)
        assert fdloop.raise_fd_limit(enough) == enough
        while len(procs) < wanted:
            procs.append(spawn(SLEEPER))
        live = children_of(os.getpid())
        assert len(live) == wanted and all(state != "Z" for _pid, state in live)
        statuses: list[int | None] = []

        async def await_one(proc: fdloop.ProcessFD) -> None:
            statuses.append((await proc.wait()).returncode)

        with anyio.fail_after(LIVENESS):
            async with anyio.create_task_group() as tg:
                for proc in procs:  # one waiter per child, all parked on the loop at once
                    tg.start_soon(await_one, proc)
                await anyio.sleep(0.05)
                for proc in procs:
                    proc.kill()
        assert statuses == [-signal.SIGKILL] * wanted
        print(f"\n{wanted} children alive at once; spawn #{refused_at + 1} refused with "
              f"EMFILE naming RLIMIT_NOFILE, raise_fd_limit({enough}) let the rest start")
    finally:
        for proc in procs:
            proc.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await no_children_left()


# -- 100,000 EventFD writes from several threads ---------------------------------------------


@pytest.mark.parametrize("semaphore", [False, True], ids=["counter", "semaphore"])
async def test_eventfd_writes_from_threads_lose_nothing(semaphore: bool) -> None:
    writes, writers, readers = scaled(100_000, 1000), 4, 3
    rng = random.Random(11)
    plans = [
        [1 if semaphore else rng.randint(1, 1000) for _ in range(writes // writers)]
        for _ in range(writers)
    ]
    expected = sum(map(sum, plans))
    taken: list[int] = []
    with fdloop.EventFD(semaphore=semaphore) as efd:

        def writer(plan: list[int]) -> None:
            for n in plan:
                efd.write(n)

        async def reader() -> None:
            while True:
                value = await efd.read()  # a read cancelled at the end takes nothing
                taken.append(value)

        threads = [threading.Thread(target=writer, args=(plan,)) for plan in plans]
        with anyio.fail_after(LIVENESS):
            async with anyio.create_task_group() as tg:
                for _ in range(readers):
                    tg.start_soon(reader)
                for thread in threads:
                    thread.start()
                while any(t.is_alive() for t in threads) or sum(taken) < expected:
                    await anyio.sleep(0.005)
                tg.cancel_scope.cancel()
        for thread in threads:
            thread.join()
        with pytest.raises(BlockingIOError):
            efd.read_nowait()  # nothing invented either
    assert sum(taken) == expected
    if semaphore:
        assert len(taken) == expected and set(taken) == {1}
    print(f"\n{writes} writes from {writers} threads adding up to {expected}, taken by "
          f"{readers} reader tasks in {len(taken)} reads: nothing lost, nothing extra")


# -- a storm of real-time signals from another process ---------------------------------------

STORM = Path(__file__).with_name("signal_storm.py")


@on_backend("linux")  # the fresh interpreter has no kqueue emulator to stand in
@pytest.mark.parametrize("library", ["asyncio", "asyncio+uvloop", "trio"])
def test_realtime_signal_storm_is_read_exactly_once(library: str) -> None:
    count = scaled(20_000, 400)
    done = subprocess.run(
        [sys.executable, str(STORM), library, str(count)], capture_output=True,
        timeout=LIVENESS * 2, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().splitlines()[-1])
    assert result["strangers"] == [] and result["extra"] is None, result
    assert result["values"] == list(range(count)), "a signal was lost or read twice"
    assert result["in_order"], "queued instances of one signal came out of order"
    assert result["sender_returncode"] == 0 and result["threads"] == 1
    print(f"\n{library}: {count} real-time signals, each read once; the sender found the "
          f"queue full {result['backoffs']} times")
