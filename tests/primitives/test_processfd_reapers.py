"""Other reapers, races and limits: the status is never invented, a pid never reused.

Covers research/process.md §8 pitfalls 1 (foreign reaper), 2 (pidfd opened after spawn),
5 (signal after exit, pid reuse), 10 (EMFILE at pidfd_open, no PIDFD_INFO_EXIT), and
coexistence with asyncio's and trio's own subprocess support.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import anyio
import pytest

import fdloop
from fdloop import spawn
from fdloop.backends.linux import pidfd as linux_pidfd

from ..helpers import scaled
from ..leaks import children_of, open_fds
from .process_helpers import (  # noqa: F401  (process_backend_only is autouse)
    kqueue_lacks,
    needs_backend_in_child_interpreters,
    only_on,
    pidfd_fact,
    process_backend_only,
    wait_exited_unreaped,
)

PY = sys.executable




# Under SIG_IGN a child that exits before pidfd_open is gone for good, and spawn refuses
# it (see test_child_reaped_before_pidfd_open_is_refused); these children live a moment.
EXIT_7_SOON = ["sh", "-c", "sleep 0.1; exit 7"]


async def test_sigchld_ignored_status_comes_from_pidfd_info_exit(sigchld_ignored: None) -> None:
    async with spawn(EXIT_7_SOON) as proc:
        status = await proc.wait()
    assert status.known
    assert status.exit_code == 7 and status.returncode == 7
    assert status.rusage is None  # the kernel reaped it, so no rusage reached us


async def test_sigchld_ignored_signal_death_is_recovered(sigchld_ignored: None) -> None:
    async with spawn(["sleep", "100"]) as proc:
        proc.kill()
        status = await proc.wait()
    assert status.signal == signal.SIGKILL and status.returncode == -signal.SIGKILL


async def test_waitpid_minus_one_thief_does_not_change_the_status() -> None:
    proc = spawn(["sh", "-c", "exit 7"])
    # Let it exit, without reaping, then a waitpid(-1) "thief" takes it (as gunicorn's
    # SIGCHLD handler or a thread calling os.wait() would).
    wait_exited_unreaped(proc)
    stolen_pid, stolen_status = os.waitpid(-1, os.WNOHANG)
    assert stolen_pid == proc.pid and os.waitstatus_to_exitcode(stolen_status) == 7
    async with proc:
        status = await proc.wait()
    if kqueue_lacks("exited before it was watched") and not status.known:
        return  # macOS: it exited before kqueue would watch it, and the thief won
    assert (status.known, status.returncode, status.rusage) == (True, 7, None)


async def test_without_exit_info_a_stolen_status_is_unknown_never_invented(
    sigchld_ignored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a kernel before 6.15, where PIDFD_INFO_EXIT does not exist.
    pidfd_fact()
    monkeypatch.setattr(linux_pidfd.LinuxPidFD, "exit_info", lambda self: None)
    async with spawn(EXIT_7_SOON) as proc:
        status = await proc.wait()
    assert status.known is False
    assert status.returncode is None and status.exit_code is None and status.signal is None
    assert proc.returncode is None
    assert "unknown" in str(status)


def test_fast_child_under_sigchld_ignored_is_exact_or_refused(sigchld_ignored: None) -> None:
    # The kernel may reap `true` before pidfd_open: then spawn refuses (ChildProcessError)
    # rather than hand out a handle that could name a recycled pid. Never a wrong status.
    for _ in range(scaled(50, minimum=10)):
        try:
            proc = spawn(["true"])
        except ChildProcessError:
            continue
        with proc:
            while proc.poll() is None:
                pass
            assert proc.returncode == 0


def test_child_reaped_before_pidfd_open_is_refused(
    monkeypatch: pytest.MonkeyPatch, spawn_path: str
) -> None:
    # Only the posix_spawn path opens a pidfd after the spawn; clone(CLONE_PIDFD) has no
    # such window (tests/reliability/test_spawn_identity.py).
    if spawn_path == "clone":
        pytest.skip("clone(CLONE_PIDFD) makes the pidfd in the spawn: there is no window")
    pidfd_fact()
    real_open = linux_pidfd._pidfd_open

    def reaped_first(pid: int, flags: int = 0) -> int:
        os.waitpid(pid, 0)  # the thief wins the race: the pid may now name anyone
        return real_open(pid, flags)

    monkeypatch.setattr(linux_pidfd, "_pidfd_open", reaped_first)
    before = open_fds()
    with pytest.raises(ChildProcessError, match="reaped by someone else"):
        spawn(["true"], stdout=fdloop.PIPE)
    assert open_fds() == before


def test_child_reaped_between_pidfd_open_and_the_check_is_refused(
    monkeypatch: pytest.MonkeyPatch, spawn_path: str,
) -> None:
    if spawn_path == "clone":
        pytest.skip("clone(CLONE_PIDFD) makes the pidfd in the spawn: there is no window")
    pidfd_fact()
    real_open = linux_pidfd._pidfd_open

    def reaped_after(pid: int, flags: int = 0) -> int:
        fd = real_open(pid, flags)
        os.waitpid(pid, 0)
        return fd

    monkeypatch.setattr(linux_pidfd, "_pidfd_open", reaped_after)
    before = open_fds()
    with pytest.raises(ChildProcessError, match="refusing"):
        spawn(["true"], stdin=fdloop.PIPE)
    assert open_fds() == before


def test_pidfd_open_emfile_kills_and_reaps_the_child_and_names_the_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(open_fds()) + 8, hard))
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                break
        with pytest.raises(OSError, match="RLIMIT_NOFILE"):
            spawn(["sleep", "100"])
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert children_of(os.getpid()) == set()


async def test_signals_after_exit_are_no_ops() -> None:
    proc = spawn(["true"])
    wait_exited_unreaped(proc)
    proc.kill()  # zombie: delivered nowhere, no error
    proc.terminate()
    assert (await proc.wait()).returncode == 0
    proc.kill()  # reaped: a no-op, never a pid-based kill
    proc.send_signal(signal.SIGUSR1)
    await proc.aclose()
    proc.kill()  # even after close, once the status is known
    with pytest.raises(ValueError):
        proc.send_signal(1000)


async def test_kill_racing_with_exit_never_raises() -> None:
    for _ in range(scaled(200, minimum=10)):
        async with spawn(["true"]) as proc:
            while proc.poll() is None:
                proc.kill()
                proc.terminate()
            proc.kill()
            assert proc.returncode in (0, -signal.SIGKILL, -signal.SIGTERM)


async def test_send_signal_zero_and_stop_cont() -> None:
    async with spawn(["sleep", "100"]) as proc:
        proc.send_signal(0)
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        assert (await proc.wait()).returncode == -signal.SIGTERM


PID_REUSE = textwrap.dedent(
    """
    import asyncio, os, signal, subprocess
    import fdloop

    def reuse(pid):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        other = subprocess.Popen(["sleep", "30"])
        assert other.pid == pid, (other.pid, pid)
        return other

    async def main():
        # 1. Status collected by us, pid reused: signals are no-ops.
        a = fdloop.spawn(["true"])
        await a.wait()
        b = reuse(a.pid)
        a.kill(); a.terminate()
        # 2. Reaped behind our back (status not collected), pid reused: pidfd says ESRCH.
        c = fdloop.spawn(["true"])
        os.waitpid(c.pid, 0)
        d = reuse(c.pid)
        c.kill(); c.terminate(); c.send_signal(signal.SIGKILL)
        await asyncio.sleep(0.1)
        print("alive", b.poll() is None, d.poll() is None, flush=True)
        for p in (b, d):
            p.kill(); p.wait()
        await a.aclose(); await c.aclose()

    asyncio.run(main())
    """
)


def test_signals_never_reach_a_process_that_reused_the_pid() -> None:
    needs_backend_in_child_interpreters()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux unshare")
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True, check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a pid namespace here: {probe.stderr!r}")
    result = subprocess.run(
        [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
         PY, "-c", PID_REUSE],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alive True True"


async def test_coexists_with_asyncio_subprocesses() -> None:
    only_on("asyncio")
    ours = spawn(["sh", "-c", "sleep 0.1; exit 5"])
    theirs = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.1; exit 6")
    async with ours:
        results = await asyncio.gather(ours.wait(), theirs.wait())
    assert results[0].returncode == 5
    assert results[1] == 6


async def test_coexists_with_trio_run_process() -> None:
    only_on("trio")
    import trio

    ours = spawn(["sh", "-c", "sleep 0.1; exit 5"])
    async with ours:
        theirs = await trio.run_process(["sh", "-c", "exit 6"], check=False)
        assert (await ours.wait()).returncode == 5
    assert theirs.returncode == 6


async def test_coexists_with_anyio_run_process() -> None:
    async with spawn(["sh", "-c", "exit 5"]) as ours:
        theirs = await anyio.run_process(["sh", "-c", "exit 6"], check=False)
        assert (await ours.wait()).returncode == 5
    assert theirs.returncode == 6


def test_capabilities_list_processfd() -> None:
    caps = {c.primitive: c for c in fdloop.capabilities()}
    assert caps["ProcessFD"].native
    if fdloop.backends.selected_name() != "linux":
        assert caps["ProcessFD"].kernel_object == "kqueue (EVFILT_PROC)"
        return
    assert caps["ProcessFD"].kernel_object == "pidfd"
