"""wake: another thread wakes a task on the loop, one wake-up at a time (ping-pong).

The thread stamps the time and fires; the loop task, on waking, takes the stamp and
hands the turn back through a ``queue.SimpleQueue`` (the same hand-back for every
contender). Latency is fire → task running; wake-ups/s is round trips per second; CPU
counts both threads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .probe import Probe, latency_summary
from .registry import Column, Workload, contender, workload

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
        ),
        summarize=latency_summary("wake-ups", "wakeups_per_s", "cpu_us_per_wakeup"),
        plot=("wakeups_per_s",),
    )
)


async def _ping_pong(
    probe: Probe, fire: Callable[[], object], wait: Callable[[], Awaitable[object]]
) -> dict[str, Any]:
    """N rounds of: loop hands the turn over, thread stamps + ``fire()``, loop ``wait()``s."""
    n = probe.params["n"]
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
    probe.start()
    for i in range(n):
        turn.put(None)
        await wait()
        latencies.append(time.perf_counter() - stamps[i])
    probe.stop()
    thread.join()
    return {"latencies": latencies}


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
