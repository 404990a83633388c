"""The supervisor's two numbers: CPU while idle with many programs, and restart latency.

``python -m fdloop.bench.supervisor_idle [--programs 100] [--seconds 10] [--restarts 200]``

Idle: a real ``fdloop supervise`` process (per loop) supervises N ``sleep`` programs;
once all are started we read its CPU time, context switches and threads from /proc over
the measuring window. Nothing should poll, so both deltas should be ~0. Side by side:
a naive asyncio supervisor (``create_subprocess_exec`` + ``wait()`` per program, the
3.11 default child watcher) and a ``Popen.poll()`` loop at 10 Hz, the usual shell-script
and hand-rolled design.

Restart: an in-process Supervisor restarts ``true`` with zero backoff, ``--restarts``
times, per loop. Reported: the median time from the ``exited`` event (the pidfd woke the
loop) to the ``started`` event of the replacement (spawn returned) — the supervisor's own
share — and the mean full cycle (spawn, exit, detect, decide). Side by side: the same
cycle written by hand with asyncio's subprocess API and with trio's ``run_process``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

LOOPS = ("asyncio", "uvloop", "trio")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- idle ----------------------------------------------------------------------------------


def _proc_figures(pid: int) -> tuple[float, int, int, int]:
    """CPU seconds, context switches (voluntary + not), threads, RSS KiB of ``pid``."""
    with open(f"/proc/{pid}/stat") as stat_file:
        fields = stat_file.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    switches = threads = rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                switches += int(value)
            elif key == "Threads":
                threads = int(value)
            elif key == "VmRSS":
                rss = int(value.split()[0])
    # Threads other than the main one switch too: add theirs.
    for tid in os.listdir(f"/proc/{pid}/task"):
        if int(tid) == pid:
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                for line in status:
                    key, _, value = line.partition(":")
                    if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                        switches += int(value)
        except OSError:
            continue
    return cpu, switches, threads, rss


NAIVE_ASYNCIO = """
import asyncio, sys
async def one():
    while True:
        proc = await asyncio.create_subprocess_exec("sleep", "1000")
        await proc.wait()
async def main():
    tasks = [asyncio.create_task(one()) for _ in range(int(sys.argv[1]))]
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    await asyncio.gather(*tasks)
asyncio.run(main())
"""

POLLING = """
import subprocess, sys, time
procs = [subprocess.Popen(["sleep", "1000"]) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
while True:
    for i, proc in enumerate(procs):
        if proc.poll() is not None:
            procs[i] = subprocess.Popen(["sleep", "1000"])
    time.sleep(0.1)
"""


def _measure_idle(argv: list[str], ready: str, count: int, seconds: float) -> dict[str, float]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = 0
    try:
        for raw in proc.stdout:
            if ready in raw.decode(errors="replace"):
                seen += 1
                if seen == count:
                    break
        time.sleep(1.0)  # let start-up settle (imports, first GC, page faults)
        cpu0, sw0, threads, rss = _proc_figures(proc.pid)
        time.sleep(seconds)
        cpu1, sw1, _, _ = _proc_figures(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        # Keep reading so a supervisor logging its shutdown never blocks on the pipe.
        proc.communicate(timeout=120)
    return {
        "cpu_ms": (cpu1 - cpu0) * 1000, "switches": sw1 - sw0, "threads": threads, "rss_mib":
        rss / 1024,
    }


def idle(programs: int, seconds: float) -> list[tuple[str, dict[str, float]]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "idle.toml"
        config.write_text("".join(
            f'[program.p{i}]\ncommand = "sleep 1000"\n' for i in range(programs)
        ))
        for loop in LOOPS:
            argv = [sys.executable, "-m", "fdloop.cli", "supervise", "--loop", loop, str(config)]
            rows.append((f"fdloop supervise ({loop})",
                         _measure_idle(argv, ": started (pid", programs, seconds)))
    rows.append(("asyncio subprocess + wait()",
                 _measure_idle([sys.executable, "-c", NAIVE_ASYNCIO, str(programs)], "ready", 1,
                               seconds)))
    rows.append(("Popen.poll() every 0.1 s",
                 _measure_idle([sys.executable, "-c", POLLING, str(programs)], "ready", 1,
                               seconds)))
    return rows


# -- restart latency ----------------------------------------------------------------------------


async def _supervisor_restarts(count: int) -> tuple[float, float]:
    from fdloop import Supervisor

    async with Supervisor() as sup:
        events = sup.events()
        sup.add("true", ["true"], restart="always", backoff=(0, 0))
        began = time.perf_counter()
        await sup.start()
        exited_at: float | None = None
        gaps: list[float] = []
        starts = 0
        # Event.time is stamped when the supervisor emits the event, not when we read it.
        async for event in events:
            if event.kind == "exited":
                exited_at = event.time
            elif event.kind == "started":
                starts += 1
                if exited_at is not None:
                    gaps.append(event.time - exited_at)
                if starts == count:
                    break
        cycle = (time.perf_counter() - began) / count
        await sup.stop()
    return statistics.median(gaps), cycle


STAMP = (
    "import os, sys, time\n"
    "with open(os.path.join(sys.argv[1], str(os.getpid())), 'w') as f: f.write(repr(time.time()))\n"
    "os._exit(1)\n"
)
"""A child that writes the wall-clock time of its exit, then exits at once (no finalizing)."""


def _exit_stamp(directory: str, pid: int) -> float:
    with open(os.path.join(directory, str(pid))) as stamp:
        return float(stamp.read())


async def _supervisor_end_to_end(count: int) -> float:
    """Median seconds from the child's own exit to its replacement's spawn returning."""
    from fdloop import Supervisor

    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with Supervisor() as sup:
            events = sup.events()
            sup.add("stamp", [sys.executable, "-S", "-c", STAMP, tmp], backoff=(0, 0))
            await sup.start()
            exited_pid: int | None = None
            async for event in events:
                if event.kind == "exited":
                    exited_pid = event.pid
                elif event.kind == "started" and exited_pid is not None:
                    latencies.append(event.time - _exit_stamp(tmp, exited_pid))
                    if len(latencies) == count:
                        break
            await sup.stop()
    return statistics.median(latencies)


async def _asyncio_end_to_end(count: int) -> float:
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-S", "-c", STAMP, tmp]
        proc = await asyncio.create_subprocess_exec(*argv)
        for _ in range(count):
            await proc.wait()
            previous = proc.pid
            proc = await asyncio.create_subprocess_exec(*argv)
            latencies.append(time.time() - _exit_stamp(tmp, previous))
        await proc.wait()
    return statistics.median(latencies)


async def _trio_end_to_end(count: int) -> float:
    import trio

    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-S", "-c", STAMP, tmp]
        proc = await trio.lowlevel.open_process(argv)
        for _ in range(count):
            await proc.wait()
            previous = proc.pid
            proc = await trio.lowlevel.open_process(argv)
            latencies.append(time.time() - _exit_stamp(tmp, previous))
        await proc.wait()
    return statistics.median(latencies)


def end_to_end(count: int) -> list[tuple[str, float]]:
    rows = [(f"fdloop Supervisor ({loop})", _run(loop, _supervisor_end_to_end, count))
            for loop in LOOPS]
    rows.append(("asyncio subprocess loop", _run("asyncio", _asyncio_end_to_end, count)))
    rows.append(("uvloop subprocess loop", _run("uvloop", _asyncio_end_to_end, count)))
    rows.append(("trio open_process loop", _run("trio", _trio_end_to_end, count)))
    return rows


def _run(loop: str, func: Any, *args: object) -> Any:
    backend = "trio" if loop == "trio" else "asyncio"
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    return anyio.run(func, *args, backend=backend, backend_options=options)


async def _asyncio_restarts(count: int) -> tuple[float, float]:
    began = time.perf_counter()
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
    return float("nan"), (time.perf_counter() - began) / count


async def _trio_restarts(count: int) -> tuple[float, float]:
    import trio

    began = time.perf_counter()
    for _ in range(count):
        await trio.run_process(["true"], check=False)
    return float("nan"), (time.perf_counter() - began) / count


def restarts(count: int) -> list[tuple[str, tuple[float, float]]]:
    rows = [(f"fdloop Supervisor ({loop})", _run(loop, _supervisor_restarts, count))
            for loop in LOOPS]
    rows.append(("asyncio subprocess loop", _run("asyncio", _asyncio_restarts, count)))
    rows.append(("uvloop subprocess loop", _run("uvloop", _asyncio_restarts, count)))
    rows.append(("trio run_process loop", _run("trio", _trio_restarts, count)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--restarts", type=int, default=200)
    parser.add_argument("--skip-idle", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_idle:
        print(f"Idle: {args.programs} sleeping programs, {args.seconds:g} s window")
        print(f"{'':34} {'CPU ms':>8} {'switches':>9} {'threads':>8} {'RSS MiB':>8}")
        for name, row in idle(args.programs, args.seconds):
            print(f"{name:34} {row['cpu_ms']:8.0f} {row['switches']:9.0f} "
                  f"{row['threads']:8.0f} {row['rss_mib']:8.1f}")
    print(f"\nRestart of `true`, zero backoff, {args.restarts} restarts")
    print(f"{'':34} {'exit->start ms':>15} {'cycle ms':>9} {'cycle ratio':>12}")
    rows = restarts(args.restarts)
    base = rows[0][1][1]
    for name, (gap, cycle) in rows:
        gap_text = "-" if math.isnan(gap) else f"{gap * 1000:.3f}"
        print(f"{name:34} {gap_text:>15} {cycle * 1000:9.2f} {cycle / base:11.2f}x")
    count = max(10, args.restarts // 3)
    print(f"\nChild exit -> replacement spawned, end to end (median of {count}; the child "
          "stamps its exit)")
    e2e = end_to_end(count)
    for name, latency in e2e:
        print(f"{name:34} {latency * 1000:9.2f} ms {latency / e2e[0][1]:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
