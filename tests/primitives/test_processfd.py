"""ProcessFD and spawn on real processes: exit statuses, stdio, spawn errors, clean children.

Kill-on-close, signals, watching non-children, foreign reapers and load tests live in
the sibling test_processfd_*.py files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import anyio
import pytest

import fdloop
from fdloop import ExitStatus, ProcessFD, spawn

from ..leaks import children_of, open_fds
from .process_helpers import process_backend_only  # noqa: F401  (autouse)

PY = sys.executable


async def test_exit_code_and_status_fields() -> None:
    async with spawn(["sh", "-c", "exit 7"]) as proc:
        assert proc.returncode is None or proc.returncode == 7
        status = await proc.wait()
    assert isinstance(status, ExitStatus)
    assert (status.pid, status.returncode, status.exit_code) == (proc.pid, 7, 7)
    assert status.signal is None
    assert status.known and not status.core_dumped
    assert proc.returncode == 7
    assert proc.status is status


async def test_read_is_wait_and_is_idempotent() -> None:
    async with spawn(["true"]) as proc:
        first = await proc.read()
        assert await proc.wait() is first
        assert await proc.read() is first
        assert first.returncode == 0


async def test_killed_by_signal_is_negative_returncode() -> None:
    async with spawn(["sh", "-c", "kill -USR1 $$"]) as proc:
        status = await proc.wait()
    assert status.returncode == -signal.SIGUSR1
    assert status.signal == signal.SIGUSR1
    assert status.exit_code is None
    assert "SIGUSR1" in str(status)


async def test_rusage_is_reported_in_seconds_and_bytes() -> None:
    # Burn some CPU in the child so user time is visibly non-zero.
    code = "x = 0\nfor i in range(3_000_000): x += i"
    async with spawn([PY, "-c", code]) as proc:
        status = await proc.wait()
    assert status.returncode == 0
    assert status.rusage is not None
    assert status.rusage.user_cpu > 0
    assert status.rusage.system_cpu >= 0
    # A Python interpreter's peak RSS is megabytes: proves the KiB -> bytes conversion.
    assert status.rusage.max_rss > 4 * 1024 * 1024


async def test_core_dumping_child_reports_signal(tmp_path: os.PathLike[str]) -> None:
    # Cores disabled in the child (ulimit -c 0): the signal is reported, no core file.
    async with spawn(["sh", "-c", "ulimit -c 0; kill -SEGV $$"], cwd=tmp_path) as proc:
        status = await proc.wait()
    assert status.signal == signal.SIGSEGV and status.returncode == -signal.SIGSEGV
    assert status.core_dumped is False
    assert os.listdir(tmp_path) == []


async def test_core_dumped_flag_when_the_kernel_writes_a_core(tmp_path: os.PathLike[str]) -> None:
    with open("/proc/sys/kernel/core_pattern") as pattern_file:
        pattern = pattern_file.read().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"core_pattern {pattern!r} does not write into the child's cwd")
    _soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_CORE)
    if hard == 0:
        pytest.skip("hard RLIMIT_CORE is 0")
    script = f"ulimit -c unlimited 2>/dev/null || ulimit -c {hard}; exec sleep 100"
    async with spawn(["sh", "-c", script], cwd=tmp_path) as proc:
        await anyio.sleep(0.1)
        proc.send_signal(signal.SIGQUIT)
        status = await proc.wait()
    try:
        assert status.signal == signal.SIGQUIT
        assert status.core_dumped is True
    finally:
        for name in os.listdir(tmp_path):
            os.unlink(os.path.join(tmp_path, name))


async def test_concurrent_waiters_all_get_the_same_status() -> None:
    async with spawn(["sh", "-c", "sleep 0.2; exit 3"]) as proc:
        results: list[ExitStatus] = []

        async def waiter() -> None:
            results.append(await proc.wait())

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(waiter)
    assert len(results) == 10
    assert all(r is results[0] for r in results)
    assert results[0].returncode == 3


async def test_cancelled_wait_loses_nothing() -> None:
    # The child exits only once told to (a line on stdin), after the cancelled wait.
    async with spawn(["sh", "-c", "read line; exit 5"], stdin=fdloop.PIPE) as proc:
        with anyio.move_on_after(0.05) as scope:
            await proc.wait()
        assert scope.cancelled_caught
        assert proc.returncode is None
        assert proc.stdin is not None
        await proc.stdin.send(b"go\n")
        assert (await proc.wait()).returncode == 5


async def test_pipes_are_streams() -> None:
    async with spawn(
        ["sh", "-c", "cat; echo err >&2; exit 2"],
        stdin=fdloop.PIPE, stdout=fdloop.PIPE, stderr=fdloop.PIPE,
    ) as proc:
        assert isinstance(proc.stdin, fdloop.PipeSendStream)
        assert isinstance(proc.stdout, fdloop.PipeReceiveStream)
        assert isinstance(proc.stderr, fdloop.PipeReceiveStream)
        await proc.stdin.send(b"hello\n")
        await proc.stdin.aclose()
        assert await proc.stdout.read() == b"hello\n"
        assert await proc.stderr.read() == b"err\n"
        assert (await proc.wait()).returncode == 2
    assert proc.stdout.closed and proc.stderr.closed


async def test_stderr_to_stdout_and_devnull() -> None:
    async with spawn(
        ["sh", "-c", "read x; echo out; echo err >&2"],
        stdin=fdloop.DEVNULL, stdout=fdloop.PIPE, stderr=fdloop.STDOUT,
    ) as proc:
        assert proc.stdin is None and proc.stderr is None
        assert proc.stdout is not None
        assert await proc.stdout.read() == b"out\nerr\n"
        await proc.wait()


async def test_stdio_to_file_object_and_fd(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "out.txt")
    with open(path, "wb") as out:
        async with spawn(["sh", "-c", "echo to-file; echo to-fd >&2"], stdout=out,
                         stderr=out.fileno()) as proc:
            await proc.wait()
    with open(path, "rb") as result:
        assert result.read() == b"to-file\nto-fd\n"


async def test_swapped_low_stdio_fds() -> None:
    # stdout -> our fd 2 and stderr -> our fd 1 must not clobber each other.
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    saved1, saved2 = os.dup(1), os.dup(2)
    try:
        os.dup2(w1, 1)
        os.dup2(w2, 2)
        proc = spawn(["sh", "-c", "echo A; echo B >&2"], stdout=2, stderr=1)
    finally:
        os.dup2(saved1, 1)
        os.dup2(saved2, 2)
        for fd in (saved1, saved2, w1, w2):
            os.close(fd)
    async with proc:
        await proc.wait()
    try:
        assert os.read(r2, 100) == b"A\n"
        assert os.read(r1, 100) == b"B\n"
    finally:
        os.close(r1)
        os.close(r2)


async def test_cwd_env_and_path_lookup(tmp_path: os.PathLike[str]) -> None:
    async with spawn(["sh", "-c", 'pwd; echo "$FOO"'], cwd=tmp_path, env={"FOO": "bar",
                     "PATH": os.environ["PATH"]}, stdout=fdloop.PIPE) as proc:
        assert proc.stdout is not None
        out = await proc.stdout.read()
        await proc.wait()
    assert out == f"{os.path.realpath(tmp_path)}\nbar\n".encode()


def test_missing_program_raises_in_parent_and_leaves_nothing() -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError) as info:
        spawn(["/definitely/not/here"], stdout=fdloop.PIPE, stdin=fdloop.PIPE)
    assert info.value.filename == "/definitely/not/here"
    with pytest.raises(FileNotFoundError) as info:
        spawn(["no-such-program-fdloop"], stderr=fdloop.PIPE)
    assert info.value.filename == "no-such-program-fdloop"
    assert open_fds() == before
    assert children_of(os.getpid()) == set()


def test_bad_cwd_and_not_executable(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(FileNotFoundError) as info:
        spawn(["true"], cwd=os.path.join(tmp_path, "missing"))
    assert info.value.filename == os.path.join(tmp_path, "missing")
    plain = os.path.join(tmp_path, "plain")
    with open(plain, "w") as f:
        f.write("data")
    with pytest.raises(NotADirectoryError):
        spawn(["true"], cwd=plain)
    with pytest.raises(PermissionError):
        spawn([plain])
    assert children_of(os.getpid()) == set()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"argv": []}, ValueError),
        ({"argv": [1]}, TypeError),
        ({"argv": ["a\0b"]}, ValueError),
        ({"argv": ["true"], "stdin": fdloop.STDOUT}, ValueError),
        ({"argv": ["true"], "stdout": "x"}, TypeError),
        ({"argv": ["true"], "pass_fds": [1]}, ValueError),
        ({"argv": ["true"], "kill_signal": 0}, ValueError),
        ({"argv": ["true"], "kill_signal": 1000}, ValueError),
        ({"argv": ["true"], "kill_timeout": -1}, ValueError),
        ({"argv": ["true"], "daemon": 1}, TypeError),
        ({"argv": ["true"], "env": {"A=B": "c"}}, ValueError),
        ({"argv": ["true"], "env": ["A=B"]}, TypeError),
    ],
)
def test_bad_arguments_raise_before_anything_happens(kwargs: dict[str, object],
                                                     error: type[Exception]) -> None:
    kwargs = dict(kwargs)  # the same dict is reused by every backend's run
    argv = kwargs.pop("argv")
    with pytest.raises(error):
        spawn(argv, **kwargs)  # type: ignore[arg-type]


async def test_child_starts_with_empty_mask_default_sigpipe_and_no_stray_fds() -> None:
    stray = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(stray, True)  # not close-on-exec, yet not passed: must not leak
    passed = os.open("/dev/null", os.O_RDONLY)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR2})
    try:
        proc = spawn(
            ["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status; ls /proc/self/fd"],
            stdout=fdloop.PIPE, pass_fds=[passed],
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(stray)
    async with proc:
        assert proc.stdout is not None
        out = (await proc.stdout.read()).decode().split("\n")
        await proc.wait()
    os.close(passed)
    fields = dict(line.split(":\t") for line in out[:2])
    assert int(fields["SigBlk"], 16) == 0
    ignored = int(fields["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))  # CPython ignores it; child must not
    assert not ignored & (1 << (signal.SIGXFSZ - 1))
    fds = {int(x) for x in out[2:] if x}
    # 0-2, the passed fd, and the fd ls uses to read the directory; never `stray`.
    assert passed in fds
    assert stray not in fds or stray == passed
    assert len(fds - {0, 1, 2, passed}) <= 1


async def test_blocked_sigterm_does_not_survive_into_child() -> None:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        proc = spawn(["sleep", "100"])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    async with proc:
        proc.terminate()
        assert (await proc.wait()).returncode == -signal.SIGTERM


async def test_pidfd_is_not_inherited_by_later_children() -> None:
    async with spawn(["sleep", "100"]) as first:
        async with spawn(["ls", "/proc/self/fd"], stdout=fdloop.PIPE) as second:
            assert second.stdout is not None
            listing = await second.stdout.read()
            await second.wait()
        assert str(first.fileno()).encode() + b"\n" not in listing.split(b"\n", 3)[-1] or (
            first.fileno() < 3
        )


async def test_repr_pid_and_daemon() -> None:
    proc = spawn(["sh", "-c", "exit 4"], daemon=True)
    try:
        assert f"pid={proc.pid}" in repr(proc)
        assert "daemon" in repr(proc)
        await proc.wait()
        assert "returncode=4" in repr(proc)
    finally:
        await proc.aclose()
    assert "closed" in repr(proc)
    assert isinstance(proc, ProcessFD)


def test_processfd_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError):
        ProcessFD()


def test_coexists_with_subprocess_run() -> None:
    proc = spawn(["sh", "-c", "exit 9"])
    # subprocess reaps only its own child, and our pidfd is unaffected by its _cleanup.
    assert subprocess.run(["true"], check=True).returncode == 0
    if fdloop.backends.selected_name() == "linux":
        os.waitid(os.P_PIDFD, proc.fileno(), os.WEXITED | os.WNOWAIT)
    else:  # a kqueue fd is no pidfd: wait by pid (our unreaped child), reaping nothing
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert proc.poll() == 9
    proc.close()


async def test_poll_from_another_thread_is_refused_while_a_loop_waits() -> None:
    """Collecting the exit is the waiting loop's: poll() from a worker thread then raises
    and reaps nothing (returncode answers without polling); with no loop waiting, the
    worker's poll() reaps."""
    with spawn(["sleep", "30"]) as proc:
        async with anyio.create_task_group() as tg:
            tg.start_soon(proc.wait)
            await anyio.sleep(0.05)  # (the task registers its wait as it first runs)
            with pytest.raises(RuntimeError, match="another thread waits for this process"):
                await anyio.to_thread.run_sync(proc.poll)
            assert await anyio.to_thread.run_sync(lambda: proc.returncode) is None
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
    with spawn(["true"]) as proc:
        with anyio.fail_after(10):
            while await anyio.to_thread.run_sync(proc.poll) is None:
                await anyio.sleep(0.01)
        assert proc.returncode == 0
        assert proc.pid not in {pid for pid, _state in children_of(os.getpid())}
