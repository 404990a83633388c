"""The three ways the Linux backend reaps through a pidfd agree on what a child says.

The compiled extension's ``reap``, the ctypes raw syscall (both with rusage) and
``os.waitid`` (without) are used depending on what is built; each is checked here on the
same real children: an exit code, a signal, a core-dumping signal, and one still running.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd"),
    # The forked children only set a limit and exit or die (no lock taken): the threads
    # Python 3.12+ warns about (worker threads that earlier tests' loops left idling)
    # cannot deadlock them.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

if sys.platform.startswith("linux"):
    from fdloop.backends.contract import RawExit
    from fdloop.backends.linux import pidfd as linux_pidfd

WEXITED, WNOHANG, WNOWAIT = 4, 1, 0x01000000


def _ways() -> list[str]:
    ways = ["stdlib"]
    if sys.platform.startswith("linux") and linux_pidfd._SYS_WAITID is not None:
        ways.append("ctypes")
    if sys.platform.startswith("linux") and linux_pidfd._native_reap is not None:
        ways.append("native")
    return ways


def _waitid(way: str) -> Callable[[int, int], RawExit | None]:
    return {"stdlib": linux_pidfd._stdlib_waitid, "ctypes": linux_pidfd._raw_waitid,
            "native": linux_pidfd._native_waitid}[way]


def _child(action: Callable[[], None], core_dir: str | None = None) -> tuple[int, int]:
    pid = os.fork()
    if pid == 0:
        try:
            if core_dir is None:
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            else:
                os.chdir(core_dir)
                _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
                resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
            action()
        finally:
            os._exit(99)
    return pid, os.pidfd_open(pid)


def _exit_with(code: int) -> Callable[[], None]:
    return lambda: os._exit(code)


def _killed_by(signo: int) -> Callable[[], None]:
    def die() -> None:
        # Whatever this test process has done to the signal (a SignalFD blocks it), the
        # child starts from the default; a small program dies, so a core is small too.
        signal.signal(signo, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})
        os.execv("/bin/sh", ["sh", "-c", f"kill -{signal.Signals(signo).name[3:]} $$"])
    return die


@pytest.mark.parametrize("way", _ways())
@pytest.mark.parametrize(("action", "expected"), [
    (_exit_with(0), 0),
    (_exit_with(7), 7 << 8),
    (_killed_by(signal.SIGTERM), signal.SIGTERM),
    (_killed_by(signal.SIGQUIT), signal.SIGQUIT),  # RLIMIT_CORE 0: no core, no 0x80
    (_killed_by(signal.SIGQUIT), signal.SIGQUIT | 0x80),
], ids=["exit-0", "exit-7", "sigterm", "sigquit", "sigquit-core"])
def test_every_way_reports_the_same_status(
    way: str, action: Callable[[], None], expected: int, tmp_path: Path
) -> None:
    core_dir = None
    if expected & 0x80:
        with open("/proc/sys/kernel/core_pattern") as pattern:
            if pattern.read().startswith("|") or resource.getrlimit(
                    resource.RLIMIT_CORE)[1] == 0:
                pytest.skip("cores go to a helper program (or are not allowed) here")
        core_dir = str(tmp_path)
    pid, fd = _child(action, core_dir)
    try:
        select.select([fd], [], [], 30)
        peek = _waitid(way)(fd, WEXITED | WNOWAIT)
        raw = _waitid(way)(fd, WEXITED | WNOHANG)
        assert peek is not None and raw is not None
        assert (peek.pid, peek.status) == (raw.pid, raw.status) == (pid, expected)
        if way != "stdlib":
            assert raw.user_cpu is not None and raw.user_cpu >= 0
            assert raw.max_rss is not None and raw.max_rss > 0
        with pytest.raises(ChildProcessError):
            _waitid(way)(fd, WEXITED | WNOHANG)  # reaped: no longer our child to wait for
    finally:
        os.close(fd)


@pytest.mark.parametrize("way", _ways())
def test_a_running_child_gives_none(way: str) -> None:
    read_end, write_end = os.pipe()
    _pid, fd = _child(lambda: (os.close(write_end), os.read(read_end, 1), None)[-1])
    try:
        assert _waitid(way)(fd, WEXITED | WNOHANG) is None
    finally:
        os.close(write_end)
        os.close(read_end)
        os.waitid(os.P_PIDFD, fd, os.WEXITED)
        os.close(fd)


def test_fdloop_info_names_the_spawn_and_reap_paths_in_force() -> None:
    from fdloop.backends.linux.spawn import spawns_with_pidfd
    from fdloop.info import describe

    line = next(line for line in describe().splitlines() if line.startswith("spawn "))
    assert ("CLONE_FILES" in line) == spawns_with_pidfd()
    expected = "compiled" if linux_pidfd.reaps_natively() else "ctypes or os.waitid"
    assert line.endswith(f"reap: waitid(P_PIDFD) with rusage, {expected}")
