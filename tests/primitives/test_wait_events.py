"""wait_events / watch_events on real kernel files: pipes, /proc/self/mountinfo with a
mount in a private namespace, a real PSI trigger, cgroup v2's cgroup.events; many
waiters, cancellation, close, and no busy loop while a file stays readable."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import fdloop
import fdloop._aio.events as hub_module

from ..helpers import eventually

IN, PRI, OUT, ERR, HUP = (select.POLLIN, select.POLLPRI, select.POLLOUT, select.POLLERR,
                          select.POLLHUP)


def _ring_kind() -> str:
    from fdloop.backends import selected_name

    if selected_name() != "linux":
        return "kqueue"
    from fdloop.backends.linux.vpoll import ring_kind

    return ring_kind()


@pytest.fixture(params=["io_uring", "aio"])
def ring(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         fdloop_backend: str) -> str:
    """Run a Linux test on both kinds of poll requests (io_uring, and the AIO fallback
    used where io_uring is refused)."""
    if fdloop_backend != "linux":
        return "kqueue"
    from fdloop.backends.linux import vpoll
    from fdloop.backends.linux.aiopoll import AIOPolls
    from fdloop.backends.linux.uring import URingPolls

    kind = URingPolls if request.param == "io_uring" else AIOPolls
    try:
        kind().close()
    except OSError as error:
        pytest.skip(f"{request.param} refused here: {error.strerror}")
    monkeypatch.setattr(vpoll, "_ring_kind", kind)
    return request.param  # type: ignore[no-any-return]


async def test_pipe_readable_writable_and_hangup(ring: str) -> None:
    r, w = os.pipe()
    try:
        with anyio.fail_after(5):
            assert await fdloop.wait_events(w, OUT) == OUT
            async with anyio.create_task_group() as tg:
                async def write_later() -> None:
                    await anyio.sleep(0.02)
                    os.write(w, b"x")

                tg.start_soon(write_later)
                assert await fdloop.wait_events(r, IN) == IN
            os.read(r, 1)
            os.close(w)
            w = -1
            # POLLHUP is reported although only POLLIN was asked, as poll(2) does
            assert await fdloop.wait_events(r, IN) & HUP
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


async def test_many_waiters_and_a_cancelled_one(ring: str) -> None:
    r, w = os.pipe()
    try:
        with anyio.fail_after(5):
            got: list[int] = []
            async with anyio.create_task_group() as tg:
                async def waiter() -> None:
                    got.append(await fdloop.wait_events(r, IN))

                for _ in range(5):
                    tg.start_soon(waiter)
                with anyio.CancelScope() as doomed:
                    tg.start_soon(waiter)  # (started inside, so not in this scope)
                async with anyio.create_task_group() as inner:
                    cancelled = anyio.Event()

                    async def cancelled_waiter() -> None:
                        with anyio.CancelScope() as scope:
                            inner.start_soon(_cancel_soon, scope)
                            await fdloop.wait_events(r, IN)
                        cancelled.set()

                    inner.start_soon(cancelled_waiter)
                await cancelled.wait()
                assert not doomed.cancel_called
                os.write(w, b"x")
            assert got == [IN] * 6
    finally:
        os.close(r)
        os.close(w)


async def _cancel_soon(scope: anyio.CancelScope) -> None:
    await anyio.sleep(0.02)
    scope.cancel()


async def test_bad_arguments_and_closed_fds() -> None:
    with pytest.raises(ValueError, match="events"):
        await fdloop.wait_events(0, 0)
    with pytest.raises(ValueError, match="events"):
        await fdloop.wait_events(0, 0x4000_0000)
    with pytest.raises(TypeError, match="fd_or_object"):
        await fdloop.wait_events("0", IN)  # type: ignore[arg-type]
    # (a number no open fd can have: a just-closed one could become the ring's own)
    with anyio.fail_after(5), pytest.raises(OSError):
        await fdloop.wait_events(2**31 - 2, IN)


@pytest.mark.parametrize("where", ["loop thread", "another thread"])
async def test_notify_closing_wakes_waiters(ring: str, where: str) -> None:
    """fdloop.notify_closing(fd) for a plain fd wakes every waiter; from a worker thread
    the loop's waiters are woken in the loop's thread, and it returns once they are."""
    r, w = os.pipe()
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                async def waiter() -> None:
                    with pytest.raises(fdloop.ClosedResourceError):
                        await fdloop.wait_events(r, IN)

                tg.start_soon(waiter)
                tg.start_soon(waiter)
                assert await eventually(lambda: r in hub_module._homes)
                if where == "loop thread":
                    fdloop.notify_closing(r)
                else:
                    await anyio.to_thread.run_sync(fdloop.notify_closing, r)
                assert r not in hub_module._homes
    finally:
        os.close(r)
        os.close(w)


async def test_closing_an_awaited_fdloop_object_wakes_its_wait_events(ring: str) -> None:
    """close() of an EventFD that a task awaits through wait_events() wakes it, as it
    wakes a read(): the kernel's poll request alone would keep the file open for ever."""
    efd = fdloop.EventFD()
    woke = anyio.Event()

    async def waiter() -> None:
        with pytest.raises(fdloop.ClosedResourceError):
            await fdloop.wait_events(efd, IN)
        woke.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.02)  # (lets the waiter submit its poll; not a timing check)
            efd.close()
            await woke.wait()


def _awaited_objects() -> dict[str, Callable[[contextlib.ExitStack], tuple[Any, int]]]:
    """Each kind of fdloop object whose fd a task may await with wait_events, made
    fresh, with an event that does not come by itself."""

    def process(stack: contextlib.ExitStack) -> tuple[Any, int]:
        return fdloop.spawn(["sleep", "30"]), IN

    def pipe(stack: contextlib.ExitStack) -> tuple[Any, int]:
        proc = stack.enter_context(fdloop.spawn(["sleep", "30"], stdout=fdloop.PIPE))
        return proc.stdout, IN

    def signals(stack: contextlib.ExitStack) -> tuple[Any, int]:
        with warnings.catch_warnings():
            # (worker threads of earlier tests keep SIGUSR2 unblocked: nothing sends it)
            warnings.simplefilter("ignore", fdloop.SignalDeliveryWarning)
            return fdloop.SignalFD([signal.SIGUSR2]), IN

    def channel(stack: contextlib.ExitStack) -> tuple[Any, int]:
        try:
            sender, receiver = fdloop.channel(capacity=4096)
        except fdloop.UnsupportedOperation as exc:  # (the kqueue backend has none)
            pytest.skip(str(exc))
        stack.callback(sender.close)
        return receiver, IN

    return {
        "EventFD": lambda stack: (fdloop.EventFD(), IN),
        "TimerFD": lambda stack: (fdloop.TimerFD(), IN),
        "SignalFD": signals,
        "ProcessFD": process,
        "VirtualFD": lambda stack: (fdloop.VirtualFD(), IN),
        "PipeReceiveStream": pipe,
        "ChannelReceiver": channel,
    }


@pytest.mark.parametrize("where", ["loop thread", "another thread"])
@pytest.mark.parametrize("kind", list(_awaited_objects()))
async def test_close_from_any_thread_wakes_wait_events(kind: str, where: str) -> None:
    """Whichever thread closes the object, the task waiting for its poll events gets
    ClosedResourceError at once: the loop's kernel request is withdrawn in the loop's
    thread before the number is let go of (a close elsewhere left it waiting for good)."""
    with contextlib.ExitStack() as stack:
        obj, events = _awaited_objects()[kind](stack)
        fd = obj.fileno()
        outcome: list[str] = []

        async def waiter() -> None:
            try:
                outcome.append(f"mask {await fdloop.wait_events(obj, events):#x}")
            except fdloop.ClosedResourceError:
                outcome.append("closed")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                assert await eventually(lambda: fd in hub_module._homes)
                if where == "loop thread":
                    obj.close()
                else:
                    await anyio.to_thread.run_sync(obj.close)
                assert await eventually(lambda: bool(outcome))
        assert outcome == ["closed"]
        assert obj.closed
        assert fd not in hub_module._homes


async def test_a_number_reused_after_a_close_elsewhere_is_a_new_file(ring: str) -> None:
    """An EventFD closed from another thread while a task awaited its POLLIN; the next
    EventFD gets the same number: its own wait_events sees its own counter (a request
    left behind for the old file would have caught the new waiter)."""
    old = fdloop.EventFD()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            async def waiter() -> None:
                with pytest.raises(fdloop.ClosedResourceError):
                    await fdloop.wait_events(old, IN)

            tg.start_soon(waiter)
            assert await eventually(lambda: old.fileno() in hub_module._homes)
            number = old.fileno()
            await anyio.to_thread.run_sync(old.close)
        with fdloop.EventFD() as new:
            assert new.fileno() == number
            new.write(1)
            assert await fdloop.wait_events(new, IN) == IN


async def test_no_busy_loop_while_the_file_stays_readable(
    monkeypatch: pytest.MonkeyPatch, fdloop_backend: str,
) -> None:
    # mountinfo polls POLLIN for ever; a loop watching the fd itself would spin. Waiting
    # for POLLPRI must cost no wake-up at all while nothing changes.
    if fdloop_backend == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    calls = []
    original = hub_module._Hub.dispatch

    def counting(self: hub_module._Hub) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(hub_module._Hub, "dispatch", counting)
    fd = os.open("/proc/self/mountinfo", os.O_RDONLY)
    try:
        with anyio.move_on_after(0.2):
            await fdloop.wait_events(fd, PRI)
        assert calls == []
    finally:
        os.close(fd)


async def test_watch_reports_a_lasting_hangup_once() -> None:
    if _ring_kind().startswith("Linux AIO"):
        pytest.skip("AIO polls are one-shot: watch_events is level-triggered there")
    r, w = os.pipe()
    os.close(w)
    seen = []
    try:
        with anyio.move_on_after(0.2):
            async for mask in fdloop.watch_events(r, IN):
                seen.append(mask)
        assert seen == [HUP]
    finally:
        os.close(r)


# -- kernel files that signal with POLLPRI -----------------------------------------------

MOUNT_CHILD = textwrap.dedent("""
    import ctypes, os, select, subprocess, sys, tempfile
    import anyio, fdloop
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x20000) != 0:  # CLONE_NEWNS
        print("skip: unshare(CLONE_NEWNS):", os.strerror(ctypes.get_errno())); sys.exit()
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    where = tempfile.mkdtemp()

    async def main():
        fd = os.open("/proc/self/mountinfo", os.O_RDONLY)
        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    async def change():
                        await anyio.sleep(0.05)
                        await anyio.run_process(["mount", "-t", "tmpfs", "none", where])
                    tg.start_soon(change)
                    got = await fdloop.wait_events(fd, select.POLLPRI)
                    print(sys.argv[1], got & (select.POLLPRI | select.POLLERR))
        finally:
            os.close(fd)
            subprocess.run(["umount", where])

    anyio.run(main, backend=sys.argv[1])
    os.rmdir(where)
""")


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_mountinfo_reports_a_mount_in_a_private_namespace(
    library: str, fdloop_backend: str,
) -> None:
    # The ready-set technique (a private epoll the loop watches) loses this event: the
    # loop's poll of the outer epoll re-polls mountinfo, which resets it (measured).
    if fdloop_backend == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    if os.geteuid() != 0:
        pytest.skip("mounting in a private mount namespace needs root")
    out = subprocess.run([sys.executable, "-c", MOUNT_CHILD, library], capture_output=True,
                         text=True, timeout=60, check=False)
    if out.stdout.startswith("skip:"):
        pytest.skip(out.stdout.strip())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [library, str(PRI | ERR)]


def _psi_trigger() -> int:
    # Without CAP_SYS_RESOURCE the window must be a multiple of 2 s; the kernel replaces
    # the last byte written with NUL, so the text carries its own.
    try:
        fd = os.open("/proc/pressure/cpu", os.O_RDWR | os.O_NONBLOCK)
    except OSError as error:
        pytest.skip(f"/proc/pressure/cpu: {error.strerror}")
    try:
        os.write(fd, b"some 50000 2000000\0")
    except OSError as error:
        os.close(fd)
        pytest.skip(f"a PSI trigger is refused here: {error.strerror}")
    return fd


async def test_psi_trigger_raises_pollpri(
    ring: str, anyio_backend: tuple[str, dict[str, object]],
) -> None:
    if ring == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    library = "uvloop" if anyio_backend[1] else anyio_backend[0]
    if (library, ring) not in {("asyncio", "io_uring"), ("trio", "aio"), ("uvloop", "aio")}:
        pytest.skip("a PSI trigger takes ~2 s of busy CPUs: run on three loop/ring pairs")
    fd = _psi_trigger()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2 * (os.cpu_count() or 1) + 1)]
    try:
        # More runnable tasks than CPUs: 50 ms of "some" CPU stall within the window.
        with anyio.fail_after(20):
            assert await fdloop.wait_events(fd, PRI) == PRI
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        os.close(fd)


def _cgroup2_root() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return Path(fields[1])
    pytest.skip("no cgroup v2 hierarchy mounted")


async def test_cgroup_events_reports_populated_changes(ring: str) -> None:
    if ring == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    group = _cgroup2_root() / f"fdloop-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as error:
        pytest.skip(f"cgroup v2 is not writable here: {error.strerror}")
    sleeper = None
    fd = os.open(group / "cgroup.events", os.O_RDONLY)
    try:
        def populated() -> str:
            os.lseek(fd, 0, os.SEEK_SET)  # reading again re-arms kernfs' POLLPRI
            return os.read(fd, 4096).decode().split("\n")[0]

        assert populated() == "populated 0"
        sleeper = subprocess.Popen(["sleep", "30"])
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                async def move() -> None:
                    await anyio.sleep(0.02)
                    (group / "cgroup.procs").write_text(str(sleeper.pid))

                tg.start_soon(move)
                assert await fdloop.wait_events(fd, PRI) & PRI
            assert populated() == "populated 1"
            sleeper.kill()
            sleeper.wait()
            sleeper = None
            assert await fdloop.wait_events(fd, PRI) & PRI
            deadline = time.monotonic() + 5
            while populated() != "populated 0" and time.monotonic() < deadline:
                await fdloop.wait_events(fd, PRI)
            assert populated() == "populated 0"
    finally:
        os.close(fd)
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        group.rmdir()


def test_memory_pressure_example_on_a_cpu_trigger(fdloop_backend: str) -> None:
    if fdloop_backend == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    os.close(_psi_trigger())  # skips clearly where PSI triggers are refused
    example = Path(__file__).parents[2] / "examples" / "memory_pressure.py"
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2 * (os.cpu_count() or 1) + 1)]
    try:
        out = subprocess.run(
            [sys.executable, str(example), "--resource", "cpu", "--stall-ms", "50",
             "--count", "1"], capture_output=True, text=True, timeout=30, check=True)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert out.stdout.startswith("cpu pressure: some 50 ms stalled within 2 s (some avg10=")
