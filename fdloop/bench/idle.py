"""idle: K children (``sleep``) alive at once, each awaited by its own task.

Measured: the time to start all K; the process's threads once all K are awaited; RSS
growth per child (resident memory after minus before, divided by K — everything the
parent keeps per child: handle, fd, task, helper thread stack); and the time from
the last SIGKILL sent (all K are killed in one quick loop) until every child is reaped.

The "harness only" contenders start no process at all: each of their K tasks waits on
a shared event. Their RSS per child is what the benchmark's own task per child costs
on that loop; "own KiB/child" is a contender's RSS per child minus that.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .probe import Probe, rss_kib, thread_count
from .registry import Column, Contender, Metrics, Params, Workload, contender, workload
from .spawn import SLEEP, TRUE
from .tasks import Gate, run_all, settle

ARGV = [SLEEP, "3600"]

Started = tuple[int, Callable[[], Awaitable[int]]]
"""What a contender's ``start()`` gives back: the pid and a function awaiting the exit code."""


def _summarize(raw: dict[str, Any], params: Params) -> dict[str, float]:
    k = params["k"]
    if raw["killed"] != k:
        raise RuntimeError(f"{k} children started, {raw['killed']} reported death by SIGKILL")
    return {
        "spawn_ms": raw["spawn_s"] * 1e3,
        "threads": raw["threads"],
        "rss_kib_per_child": raw["rss_growth_kib"] / k,
        "reap_ms": raw["reap_s"] * 1e3,
        "cpu_us_per_child": raw["cpu_s"] / k * 1e6,
    }


HARNESS = "harness only (no child)"


def _own_memory(
    medians: dict[str, Metrics], contenders: Mapping[str, Contender]
) -> dict[str, Metrics]:
    """RSS per child minus the harness's own task per child on the same loop."""
    extra: dict[str, Metrics] = {}
    for name, figures in medians.items():
        loop = contenders[name].loop
        if loop is None:  # the floor keeps no task per child: all of it is its own
            extra[name] = {"own_kib_per_child": figures["rss_kib_per_child"]}
            continue
        harness = medians.get(f"{HARNESS}/{loop}")
        if harness is not None:
            own = figures["rss_kib_per_child"] - harness["rss_kib_per_child"]
            extra[name] = {"own_kib_per_child": own}
    return extra


IDLE = workload(
    Workload(
        name="idle",
        title="K children alive at once, all awaited",
        defaults={"k": 1000, "repeats": 1},
        quick={"k": 50, "repeats": 1},
        columns=(
            Column("spawn_ms", "spawn all ms", "lower"),
            Column("threads", "threads", "lower", ratio=False),
            Column("rss_kib_per_child", "RSS KiB/child", "lower", digits=1),
            Column("own_kib_per_child", "own KiB/child", "lower", digits=1, derived=True),
            Column("reap_ms", "last kill → all reaped ms", "lower", digits=1),
            Column("cpu_us_per_child", "parent CPU µs/child", "lower"),
        ),
        summarize=_summarize,
        derive=_own_memory,
        plot=("own_kib_per_child", "threads"),
    )
)


async def _hold(
    probe: Probe,
    start: Callable[[], Awaitable[Started]],
    release: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Start K children, await each in its own task, measure, kill all, time the reaping."""
    k = probe.params["k"]
    # One child first, unmeasured, so that one-off imports and caches count neither
    # as time nor as memory per child.
    pid, wait = await start()
    if pid > 0:
        os.kill(pid, signal.SIGKILL)
        await wait()
    rss_before = rss_kib()
    probe.start()
    began = time.perf_counter()
    children = [await start() for _ in range(k)]
    spawned = time.perf_counter()
    codes: list[int] = []
    figures: dict[str, Any] = {"spawn_s": spawned - began}

    def awaiting(wait: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[None]]:
        async def task() -> None:
            codes.append(await wait())

        return task

    async def measure_then_kill() -> None:
        await settle()
        figures["threads"] = thread_count()
        figures["rss_growth_kib"] = rss_kib() - rss_before
        for pid, _wait in children:
            if pid > 0:  # the harness-only contender has no process (and 0 means "group")
                os.kill(pid, signal.SIGKILL)
        if release is not None:
            release()
        figures["last_kill"] = time.perf_counter()

    await run_all([awaiting(wait) for _pid, wait in children], measure_then_kill)
    probe.stop()
    figures["reap_s"] = time.perf_counter() - figures.pop("last_kill")
    figures["killed"] = codes.count(-signal.SIGKILL)
    return figures


@contender("idle", HARNESS, loops=("asyncio", "uvloop", "trio"), baseline=True)
async def harness_idle(probe: Probe) -> dict[str, Any]:
    gate = Gate()

    async def wait() -> int:
        await gate.passed()
        return -signal.SIGKILL

    async def start() -> Started:
        return -1, wait

    return await _hold(probe, start, gate.open)


@contender("idle", "fdloop", loops=("asyncio", "uvloop", "trio"), needs=("fdloop:spawn",))
async def fdloop_idle(probe: Probe) -> dict[str, Any]:
    import fdloop

    async def start() -> Started:
        proc = fdloop.spawn(ARGV)

        async def wait() -> int:
            with proc:
                code = (await proc.wait()).returncode
                return -1 if code is None else code

        return proc.pid, wait

    return await _hold(probe, start)


@contender("idle", "asyncio subprocess")
async def asyncio_idle(probe: Probe) -> dict[str, Any]:
    async def start() -> Started:
        proc = await asyncio.create_subprocess_exec(*ARGV)
        return proc.pid, proc.wait

    return await _hold(probe, start)


def _pidfd_watcher_is_separate() -> str | None:
    from .spawn import _pidfd_watcher_is_separate as same_rule

    return same_rule()


@contender("idle", "asyncio + PidfdChildWatcher", only_if=_pidfd_watcher_is_separate)
async def asyncio_pidfd_idle(probe: Probe) -> dict[str, Any]:
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return await asyncio_idle(probe)  # type: ignore[no-any-return]


@contender("idle", "uvloop subprocess", loops=("uvloop",))
async def uvloop_idle(probe: Probe) -> dict[str, Any]:
    return await asyncio_idle(probe)  # type: ignore[no-any-return]


@contender("idle", "trio open_process", loops=("trio",))
async def trio_idle(probe: Probe) -> dict[str, Any]:
    import trio

    async def start() -> Started:
        proc = await trio.lowlevel.open_process(ARGV)
        return proc.pid, proc.wait

    return await _hold(probe, start)


@contender("idle", "anyio.open_process", needs=("anyio",))
async def anyio_idle(probe: Probe) -> dict[str, Any]:
    import anyio

    async def start() -> Started:
        proc = await anyio.open_process(ARGV, stdin=None, stdout=None, stderr=None)
        return proc.pid, proc.wait

    return await _hold(probe, start)


@contender("idle", "floor: posix_spawn+pidfd+epoll", loops=(None,), needs=("os:pidfd_open",))
def floor_idle(probe: Probe) -> dict[str, Any]:
    k = probe.params["k"]
    environ = dict(os.environ)
    warm = os.posix_spawn(TRUE, [TRUE], environ)  # the same unmeasured first child
    os.waitpid(warm, 0)
    rss_before = rss_kib()
    poller = select.epoll()
    probe.start()
    began = time.perf_counter()
    pids: dict[int, int] = {}
    for _ in range(k):
        pid = os.posix_spawn(SLEEP, ARGV, environ)
        fd = os.pidfd_open(pid)
        poller.register(fd, select.EPOLLIN)
        pids[fd] = pid
    spawned = time.perf_counter()
    figures: dict[str, Any] = {"threads": thread_count(), "rss_growth_kib": rss_kib() - rss_before}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    last_kill = time.perf_counter()
    killed = 0
    while pids:
        for fd, _events in poller.poll():
            poller.unregister(fd)
            result = os.waitid(os.P_PIDFD, fd, os.WEXITED)
            os.close(fd)
            del pids[fd]
            killed += result is not None and result.si_status == signal.SIGKILL
    probe.stop()
    poller.close()
    figures.update(spawn_s=spawned - began, reap_s=time.perf_counter() - last_kill, killed=killed)
    return figures
