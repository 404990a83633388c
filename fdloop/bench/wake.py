"""wake: another thread wakes a task on the loop, one wake-up at a time (ping-pong).

The thread stamps the time and fires; the loop task, on waking, takes the stamp and
hands the turn back through a ``queue.SimpleQueue`` (the same hand-back for every
contender). Latency is fire → task running; wake-ups/s is round trips per second; CPU
counts both threads.

Each run measures twice: unpinned (the scheduler puts the two threads where it likes,
usually on two CPUs) and pinned (both threads on one CPU with ``os.sched_setaffinity``,
where every wake-up is a context switch and the cost of the wake path shows most).
Unpinned ratios swing with the machine's load.

The pinned phase also runs both threads under ``SCHED_BATCH``, which takes away wake-up
preemption (sched(7): a batch thread is not run in place of the running one when it
wakes). Without it, whether a woken thread displaces the one that woke it is decided
afresh in each process, and a run settles in one of two regimes: on this machine 35k or
45k wake-ups/s for the same EventFD code, 26k or 37k for ``call_soon_threadsafe``, so
the ratio of two medians of three ranged from 1.0 to 2.6 between identical runs. Under
``SCHED_BATCH`` each round trip is exactly two context switches, and what is left to
compare is the wake path itself. The loops' own calls then agree within a few per cent
between runs; EventFD's figure still moves (on asyncio 37k to 53k/s between the three
runs of one default bench, 2026-12-04), so its ratio is read as a median of several.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from .probe import Probe, latency_summary, percentile
from .registry import Column, Params, Workload, contender, workload

_unpinned = latency_summary("wake-ups", "wakeups_per_s", "cpu_us_per_wakeup")


def _summarize(raw: dict[str, Any], params: Params) -> dict[str, float]:
    figures = _unpinned(raw, params)
    pinned: list[float] = raw["pinned_latencies"]
    if len(pinned) != params["n"]:
        raise RuntimeError(f"expected {params['n']} pinned wake-ups, saw {len(pinned)}")
    figures["pinned_wakeups_per_s"] = params["n"] / raw["pinned_wall_s"]
    figures["pinned_p50_us"] = percentile(pinned, 0.50) * 1e6
    return figures


WAKE = workload(
    Workload(
        name="wake",
        title="cross-thread wake-ups",
        defaults={"n": 5000, "repeats": 3},
        quick={"n": 1500, "repeats": 1},
        columns=(
            Column("wakeups_per_s", "wake-ups/s", "higher"),
            Column("p50_us", "p50 µs", "lower", digits=1),
            Column("p99_us", "p99 µs", "lower", digits=1),
            Column("cpu_us_per_wakeup", "CPU µs/wake-up", "lower", digits=1),
            Column("pinned_wakeups_per_s", "wake-ups/s on one CPU", "higher"),
            Column("pinned_p50_us", "p50 µs on one CPU", "lower", digits=1),
        ),
        summarize=_summarize,
        plot=("wakeups_per_s", "pinned_wakeups_per_s"),
    )
)


@contextlib.contextmanager
def _one_cpu() -> Iterator[None]:
    """Pin the calling thread, and the threads it starts meanwhile, to one CPU, under
    ``SCHED_BATCH`` (see the module docstring).

    Where the OS has no ``sched_setaffinity`` (macOS, the BSDs' Python) nothing is
    pinned, and the "one CPU" figures are a second unpinned run."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)  # 0: the calling thread, on Linux
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setaffinity(0, {min(allowed)})
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)
        os.sched_setaffinity(0, allowed)


async def _ping_pong(
    probe: Probe, fire: Callable[[], object], wait: Callable[[], Awaitable[object]]
) -> dict[str, Any]:
    """N round trips unpinned (measured by the probe), then N with both threads on one
    CPU (timed here)."""
    n = probe.params["n"]
    latencies = await _rounds(n, probe, fire, wait)
    with _one_cpu():
        began = time.perf_counter()
        pinned = await _rounds(n, None, fire, wait)
        wall = time.perf_counter() - began
    return {"latencies": latencies, "pinned_latencies": pinned, "pinned_wall_s": wall}


async def _rounds(
    n: int,
    probe: Probe | None,
    fire: Callable[[], object],
    wait: Callable[[], Awaitable[object]],
) -> list[float]:
    """``n`` rounds of: loop hands the turn over, thread stamps + ``fire()``, loop
    ``wait()``s; the probe (if any) brackets them. The thread is started here, so it
    takes the caller's CPU affinity."""
    turn: queue.SimpleQueue[None] = queue.SimpleQueue()
    stamps = [0.0] * n

    def thread_side() -> None:
        for i in range(n):
            turn.get()
            stamps[i] = time.perf_counter()
            fire()

    latencies: list[float] = []
    thread = threading.Thread(target=thread_side, daemon=True)
    thread.start()
    if probe is not None:
        probe.start()
    for i in range(n):
        turn.put(None)
        await wait()
        latencies.append(time.perf_counter() - stamps[i])
    if probe is not None:
        probe.stop()
    thread.join()
    return latencies


@contender("wake", "fdloop EventFD", loops=("asyncio", "uvloop", "trio"))
async def fdloop_wake(probe: Probe) -> dict[str, Any]:
    import fdloop

    with fdloop.EventFD() as efd:
        return await _ping_pong(probe, efd.write, efd.read)


@contender("wake", "call_soon_threadsafe", loops=("asyncio", "uvloop"))
async def call_soon_threadsafe_wake(probe: Probe) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    async def wait() -> None:
        await event.wait()
        event.clear()

    return await _ping_pong(probe, lambda: loop.call_soon_threadsafe(event.set), wait)


@contender("wake", "TrioToken.run_sync_soon", loops=("trio",))
async def trio_token_wake(probe: Probe) -> dict[str, Any]:
    import trio

    token = trio.lowlevel.current_trio_token()
    events = [trio.Event()]

    async def wait() -> None:
        await events[0].wait()
        events[0] = trio.Event()

    def set_current() -> None:
        events[0].set()

    return await _ping_pong(probe, lambda: token.run_sync_soon(set_current), wait)
