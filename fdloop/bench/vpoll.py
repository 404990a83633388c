"""vpoll: a VirtualFD set → seen by a waiting task → cleared, vs an eventfd write/read.

Another thread raises the event (``VirtualFD.set``, or ``EventFD.write``); the loop task
waits for it, clears it (``set(0)``, or the read) and hands the turn back (the same
ping-pong as the ``wake`` workload). Contenders per loop: POLLPRI through
``fdloop.wait_events`` (the kernel's poll requests), POLLIN through the loop's own
readable wait, and an EventFD as the yardstick. Latency is set → task running.
"""

from __future__ import annotations

import select
from typing import Any

from .probe import Probe, latency_summary
from .registry import Column, Workload, contender, workload
from .wake import _ping_pong

VPOLL = workload(
    Workload(
        name="vpoll",
        title="VirtualFD set/clear round trips vs eventfd write/read",
        defaults={"n": 3000, "repeats": 3},
        quick={"n": 800, "repeats": 1},
        columns=(
            Column("round_trips_per_s", "round trips/s", "higher"),
            Column("p50_us", "p50 µs", "lower", digits=1),
            Column("p99_us", "p99 µs", "lower", digits=1),
            Column("cpu_us_per_round_trip", "CPU µs/round trip", "lower", digits=1),
        ),
        summarize=latency_summary("round trips", "round_trips_per_s",
                                  "cpu_us_per_round_trip"),
        plot=("round_trips_per_s",),
    )
)

LOOPS = ("asyncio", "uvloop", "trio")


def _no_pollpri_wait() -> str | None:
    from fdloop.backends import selected_name

    if selected_name() == "kqueue":
        return "the kqueue backend cannot wait for POLLPRI (EVFILT_EXCEPT is not wired)"
    return None


@contender("vpoll", "fdloop VirtualFD PRI (wait_events)", loops=LOOPS,
           only_if=_no_pollpri_wait)
async def virtualfd_pri(probe: Probe) -> dict[str, Any]:
    import fdloop

    with fdloop.VirtualFD() as vfd:
        async def wait() -> None:
            await fdloop.wait_events(vfd, select.POLLPRI)
            vfd.set(0)

        return await _ping_pong(probe, lambda: vfd.set(select.POLLPRI), wait)


@contender("vpoll", "VirtualFD IN (loop's readable wait)", loops=LOOPS)
async def virtualfd_in(probe: Probe) -> dict[str, Any]:
    import anyio

    import fdloop

    with fdloop.VirtualFD() as vfd:
        async def wait() -> None:
            await anyio.wait_readable(vfd.fileno())
            vfd.set(0)

        return await _ping_pong(probe, lambda: vfd.set(select.POLLIN), wait)


@contender("vpoll", "EventFD write/read", loops=LOOPS)
async def eventfd_round_trip(probe: Probe) -> dict[str, Any]:
    import fdloop

    with fdloop.EventFD() as efd:
        return await _ping_pong(probe, efd.write, efd.read)
