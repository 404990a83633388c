"""A spawned child's handle always names that child, and spawn's errors name their cause.

The pid-pressure run happens in a private pid namespace (root only) with its own tiny
pid_max, SIGCHLD at SIG_IGN and a second thread spawning, as the hardening issue found
it: there a pid opened after posix_spawn could already belong to another child of ours.
With clone(CLONE_PIDFD) the pidfd comes from the spawn itself, so no sleeper may die.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap

import pytest

from fdloop import spawn

from .conditions import on_backend

PRESSURE_SCRIPT = os.path.join(os.path.dirname(__file__), "pid_pressure.py")
LIBRARIES = ["asyncio", "asyncio+uvloop", "trio"]
SPAWNS = 1000  # the namespace's 400 pids come round more than twice


def _can_unshare_pid() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                          capture_output=True, check=False, timeout=30)
    return done.returncode == 0


needs_pid_namespace = pytest.mark.skipif(
    not _can_unshare_pid(), reason="needs root and unshare(1) for a private pid namespace"
)


@on_backend("linux")  # the kqueue backend watches by pid (EVFILT_PROC): not race-free
@needs_pid_namespace
@pytest.mark.parametrize("library", LIBRARIES)
def test_no_handle_names_another_child_under_pid_pressure(library: str, spawn_path: str) -> None:
    if spawn_path != "clone":
        pytest.skip("posix_spawn + pidfd_open cannot prove which child a recycled pid is "
                    "(capabilities() says so); only the clone path is race-free")
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, PRESSURE_SCRIPT,
         library, spawn_path, str(SPAWNS)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["short"] + result["sleepers_started"] >= SPAWNS, result
    assert result["killed_sleepers"] == [], result
    assert result["wrong_status"] == 0 and result["refused"] == 0, result
    assert result["stale"] == [], "asyncio's selector kept fds closed under the loop"


def test_first_spawn_from_four_threads_at_once() -> None:
    """The backend is imported by whichever thread comes first; the others must wait
    for it instead of reading a half-made module (was a spurious UnsupportedOperation)."""
    script = textwrap.dedent("""
        import threading, fdloop
        barrier, errors, procs = threading.Barrier(4), [], []
        def go():
            barrier.wait()
            try:
                procs.append(fdloop.spawn(["true"]))
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        for p in procs: p.close()
        print(len(procs), errors)
    """)
    for _ in range(5):  # a fresh interpreter each time: the import happens once
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "4 []", done.stdout


@on_backend("linux")
def test_cwd_that_does_not_exist_is_named(spawn_path: str) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        spawn(["true"], cwd="/nope/not/here")
    assert caught.value.filename == "/nope/not/here"


@on_backend("linux")
def test_program_not_on_path_is_named(spawn_path: str) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        spawn(["fdloop-no-such-program"], cwd="/")
    assert caught.value.filename == "fdloop-no-such-program"


@on_backend("linux")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_cwd_inaccessible_to_a_non_root_user_is_named(
    tmp_path: object, spawn_path: str
) -> None:
    """Run fdloop as nobody: chdir into a 0700 root directory fails with EACCES, and
    the error names the directory, not the program."""
    private = os.path.join(str(tmp_path), "private")
    os.mkdir(private, 0o700)
    os.chmod(str(tmp_path), 0o755)
    fallback = "linux_spawn._clone_spawn = None" if spawn_path == "posix_spawn" else ""
    script = textwrap.dedent(f"""
        import os, sys
        from fdloop.backends.linux import spawn as linux_spawn
        {fallback}
        os.setgid(65534); os.setuid(65534)
        import fdloop
        try:
            fdloop.spawn(["true"], cwd={private!r})
        except PermissionError as exc:
            print(exc.filename)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == private


@on_backend("linux")
def test_closed_fd_in_pass_fds_or_stdio_is_named(spawn_path: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)  # two fd numbers that are certainly closed now
    with pytest.raises(OSError) as caught:
        spawn(["true"], pass_fds=[read_end])
    assert caught.value.errno == errno.EBADF
    assert "pass_fds" in str(caught.value) and str(read_end) in str(caught.value)
    with pytest.raises(OSError) as caught:
        spawn(["true"], stdin=write_end)
    assert caught.value.errno == errno.EBADF and "stdin" in str(caught.value)


@pytest.mark.parametrize("name", ["stdin", "stdout", "stderr"])
def test_fd_beyond_int_range_is_refused_not_truncated(name: str) -> None:
    """2**32 + 1 would reach the kernel as fd 1 if it were cut to a C int."""
    with pytest.raises(ValueError, match=name):
        spawn(["true"], **{name: 2**32 + 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass_fds"):
        spawn(["true"], pass_fds=[2**32 + 5])


async def test_pass_fd_just_below_the_soft_limit_is_passed(spawn_path: str) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    read_end, write_end = os.pipe()
    high = soft - 1
    os.dup2(write_end, high)
    os.close(write_end)
    try:
        code = f"import os; os.write({high}, b'reached')"
        async with spawn([sys.executable, "-c", code], pass_fds=[high]) as proc:
            assert (await proc.wait()).returncode == 0
    finally:
        os.close(high)
    try:
        assert os.read(read_end, 100) == b"reached"
    finally:
        os.close(read_end)


@pytest.mark.parametrize("env", [{1: "x"}, {"A": None}, {"A": 1}, {None: "x"}])
def test_bad_env_is_named(env: dict[object, object]) -> None:
    with pytest.raises(TypeError, match="env"):
        spawn(["true"], env=env)  # type: ignore[arg-type]


@on_backend("linux")
@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC does not bind root; a child "
                    "that drops to nobody is needed")
def test_process_limit_is_named(spawn_path: str) -> None:
    fallback = "linux_spawn._clone_spawn = None" if spawn_path == "posix_spawn" else ""
    script = textwrap.dedent(f"""
        import os, resource
        from fdloop.backends.linux import spawn as linux_spawn
        {fallback}
        os.setgid(65534); os.setuid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        import fdloop
        try:
            fdloop.spawn(["true"])
        except BlockingIOError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "RLIMIT_NPROC" in done.stdout, done.stdout


@on_backend("linux")
def test_thread_id_is_not_a_process() -> None:
    script = textwrap.dedent("""
        import threading, fdloop
        ready, done = threading.Event(), threading.Event()
        tid = []
        def run():
            tid.append(threading.get_native_id()); ready.set(); done.wait()
        t = threading.Thread(target=run); t.start(); ready.wait()
        try:
            fdloop.ProcessFD.open(tid[0])
        except ValueError as exc:
            print("ValueError", "thread" in str(exc))
        finally:
            done.set(); t.join()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ValueError True", done.stdout
