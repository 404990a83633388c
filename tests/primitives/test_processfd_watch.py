"""Watching processes we did not start: ProcessFD.open(pid) and ProcessFD.from_fd(fd)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop import ProcessFD, spawn

from .process_helpers import (  # noqa: F401  (process_backend_only is autouse)
    alive,
    kqueue_lacks,
    process_backend_only,
)

PY = sys.executable


async def _grandchild(script: str) -> tuple[fdloop.ProcessFD, int]:
    """Spawn ``sh -c script`` which prints the pid of a background job it started."""
    parent = spawn(["sh", "-c", script], stdout=fdloop.PIPE)
    assert parent.stdout is not None
    line = await parent.stdout.readline()
    return parent, int(line)


def gated_exit(gate: Path, code: int) -> str:
    """A shell script whose background job (its pid printed) exits ``code`` once ``gate``
    exists, and which then reaps it: the test opens the job before it can be gone."""
    return (f"(while [ ! -e '{gate}' ]; do sleep 0.01; done; exit {code}) & echo $!; "
            "wait $!; exit 0")


async def test_open_grandchild_gets_its_exit_code_after_its_parent_reaps(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    parent, gpid = await _grandchild(gated_exit(gate, 42))
    async with parent:
        watcher = ProcessFD.open(gpid)
        gate.touch()
        async with watcher:
            assert watcher.pid == gpid
            assert "running" in repr(watcher) and "watch-only" in repr(watcher)
            status = await watcher.wait()
            if kqueue_lacks("exit status of non-children"):  # macOS: never told
                assert not status.known
                return
            assert status.known and status.returncode == 42 and status.exit_code == 42
            assert status.rusage is None  # someone else reaped it: no rusage for us
            assert watcher.returncode == 42
        assert (await parent.wait()).returncode == 0


async def test_non_child_zombie_reports_unknown_without_spinning_then_the_code(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    parent, gpid = await _grandchild(gated_exit(gate, 9))
    async with parent:
        parent.send_signal(signal.SIGSTOP)  # the grandchild's parent cannot reap now
        watcher = ProcessFD.open(gpid)
        gate.touch()
        async with watcher:
            if fdloop.backends.selected_name() != "linux" and not kqueue_lacks(
                "exit status of non-children"
            ):  # FreeBSD: NOTE_EXIT carries a non-child's status at its exit, unreaped
                with anyio.fail_after(10):
                    status = await watcher.wait()
                assert (status.known, status.returncode) == (True, 9)
                parent.send_signal(signal.SIGCONT)
                return
            cpu_before = time.process_time()
            wall_before = time.monotonic()
            unknown = 0
            while time.monotonic() - wall_before < 1.0:
                status = await watcher.wait()  # exited, but not reaped: unknown
                assert not status.known
                assert status.returncode is None and status.exit_code is None
                unknown += 1
            # A loop spinning on the level-triggered pidfd would burn a whole CPU here.
            assert time.process_time() - cpu_before < 0.5
            assert unknown >= 1
            assert watcher.returncode is None
            parent.send_signal(signal.SIGCONT)
            if kqueue_lacks("exit status of non-children"):  # macOS: never told
                return
            with anyio.fail_after(10):
                while not (status := await watcher.wait()).known:
                    pass
            assert status.returncode == 9
        assert (await parent.wait()).returncode == 0


async def test_open_refuses_missing_pid_and_bad_input() -> None:
    proc = spawn(["true"])
    pid = proc.pid
    await proc.wait()
    await proc.aclose()
    if not alive(pid):
        with pytest.raises(ProcessLookupError):
            ProcessFD.open(pid)
    with pytest.raises(ValueError):
        ProcessFD.open(0)
    with pytest.raises(TypeError):
        ProcessFD.open("1")  # type: ignore[arg-type]


async def test_watch_only_handles_can_signal_but_never_reap() -> None:
    async with spawn(["sleep", "100"]) as proc:
        watcher = ProcessFD.open(proc.pid)
        async with watcher:
            watcher.terminate()
            with anyio.fail_after(10):
                status = await proc.wait()  # the owner reaps it, not the watcher
            assert status.returncode == -signal.SIGTERM
            assert (await watcher.wait()).returncode == -signal.SIGTERM


async def test_from_fd_adopts_a_dup_of_our_own_pidfd() -> None:
    async with spawn(["sh", "-c", "sleep 0.1; exit 4"]) as proc:
        if kqueue_lacks("passable across processes"):  # a kqueue's state is not in the fd
            duplicate = os.dup(proc.fileno())
            with pytest.raises(fdloop.UnsupportedOperation, match="detached in this"):
                ProcessFD.from_fd(duplicate)
            os.close(duplicate)
            return
        adopted = ProcessFD.from_fd(os.dup(proc.fileno()))
        async with adopted:
            assert adopted.pid == proc.pid
            # The adopted handle waits for the reap by the owner and reads the status.
            async with anyio.create_task_group() as tg:
                tg.start_soon(proc.wait)
                status = await adopted.wait()
            assert status.known and status.returncode == 4


RECEIVER = textwrap.dedent(
    """
    import asyncio, socket, sys
    import fdloop

    async def main():
        sock = socket.socket(fileno=int(sys.argv[1]))
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
        sock.close()
        proc = fdloop.ProcessFD.from_fd(fds[0])
        print("got", proc.pid, flush=True)
        async with proc:
            status = await proc.wait()
        print(status.returncode, status.known, flush=True)

    asyncio.run(main())
    """
)


async def test_receiving_process_awaits_the_exit_of_a_process_it_did_not_start() -> None:
    if kqueue_lacks("passable across processes"):
        pytest.skip("a kqueue-backed ProcessFD cannot be passed to another process")
    ours, theirs = socket.socketpair()
    receiver = spawn([PY, "-c", RECEIVER, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                     stdout=fdloop.PIPE)
    theirs.close()
    target = spawn(["sh", "-c", "read x; exit 17"], stdin=fdloop.PIPE)
    try:
        socket.send_fds(ours, [b"p"], [target.fileno()])
        ours.close()
        assert receiver.stdout is not None
        with anyio.fail_after(20):
            assert (await receiver.stdout.readline()).split() == [b"got", str(target.pid).encode()]
            assert target.stdin is not None
            await target.stdin.send(b"go\n")
            assert (await target.wait()).returncode == 17  # we reap; the receiver learns it
            assert await receiver.stdout.readline() == b"17 True\n"
            assert (await receiver.wait()).returncode == 0
    finally:
        await target.aclose()
        await receiver.aclose()
