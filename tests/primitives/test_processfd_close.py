"""Kill-on-close: aclose, close, GC, cancellation, daemons, process groups — no zombie."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import fdloop
from fdloop import spawn
from fdloop.backends.linux import pidfd as linux_pidfd
from fdloop.primitives import reaper

from ..helpers import eventually
from ..leaks import children_of
from .process_helpers import (
    alive,
    ended_by,
    members_of_group,
    needs_backend_in_child_interpreters,
    no_children,
    only_on,
    pidfd_fact,
    process_backend_only,  # noqa: F401  (autouse)
    state_of,
)

PY = sys.executable
IGNORE_TERM = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]


async def test_aclose_terminates_a_running_child_and_reaps_it() -> None:
    proc = spawn(["sleep", "100"])
    await proc.aclose()
    assert proc.closed
    assert proc.returncode == -signal.SIGTERM
    assert children_of(os.getpid()) == set()


async def test_aclose_uses_kill_signal() -> None:
    proc = spawn(["sleep", "100"], kill_signal=signal.SIGINT)
    await proc.aclose()
    assert proc.returncode == -signal.SIGINT


async def test_aclose_escalates_to_sigkill_after_kill_timeout() -> None:
    proc = spawn(IGNORE_TERM, stdout=fdloop.PIPE, kill_timeout=0.2)
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"  # the trap is in place
    await proc.aclose()
    assert proc.returncode == -signal.SIGKILL
    assert children_of(os.getpid()) == set()


async def test_aclose_of_exited_child_keeps_its_status() -> None:
    proc = spawn(["sh", "-c", "exit 3"])
    await proc.wait()
    await proc.aclose()
    await proc.aclose()  # idempotent
    assert proc.returncode == 3
    assert (await proc.wait()).returncode == 3  # a known status survives close


async def test_aclose_closes_pipe_streams() -> None:
    proc = spawn(["cat"], stdin=fdloop.PIPE, stdout=fdloop.PIPE, stderr=fdloop.PIPE)
    await proc.aclose()
    assert proc.stdin is not None and proc.stdin.closed
    assert proc.stdout is not None and proc.stdout.closed
    assert proc.stderr is not None and proc.stderr.closed
    # stdin was closed first: cat saw EOF and may have exited by itself before the TERM.
    assert proc.returncode in (0, -signal.SIGTERM)


async def test_sync_close_sigkills_and_the_loop_reaps_it() -> None:
    proc = spawn(["sleep", "100"])
    pid = proc.pid
    proc.close()
    assert proc.closed
    with pytest.raises(fdloop.ClosedResourceError):
        await proc.wait()
    # Reaped from the running loop (add_reader callback / trio system task).
    assert await eventually(lambda: not children_of(os.getpid()))
    assert not alive(pid)
    assert reaper.pending() == 0


def test_reaper_children_names_every_child_fdloop_will_reap() -> None:
    # What another reaper in this process (the Supervisor's subreaper) must leave alone:
    # open spawning handles, closed-but-unreaped children; not watch-only handles.
    running = spawn(["sleep", "30"])
    watched = fdloop.ProcessFD.open(os.getpid())
    try:
        # close() SIGKILLs and reaps with WNOHANG at once: a child that died quickly
        # enough is reaped there and then (and rightly left out); one still dying waits
        # in the reaper's table (no loop runs here). Which one happens is up to the
        # scheduler, so the test checks the rule for whichever it got, and closes until
        # the table case has been seen (almost always at the first try).
        for _attempt in range(50):
            closed = spawn(["sleep", "30"])
            closed.close()
            children = reaper.children()
            assert running.pid in children
            assert (closed.pid in children) == _unreaped_child(closed.pid)
            if closed.pid in children:
                break
        else:
            pytest.fail("close() reaped the SIGKILLed child at once 50 times out of 50")
        assert os.getpid() not in reaper.children()
        running.close()
        assert ended_by(running.pid) in (signal.SIGKILL, None)  # None: reaped at once
        assert ended_by(closed.pid) == signal.SIGKILL
        reaper.sweep()  # both have exited: one sweep takes them
        assert not reaper.children()
    finally:
        watched.close()
        running.close()
    assert no_children()


def _unreaped_child(pid: int) -> bool:
    """Whether ``pid`` is still our child, exited or not (waitid WNOWAIT reaps nothing)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def test_sync_close_never_blocks_and_reaps_with_wnohang_only(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    pidfd_fact()  # instruments the Linux backend's waitid
    options_seen: list[int] = []
    real = linux_pidfd._waitid

    def recording(fd: int, options: int) -> object:
        options_seen.append(options)
        return real(fd, options)

    monkeypatch.setattr(linux_pidfd, "_waitid", recording)
    proc = spawn(["sleep", "30"])
    proc.close()  # no loop runs here: the child goes to the reaper's table
    assert options_seen and all(o & os.WNOHANG for o in options_seen)
    # Swept at the next spawn (or explicitly): nothing blocks, the zombie goes away.
    assert ended_by(proc.pid) in (signal.SIGKILL, None)
    reaper.sweep()
    assert no_children()
    assert all(o & os.WNOHANG for o in options_seen)


def test_next_spawn_reaps_orphans_without_a_loop() -> None:
    first = spawn(["sleep", "100"])
    pid = first.pid
    first.close()
    deadline = time.monotonic() + 5
    while pid in {p for p, _ in children_of(os.getpid())} and time.monotonic() < deadline:
        with spawn(["true"]) as other:  # spawn sweeps the reaper table
            while other.poll() is None:
                time.sleep(0.005)
    assert pid not in {p for p, _ in children_of(os.getpid())}


async def test_garbage_collection_warns_kills_and_reaps() -> None:
    proc = spawn(["sleep", "100"])
    pid = proc.pid
    with pytest.warns(ResourceWarning, match="unclosed"):
        del proc
        gc.collect()
    assert await eventually(lambda: not alive(pid))
    assert await eventually(lambda: not children_of(os.getpid()))


async def test_cancelling_the_owning_scope_ends_the_child() -> None:
    started: list[fdloop.ProcessFD] = []
    with anyio.move_on_after(0.2) as scope:
        async with spawn(["sleep", "100"]) as proc:
            started.append(proc)
            await proc.wait()
    assert scope.cancelled_caught
    assert started[0].returncode == -signal.SIGTERM  # aclose ran to the reap, shielded
    assert children_of(os.getpid()) == set()


async def test_cancelling_during_aclose_still_kills_and_reaps() -> None:
    proc = spawn(IGNORE_TERM, stdout=fdloop.PIPE, kill_timeout=0.3)
    assert proc.stdout is not None
    await proc.stdout.readline()
    with anyio.move_on_after(0.05):
        await proc.aclose()  # shielded: runs to the SIGKILL and the reap regardless
    assert proc.closed
    assert proc.returncode == -signal.SIGKILL
    assert children_of(os.getpid()) == set()


async def test_native_asyncio_task_cancel_ends_the_child() -> None:
    only_on("asyncio")
    pids: list[int] = []

    async def owner() -> None:
        async with spawn(["sleep", "100"]) as proc:
            pids.append(proc.pid)
            await proc.wait()

    task = asyncio.ensure_future(owner())
    await eventually(lambda: pids)
    task.cancel()  # lands in wait(); a bare cancel is delivered once, aclose then runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not children_of(os.getpid())  # aclose TERMinated and reaped it


async def test_native_cancel_inside_aclose_hands_child_to_reaper() -> None:
    only_on("asyncio")
    proc = spawn(IGNORE_TERM, stdout=fdloop.PIPE, kill_timeout=10)
    assert proc.stdout is not None
    await proc.stdout.readline()
    task = asyncio.ensure_future(proc.aclose())
    await asyncio.sleep(0.05)
    task.cancel()  # a bare Task.cancel is not stopped by anyio's shield
    with pytest.raises(asyncio.CancelledError):
        await task
    assert proc.closed
    assert await eventually(lambda: not children_of(os.getpid()))


async def test_daemon_survives_close_and_is_still_reaped(tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the daemon exits once it exists
    proc = spawn(["sh", "-c", f"while [ ! -e '{gate}' ]; do sleep 0.01; done"], daemon=True)
    pid = proc.pid
    await proc.aclose()
    assert "daemon" in repr(proc)
    assert alive(pid)  # not killed
    gate.touch()
    # When it exits while we live, the reaper (watching in this loop) reaps it.
    assert await eventually(lambda: not children_of(os.getpid()))


async def test_new_session_close_kills_the_whole_group() -> None:
    proc = spawn(["sh", "-c", "sleep 100 | cat"], stdout=fdloop.PIPE, start_new_session=True)
    assert await eventually(lambda: len(members_of_group(proc.pid)) >= 3)
    assert proc.stdout is not None
    stdout = proc.stdout
    proc.terminate()  # the group: sh, sleep and cat
    # The grandchildren held the pipe: EOF proves they are gone too.
    assert await stdout.read() == b""
    await proc.aclose()
    assert proc.returncode == -signal.SIGTERM
    assert await eventually(lambda: not members_of_group(proc.pid))


async def test_group_is_signalled_after_its_leader_exited_until_it_is_reaped() -> None:
    # Pitfall 8: the leader exits, its background job lives on in the group. Until the
    # leader is reaped its pid is the group id and cannot be reused, so the group can
    # still be reached through the handle.
    proc = spawn(["sh", "-c", "sleep 100 & echo $!"], stdout=fdloop.PIPE,
                 start_new_session=True)
    assert proc.stdout is not None
    straggler = int(await proc.stdout.readline())
    assert await eventually(lambda: state_of(proc.pid) == "Z")  # exited, not reaped
    assert alive(straggler)
    proc.terminate()
    assert await eventually(lambda: not alive(straggler))
    await proc.aclose()
    assert proc.returncode == 0


async def test_new_session_aclose_kills_the_pipeline() -> None:
    proc = spawn(["sh", "-c", "sleep 100 | cat"], start_new_session=True)
    pgid = proc.pid
    assert await eventually(lambda: len(members_of_group(pgid)) >= 3)
    await proc.aclose()
    assert await eventually(lambda: not members_of_group(pgid))


async def test_open_and_from_fd_handles_never_kill() -> None:
    async with spawn(["sleep", "100"]) as proc:
        watcher = fdloop.ProcessFD.open(proc.pid)
        await watcher.aclose()
        if fdloop.backends.selected_name() == "linux":
            adopted = fdloop.ProcessFD.from_fd(os.dup(proc.fileno()))
            adopted.close()
        assert alive(proc.pid)
        assert "watch-only" in repr(watcher)


def test_interpreter_exit_kills_children_and_leaves_daemons(tmp_path: Any) -> None:
    needs_backend_in_child_interpreters()
    script = textwrap.dedent(
        """
        import fdloop, sys
        killed = fdloop.spawn(["sleep", "100"], stdout=fdloop.DEVNULL)
        daemon = fdloop.spawn(["sleep", "30"], daemon=True, stdout=fdloop.DEVNULL,
                              stderr=fdloop.DEVNULL)
        print(killed.pid, daemon.pid, flush=True)
        # no close: interpreter exit must SIGKILL `killed` and leave `daemon` running
        """
    )
    result = subprocess.run(
        [PY, "-W", "ignore::ResourceWarning", "-c", script],
        capture_output=True, text=True, check=True, timeout=30,
    )
    killed, daemon = map(int, result.stdout.split())
    assert not alive(killed)
    assert alive(daemon)
    # The daemon now belongs to init (or a subreaper); end it early, it is harmless.
    os.kill(daemon, signal.SIGKILL)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_copy_never_kills_or_reaps_the_parents_children() -> None:
    proc = spawn(["sleep", "30"])
    orphan = spawn(["sleep", "30"])
    orphan.close()  # SIGKILLed, pending in the reaper table (no loop here)
    pid = os.fork()
    if pid == 0:  # the forked child: closing, collecting and exiting must touch nothing
        code = 0
        try:
            proc.close()
            gc.collect()
            reaper.sweep()
            reaper._at_exit()  # what a normal exit of the fork would run for fdloop
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert proc.poll() is None  # still running, still ours
    proc.kill()
    assert ended_by(proc.pid) == signal.SIGKILL
    assert proc.poll() is not None
    assert proc.returncode == -signal.SIGKILL
    proc.close()
    assert ended_by(orphan.pid) in (signal.SIGKILL, None)
    reaper.sweep()
    assert no_children()
