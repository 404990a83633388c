"""timer: N periodic ticks of 1 ms, observed by a task on the loop.

Tick i is due at ``t0 + i * period`` on CLOCK_MONOTONIC. Each observed tick's lateness
is "seen at" minus "due at"; a timerfd read that reports several expirations counts each
of them, late by its own amount. Drift is how far behind schedule the tick stream is at
the end: the median lateness of the last 100 ticks (a median, so that one preempted
wake-up does not count as drift). Lost ticks are the whole periods in that drift: ticks
that fell due but that the contender never caught up with (a sleep loop that runs late
loses them; absolute deadlines catch up; a timerfd counts every expiration).

The contenders run side by side (all at once, each in its own interpreter): a tick
loop sleeps almost all the time, so eight of them cost a fraction of one core, every
contender sees the same machine noise, and 10,000 ticks take 10 s instead of 80 s.
``fdloop bench --serial`` runs them one after the other instead.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .probe import Probe, percentile
from .registry import Column, Params, Workload, contender, workload


def _summarize(raw: dict[str, Any], params: Params) -> dict[str, float]:
    n, period = params["ticks"], params["period_ms"] / 1e3
    lateness: list[float] = raw["lateness"]
    drift = percentile(lateness[-min(100, len(lateness)):], 0.5)
    return {
        "drift_ms": drift * 1e3,
        "p50_late_us": percentile(lateness, 0.50) * 1e6,
        "p99_late_us": percentile(lateness, 0.99) * 1e6,
        "lost": max(0, math.floor(drift / period)),
        "coalesced": raw.get("coalesced", 0),
        "cpu_us_per_tick": raw["cpu_s"] / n * 1e6,
    }


TIMER = workload(
    Workload(
        name="timer",
        title="1 ms periodic ticks",
        defaults={"ticks": 10000, "period_ms": 1.0, "repeats": 1},
        quick={"ticks": 500, "period_ms": 1.0, "repeats": 1},
        columns=(
            Column("drift_ms", "drift ms", "", digits=2, ratio=False),
            Column("p50_late_us", "p50 late µs", "lower"),
            Column("p99_late_us", "p99 late µs", "lower"),
            Column("lost", "lost ticks", "", ratio=False),
            Column("coalesced", "ticks coalesced", "", ratio=False),
            Column("cpu_us_per_tick", "CPU µs/tick", "lower", digits=1),
        ),
        summarize=_summarize,
        plot=("p50_late_us", "p99_late_us"),
        side_by_side=True,
    )
)


async def _tick_loop(
    probe: Probe, t0: float, next_tick: Callable[[int], Awaitable[int]]
) -> dict[str, Any]:
    """Call ``next_tick(i)`` (which waits and returns how many ticks it saw) until N."""
    n, period = probe.params["ticks"], probe.params["period_ms"] / 1e3
    lateness: list[float] = []
    reported = coalesced = 0
    probe.start()
    while reported < n:
        seen = await next_tick(reported + 1)
        now = time.monotonic()
        for tick in range(reported + 1, reported + seen + 1):
            lateness.append(now - (t0 + tick * period))
        reported += seen
        coalesced += seen - 1
    end = time.monotonic()
    probe.stop()
    return {
        "lateness": lateness, "reported": reported, "coalesced": coalesced, "t0": t0, "end": end
    }


@contender("timer", "fdloop TimerFD", loops=("asyncio", "uvloop", "trio"),
           needs=("fdloop:TimerFD",))
async def fdloop_timer(probe: Probe) -> dict[str, Any]:
    import fdloop

    period = probe.params["period_ms"] / 1e3
    with fdloop.TimerFD("monotonic") as timer:
        t0 = time.monotonic()
        timer.set(t0 + period, period, absolute=True)

        async def next_tick(_tick: int) -> int:
            return await timer.wait()

        return await _tick_loop(probe, t0, next_tick)


@contender("timer", "asyncio.sleep loop", loops=("asyncio", "uvloop"))
async def sleep_loop_timer(probe: Probe) -> dict[str, Any]:
    period = probe.params["period_ms"] / 1e3

    async def next_tick(_tick: int) -> int:
        await asyncio.sleep(period)
        return 1

    return await _tick_loop(probe, time.monotonic(), next_tick)


@contender("timer", "loop.call_at", loops=("asyncio", "uvloop"))
async def call_at_timer(probe: Probe) -> dict[str, Any]:
    period = probe.params["period_ms"] / 1e3
    loop = asyncio.get_running_loop()
    # Deadlines on the loop's clock; lateness is measured on time.monotonic().
    t0, loop_t0 = time.monotonic(), loop.time()

    async def next_tick(tick: int) -> int:
        due: asyncio.Future[None] = loop.create_future()
        loop.call_at(loop_t0 + tick * period, due.set_result, None)
        await due
        return 1

    return await _tick_loop(probe, t0, next_tick)


@contender("timer", "trio.sleep_until", loops=("trio",))
async def trio_timer(probe: Probe) -> dict[str, Any]:
    import trio

    period = probe.params["period_ms"] / 1e3
    t0, trio_t0 = time.monotonic(), trio.current_time()

    async def next_tick(tick: int) -> int:
        await trio.sleep_until(trio_t0 + tick * period)
        return 1

    return await _tick_loop(probe, t0, next_tick)
