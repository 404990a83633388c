"""Adversarial tests of reaping at the loop's wake-up (the ready set's ``ready_reaped``).

The hub reaps every exited child in one call per wake-up and leaves the raw status in
``FDWaiter.reaped`` for the ProcessFD to take. Tried here with real children, the way a
hostile caller would: a wait cancelled after the reap but before its task ran, several
waiters with one cancelled, close() from another thread and in the loop while a wait is
armed, detach() of a reaped child, more children exiting at once than one collect
batch holds, SIGCHLD set to SIG_IGN, a fork with an armed copy, and interpreter exit.
The status (code and rusage) must never be lost, invented or reaped twice; no zombie.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
import sniffio

import fdloop
from fdloop import backends, spawn

from ..helpers import eventually
from .process_helpers import (  # noqa: F401  (process_backend_only is autouse)
    alive,
    needs_backend_in_child_interpreters,
    no_children,
    pidfd_fact,
    process_backend_only,
)

PY = sys.executable


def wait_into(
    proc: fdloop.ProcessFD, outcome: list[object]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A task that waits for ``proc`` and appends the status, or the ClosedResourceError."""

    async def waiter() -> None:
        try:
            outcome.append(await proc.wait())
        except fdloop.ClosedResourceError as exc:
            outcome.append(exc)

    return waiter


def reaped_for_good(pid: int) -> bool:
    """True once ``pid`` is no child of ours any more (reaped; never a zombie left)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


async def cancel_after_reap(proc: fdloop.ProcessFD) -> bool:
    """Kill ``proc`` and cancel a wait() on it in the loop pass that delivers the exit:
    its wake-up is due, its task has not run yet. True if that wait was cancelled.

    A waker task waits on the ProcessFD's own waiter (registered first, so it runs
    first in that pass) and cancels the victim. On asyncio with ``Task.cancel`` (anyio's
    scopes spare a task whose future is done); trio cannot cancel a rescheduled task, so
    there the victim finishes (False), which must hold just as well."""
    if sniffio.current_async_library() != "asyncio":

        async def first() -> None:  # (waiter.wait() parks its caller's task at once)
            await proc._waiter.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.sleep(0.01)
            tg.start_soon(proc.wait)
            await anyio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
        return False
    victim: asyncio.Future[fdloop.ExitStatus] | None = None

    async def waker() -> None:
        await proc._waiter.wait()
        assert victim is not None
        victim.cancel()

    woken = asyncio.ensure_future(waker())
    await asyncio.sleep(0.01)  # the waker's wait is armed first
    victim = asyncio.ensure_future(proc.wait())
    await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    await woken
    try:
        await victim
    except asyncio.CancelledError:
        return True
    return False


@pytest.fixture(params=["compiled", "python"])
def collect_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The hub's collection by the extension's collect(), and in Python (as without the
    extension); the kqueue set reaps nothing, so it runs once there."""
    if backends.selected_name() != "linux":
        if request.param == "python":
            pytest.skip("only the Linux ready set reaps as it reports")
        return "kqueue"
    from fdloop.backends.linux import readyset

    if request.param == "python":
        monkeypatch.setattr(readyset, "_arm", None)
        monkeypatch.setattr(readyset, "_collect", None)
    elif readyset._collect is None:
        pytest.skip("the _clone_spawn extension is not built")
    return str(request.param)


async def test_a_wait_cancelled_after_the_reap_loses_nothing(collect_impl: str) -> None:
    proc = spawn(["sleep", "30"])
    with anyio.fail_after(10):
        cancelled = await cancel_after_reap(proc)
        # (the case itself must arise where it can: else this test could not fail)
        assert cancelled == (sniffio.current_async_library() == "asyncio")
        assert proc.poll() == -signal.SIGTERM
        assert proc.returncode == -signal.SIGTERM
        status = proc.status
        assert status is not None and status.rusage is not None
        assert await proc.wait() == status  # the same status again, no second reap
        assert (await proc.wait()).rusage == status.rusage
    proc.close()
    assert reaped_for_good(proc.pid)
    assert no_children()


async def test_a_wait_cancelled_after_the_reap_then_waited_again() -> None:
    # No poll() in between: the next wait re-arms a reaped child's pidfd (readable,
    # waitid ECHILD) and must take the status the hub kept, not report a foreign reap.
    proc = spawn(["sleep", "30"])
    with anyio.fail_after(10):
        await cancel_after_reap(proc)
        status = await proc.wait()
    assert status.known and status.returncode == -signal.SIGTERM
    assert status.rusage is not None
    proc.close()
    assert no_children()


async def test_close_after_an_uncollected_reap_keeps_the_status() -> None:
    proc = spawn(["sleep", "30"])
    with anyio.fail_after(10):
        await cancel_after_reap(proc)
    proc.close()  # the status the hub left is taken, nothing killed or handed over
    assert proc.returncode == -signal.SIGTERM
    assert proc.status is not None and proc.status.rusage is not None
    assert no_children()


async def test_aclose_after_an_uncollected_reap_keeps_the_status() -> None:
    proc = spawn(["sleep", "30"])
    with anyio.fail_after(10):
        await cancel_after_reap(proc)
        await proc.aclose()  # nothing left to end: no signal, no wait for kill_timeout
    assert proc.returncode == -signal.SIGTERM
    assert proc.status is not None and proc.status.rusage is not None
    assert no_children()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_a_dropped_handle_after_an_uncollected_reap_leaves_no_child() -> None:
    proc = spawn(["sleep", "30"])
    pid = proc.pid
    with anyio.fail_after(10):
        await cancel_after_reap(proc)
    del proc
    gc.collect()  # the finalizer's close takes the parked status; nothing to hand over
    assert reaped_for_good(pid)
    assert await eventually(no_children)


async def test_detach_after_the_hub_reaped_keeps_the_status_and_returns_the_fd() -> None:
    pidfd_fact()  # (a detached emulated kqueue keeps its knotes' fds past os.close)
    proc = spawn(["sleep", "30"])
    with anyio.fail_after(10):
        await cancel_after_reap(proc)
    fd = proc.detach()
    try:
        assert proc.returncode == -signal.SIGTERM
        assert proc.status is not None and proc.status.rusage is not None
        with pytest.raises(ChildProcessError):  # reaped once, by the hub
            os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    finally:
        os.close(fd)
    assert no_children()


async def test_many_waiters_one_cancelled_the_others_get_the_status() -> None:
    proc = spawn(["sleep", "30"])
    got: list[fdloop.ExitStatus] = []

    async def waiter() -> None:
        got.append(await proc.wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(waiter)
            victim = anyio.CancelScope()

            async def cancelled() -> None:
                with victim:
                    await proc.wait()

            tg.start_soon(cancelled)
            for _ in range(2):
                tg.start_soon(waiter)
            await anyio.sleep(0.02)
            victim.cancel()
            await anyio.sleep(0.01)
            proc.kill()
    assert len(got) == 5
    assert {s.returncode for s in got} == {-signal.SIGKILL}
    assert all(s.rusage is not None for s in got)
    proc.close()
    assert no_children()


async def test_close_from_another_thread_while_a_wait_is_armed() -> None:
    proc = spawn(["sleep", "30"])
    outcome: list[object] = []
    waiter = wait_into(proc, outcome)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(proc.close)
    assert len(outcome) == 1 and isinstance(outcome[0], fdloop.ClosedResourceError)
    assert proc.closed
    assert await eventually(no_children)  # SIGKILLed, then reaped by the reaper


async def test_close_in_the_loop_while_a_wait_is_armed_and_the_child_exited() -> None:
    # The exit is pending in the ready set (not dispatched yet) when close() runs: the
    # member is discarded, so close() itself must reap it, once.
    proc = spawn(["sleep", "30"])
    outcome: list[object] = []
    waiter = wait_into(proc, outcome)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.02)
            proc.kill()
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, unreaped
            proc.close()
    assert len(outcome) == 1
    if isinstance(outcome[0], fdloop.ExitStatus):
        assert outcome[0].returncode == -signal.SIGKILL
    assert await eventually(no_children)
    assert proc.returncode in (None, -signal.SIGKILL)


async def test_more_children_than_one_collect_batch_exit_at_once(collect_impl: str) -> None:
    count = 80  # more than the 64 reports one collect() call returns
    read_end, write_end = os.pipe()
    procs: list[fdloop.ProcessFD] = []
    try:
        for _ in range(count):
            procs.append(spawn(["sh", "-c", "read x; exit 4"], stdin=read_end))
    finally:
        os.close(read_end)
    statuses: dict[int, fdloop.ExitStatus] = {}

    async def waiter(proc: fdloop.ProcessFD) -> None:
        statuses[proc.pid] = await proc.wait()

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for proc in procs:
                    tg.start_soon(waiter, proc)
                await anyio.sleep(0.05)
                os.close(write_end)  # every child reads EOF and exits at once
                write_end = -1
    finally:
        if write_end >= 0:
            os.close(write_end)
        for proc in procs:
            proc.close()
    assert len(statuses) == count
    assert {s.returncode for s in statuses.values()} == {4}
    assert all(s.rusage is not None for s in statuses.values())
    assert all(reaped_for_good(pid) for pid in statuses)
    assert no_children()




async def test_sigchld_ignored_with_waits_armed_never_invents_a_status(
    sigchld_ignored: None, collect_impl: str,
) -> None:
    procs = [spawn(["sh", "-c", "sleep 0.1; exit 7"]) for _ in range(6)]
    got: list[fdloop.ExitStatus] = []

    async def waiter(proc: fdloop.ProcessFD) -> None:
        got.append(await proc.wait())

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for proc in procs:
                    tg.start_soon(waiter, proc)
    finally:
        for proc in procs:
            proc.close()
    assert len(got) == len(procs)
    for status in got:
        assert (status.known and status.returncode == 7) or not status.known, status
    assert no_children()


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-W", "ignore", "-c", textwrap.dedent(script)],
        check=False, capture_output=True, text=True, timeout=30,
    )


def test_a_forked_copy_of_an_armed_wait_refuses_and_the_parent_still_gets_it() -> None:
    needs_backend_in_child_interpreters()
    result = run_script(
        """
        import asyncio, os, fdloop

        async def main():
            proc = fdloop.spawn(["sh", "-c", "sleep 0.3; exit 3"])
            task = asyncio.ensure_future(proc.wait())
            await asyncio.sleep(0.05)  # armed in this loop's ready set
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    asyncio.run(proc.wait())  # a loop of its own: must refuse
                    code = 2
                except fdloop.UnsupportedOperation:
                    pass
                except BaseException:
                    code = 3
                try:
                    proc.poll()
                    code = 4
                except fdloop.UnsupportedOperation:
                    pass
                proc.close()
                os._exit(code)
            _, st = os.waitpid(pid, 0)
            status = await asyncio.wait_for(task, 10)
            proc.close()
            print(os.waitstatus_to_exitcode(st), status.returncode, status.known,
                  status.rusage is not None)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "3", "True", "True"]


def test_interpreter_exit_kills_and_reaps_children_of_armed_waits() -> None:
    needs_backend_in_child_interpreters()
    result = run_script(
        """
        import atexit, os

        def after_fdloop():  # registered first, so it runs after fdloop's exit hook
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            print("zombie" if info is not None else "clean", flush=True)

        atexit.register(after_fdloop)
        import asyncio, sys, fdloop

        async def main():
            kept = [fdloop.spawn(["sleep", "30"]) for _ in range(3)]
            daemon = fdloop.spawn(["sleep", "30"], daemon=True, stdout=fdloop.DEVNULL,
                                   stderr=fdloop.DEVNULL)  # (our pipe would stay open)
            tasks = [asyncio.ensure_future(p.wait()) for p in kept + [daemon]]
            await asyncio.sleep(0.05)  # every wait armed in the ready set
            print(" ".join(str(p.pid) for p in kept), daemon.pid, flush=True)
            sys.exit(0)  # no close: exit must SIGKILL and reap `kept`, spare `daemon`

        asyncio.run(main())
        """
    )
    lines = result.stdout.split("\n")
    *kept, daemon = map(int, lines[0].split())
    try:
        assert result.returncode == 0, result.stderr
        assert lines[1] == "clean", result.stdout
        assert not any(alive(pid) for pid in kept)
        assert alive(daemon)
    finally:
        try:  # the daemon belongs to init now; its pidfd: never a reused pid
            handle = os.pidfd_open(daemon)
        except ProcessLookupError:
            pass
        else:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
            os.close(handle)
