"""What is particular to the kqueue backend: its documented differences, checked.

The whole primitive suite already runs on this backend (tests/primitives, through
conftest). These tests pin the differences that ``capabilities()`` announces, on both
kqueue platforms the emulator imitates (or on the real kqueue where there is one).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import sys
import time
from collections.abc import Iterator

import anyio
import pytest

import fdloop
from fdloop import backends, info

from .. import kqueue_emulator

REAL_KQUEUE = kqueue_emulator.REAL_KQUEUE is not None
PLATFORMS = ["native"] if REAL_KQUEUE else ["freebsd", "darwin"]
PRIMITIVES = {
    "Channel", "EventFD", "MemFD", "PollEvents", "ProcessFD", "SignalFD", "TimerFD", "VirtualFD",
}


@pytest.fixture(params=PLATFORMS)
def kqueue_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[str]:
    monkeypatch.setenv("FDLOOP_BACKEND", "kqueue")
    if not REAL_KQUEUE:
        kqueue_emulator.install(monkeypatch.setattr, request.param)
    yield request.param


def _row(primitive: str) -> fdloop.Capability:
    [row] = [c for c in fdloop.capabilities() if c.primitive == primitive]
    return row


@pytest.mark.usefixtures("kqueue_backend")
def test_capabilities_list_every_primitive_with_its_kernel_object() -> None:
    rows = {c.primitive: c for c in fdloop.capabilities()}
    assert set(rows) == PRIMITIVES
    assert {c.backend for c in rows.values()} == {"kqueue"}
    assert rows["TimerFD"].kernel_object == "kqueue (EVFILT_TIMER)"
    assert rows["SignalFD"].kernel_object == "kqueue (EVFILT_SIGNAL)"
    assert rows["ProcessFD"].kernel_object == "kqueue (EVFILT_PROC)"
    if not sys.platform.startswith("freebsd"):
        assert not rows["EventFD"].native  # the counter lives in this process
        assert rows["EventFD"].kernel_object == "kqueue (EVFILT_USER)"
    assert any("cancel_on_set" in m for m in rows["TimerFD"].missing)
    assert any("signo" in m for m in rows["SignalFD"].missing)


def test_signalfd_row_states_the_counting_and_on_macos_the_thread_rule(
    kqueue_backend: str,
) -> None:
    missing = _row("SignalFD").missing
    assert any("counts every send" in m for m in missing)
    darwin = kqueue_backend == "darwin" or (kqueue_backend == "native"
                                           and sys.platform == "darwin")
    assert any("aimed at a thread" in m for m in missing) == darwin


def test_linux_capabilities_are_listed_too() -> None:
    assert {c.primitive for c in backends.capabilities("linux")} == PRIMITIVES


def test_describe_names_kernel_python_loops_and_every_primitive(
    kqueue_backend: str,
) -> None:
    text = info.describe()
    for words in ("kernel", "python", "trio", "uvloop", "backend    kqueue", *PRIMITIVES):
        assert words in text
    if kqueue_backend != "native":
        assert f"emulated ({kqueue_backend} rules" in text
    assert "linux" in info.describe("linux")
    with pytest.raises(ValueError, match="backend"):
        info.describe("epoll")


def test_without_select_kqueue_the_backend_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FDLOOP_BACKEND", "kqueue")
    monkeypatch.delattr(select, "kqueue", raising=False)
    with pytest.raises(fdloop.UnsupportedOperation, match=r"select\.kqueue"):
        fdloop.EventFD()


@pytest.mark.usefixtures("kqueue_backend")
def test_eventfd_from_fd_refuses_a_kqueue_it_did_not_detach() -> None:
    with fdloop.EventFD(1) as efd:
        duplicate = os.dup(efd.fileno())
        try:
            with pytest.raises(fdloop.UnsupportedOperation, match="detached in this same"):
                fdloop.EventFD.from_fd(duplicate)
        finally:
            os.close(duplicate)
        with pytest.raises(fdloop.NotThisKindOfFD, match="TimerFD"):
            fdloop.TimerFD.from_fd(_detached_and_kept(efd))


def _detached_and_kept(efd: fdloop.EventFD) -> int:
    """Detach a dup of ``efd`` (an EventFD kqueue), so from_fd knows the fd's kind."""
    other = efd.dup()
    fd = other.detach()
    _PARKED.append(fd)
    return fd


_PARKED: list[int] = []


@pytest.fixture(autouse=True)
def _adopt_parked_back() -> Iterator[None]:
    yield
    while _PARKED:
        fdloop.EventFD.from_fd(_PARKED.pop()).close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.usefixtures("kqueue_backend")
def test_eventfd_is_refused_in_a_forked_child_with_a_clear_error() -> None:
    with fdloop.EventFD() as efd:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                efd.write(1)
            except fdloop.UnsupportedOperation as exc:
                code = 0 if "fork" in str(exc) else 2
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@pytest.mark.usefixtures("kqueue_backend")
def test_timer_cancel_on_set_is_unsupported_and_changes_nothing() -> None:
    with fdloop.TimerFD("realtime") as timer:
        timer.set(100, 5)
        with pytest.raises(fdloop.UnsupportedOperation, match="cancel_on_set"):
            timer.set(timer.now() + 10, absolute=True, cancel_on_set=True)
        remaining, interval = timer.get()
        assert 90 < remaining <= 100 and interval == 5


@pytest.mark.usefixtures("kqueue_backend")
def test_timer_get_is_computed_on_fdloops_schedule() -> None:
    with fdloop.TimerFD() as timer:
        assert timer.get() == (0.0, 0.0)
        timer.set(50, 0.25)  # schedule-counted: first expiry differs from the interval
        remaining, interval = timer.get()
        assert 49 < remaining <= 50 and interval == 0.25
        timer.disarm()
        assert timer.get() == (0.0, 0.0)


def test_memfd_without_seals_says_why(kqueue_backend: str) -> None:
    if not any("seal" in m for m in _row_for_kqueue("MemFD").missing):
        pytest.skip("this platform's MemFD can seal (FreeBSD memfd_create)")
    with fdloop.MemFD("blob", 16) as memfd:
        with pytest.raises(fdloop.UnsupportedOperation, match="sealed"):
            memfd.seal(fdloop.SEAL_WRITE)
        memfd.write(b"still writable")


def _row_for_kqueue(primitive: str) -> fdloop.Capability:
    return _row(primitive)


@pytest.mark.usefixtures("kqueue_backend")
def test_ready_set_reports_members_while_readable_until_discarded() -> None:
    ready_set = backends.current().ready_set()
    try:
        with fdloop.EventFD() as quiet, fdloop.EventFD(1) as loud:
            ready_set.add(quiet.fileno())
            ready_set.add(loud.fileno())
            ready_set.add(loud.fileno())  # again: no duplicate
            assert ready_set.ready() == [loud.fileno()]
            assert ready_set.ready() == [loud.fileno()]  # level-triggered
            ready_set.discard(loud.fileno())
            ready_set.discard(loud.fileno())  # not watched any more: nothing happens
            assert ready_set.ready() == []
            quiet.write(2)
            assert ready_set.ready() == [quiet.fileno()]
            ready_set.discard(quiet.fileno())
        with pytest.raises(TypeError):
            ready_set.detach()
    finally:
        ready_set.close()


@pytest.mark.usefixtures("kqueue_backend")
async def test_a_process_kqueue_readable_with_no_event_does_not_spin_the_loop() -> None:
    """A kqueue fd that polls readable while kevent() has nothing (seen with libkqueue)
    used to send ProcessFD.wait() round wake -> check -> wait at full speed (99 % CPU,
    building and closing a ready set each turn): a wake without progress backs off."""
    if REAL_KQUEUE:
        pytest.skip("needs the emulator to make a kqueue readable without an event")
    proc = fdloop.spawn(["sleep", "100"])
    checks = 0
    real_poll = proc._handle._poll

    def counting_poll() -> None:
        nonlocal checks
        checks += 1
        real_poll()

    proc._handle._poll = counting_poll  # type: ignore[method-assign]
    stray = os.eventfd(1, os.EFD_CLOEXEC | os.EFD_NONBLOCK)  # always readable
    proc._handle._kq._epoll.register(stray, select.EPOLLIN)  # in the kqueue, no knote
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(proc.wait)
            wall, cpu = time.monotonic(), _cpu_seconds()
            await anyio.sleep(0.5)
            wall, cpu = time.monotonic() - wall, _cpu_seconds() - cpu
            proc.kill()  # the exit still ends the wait (within the back-off's 50 ms)
        assert proc.returncode == -signal.SIGKILL
    finally:
        await proc.aclose()
        os.close(stray)
    assert checks < 100, f"{checks} fruitless wake-ups in {wall:.2f} s"
    assert cpu < wall / 2, f"{cpu:.2f} s of CPU in {wall:.2f} s"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread (trio guest mode)
    return usage.ru_utime + usage.ru_stime
