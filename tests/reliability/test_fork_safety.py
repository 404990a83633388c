"""A forked child leaves its parent's children and waits alone.

Each case runs tests/reliability/fork_scenario.py in a fresh interpreter (forking inside
pytest's own process would copy pytest too), on asyncio, uvloop and trio, and on the
backend in force (``FDLOOP_BACKEND=kqueue`` runs it against the kqueue emulator, which
child Pythons get through tests/kqueue_emulator/child_site). Inside a running loop,
tasks wait on an EventFD, a TimerFD, a SignalFD, a spawned ``cat``'s ProcessFD (the
ready set), its stdout and a VirtualFD; then a task forks. What the child does depends on the case;
afterwards the parent must see every wait wake, and its children still running, never
signalled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

SCENARIO = os.path.join(os.path.dirname(__file__), "fork_scenario.py")
LIBRARIES = ["asyncio", "uvloop", "trio"]
EVERY_WAIT = {
    "efd": 7, "timer": 1, "sfd": 10, "stdout": "still here", "exit": 0, "spare_efd": 3,
    "memfd": "shared", "vfd": 1,  # (POLLIN)
}


def run_scenario(library: str, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, SCENARIO, library, mode], check=False,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def assert_parent_unharmed(result: dict[str, Any]) -> None:
    assert result["child_exit"] == 0
    assert result["untouched"], "the forked child signalled or reaped the parent's children"
    got = result["got"]
    assert got == EVERY_WAIT, f"the parent's waits that never woke: {EVERY_WAIT.keys() - got}"


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_forked_child_cannot_signal_poll_or_wait_for_the_parents_child(library: str) -> None:
    result = run_scenario(library, "refuse")
    child = result["child"]
    for call in ("send_signal", "send_signal_0", "terminate", "kill", "poll", "wait",
                 "read", "spare_poll", "timer_set", "timer_disarm", "timer_wait_nowait",
                 "timer_wait", "vfd_set", "vfd_add", "vfd_remove"):
        assert child[call] == "refused, names fork", (call, child[call])
    assert child["returncode"] == "ok"
    assert "copy inherited from process" in child["repr"]
    assert_parent_unharmed(result)


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_forked_child_closing_its_copies_leaves_the_parents_waits(library: str) -> None:
    assert_parent_unharmed(run_scenario(library, "close"))


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_forked_child_collecting_its_copies_at_exit_leaves_the_parents_waits(
    library: str,
) -> None:
    assert_parent_unharmed(run_scenario(library, "collect"))


FORK_WHILE_A_THREAD_WRITES = r"""
import os, signal, threading
import fdloop

efd = fdloop.EventFD()
in_syscall, forked = threading.Event(), threading.Event()


def writer_inside_its_syscall():
    # Holds the lock EventFD.write() holds across its syscall (what a writer thread
    # does at the moment of the fork), until the fork has happened.
    with efd._fd_lock():
        in_syscall.set()
        forked.wait()


thread = threading.Thread(target=writer_inside_its_syscall)
thread.start()
in_syscall.wait()
child = os.fork()
if child == 0:
    signal.alarm(10)  # (a child stuck in close() ends by SIGALRM: exit code -14)
    efd.close()  # the writer thread does not exist here: nothing may hold its lock
    os._exit(0)
forked.set()
thread.join()
_, status = os.waitpid(child, 0)
efd.close()
print(os.waitstatus_to_exitcode(status))
"""


def test_a_close_in_a_child_forked_while_a_thread_wrote_does_not_wait_for_it() -> None:
    # The lock a thread-safe call holds across its syscall was copied held into the
    # child, whose close then waited for ever for a thread that is not there.
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_WHILE_A_THREAD_WRITES],
        check=False, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0 and done.stdout.split() == ["0"], done.stdout + done.stderr


FORK_INSIDE_A_RUN = r"""
import asyncio, json, os, signal, sys
import anyio
import fdloop

LIBRARY, CHILD = sys.argv[1], sys.argv[2]


async def read_after_a_wait(efd):
    asyncio.get_running_loop().call_later(0.05, efd.write, 1)
    value = await efd.read()  # (nothing to read yet: it waits)
    # run() works through anyio's task groups and cancel scopes: asyncio's, here.
    done = await fdloop.run(["echo", "x"], capture_output=True, timeout=30)
    return [value, done.stdout.decode()]


def child():
    signal.alarm(10)
    efd = fdloop.EventFD()
    if CHILD == "own_loop":
        return asyncio.run(read_after_a_wait(efd))
    coro = efd.read()  # nothing to read: waits on the copy of the parent's loop or run
    try:
        coro.send(None)
    except RuntimeError as exc:
        return str(exc)
    except StopIteration as done:
        return f"read {done.value} through the parent's loop"
    finally:
        coro.close()
    return "waited through the parent's loop"


async def main():
    efd = fdloop.EventFD()
    pid = os.fork()
    if pid == 0:
        try:
            outcome = child()
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        os.write(1, (json.dumps(outcome) + "\n").encode())
        os._exit(0)
    _, status = os.waitpid(pid, 0)  # (blocks the loop: the child is quick)
    efd.write(5)
    with anyio.fail_after(10):
        mine = await efd.read()  # the parent's own waits are unharmed
    print(json.dumps([os.waitstatus_to_exitcode(status), mine]))


if LIBRARY == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    anyio.run(main, backend=LIBRARY)
"""


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("child", ["inherited_loop", "own_loop"])
def test_a_child_forked_inside_a_run_never_waits_through_the_parents_loop(
    library: str, child: str,
) -> None:
    # The copy of the running loop (or trio run) shares the parent's epoll set, and
    # sniffio (so anyio) would still name trio there. fdloop refuses that copy, and uses
    # a loop the child starts, anyio included.
    done = subprocess.run(
        [sys.executable, "-c", FORK_INSIDE_A_RUN, library, child],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    child_outcome, parent = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert parent == [0, 5]
    if child == "own_loop":
        assert child_outcome == [1, "x\n"]
    else:
        assert "forked inside a running" in child_outcome and "epoll" in child_outcome, (
            child_outcome)
