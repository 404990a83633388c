"""spawn_live: spawning while many children are alive and many fds are open.

Two measurements per run, for fdloop on each loop and for the floors of ``spawn``:

* throughput: ``spawn``'s N x ``/bin/true`` (C in flight) while ``live`` ``sleep``
  children are alive, each held by an open pidfd (:func:`~fdloop.bench.spawn.start_live`,
  the same for every contender);
* parent-held time: ``held`` spawns one at a time, timing only the call that starts the
  child (wall time, and the parent's CPU time in it), first with no extra fd open, then
  with ``fds`` extra fds open (``/dev/null``, close-on-exec as Python opens them). A
  spawn path that closes every inherited fd in the vfork child while the parent waits
  pays per open fd here; one that marks them close-on-exec and lets ``exec`` close them
  after the parent is released does not.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .probe import Probe
from .registry import Column, Params, Workload, contender, workload
from .spawn import (
    FLOOR,
    LOOP_FLOOR,
    TRUE,
    fdloop_spawn,
    floor_spawn,
    loop_floor_spawn,
    loop_wait_readable,
    summarize_spawn,
)

LOOPS = ("asyncio", "uvloop", "trio")
ROUNDS = 4
"""Rounds of the parent-held timing, each without then with the extra fds."""
Handle = TypeVar("Handle")


def _summarize_live(raw: dict[str, Any], params: Params) -> dict[str, float]:
    spawn = summarize_spawn(raw, params)
    figures = {"children_per_s": spawn["children_per_s"],
               "cpu_us_per_child": spawn["cpu_us_per_child"]}
    for key in ("held_us", "held_fds_us", "held_cpu_us", "held_fds_cpu_us"):
        samples: list[float] = raw[key]
        if len(samples) != params["held"]:
            raise RuntimeError(f"expected {params['held']} timed spawns, got {len(samples)}")
        figures[key] = statistics.median(samples) * 1e6
    figures["held_growth"] = figures["held_fds_us"] / figures["held_us"]
    figures["held_cpu_growth"] = figures["held_fds_cpu_us"] / max(figures["held_cpu_us"], 1e-3)
    return figures


SPAWN_LIVE = workload(
    Workload(
        name="spawn_live",
        title="spawn + wait /bin/true with live sleep children; parent held per spawn",
        defaults={"n": 500, "concurrency": 8, "live": 1000, "held": 200, "fds": 4000,
                  "repeats": 3},
        quick={"n": 100, "concurrency": 8, "live": 200, "held": 50, "fds": 4000, "repeats": 1},
        columns=(
            Column("children_per_s", "children/s (live)", "higher"),
            Column("cpu_us_per_child", "parent CPU µs/child (live)", "lower"),
            Column("held_us", "held µs/spawn", "lower", digits=1),
            Column("held_fds_us", "held µs/spawn (+fds)", "lower", digits=1),
            Column("held_growth", "held +fds ÷ none", "lower", digits=2, ratio=False),
            Column("held_cpu_us", "CPU µs/spawn", "lower", digits=1),
            Column("held_fds_cpu_us", "CPU µs/spawn (+fds)", "lower", digits=1),
            Column("held_cpu_growth", "CPU +fds ÷ none", "lower", digits=2, ratio=False),
        ),
        summarize=_summarize_live,
        plot=("cpu_us_per_child", "held_fds_us"),
    )
)


async def _held(
    probe: Probe, start: Callable[[], Handle], finish: Callable[[Handle], Awaitable[None]]
) -> dict[str, list[float]]:
    """Time ``start()`` ``held`` times without and ``held`` times with ``fds`` extra
    open fds, in alternating rounds (so that a drift of the machine's load lands on
    both alike). ``finish(handle)`` waits for that child and releases it, untimed.
    """
    count, extra = probe.params["held"], probe.params["fds"]
    result: dict[str, list[float]] = {
        "held_us": [], "held_cpu_us": [], "held_fds_us": [], "held_fds_cpu_us": []
    }

    async def timed(times: int, wall_key: str, cpu_key: str) -> None:
        for _ in range(times):
            cpu = time.process_time()
            wall = time.perf_counter()
            handle = start()
            result[wall_key].append(time.perf_counter() - wall)
            result[cpu_key].append(time.process_time() - cpu)
            await finish(handle)

    await finish(start())  # unmeasured: first-call imports and caches
    for round_ in range(ROUNDS):
        times = count // ROUNDS + (round_ < count % ROUNDS)
        await timed(times, "held_us", "held_cpu_us")
        opened = []
        try:
            for _ in range(extra):
                opened.append(os.open(os.devnull, os.O_RDONLY))
            await timed(times, "held_fds_us", "held_fds_cpu_us")
        finally:
            for fd in opened:
                os.close(fd)
    return result


@contender("spawn_live", "fdloop", loops=LOOPS, needs=("fdloop:spawn",))
async def fdloop_live(probe: Probe) -> dict[str, Any]:
    import fdloop

    raw: dict[str, Any] = await fdloop_spawn(probe)

    async def finish(proc: fdloop.ProcessFD) -> None:
        with proc:
            await proc.wait()

    raw.update(await _held(probe, lambda: fdloop.spawn([TRUE]), finish))
    return raw


def _posix_spawn_pidfd() -> int:
    return os.pidfd_open(os.posix_spawn(TRUE, [TRUE], os.environ))


@contender("spawn_live", LOOP_FLOOR, loops=LOOPS, needs=("os:pidfd_open",))
async def loop_floor_live(probe: Probe) -> dict[str, Any]:
    raw: dict[str, Any] = await loop_floor_spawn(probe)
    wait_readable = loop_wait_readable()

    async def finish(fd: int) -> None:
        try:
            await wait_readable(fd)
            os.waitid(os.P_PIDFD, fd, os.WEXITED)
        finally:
            os.close(fd)

    raw.update(await _held(probe, _posix_spawn_pidfd, finish))
    return raw


@contender("spawn_live", FLOOR, loops=(None,), needs=("os:pidfd_open",))
def floor_live(probe: Probe) -> dict[str, Any]:
    raw: dict[str, Any] = floor_spawn(probe)

    async def finish(fd: int) -> None:
        try:
            os.waitid(os.P_PIDFD, fd, os.WEXITED)  # no loop: a blocking wait
        finally:
            os.close(fd)

    # No loop runs here: drive the coroutine by hand (it never really suspends).
    timing = _held(probe, _posix_spawn_pidfd, finish)
    try:
        timing.send(None)
    except StopIteration as done:
        raw.update(done.value)
    else:
        raise RuntimeError("the no-loop floor's timing waited for something")
    return raw
