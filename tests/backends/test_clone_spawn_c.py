"""The compiled spawn path itself (fdloop/backends/linux/_clone_spawn.c and _clone3.c).

clone3 where the kernel lets it through, clone(2) where it does not: the fallback is
driven for real by a seccomp filter that refuses clone3 (ENOSYS, as old kernels and
Docker say, or EPERM, as some profiles say) in a fresh interpreter, before and after the
extension's import-time probe.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ..helpers import SECCOMP_PRELUDE

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux spawn")

if sys.platform.startswith("linux"):
    from fdloop.backends.linux import spawn as linux_spawn

    native = linux_spawn._clone_spawn
else:
    native = None

needs_extension = pytest.mark.skipif(native is None, reason="_clone_spawn is not built")
HANG = 30.0
SYS_CLONE3 = 435  # the same number on every architecture (asm-generic)
WEXITED = 4


def _kernel_takes_clone3() -> bool:
    """The kernel's own answer, asked as the extension asks it: a too-small struct is
    refused with EINVAL if clone3 exists and may be called, ENOSYS/EPERM if not."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    assert libc.syscall(ctypes.c_long(SYS_CLONE3), None, ctypes.c_size_t(0)) == -1
    return ctypes.get_errno() == errno.EINVAL


# A fresh interpreter that refuses clone3 with `errno` from `when` on ("before" the
# extension's import, or "after" it), then starts children through the extension alone
# (glibc's pthread_create also uses clone3, so nothing here may start a thread).
SECCOMP_SCRIPT = SECCOMP_PRELUDE + r"""
import errno, os, sys

SYS_CLONE3 = 435

def refuse_clone3(error):
    refuse_syscalls([SYS_CLONE3], error)

error, when = getattr(errno, sys.argv[1]), sys.argv[2]
if when == "before":
    refuse_clone3(error)
from fdloop.backends.linux import _clone_spawn as c
print("import", c.variant())
if when == "after":
    refuse_clone3(error)

def spawn(argv, stdout=-1, keep_below=0):
    return c.spawn(argv[0], argv, None, (-1, stdout, -1), None, [], [], True, keep_below,
                   False, -1, -1, [], -1, -1, None, 0, 0)

read, write = os.pipe()
pid, pidfd, err, step = spawn([b"/bin/echo", b"hello"], stdout=write, keep_below=write + 1)
os.close(write)
assert err == 0, (err, step)
print("echo", os.read(read, 100).decode().strip(), c.reap(pidfd, 4)[1])
os.close(pidfd)
pid, pidfd, err, step = spawn([b"/nonexistent/program"])
print("missing", errno.errorcode[err], step == c.STEP_EXEC, pid, pidfd)
print("then", c.variant())
"""


def _refusing_clone3(error: str, when: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SECCOMP_SCRIPT, error, when],
                          capture_output=True, text=True, timeout=HANG, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@needs_extension
def test_variant_is_what_the_kernel_allows() -> None:
    assert native is not None
    if platform.machine() not in ("x86_64", "aarch64"):
        assert native.variant() == "clone"
    else:
        assert native.variant() == ("clone3" if _kernel_takes_clone3() else "clone")


@needs_extension
@pytest.mark.parametrize("error", ["ENOSYS", "EPERM"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_clone3_refused_falls_back_to_clone(error: str, when: str) -> None:
    if not _kernel_takes_clone3():
        pytest.skip("clone3 is refused here already: the fallback is the only path")
    lines = _refusing_clone3(error, when)
    # Probed at import: refused then, clone from the start; allowed then, the first
    # spawn hears the refusal, starts the child with clone(2), and stays there.
    assert lines[0] == f"import {'clone' if when == 'before' else 'clone3'}"
    assert lines[1:] == ["echo hello 0", "missing ENOENT True -1 -1", "then clone"]


@needs_extension
def test_info_names_the_variant() -> None:
    from fdloop.info import _spawn_path

    assert native is not None
    assert _spawn_path().startswith(f"{native.variant()}(CLONE_VM|CLONE_VFORK|CLONE_PIDFD")


@needs_extension
def test_clone3_child_exec_failure_and_success_on_this_path() -> None:
    """Whichever call is in force here: a failed exec is reported and reaped, a good one
    runs on its own stack and leaves us intact (called in a loop, so a trampoline that
    returned into the parent's frame or a stack shared wrongly shows up at once)."""
    assert native is not None
    for _ in range(20):
        pid, pidfd, err, step = native.spawn(
            b"/nonexistent", [b"/nonexistent"], None, (-1, -1, -1), None, [], [], True, 0,
            False, -1, -1, [], -1, -1, None, 0, 0)
        assert (pid, pidfd, err, step) == (-1, -1, errno.ENOENT, native.STEP_EXEC)
        pid, pidfd, err, step = native.spawn(
            b"/bin/sh", [b"/bin/sh", b"-c", b"exit 7"], [b"A=1"], (-1, -1, -1), None, [], [],
            True, 0, False, -1, -1, [], -1, -1, None, 0, 0)
        assert (err, step) == (0, 0) and pid > 0
        try:
            raw = native.reap(pidfd, WEXITED)
        finally:
            os.close(pidfd)
        assert raw is not None and raw[0] == pid and os.waitstatus_to_exitcode(raw[1]) == 7



def _cgroup_parent() -> str | None:
    """Our own cgroup v2 directory where we may make one under it (as the Supervisor's
    cgroup tests find it), else None."""
    from fdloop.supervisor.cgroup import own_cgroup_dir

    parent, _why = own_cgroup_dir()
    return parent if parent is not None and os.access(parent, os.W_OK) else None


@pytest.fixture
def cgroup_dir() -> Iterator[tuple[str, int]]:
    """A fresh cgroup v2 directory under ours and an O_DIRECTORY fd of it; removed after."""
    parent = _cgroup_parent()
    if parent is None:
        pytest.skip("no writable cgroup v2 directory of ours (needs root and cgroup2)")
    if native is None or native.variant() != "clone3":
        pytest.skip("CLONE_INTO_CGROUP needs the clone3 path")
    path = os.path.join(parent, f"fdloop-clone3-test-{os.getpid()}")
    os.mkdir(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield path, fd
    finally:
        os.close(fd)
        os.rmdir(path)


def _cat_own_cgroup(cgroup_fd: int) -> tuple[str, int]:
    """Start `cat /proc/self/cgroup` in `cgroup_fd`: what it printed, and its exit code."""
    assert native is not None
    read, write = os.pipe()
    try:
        pid, pidfd, err, step = native.spawn(
            b"/bin/cat", [b"cat", b"/proc/self/cgroup"], None, (-1, write, -1), None, [],
            [], True, write + 1, False, -1, -1, [], -1, -1, None, 0, 0, cgroup_fd)
        os.close(write)
        write = -1
        assert (err, step) == (0, 0)
        try:
            raw = native.reap(pidfd, WEXITED)
        finally:
            os.close(pidfd)
        assert raw is not None and raw[0] == pid
        return os.read(read, 4096).decode(), os.waitstatus_to_exitcode(raw[1])
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


@needs_extension
def test_child_starts_in_the_cgroup_given(cgroup_dir: tuple[str, int]) -> None:
    path, fd = cgroup_dir
    output, code = _cat_own_cgroup(fd)
    assert code == 0
    # (on a hybrid hierarchy the v1 controllers have lines of their own)
    (line,) = [line for line in output.splitlines() if line.startswith("0::")]
    assert line[3:] != "/" and path.endswith(line[3:])
    assert os.path.basename(path) == os.path.basename(line[3:])
    with open(os.path.join(path, "cgroup.procs")) as procs:
        assert procs.read() == ""  # reaped: nothing left in it


@needs_extension
@pytest.mark.parametrize("bad", ["closed", "file", "plain directory"])
def test_a_bad_cgroup_fd_raises_naming_it_and_leaves_nothing(
    bad: str, tmp_path: os.PathLike[str]
) -> None:
    assert native is not None
    if native.variant() != "clone3":
        pytest.skip("CLONE_INTO_CGROUP needs the clone3 path")
    if bad == "closed":
        fd = os.open(os.devnull, os.O_RDONLY)
        os.close(fd)  # an fd number that is not open
    elif bad == "file":
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    else:
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # not cgroupfs
    before = sorted(os.listdir("/proc/self/fd"))
    try:
        with pytest.raises(OSError, match=rf"^\[Errno {errno.EBADF}\] cgroup_fd {fd}: not an "
                           "open cgroup v2 directory") as caught:
            native.spawn(b"/bin/true", [b"true"], None, (-1, -1, -1), None, [], [], True, 0,
                         False, -1, -1, [], -1, -1, None, 0, 0, fd)
        assert caught.value.errno == errno.EBADF
        assert sorted(os.listdir("/proc/self/fd")) == before
        with pytest.raises(ChildProcessError):  # no child of ours, not even a zombie
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
    finally:
        if bad != "closed":
            os.close(fd)


SECCOMP_CGROUP = SECCOMP_SCRIPT.split("read, write = os.pipe()", maxsplit=1)[0] + r"""
try:
    c.spawn(b"/bin/true", [b"true"], None, (-1, -1, -1), None, [], [], True, 0, False, -1,
            -1, [], -1, -1, None, 0, 0, int(sys.argv[3]))
except OSError as exc:
    print(type(exc).__name__, errno.errorcode[exc.errno], exc.strerror)
print("then", c.variant())
"""


@needs_extension
def test_cgroup_fd_on_the_clone_fallback_is_enosys(cgroup_dir: tuple[str, int]) -> None:
    """Where only clone(2) can be used, a spawn into a cgroup says ENOSYS and why (so the
    Python side can fall back to writing cgroup.procs), and starts nothing."""
    _path, fd = cgroup_dir
    done = subprocess.run([sys.executable, "-c", SECCOMP_CGROUP, "ENOSYS", "before", str(fd)],
                          capture_output=True, text=True, timeout=HANG, check=False,
                          pass_fds=[fd])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "import clone"
    assert lines[1].startswith(f"OSError ENOSYS cgroup_fd {fd}: CLONE_INTO_CGROUP needs clone3")
    assert lines[2] == "then clone"


def _child_stacks() -> int:
    """How many of our mappings look like a kept child stack: 256 KiB read-write right
    above a 4 KiB inaccessible guard page (glibc's thread stacks are megabytes)."""
    count, previous = 0, None
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(part, 16) for part in span.split("-"))
            if (perms.startswith("rw") and end - start == 256 * 1024 and previous is not None
                    and previous[1] == start and previous[2].startswith("---")
                    and previous[1] - previous[0] == 4096):
                count += 1
            previous = (start, end, perms)
    return count


@needs_extension
def test_each_thread_keeps_one_stack_and_frees_it_when_it_exits() -> None:
    """Threads spawning at once each run their children on their own kept stack (a
    shared one would be used by two children at a time); it outlives each spawn and is
    unmapped when its thread exits."""
    import threading

    assert native is not None
    before = _child_stacks()
    results: list[int] = []
    ready = threading.Barrier(5)  # the four spawners and us
    done = threading.Event()

    def spawner(code: int) -> None:
        ready.wait(HANG)
        for _ in range(10):
            _pid, pidfd, err, _step = native.spawn(
                b"/bin/sh", [b"sh", b"-c", b"exit %d" % code], None, (-1, -1, -1), None, [],
                [], True, 0, False, -1, -1, [], -1, -1, None, 0, 0)
            assert err == 0
            try:
                raw = native.reap(pidfd, WEXITED)
            finally:
                os.close(pidfd)
            assert raw is not None
            results.append(os.waitstatus_to_exitcode(raw[1]) - code)
        ready.wait(HANG)  # every thread has its stack now
        done.wait(HANG)

    threads = [threading.Thread(target=spawner, args=(code,)) for code in range(4)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(HANG)
        ready.wait(HANG)
        assert _child_stacks() == before + 4
    finally:
        done.set()
        for thread in threads:
            thread.join(HANG)
    assert results == [0] * 40
    # join() returns once the Python side of a thread is done; the pthread's key
    # destructors (our munmap) run just after, as the thread itself ends.
    deadline = time.monotonic() + HANG
    while _child_stacks() != before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _child_stacks() == before


@needs_extension
def test_the_child_keeps_ignored_signals_except_those_it_resets() -> None:
    """With CLONE_CLEAR_SIGHAND the kernel resets handled signals and the child resets
    only the ignored ones it was asked to (sigdefault); the others stay ignored. (Caught
    signals cannot be seen after exec, which resets them anyway: the reset matters for a
    signal that arrives before exec, while the child still shares our memory.)"""
    import signal

    assert native is not None
    previous = {signo: signal.signal(signo, action) for signo, action in (
        (signal.SIGUSR1, lambda *_: None), (signal.SIGUSR2, signal.SIG_IGN),
        (signal.SIGHUP, signal.SIG_IGN))}
    read, write = os.pipe()
    try:
        _pid, pidfd, err, _step = native.spawn(
            b"/bin/cat", [b"cat", b"/proc/self/status"], None, (-1, write, -1),
            None, [], [], True, write + 1, False, -1, -1, [signal.SIGHUP, signal.SIGPIPE],
            -1, -1, None, 0, 0)
        os.close(write)
        write = -1
        assert err == 0
        try:
            assert native.reap(pidfd, WEXITED) is not None
        finally:
            os.close(pidfd)
        output = b""
        while chunk := os.read(read, 65536):
            output += chunk
        fields = dict(line.split(":\t", 1) for line in output.decode().splitlines())
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
        for signo, action in previous.items():
            signal.signal(signo, action)
    ignored = int(fields["SigIgn"], 16)
    assert ignored & (1 << (signal.SIGUSR2 - 1))
    assert not ignored & (1 << (signal.SIGHUP - 1)) and not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGUSR1 - 1))
