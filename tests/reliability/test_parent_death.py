"""Parent death: ``spawn(..., die_with_parent=True)`` children end when their parent is killed.

A helper Python process spawns ``sleep 60`` through fdloop, reports the child's pid, and
is then SIGKILLed — no atexit, no kill-on-close runs. The orphaned child is reparented
(to init or a subreaper, never to us, so it can never be our zombie); with
die_with_parent the kernel SIGKILLs it, without it the child lives on (the control case
that shows the test can fail).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import anyio
import pytest

import fdloop
from fdloop import spawn
from fdloop.backends.linux import pdeathsig
from fdloop.backends.linux import spawn as linux_spawn

from .conditions import on_backend

pytestmark = on_backend("linux")  # PR_SET_PDEATHSIG: the kqueue backend has no such option
GONE_TIMEOUT = 10.0  # generous: a liveness bound, not a speed check

HELPER = textwrap.dedent(
    """
    import sys, time, anyio, fdloop

    async def main() -> None:
        proc = fdloop.spawn(["sleep", "60"], die_with_parent=sys.argv[2] == "1")
        print(proc.pid, flush=True)
        await anyio.sleep(60)

    anyio.run(main, backend=sys.argv[1])
    """
)


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer exists, or is a zombie waiting for its new parent."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _spawn_then_kill_parent(library: str, die_with_parent: bool) -> int:
    """Run the helper, SIGKILL it once it reported its child; return the child's pid."""
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER, library, "1" if die_with_parent else "0"],
        stdout=subprocess.PIPE,
    )
    try:
        assert helper.stdout is not None
        child = int(helper.stdout.readline())
    finally:
        helper.kill()
        helper.wait()
        if helper.stdout is not None:
            helper.stdout.close()
    return child


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for_program(pid: int, name: bytes) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                if comm.read().strip() == name:
                    return
        except OSError:
            return
        time.sleep(0.005)


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_sigkilled_parent_takes_its_die_with_parent_child_along(library: str) -> None:
    child = _spawn_then_kill_parent(library, die_with_parent=True)
    assert _wait_gone(child, GONE_TIMEOUT), f"child {child} outlived its SIGKILLed parent"


def test_without_die_with_parent_the_child_outlives_a_sigkilled_parent() -> None:
    child = _spawn_then_kill_parent("asyncio", die_with_parent=False)
    try:
        assert not _wait_gone(child, 0.5), "the control child died: the test proves nothing"
    finally:
        with fdloop.ProcessFD.open(child) as orphan:  # pidfd: cannot hit a recycled pid
            orphan.kill()
    assert _wait_gone(child, GONE_TIMEOUT)


async def test_die_with_parent_child_is_an_ordinary_child(spawn_path: str) -> None:
    script = 'echo "$0|$1|$2"; exit 4'
    async with spawn(["sh", "-c", script, "zero", "one two"], stdout=fdloop.PIPE,
                     die_with_parent=True) as proc:
        assert proc.stdout is not None
        output = await proc.stdout.read()
        status = await proc.wait()
    assert status.returncode == 4
    assert output == b"zero|one two|\n"  # arguments pass through the wrapper unchanged


def test_die_with_parent_missing_program_raises_before_anything_starts(spawn_path: str) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-program-fdloop"):
        spawn(["no-such-program-fdloop"], die_with_parent=True)


def test_die_with_parent_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="die_with_parent"):
        spawn(["true"], die_with_parent=1)  # type: ignore[arg-type]


async def test_program_never_runs_once_the_parent_changed(
    monkeypatch: pytest.MonkeyPatch, spawn_path: str
) -> None:
    # The race the getppid() check closes (the wrapper's $PPID, the clone path's own): a
    # parent that died before prctl leaves a child whose parent is no longer the
    # spawner. Simulate it by expecting another parent.
    if spawn_path == "clone":
        monkeypatch.setattr(linux_spawn, "_spawner_pid", lambda: 1)
    else:
        monkeypatch.setattr(pdeathsig, "_spawner_pid", lambda: 1)
    async with spawn(["sh", "-c", "exit 0"], die_with_parent=True) as proc:
        status = await proc.wait()
    assert status.returncode == 125


async def test_death_signal_follows_the_spawning_thread(spawn_path: str) -> None:
    # Documented caveat (PR_SET_PDEATHSIG is thread-scoped): the child dies with the
    # thread that spawned it, though this process lives on.
    made: list[fdloop.ProcessFD] = []

    def spawn_and_exit() -> None:
        made.append(spawn(["sleep", "60"], die_with_parent=True))
        # Stay until the wrapper has armed the death signal and exec'd the program: a
        # thread gone before setpriv's prctl leaves the child unprotected (a documented
        # setup race that $PPID cannot catch, as the process id of the parent is the same).
        _wait_for_program(made[0].pid, b"sleep")

    thread = threading.Thread(target=spawn_and_exit)
    thread.start()
    thread.join()
    async with made[0] as proc:
        with anyio.fail_after(GONE_TIMEOUT):
            status = await proc.wait()
    assert status.returncode == -signal.SIGKILL



@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_die_with_parent_unrunnable_path_raises_at_spawn(
    kind: str, spawn_path: str, tmp_path: object
) -> None:
    # Behind the fallback's exec wrapper a wrong path used to start and exit 127.
    program = os.path.join(str(tmp_path), "program")
    if kind == "not executable":
        with open(program, "w") as script:
            script.write("#!/bin/sh\nexit 0\n")
        os.chmod(program, 0o644)
    error = FileNotFoundError if kind == "missing" else PermissionError
    with pytest.raises(error) as caught:
        spawn([program], die_with_parent=True)
    assert caught.value.filename == program
