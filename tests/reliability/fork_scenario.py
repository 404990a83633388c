"""One fork scenario, run in a fresh interpreter by test_fork_safety.py.

``python fork_scenario.py LIBRARY MODE`` (LIBRARY: asyncio, uvloop or trio). Inside a
running loop, tasks wait on an EventFD, a TimerFD, a SignalFD, a child's ProcessFD
(through the ready set), its stdout stream and a VirtualFD's POLLIN; then the process
forks from inside a task, and the forked child, by MODE: ``refuse`` tries everything a
ProcessFD, TimerFD or VirtualFD copy must refuse there (signals, poll, wait; setting
or reading the timer, setting the readiness) and reports what happened; ``close`` closes every
copy explicitly; ``collect`` drops the objects to the garbage collector (finalizers) and
runs the atexit handlers, as at exit. Then it exits (os._exit). The parent then checks
that each of its waits still wakes, and that its child was neither signalled nor reaped.
One JSON line on stdout reports both sides.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import select
import signal
import sys
from typing import Any

import anyio

import fdloop
from fdloop.errors import UnsupportedOperation

LIBRARY, MODE = sys.argv[1], sys.argv[2]
HANG_GUARD = 10.0


def attempt(call: Any) -> str:
    """What a ProcessFD call did in the forked child: "ok", or the error and whether its
    message says this is a forked child's copy."""
    try:
        result = call()
        if asyncio.iscoroutine(result):
            result.send(None)  # the first step of wait(): where a refusal is raised
    except UnsupportedOperation as exc:
        return "refused, names fork" if "forked child" in str(exc) else f"refused: {exc}"
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def in_forked_child(objects: dict[str, Any], report_fd: int) -> None:
    proc, timer, vfd = objects["proc"], objects["timer"], objects["vfd"]
    report: dict[str, str] = {}
    if MODE == "refuse":
        report = {
            # The timer and the readiness are shared kernel objects: the parent's.
            "timer_set": attempt(lambda: timer.set(0.001)),
            "timer_disarm": attempt(timer.disarm),
            "timer_wait_nowait": attempt(timer.wait_nowait),
            "timer_wait": attempt(timer.wait),
            "vfd_set": attempt(lambda: vfd.set(select.POLLOUT)),
            "vfd_add": attempt(lambda: vfd.add(select.POLLOUT)),
            "vfd_remove": attempt(lambda: vfd.remove(select.POLLIN)),
            "send_signal": attempt(lambda: proc.send_signal(signal.SIGTERM)),
            "send_signal_0": attempt(lambda: proc.send_signal(0)),
            "terminate": attempt(proc.terminate),
            "kill": attempt(proc.kill),
            "poll": attempt(proc.poll),
            "wait": attempt(proc.wait),
            "read": attempt(proc.read),
            "spare_poll": attempt(objects["spare_proc"].poll),
            "returncode": attempt(lambda: proc.returncode),  # answers (None), never polls
            "repr": repr(proc),
        }
    elif MODE == "close":
        for name in ("efd", "timer", "sfd", "memfd", "spare_efd", "spare_proc", "vfd"):
            objects[name].close()
        proc.stdout.close()
        proc.stdin.close()
        proc.close()
    elif MODE == "collect":
        # Only the waiters' tasks (copies that never run again here) still refer to the
        # objects they wait on; the others are collected, then atexit runs as at exit.
        for name in ("spare_efd", "spare_proc", "memfd"):
            del objects[name]
        gc.collect()
        atexit._run_exitfuncs()
    os.write(report_fd, json.dumps(report).encode())


async def main() -> dict[str, Any]:
    objects: dict[str, Any] = {
        "efd": fdloop.EventFD(),
        "timer": fdloop.TimerFD(),
        "sfd": fdloop.SignalFD({signal.SIGUSR1}),
        "memfd": fdloop.MemFD.from_bytes(b"shared", seal=False),
        "vfd": fdloop.VirtualFD(),
        "spare_efd": fdloop.EventFD(),
        "spare_proc": fdloop.spawn(["sleep", "60"]),
        "proc": fdloop.spawn(["cat"], stdin=fdloop.PIPE, stdout=fdloop.PIPE),
    }
    efd, timer, sfd, proc = objects["efd"], objects["timer"], objects["sfd"], objects["proc"]
    # A wait that ended: asyncio keeps this registration for the next wait. (No local
    # names for the spare objects: the child's copy of this frame would keep them.)
    got: dict[str, Any] = {}
    waiting = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(objects["spare_efd"].read)
        await anyio.sleep(0)  # parked in the wait, so the read registers
        objects["spare_efd"].write(1)

    async def take(name: str, wait: Any) -> None:
        try:
            result = await wait()
        except Exception as exc:  # e.g. EOF from a cat that the child killed
            result = f"{type(exc).__name__}: {exc}"
        if name == "exit" and not isinstance(result, str):
            result = result.returncode  # an ExitStatus
        got[name] = result
        if {"efd", "timer", "sfd", "stdout", "exit", "vfd"} <= got.keys():
            waiting.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(take, "efd", efd.read)
        tasks.start_soon(take, "timer", timer.wait)
        tasks.start_soon(take, "sfd", lambda: _signo(sfd))
        tasks.start_soon(take, "stdout", proc.stdout.receive)
        tasks.start_soon(take, "exit", proc.wait)
        tasks.start_soon(take, "vfd", lambda: fdloop.wait_events(objects["vfd"], select.POLLIN))
        for _ in range(20):
            await anyio.sleep(0)  # every task is parked in its wait now
        report_read, report_write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(report_read)
            try:
                in_forked_child(objects, report_write)
            finally:
                os._exit(0)
        os.close(report_write)
        _, status = os.waitpid(child, 0)
        with os.fdopen(report_read, "rb") as report:
            child_report = json.loads(report.read() or b"{}")
        untouched = proc.poll() is None and objects["spare_proc"].poll() is None
        # Each wait must still wake, for whatever the parent does now.
        efd.write(7)
        timer.set(0.001)
        objects["vfd"].set(select.POLLIN)
        os.kill(os.getpid(), signal.SIGUSR1)
        try:
            await proc.stdin.send(b"still here")
        except fdloop.BrokenResourceError:
            got["stdout"] = "cat is gone"  # (it was signalled)
        with anyio.move_on_after(HANG_GUARD):
            while "stdout" not in got:
                await anyio.sleep(0.001)
        proc.stdin.close()  # cat exits on EOF
        with anyio.move_on_after(HANG_GUARD):
            await waiting.wait()
        # asyncio still holds the earlier wait's registration: a new wait relies on it.
        tasks.start_soon(take, "spare_efd", objects["spare_efd"].read)
        for _ in range(20):
            await anyio.sleep(0)
        objects["spare_efd"].write(3)
        with anyio.move_on_after(HANG_GUARD):
            while "spare_efd" not in got:
                await anyio.sleep(0.001)
        got["memfd"] = objects["memfd"].pread(6, 0)
        tasks.cancel_scope.cancel()
    for name in ("efd", "timer", "sfd", "memfd", "spare_efd", "vfd"):
        objects[name].close()
    await objects["spare_proc"].aclose()
    await proc.aclose()
    return {
        "child_exit": os.waitstatus_to_exitcode(status),
        "child": child_report,
        "untouched": untouched,
        "got": {k: v.decode() if isinstance(v, bytes) else v for k, v in got.items()},
    }


async def _signo(sfd: Any) -> int:
    return int((await sfd.read()).signo)


def run() -> dict[str, Any]:
    if LIBRARY == "trio":
        import trio

        return trio.run(main)
    if LIBRARY == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


if __name__ == "__main__":
    print(json.dumps(run()))
