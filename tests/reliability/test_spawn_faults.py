"""Faults around a child: no fds, outside kills, early stdio close, forks, closes, shutdowns.

Each test injects one fault with real kernel objects and checks that fdloop reports it
clearly and leaves no fd and no process behind (the autouse fixture in tests/conftest.py
checks both after every test, zombies included).
"""

from __future__ import annotations

import errno
import os
import signal
import time

import anyio
import pytest

import fdloop
from fdloop import DEVNULL, PIPE, STDOUT, spawn
from fdloop.primitives import reaper

from ..leaks import children_of, open_fds
from .conditions import free_fds, on_backend

# How many fds spawn makes at its peak for each stdio choice, so the sweep below must see
# exactly that many EMFILE failures before the first success: one per pipe end, one for
# /dev/null, one for the pidfd. clone(CLONE_PIDFD) makes the pidfd while the child's ends
# are still open; after posix_spawn they are closed before pidfd_open.
STDIO_CASES = {  # stdio, (peak with clone, peak with posix_spawn)
    "inherit": ({}, (1, 1)),  # the pidfd alone
    "stdout-pipe": ({"stdout": PIPE}, (3, 2)),
    "three-pipes": ({"stdin": PIPE, "stdout": PIPE, "stderr": PIPE}, (7, 6)),
    "devnull+pipe": ({"stdin": DEVNULL, "stdout": PIPE, "stderr": STDOUT}, (4, 3)),
}


@on_backend("linux")  # the counts are the Linux backend's fds (pipes, /dev/null, pidfd)
@pytest.mark.parametrize("case", list(STDIO_CASES))
async def test_emfile_at_each_fd_spawn_makes_is_clear_and_leaves_nothing(
    case: str, spawn_path: str
) -> None:
    stdio, peaks = STDIO_CASES[case]
    needed = peaks[0] if spawn_path == "clone" else peaks[1]
    assert reaper.pending() == 0  # an orphan's pidfd closing mid-sweep would skew k
    failures = 0
    for k in range(needed + 2):
        before = open_fds()
        proc = None
        with free_fds(k):
            try:
                proc = spawn(["true"], **stdio)
            except OSError as exc:
                error = exc
        if proc is None:
            assert error.errno == errno.EMFILE, error
            message = str(error)
            assert "RLIMIT_NOFILE" in message and "raise_fd_limit" in message, message
            assert "spawn('true')" in message, message
            assert open_fds() == before, f"k={k}: fds left behind"
            assert children_of(os.getpid()) == set(), f"k={k}: a child was left behind"
            failures += 1
            continue
        async with proc:
            assert (await proc.wait()).returncode == 0
        break
    assert failures == needed, f"expected EMFILE at each of the {needed} fds spawn makes"


async def test_child_killed_from_outside_reports_sigkill() -> None:
    async with spawn(["sleep", "60"]) as proc:
        # Another process kills it: fdloop only learns of it through the pidfd.
        async with spawn(["kill", "-KILL", str(proc.pid)]) as killer:
            assert (await killer.wait()).returncode == 0
        with anyio.fail_after(10):
            status = await proc.wait()
    assert status.returncode == -signal.SIGKILL
    assert status.signal == signal.SIGKILL and status.exit_code is None


async def test_child_closing_its_stdio_early() -> None:
    script = "exec 0<&- 1>&- 2>&-; sleep 0.2; exit 3"
    async with spawn(["sh", "-c", script], stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        with anyio.fail_after(10):
            assert await proc.stdout.read() == b""  # EOF while the child still runs
            assert await proc.stderr.read() == b""
            with pytest.raises(fdloop.BrokenResourceError):
                for _ in range(64):  # the first writes may still fit the pipe's buffer
                    await proc.stdin.send(b"x" * 4096)
            status = await proc.wait()
    assert status.returncode == 3


async def test_exit_is_seen_while_a_grandchild_keeps_the_pipe_open() -> None:
    # sh starts a background sleep that inherits stdout, prints its pid and exits: the
    # pipe has no EOF while the grandchild lives, yet wait() must return sh's status.
    script = "sleep 60 & echo $!; exit 5"
    async with spawn(["sh", "-c", script], stdout=PIPE) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(10):
            grandchild = int(await proc.stdout.readline())
            status = await proc.wait()
        assert status.returncode == 5
        with anyio.move_on_after(0.2):
            await proc.stdout.read()  # would wait for the grandchild: no EOF yet
            pytest.fail("EOF arrived while the grandchild still holds the pipe")
        # The grandchild is not ours (reparented): kill it through a watch-only handle.
        with fdloop.ProcessFD.open(grandchild) as orphan:
            orphan.kill()
            with anyio.fail_after(10):
                await orphan.wait()
        with anyio.fail_after(10):
            assert await proc.stdout.read() == b""  # its death closed the last write end


async def test_close_while_ten_tasks_wait_wakes_them_all_and_kills_the_child() -> None:
    proc = spawn(["sleep", "60"], stdout=PIPE)
    pid = proc.pid
    outcomes: list[str] = []

    async def waiter() -> None:
        try:
            await proc.wait()
            outcomes.append("status")
        except fdloop.ClosedResourceError:
            outcomes.append("closed")

    async def reader() -> None:
        assert proc.stdout is not None
        try:
            await proc.stdout.read()
            outcomes.append("eof")
        except fdloop.ClosedResourceError:
            outcomes.append("closed")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(waiter)
            tg.start_soon(reader)
            await anyio.sleep(0.05)
            proc.close()
    assert outcomes == ["closed"] * 11
    with anyio.fail_after(10):
        while pid in {p for p, _state in children_of(os.getpid())}:
            await anyio.sleep(0.01)  # reaped by the reaper through the running loop


async def test_aclose_while_ten_tasks_wait_gives_them_all_the_status() -> None:
    proc = spawn(["sleep", "60"])
    statuses: list[fdloop.ExitStatus] = []

    async def waiter() -> None:
        statuses.append(await proc.wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(waiter)
            await anyio.sleep(0.05)
            await proc.aclose()
    assert [s.returncode for s in statuses] == [-signal.SIGTERM] * 10
    assert len({id(s) for s in statuses}) == 1  # every waiter got the very same status


async def test_reaper_watch_stopped_before_it_ran_leaves_a_reused_fd_alone() -> None:
    # Found by the spawn/wait load test on trio: close() hands the child to the reaper,
    # whose watch (a trio system task) had not run yet when the next spawn's sweep reaped
    # the child and closed the pidfd; the new child's pidfd got the same number, and the
    # stale watch then waited on it: BusyResourceError in a system task ended the run.
    first = spawn(["sleep", "60"])
    number = first.fileno()
    first.close()  # SIGKILL; the reaper starts watching (without running the loop yet)
    with anyio.fail_after(10):
        while _state(first.pid) not in ("Z", None):
            time.sleep(0.001)  # blocking on purpose: the loop must not run in between
    second = spawn(["sleep", "60"])  # its sweep reaps the first child, closing its pidfd
    if second.fileno() != number:
        second.close()
        pytest.skip("the kernel did not reuse the fd number")
    async with second:
        with anyio.move_on_after(0.1):
            await second.wait()
        assert second.returncode is None
    assert second.returncode == -signal.SIGTERM


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]
