"""signal: the process sends itself SIGUSR1 and a task waits for it, one at a time.

Latency is ``os.kill`` → the waiting task running again; round trips/s and CPU per
round trip from the same run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .probe import Probe, latency_summary
from .registry import Column, Workload, contender, workload

SIGNAL = workload(
    Workload(
        name="signal",
        title="self-sent SIGUSR1 round trips",
        defaults={"n": 5000, "repeats": 3},
        quick={"n": 1000, "repeats": 1},
        columns=(
            Column("roundtrips_per_s", "round trips/s", "higher"),
            Column("p50_us", "p50 µs", "lower", digits=1),
            Column("p99_us", "p99 µs", "lower", digits=1),
            Column("cpu_us_per_signal", "CPU µs/signal", "lower", digits=1),
        ),
        summarize=latency_summary("signals", "roundtrips_per_s", "cpu_us_per_signal"),
        plot=("roundtrips_per_s",),
    )
)


async def _round_trips(probe: Probe, receive: Callable[[], Awaitable[object]]) -> dict[str, Any]:
    n = probe.params["n"]
    pid = os.getpid()
    latencies: list[float] = []
    probe.start()
    for _ in range(n):
        sent = time.perf_counter()
        os.kill(pid, signal.SIGUSR1)
        await receive()
        latencies.append(time.perf_counter() - sent)
    probe.stop()
    return {"latencies": latencies}


@contender("signal", "fdloop SignalFD", loops=("asyncio", "uvloop", "trio"),
           needs=("fdloop:SignalFD",))
async def fdloop_signal(probe: Probe) -> dict[str, Any]:
    import fdloop

    with fdloop.SignalFD({signal.SIGUSR1}) as sfd:
        return await _round_trips(probe, sfd.read)


@contender("signal", "add_signal_handler", loops=("asyncio", "uvloop"))
async def add_signal_handler_signal(probe: Probe) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    async def receive() -> None:
        await event.wait()
        event.clear()

    loop.add_signal_handler(signal.SIGUSR1, event.set)
    try:
        return await _round_trips(probe, receive)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


@contender("signal", "trio.open_signal_receiver", loops=("trio",))
async def trio_signal(probe: Probe) -> dict[str, Any]:
    import trio

    with trio.open_signal_receiver(signal.SIGUSR1) as receiver:
        signals = receiver.__aiter__()
        return await _round_trips(probe, signals.__anext__)
