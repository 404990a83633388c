"""spawn: start ``/bin/true`` and wait for it, N children with C in flight.

The key column is the parent's CPU per child: ``getrusage(RUSAGE_SELF)`` user + system
across the whole run (helper threads included) divided by N. Two kinds of floor do the
same job by hand:

* the no-loop floor, with no framework at all: ``os.posix_spawn`` + ``os.pidfd_open`` +
  one ``select.epoll``;
* one floor per loop (asyncio, uvloop, trio): ``os.posix_spawn`` + ``os.pidfd_open`` +
  the loop's own readiness wait (``add_reader``, ``trio.lowlevel.wait_readable``) +
  ``os.waitid(P_PIDFD)``: what any library on that loop must at least pay.

The derived columns give fdloop's CPU per child divided by each floor's (the per-loop
floor on the same loop), which is what the targets of ``fdloop bench`` check.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sniffio

from .probe import Probe, percentile
from .registry import Column, Contender, Metrics, Params, Workload, contender, workload
from .tasks import nap, run_all

TRUE = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
SLEEP = "/bin/sleep" if os.path.exists("/bin/sleep") else "/usr/bin/sleep"
SAMPLE_EVERY = 0.005
"""Seconds between two looks at the thread count during a run."""


def summarize_spawn(raw: dict[str, Any], params: Params) -> dict[str, float]:
    n = params["n"]
    latencies: list[float] = raw["latencies"]
    if len(latencies) != n:
        raise RuntimeError(f"expected {n} children, {len(latencies)} were waited for")
    if raw.get("failures"):
        raise RuntimeError(f"{raw['failures']} children did not exit with 0")
    return {
        "children_per_s": n / raw["wall_s"],
        "p50_us": percentile(latencies, 0.50) * 1e6,
        "p99_us": percentile(latencies, 0.99) * 1e6,
        "cpu_us_per_child": raw["cpu_s"] / n * 1e6,
        "peak_threads": raw["peak_threads"],
        "maxrss_mib": raw["maxrss_kib"] / 1024,
    }


FLOOR = "floor: posix_spawn+pidfd+epoll"
"""The no-loop floor's contender name."""
LOOP_FLOOR = "floor: posix_spawn+pidfd+loop"
"""The per-loop floors' contender name, before ``/<loop>``."""
PURE = "fdloop, pure Python"
"""fdloop without its compiled extension (issue 16.2's subject), before ``/<loop>``."""


def _versus_floors(
    medians: dict[str, Metrics], contenders: Mapping[str, Contender]
) -> dict[str, Metrics]:
    """fdloop's CPU per child ÷ the no-loop floor's and ÷ the floor on its own loop."""
    extra: dict[str, Metrics] = {}
    floor = medians.get(FLOOR, {}).get("cpu_us_per_child")
    for name, figures in medians.items():
        if not name.startswith(("fdloop/", f"{PURE}/")):
            continue
        mine = figures["cpu_us_per_child"]
        row: Metrics = {}
        if floor:
            row["cpu_vs_floor"] = mine / floor
        loop_floor = medians.get(f"{LOOP_FLOOR}/{contenders[name].loop}", {})
        if loop_floor.get("cpu_us_per_child"):
            row["cpu_vs_loop_floor"] = mine / loop_floor["cpu_us_per_child"]
        extra[name] = row
    return extra


SPAWN = workload(
    Workload(
        name="spawn",
        title="spawn + wait /bin/true",
        defaults={"n": 2000, "concurrency": 8, "live": 0, "repeats": 5},
        quick={"n": 100, "concurrency": 8, "live": 0, "repeats": 1},
        columns=(
            Column("children_per_s", "children/s", "higher"),
            Column("p50_us", "p50 µs", "lower"),
            Column("p99_us", "p99 µs", "lower"),
            Column("cpu_us_per_child", "parent CPU µs/child", "lower"),
            Column("peak_threads", "peak threads", "lower", ratio=False),
            Column("maxrss_mib", "max RSS MiB", "lower", digits=1),
            Column("cpu_vs_loop_floor", "CPU ÷ its loop's floor", "lower", digits=2,
                   ratio=False, derived=True),
            Column("cpu_vs_floor", "CPU ÷ no-loop floor", "lower", digits=2, ratio=False,
                   derived=True),
        ),
        summarize=summarize_spawn,
        derive=_versus_floors,
        plot=("children_per_s", "cpu_us_per_child"),
    )
)


def start_live(count: int) -> list[int]:
    """Start ``count`` ``sleep`` children and return a pidfd for each.

    The same for every contender (plain ``posix_spawn`` + ``pidfd_open``), so that what
    differs between contenders is only the measured spawns: each of those then runs
    with ``count`` more children and ``count`` more open fds in the parent.
    """
    environ = dict(os.environ)
    fds = []
    try:
        for _ in range(count):
            fds.append(os.pidfd_open(os.posix_spawn(SLEEP, [SLEEP, "3600"], environ)))
    except BaseException:
        end_live(fds)
        raise
    return fds


def end_live(fds: list[int]) -> None:
    """Kill and reap the children of :func:`start_live`, close their pidfds."""
    for fd in fds:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    for fd in fds:
        os.waitid(os.P_PIDFD, fd, os.WEXITED)
        os.close(fd)
    fds.clear()


async def _drive(probe: Probe, one: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Run ``one()`` (spawn + wait one child, return its exit code) N times, C at once,
    with ``live`` other children alive meanwhile (see :func:`start_live`)."""
    live = start_live(probe.params.get("live", 0))
    try:
        return await _drive_with(probe, one)
    finally:
        end_live(live)


async def _drive_with(probe: Probe, one: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    n, concurrency = probe.params["n"], probe.params["concurrency"]
    remaining = n
    latencies: list[float] = []
    failures = 0

    running = concurrency

    async def worker() -> None:
        nonlocal remaining, failures, running
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            code = await one()
            latencies.append(time.perf_counter() - started)
            failures += code != 0
        running -= 1

    async def sampler() -> None:
        # Helper threads live only as long as a child (asyncio's 3.11 watcher): look
        # often. About 200 samples/s at ~15 µs each, the same for every contender.
        while running:
            probe.sample()
            await nap(SAMPLE_EVERY)

    # One child first, unmeasured: first calls import modules and build caches, and
    # with C children in flight that one-off cost would land on C latencies at once.
    await one()
    probe.start()
    await run_all([*[worker] * concurrency, sampler])
    probe.stop()
    return {"latencies": latencies, "failures": failures}


@contender("spawn", "fdloop", loops=("asyncio", "uvloop", "trio"), needs=("fdloop:spawn",))
async def fdloop_spawn(probe: Probe) -> dict[str, Any]:
    import fdloop

    async def one() -> int:
        with fdloop.spawn([TRUE]) as proc:
            code = (await proc.wait()).returncode
        return -1 if code is None else code

    return await _drive(probe, one)


@contender("spawn", PURE, loops=("asyncio", "uvloop", "trio"), needs=("fdloop:spawn",))
async def fdloop_pure_spawn(probe: Probe) -> dict[str, Any]:
    # This contender's own interpreter leaves the compiled extension aside.
    from fdloop.backends import selected_name

    if selected_name() == "linux":
        from fdloop.backends.linux import python_only

        python_only()
    return await fdloop_spawn(probe)  # type: ignore[no-any-return]


def _default_watcher() -> str:
    if sys.version_info >= (3, 12):
        return "default watcher (pidfd on 3.12+)"
    return "default watcher (one thread per child on 3.11-)"


@contender("spawn", "asyncio subprocess")
async def asyncio_spawn(probe: Probe) -> dict[str, Any]:
    async def one() -> int:
        proc = await asyncio.create_subprocess_exec(TRUE)
        return await proc.wait()

    return await _drive(probe, one)


def _pidfd_watcher_is_separate() -> str | None:
    if sys.version_info >= (3, 12):
        return "PidfdChildWatcher is already the default on Python 3.12+"
    if not hasattr(os, "pidfd_open"):
        return "no os.pidfd_open here"
    return None


@contender("spawn", "asyncio + PidfdChildWatcher", only_if=_pidfd_watcher_is_separate)
async def asyncio_pidfd_spawn(probe: Probe) -> dict[str, Any]:
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)

    async def one() -> int:
        proc = await asyncio.create_subprocess_exec(TRUE)
        return await proc.wait()

    return await _drive(probe, one)


@contender("spawn", "uvloop subprocess", loops=("uvloop",))
async def uvloop_spawn(probe: Probe) -> dict[str, Any]:
    return await asyncio_spawn(probe)  # type: ignore[no-any-return]


@contender("spawn", "trio.run_process", loops=("trio",))
async def trio_spawn(probe: Probe) -> dict[str, Any]:
    import trio

    async def one() -> int:
        # stdin=None inherits, like every other contender (the default makes a pipe).
        done = await trio.run_process([TRUE], stdin=None, check=False)
        return done.returncode

    return await _drive(probe, one)


@contender("spawn", "anyio.run_process", needs=("anyio",))
async def anyio_spawn(probe: Probe) -> dict[str, Any]:
    import anyio

    async def one() -> int:
        done = await anyio.run_process([TRUE], stdout=None, stderr=None, check=False)
        return done.returncode

    return await _drive(probe, one)


def loop_wait_readable() -> Callable[[int], Awaitable[None]]:
    """The running loop's own wait for one fd to become readable, nothing around it:
    ``trio.lowlevel.wait_readable``, or ``add_reader`` and a future (asyncio, uvloop)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.wait_readable
    loop = asyncio.get_running_loop()

    async def wait_readable(fd: int) -> None:
        ready = loop.create_future()

        def wake() -> None:
            # A pidfd stays readable: stop watching before the task even resumes.
            loop.remove_reader(fd)
            ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            if not ready.done():
                loop.remove_reader(fd)

    return wait_readable


@contender("spawn", LOOP_FLOOR, loops=("asyncio", "uvloop", "trio"), needs=("os:pidfd_open",))
async def loop_floor_spawn(probe: Probe) -> dict[str, Any]:
    environ = dict(os.environ)
    wait_readable = loop_wait_readable()

    async def one() -> int:
        pid = os.posix_spawn(TRUE, [TRUE], environ)
        fd = os.pidfd_open(pid)
        try:
            await wait_readable(fd)
            result = os.waitid(os.P_PIDFD, fd, os.WEXITED)
        finally:
            os.close(fd)
        return -1 if result is None else result.si_status

    return await _drive(probe, one)


@contender("spawn", FLOOR, loops=(None,), needs=("os:pidfd_open",))
def floor_spawn(probe: Probe) -> dict[str, Any]:
    live = start_live(probe.params.get("live", 0))
    try:
        return _floor_drive(probe)
    finally:
        end_live(live)


def _floor_drive(probe: Probe) -> dict[str, Any]:
    n, concurrency = probe.params["n"], probe.params["concurrency"]
    environ = dict(os.environ)
    poller = select.epoll()
    in_flight: dict[int, float] = {}
    latencies: list[float] = []
    started = failures = 0
    warm = os.posix_spawn(TRUE, [TRUE], environ)  # the same unmeasured first child
    os.waitpid(warm, 0)
    probe.start()
    while len(latencies) < n:
        while started < n and len(in_flight) < concurrency:
            began = time.perf_counter()
            pid = os.posix_spawn(TRUE, [TRUE], environ)
            fd = os.pidfd_open(pid)
            poller.register(fd, select.EPOLLIN)
            in_flight[fd] = began
            started += 1
        for fd, _events in poller.poll():
            poller.unregister(fd)
            result = os.waitid(os.P_PIDFD, fd, os.WEXITED)
            os.close(fd)
            latencies.append(time.perf_counter() - in_flight.pop(fd))
            failures += result is None or result.si_status != 0
            if len(latencies) % concurrency == 0:
                probe.sample()
    probe.stop()
    poller.close()
    return {"latencies": latencies, "failures": failures}
