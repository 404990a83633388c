"""ProcessFD where a seccomp filter refuses the pidfd calls, as container profiles do.

Older Docker/Podman profiles refuse ``pidfd_open``, ``pidfd_send_signal`` and ``clone3``
(EPERM, or ENOSYS as the newer ones say for clone3); the compiled spawn path then starts
children with clone(CLONE_PIDFD), which such profiles let through. Each test runs a fresh
interpreter under a real filter (SECCOMP_RET_ERRNO) on asyncio, uvloop and trio:

* ``pidfd_send_signal`` refused: our own children are still signalled, by pid after a
  waitid(WNOWAIT) proof that the pid is still our unreaped child (kill, terminate,
  send_signal, a process group, kill-on-close by close() and aclose()); a signal to an
  exited child is still a no-op; a process that is not our child cannot be signalled
  safely by pid, and the error names ``pidfd_send_signal``.
* ``kill`` refused as well (x86_64's number): close() cannot end the child and says
  so, but the child is handed to the reaper all the same, which reaps it at its exit.
* ``pidfd_open`` refused: the pure-Python path (posix_spawn, then pidfd_open) cannot
  make a handle; spawn() says that ``pidfd_open`` was refused and leaves no child.
  The compiled path needs no pidfd_open for its children. ``ProcessFD.open`` names it.
* ``clone3`` refused with EPERM: glibc's posix_spawn cannot start a process (it falls
  back to clone only on ENOSYS); the pure path says so. The compiled path uses clone.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from fdloop.backends import selected_name

from ..helpers import SECCOMP_PRELUDE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or selected_name() != "linux",
    reason="the Linux backend's pidfd calls (the kqueue backend makes none)")

HANG = 60.0
LOOPS = ["asyncio", "uvloop", "trio"]

SCRIPT = SECCOMP_PRELUDE + r'''
import errno, os, signal, sys, time

names, error, loop, path, scenario = sys.argv[1:6]
NUMBERS = {"pidfd_send_signal": 424, "pidfd_open": 434, "clone3": 435, "kill": 62}
refuse_syscalls([NUMBERS[name] for name in names.split(",")], getattr(errno, error))
if path == "pure":
    from fdloop.backends.linux import python_only
    python_only()
import anyio
import fdloop


def children():
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            found += listing.read().split()
    return found


def group_members(pgid):
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(entry)
    return members


async def gone(pid):
    with anyio.fail_after(10):
        while os.path.exists(f"/proc/{pid}"):
            await anyio.sleep(0.01)


async def signals():
    for how in ("kill", "terminate", "send_signal"):
        proc = fdloop.spawn(["sleep", "30"])
        getattr(proc, how)(*([signal.SIGINT] if how == "send_signal" else []))
        print(how, (await proc.wait()).returncode)
        proc.close()
    leader = fdloop.spawn(["sh", "-c", "sleep 30 & echo started; wait"],
                          start_new_session=True, stdout=fdloop.PIPE)
    await leader.stdout.receive()
    before = len(group_members(leader.pid))
    leader.kill()
    print("group", before, (await leader.wait()).returncode)
    with anyio.fail_after(10):
        while group_members(leader.pid):
            await anyio.sleep(0.01)
    print("group members left", len(group_members(leader.pid)))
    leader.close()
    done = fdloop.spawn(["true"])
    await done.wait()
    done.kill()
    print("exited", done.returncode)
    done.close()
    proc = fdloop.spawn(["sleep", "30"])
    pid = proc.pid
    proc.close()
    await gone(pid)
    print("close ended it")
    proc = fdloop.spawn(["sleep", "30"], kill_timeout=5)
    pid = proc.pid
    await proc.aclose()
    print("aclose ended it", os.path.exists(f"/proc/{pid}"))
    stranger = subprocess_sleep()
    watch = fdloop.ProcessFD.open(stranger.pid)
    try:
        watch.kill()
    except OSError as exc:
        print("watch-only", type(exc).__name__, "pidfd_send_signal refused" in str(exc))
    watch.close()
    stranger.kill()
    stranger.wait()
    print("children left", children())


def subprocess_sleep():
    import subprocess
    return subprocess.Popen(["sleep", "30"])


async def unkillable():
    proc = fdloop.spawn(["sleep", "0.5"])
    pid = proc.pid
    try:
        proc.close()
    except OSError as exc:
        print("close", type(exc).__name__, proc.closed)
    await gone(pid)
    print("reaped", children())


async def no_pidfd_open():
    try:
        proc = fdloop.spawn(["sleep", "30"])
    except OSError as exc:
        print("spawn", type(exc).__name__, "pidfd_open refused" in str(exc), children())
    else:
        proc.kill()
        print("spawn ok", (await proc.wait()).returncode)
        proc.close()
    try:
        fdloop.ProcessFD.open(os.getpid())
    except OSError as exc:
        print("open", type(exc).__name__, "pidfd_open refused" in str(exc))


async def no_clone3():
    try:
        proc = fdloop.spawn(["true"])
    except PermissionError as exc:
        print("spawn", "refused to start a process" in str(exc), exc.filename, children())
    else:
        print("spawn ok", (await proc.wait()).returncode)
        proc.close()


main = {"signals": signals, "unkillable": unkillable, "no_pidfd_open": no_pidfd_open,
        "no_clone3": no_clone3}
backend = {"asyncio": "asyncio", "uvloop": "asyncio", "trio": "trio"}[loop]
options = {"use_uvloop": True} if loop == "uvloop" else {}
anyio.run(main[scenario], backend=backend, backend_options=options)
'''


def _compiled() -> bool:
    from fdloop.backends.linux import spawn as linux_spawn

    return linux_spawn._clone_spawn is not None


PATHS = ["pure", pytest.param("compiled", marks=pytest.mark.skipif(
    not _compiled(), reason="the _clone_spawn extension is not built"))]


def _run(refused: str, error: str, loop: str, path: str, scenario: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, refused, error, loop, path, scenario],
        capture_output=True, text=True, timeout=HANG, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("error", ["ENOSYS", "EPERM"])
def test_children_are_signalled_when_pidfd_send_signal_is_refused(
    loop: str, path: str, error: str
) -> None:
    assert _run("pidfd_send_signal", error, loop, path, "signals") == [
        "kill -9", "terminate -15", "send_signal -2",
        "group 2 -9", "group members left 0",
        "exited 0",
        "close ended it",
        "aclose ended it False",
        f"watch-only {'PermissionError' if error == 'EPERM' else 'OSError'} True",
        "children left []",
    ]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="kill's syscall number: x86_64")
@pytest.mark.parametrize("loop", LOOPS)
def test_a_child_that_cannot_be_killed_is_still_reaped(loop: str) -> None:
    assert _run("pidfd_send_signal,kill", "EPERM", loop, "pure", "unkillable") == [
        "close PermissionError True", "reaped []",
    ]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("error", ["ENOSYS", "EPERM"])
def test_pidfd_open_refused(loop: str, path: str, error: str) -> None:
    kind = "PermissionError" if error == "EPERM" else "OSError"
    first = f"spawn {kind} True []" if path == "pure" else "spawn ok -9"
    assert _run("pidfd_open", error, loop, path, "no_pidfd_open") == [
        first, f"open {kind} True",
    ]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("path", PATHS)
def test_clone3_refused_with_eperm(loop: str, path: str) -> None:
    """glibc's posix_spawn falls back to clone(2) only when clone3 says ENOSYS: refused
    with EPERM, the pure-Python path cannot start a child and says why (it read as if
    the program could not be executed). The compiled path falls back itself."""
    first = "spawn True true []" if path == "pure" else "spawn ok 0"
    assert _run("clone3", "EPERM", loop, path, "no_clone3") == [first]
