"""``fdloop supervise`` as a real process, at its edges: what a SIGKILLed supervisor
leaves behind (its notify directory: notify.py's sweeper removes it), and a SIGHUP that
comes before start-up is done (it waits, blocked, and restarts the programs once they
have started, instead of killing the supervisor with 129).

Every wait is bounded (HANG, or a 10 s liveness bound) only to turn a hang into a
failure; nothing measures time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..leaks import stat_fields
from .supervise_harness import HANG, Supervise, write

NOTIFY_CONFIG = """
[program.speaker]
command = ["sh", "-c", "echo socket=$NOTIFY_SOCKET pid=$$; exec sleep 1000"]
ready = "notify"
"""


def _until(predicate: Callable[[], bool], seconds: float = 10.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def test_a_sigkilled_supervisor_leaves_no_notify_directory(
    tmp_path: Path, started: list[Supervise]
) -> None:
    sup = Supervise(tmp_path, "--no-control", str(write(tmp_path, NOTIFY_CONFIG)))
    started.append(sup)
    found = sup.wait_for(r"socket=(\S+) pid=(\d+)", stream="stdout")[0]
    directory, program = os.path.dirname(found[0]), int(found[1])
    try:
        assert os.path.isdir(directory) and "fdloop-notify-" in directory
        sup.proc.kill()
        sup.proc.wait()
        assert _until(lambda: not os.path.exists(directory)), f"{directory} is still there"
    finally:
        # Where nothing ends a SIGKILLed supervisor's program (the kqueue backend: no
        # PR_SET_PDEATHSIG), the test does.
        if _alive(program):
            os.kill(program, signal.SIGKILL)


def _has_signalfd(pid: int) -> bool:
    fds = f"/proc/{pid}/fd"
    for name in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, name)) == "anon_inode:[signalfd]":
                return True
        except OSError:
            pass
    return False


HUP_CONFIG = """
[program.one]
command = "sleep 1000"
"""


def test_a_sighup_during_start_up_waits_and_restarts_the_programs(
    tmp_path: Path, started: list[Supervise]
) -> None:
    """The SIGHUP is sent while the supervisor is stopped (SIGSTOP) at a moment when its
    control socket is bound (supervise_main runs) but no SignalFD exists yet: the only
    window the test can aim at. A run that missed it is tried again."""
    config = str(write(tmp_path, HUP_CONFIG))
    control = tmp_path / "ctl.sock"
    for _attempt in range(20):
        sup = Supervise(tmp_path, "--control", str(control), config)
        started.append(sup)
        pid = sup.proc.pid

        def bound(proc: subprocess.Popen[bytes] = sup.proc) -> bool:
            return control.exists() or proc.poll() is not None

        # Polled often: the window between the bind and the SignalFD is short.
        assert _until(bound, HANG, 0.001)
        assert sup.proc.poll() is None, sup.stderr
        os.kill(pid, signal.SIGSTOP)
        if _has_signalfd(pid):  # too late: start-up was done already
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
            sup.proc.wait()
            control.unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGHUP)
        os.kill(pid, signal.SIGCONT)
        break
    else:
        pytest.skip("start-up never stopped before its SignalFD existed in 20 tries")
    first = sup.started_pid("one")  # the SIGHUP did not end the supervisor (exit 129)
    second = sup.started_pid("one", 1)  # it restarted the program once it had started it
    assert first != second
    assert "received SIGHUP" in sup.stderr
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
