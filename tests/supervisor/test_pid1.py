"""``fdloop supervise`` as PID 1 of a pid namespace (fdloop/supervisor/pid1.py).

Each test runs the real CLI under ``unshare --pid --fork --mount-proc`` (root here), so
the supervisor is the namespace's init: orphans are reparented to it, and the kernel
drops every signal it has no handler for. From outside, the test finds the namespace's
processes by their pid-namespace link and reads their state from /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fdloop.primitives.exitstatus import ExitStatus
from fdloop.supervisor import pid1
from fdloop.supervisor.events import ProgramState, ProgramStatus

from .supervise_harness import LOOP_PARAMS

HANG = 30.0
UNSHARE = shutil.which("unshare")

needs_pid_namespace = pytest.mark.skipif(
    UNSHARE is None or os.geteuid() != 0 or not sys.platform.startswith("linux"),
    reason="needs root and util-linux unshare for a pid namespace",
)


class Init:
    """``fdloop supervise ARGS`` as PID 1 of a new pid namespace."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        assert UNSHARE is not None
        self.err_path = tmp_path / "stderr.txt"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [UNSHARE, "--pid", "--fork", "--mount-proc", sys.executable, "-m",
                 "fdloop.cli", "supervise", *args],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
            )
        self.host_pid = self._init_pid()

    def _init_pid(self) -> int:
        """The host pid of the namespace's PID 1: unshare's only child."""
        deadline = time.monotonic() + HANG
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        while time.monotonic() < deadline:
            with open(path) as children:
                found = children.read().split()
            if found:
                return int(found[0])
            time.sleep(0.005)
        raise AssertionError("unshare started no child")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        deadline = time.monotonic() + HANG
        while True:
            found = re.findall(pattern, self.stderr, re.MULTILINE)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} x{count} never showed up\n{self.stderr}")
            time.sleep(0.01)

    def namespace_states(self) -> dict[int, str]:
        """Host pid -> state letter of every process in the namespace now."""
        namespace = os.readlink(f"/proc/{self.host_pid}/ns/pid")
        states = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                    continue
                with open(f"/proc/{entry}/stat") as stat:
                    states[int(entry)] = stat.read().rpartition(")")[2].split()[0]
            except OSError:
                continue  # gone meanwhile
        return states

    def __enter__(self) -> Init:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:  # a failed test: end the namespace (its init)
            self.proc.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.host_pid, signal.SIGKILL)
            self.proc.wait()

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the namespace's init did not exit\n{self.stderr}") from None


# Two orphans: a subshell's background sleep, and a setsid daemon's child. Both parents
# exit at once, so both sleeps are reparented to PID 1 and become its zombies at exit.
ORPHANS = "(sleep 0.1 &); setsid sh -c 'sleep 0.15 & exit 0'; "


@needs_pid_namespace
@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_pid1_reaps_every_orphan_and_exits_128_plus_sigterm(tmp_path: Path, loop: str) -> None:
    with Init(tmp_path, "--loop", loop, "--stop-timeout", "5", "--",
              "sh", "-c", ORPHANS + "exec sleep 30") as init:
        init.wait_for(r"running as PID 1")
        # No --subreaper: as PID 1 the orphans come to us, and we reap them.
        init.wait_for(r"supervisor: reaped orphan \d+ \(returncode 0\)", count=2)
        states = init.namespace_states()
        assert "Z" not in states.values(), states
        assert init.host_pid in states
        # SIGTERM from the parent namespace to the init: delivered because the
        # supervisor has it blocked for its SignalFD (an init without a handler for
        # it would never see it).
        os.kill(init.host_pid, signal.SIGTERM)
        # The program (sleep) dies of SIGTERM: like tini, the init exits 128 + 15.
        assert init.finish() == 128 + signal.SIGTERM, init.stderr
        assert "received SIGTERM" in init.stderr


@needs_pid_namespace
def test_pid1_exits_with_the_programs_own_code(tmp_path: Path) -> None:
    trapped = tmp_path / "trapped"
    program = f"trap 'exit 7' TERM; touch {trapped}; sleep 30 & wait"
    with Init(tmp_path, "--", "sh", "-c", program) as init:
        deadline = time.monotonic() + HANG
        while not trapped.exists() and time.monotonic() < deadline:  # the trap is set
            time.sleep(0.01)
        os.kill(init.host_pid, signal.SIGINT)  # SIGINT is a shutdown too
        assert init.finish() == 7, init.stderr


@needs_pid_namespace
def test_pid1_with_several_programs_keeps_fdloops_exit_status(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text(
        '[program.one]\ncommand = ["sleep", "30"]\n[program.two]\ncommand = ["sleep", "30"]\n'
    )
    with Init(tmp_path, str(config)) as init:
        init.wait_for(r"(one|two): started", count=2)
        os.kill(init.host_pid, signal.SIGTERM)
        assert init.finish() == 0, init.stderr  # both stopped on request: clean


def _status(last: ExitStatus | None) -> ProgramStatus:
    return ProgramStatus("p", ProgramState.EXITED, None, 0, last, None)


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (ExitStatus(5, 0, exit_code=0), 0),
        (ExitStatus(5, 3, exit_code=3), 3),
        (ExitStatus(5, -9, signal=9), 128 + 9),
        (ExitStatus.unknown(5), None),
        (None, None),
    ],
)
def test_program_exit_status_is_tinis(last: ExitStatus | None, expected: int | None) -> None:
    assert pid1.program_exit_status({"p": _status(last)}) == expected
    two = {"a": _status(last), "b": _status(last)}
    assert pid1.program_exit_status(two) is None


def test_outside_pid1_the_supervisors_status_stands() -> None:
    assert not pid1.is_pid1()
    pid1.remember({"p": _status(ExitStatus(5, 3, exit_code=3))})
    try:
        assert pid1.exit_status(0) == 0
        assert pid1.exit_status(1) == 1
    finally:
        pid1.remember({})
