"""What every primitive promises alike about its fd, written once and run over each.

* detach() hands the fd over open and leaves the object closed; from_fd() takes it back
  with its state (EventFD, TimerFD on each clock, SignalFD, MemFD, ProcessFD); from_fd()
  refuses a pipe (leaving it open), a closed fd number and a non-int.
* repr names the class and the fd while open, and says ``closed`` after.
* An object dropped open warns (ResourceWarning) and closes its fd.
* On the Linux backend, from_fd() of a kernel object its sender made blocking leaves the
  sender's flag alone and never blocks, waiting through the loop (EventFD, TimerFD,
  SignalFD).

Everything here runs on each backend (tests/conftest.py). Waiting (close wakes waiters,
``async for`` ends) is test_contract.py; what is particular to one primitive (which state
from_fd keeps beyond these, what else its repr shows) stays in its own test module.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import select
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

import fdloop
from fdloop.backends import selected_name

from ..helpers import no_hang
from .contract_helpers import (
    Run,
    alone,
    anywhere,
    channel_backend,
    channel_receiver,
    channel_sender,
    pipe_reader,
    pipe_writer,
    run,
    signals_given_back,
)
from .signal_harness import (
    SIGRT,
    SIGUSR1,
    blocked,
    send,
    signal_state_is_left_as_found,  # noqa: F401  (autouse: SignalFD cases share the module)
)

# Idle threads of earlier tests draw SignalFD's warning; harmless here: every send aims at
# the main thread (signal_harness.send).
pytestmark = pytest.mark.filterwarnings("ignore::fdloop.SignalDeliveryWarning")


# -- detach() and from_fd() ------------------------------------------------------------------


@dataclass(frozen=True)
class Adopted:
    """A primitive whose fd can be detached and adopted back, keeping its state."""

    cls: Any
    make: Callable[[], Any]
    keeps: Callable[[Any, Any], None]  # (adopted, what ``remember`` noted) -> assertions
    remember: Callable[[Any], Any] = lambda obj: None
    when_detached: Callable[[], None] = lambda: None
    finish: Callable[[Any], None] = lambda noted: None
    refusals_match: bool = True  # from_fd's messages say "pipe" and "not open"


def _eventfd_keeps(adopted: fdloop.EventFD, _: None) -> None:
    assert adopted.semaphore
    assert adopted.read_nowait() == 1  # semaphore mode: one of the counter's 2


def _timer_keeps(adopted: fdloop.TimerFD, clock: str) -> None:
    assert adopted.clock == clock
    remaining, interval = adopted.get()
    assert 90 < remaining <= 100
    assert interval == 5


def _timer(clock: str) -> fdloop.TimerFD:
    timer = fdloop.TimerFD(clock)  # type: ignore[arg-type]
    timer.set(100, 5)
    return timer


def _signalfd_keeps(adopted: fdloop.SignalFD, _: None) -> None:
    assert adopted.signals == {SIGUSR1, SIGRT}
    assert {SIGUSR1, SIGRT} <= blocked()  # taken over again
    send(SIGRT)
    assert adopted.read_nowait().signo == SIGRT


def _memfd_keeps(adopted: fdloop.MemFD, _: None) -> None:
    assert (adopted.name, adopted.read()) == ("round trip", b"kept")


def _process_keeps(adopted: fdloop.ProcessFD, pid: int) -> None:
    assert adopted.pid == pid


def _process_reaped_as_it_exited(pid: int) -> None:
    """detach() disarmed kill-on-close: the child ran to its own exit, still ours to reap."""
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 6


ADOPTED = {
    "EventFD": Adopted(
        fdloop.EventFD, lambda: fdloop.EventFD(2, semaphore=True), _eventfd_keeps,
    ),
    **{
        f"TimerFD-{clock}": Adopted(
            fdloop.TimerFD, partial(_timer, clock), _timer_keeps,
            remember=lambda timer: timer.clock,
        )
        for clock in ("monotonic", "realtime", "boottime")
    },
    "SignalFD": Adopted(
        fdloop.SignalFD, lambda: fdloop.SignalFD({SIGUSR1, SIGRT}), _signalfd_keeps,
        when_detached=signals_given_back, finish=lambda _: signals_given_back(),
    ),
    "MemFD": Adopted(
        fdloop.MemFD, lambda: fdloop.MemFD.from_bytes(b"kept", seal=False, name="round trip"),
        _memfd_keeps,
    ),
    "ProcessFD": Adopted(
        fdloop.ProcessFD, lambda: fdloop.spawn(["sh", "-c", "sleep 0.05; exit 6"]),
        _process_keeps, remember=lambda proc: proc.pid, finish=_process_reaped_as_it_exited,
        refusals_match=False,
    ),
}


@pytest.mark.parametrize("kind", ADOPTED)
def test_detach_hands_over_the_fd_and_from_fd_takes_it_back(kind: str) -> None:
    case = ADOPTED[kind]
    obj = case.make()
    noted = case.remember(obj)
    fd = obj.detach()
    assert obj.closed
    os.fstat(fd)  # still open: the caller's now
    case.when_detached()
    with case.cls.from_fd(fd) as adopted:
        assert adopted.fileno() == fd
        case.keeps(adopted, noted)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the adopting object
    case.finish(noted)


REFUSING = {name: case for name, case in ADOPTED.items() if not name.startswith("TimerFD-")}
REFUSING["TimerFD"] = ADOPTED["TimerFD-monotonic"]


@pytest.mark.parametrize("kind", REFUSING)
def test_from_fd_refuses_a_pipe_a_closed_fd_and_a_non_int(kind: str) -> None:
    cls = REFUSING[kind].cls
    words = REFUSING[kind].refusals_match
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(fdloop.NotThisKindOfFD, match="pipe" if words else None):
            cls.from_fd(read_end)
        os.fstat(read_end)  # still open: a refused fd is not taken over
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(OSError, match="not open" if words else None):
        cls.from_fd(read_end)
    with pytest.raises(TypeError, match="fd"):
        cls.from_fd("3")
    signals_given_back()


# -- repr ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    make: Callable[[], tuple[Any, Callable[[], None]]]
    needs: Callable[[], None] = anywhere


SHOWN = {
    "EventFD": Shown(lambda: alone(fdloop.EventFD())),
    "TimerFD": Shown(lambda: alone(fdloop.TimerFD())),
    "SignalFD": Shown(lambda: alone(fdloop.SignalFD({SIGUSR1}))),
    "MemFD": Shown(lambda: alone(fdloop.MemFD())),
    "VirtualFD": Shown(lambda: alone(fdloop.VirtualFD())),
    "PipeReceiveStream": Shown(pipe_reader),
    "PipeSendStream": Shown(pipe_writer),
    "ChannelSender": Shown(channel_sender, needs=channel_backend),
    "ChannelReceiver": Shown(channel_receiver, needs=channel_backend),
}


@pytest.mark.parametrize("kind", SHOWN)
def test_repr_names_the_class_and_fd_then_says_closed(kind: str) -> None:
    SHOWN[kind].needs()
    obj, close_companions = SHOWN[kind].make()
    try:
        text = repr(obj)
        assert text.startswith(f"<fdloop.{kind} "), text
        assert f"fd={obj.fileno()}" in text
        obj.close()
        text = repr(obj)
        assert "closed" in text and "fd=" not in text, text
    finally:
        obj.close()
        close_companions()


# -- dropped open ----------------------------------------------------------------------------


def _armed_timer() -> tuple[fdloop.TimerFD, Callable[[], None]]:
    timer = fdloop.TimerFD()
    timer.set(100)
    return timer, lambda: None


DROPPED: dict[str, Callable[[], tuple[Any, Callable[[], None]]]] = {
    "EventFD": lambda: alone(fdloop.EventFD()),
    "TimerFD": _armed_timer,
    "SignalFD": lambda: alone(fdloop.SignalFD({SIGUSR1})),
    "MemFD": lambda: alone(fdloop.MemFD()),
    "PipeReceiveStream": pipe_reader,
    "PipeSendStream": pipe_writer,
}


@pytest.mark.parametrize("kind", DROPPED)
def test_garbage_collected_open_object_warns_and_closes(kind: str) -> None:
    obj, close_companions = DROPPED[kind]()
    fd = obj.fileno()
    try:
        with pytest.warns(ResourceWarning, match="unclosed"):
            del obj
            gc.collect()
        with pytest.raises(OSError):
            os.fstat(fd)
        signals_given_back()  # a SignalFD gives its signals back too
    finally:
        close_companions()


# -- adopting a blocking kernel fd (the Linux backend) ---------------------------------------


def _blocking_timerfd() -> int:
    """A monotonic timerfd without TFD_NONBLOCK, as a C sender might make it."""
    from fdloop.backends.linux.timerfd import CALLS, TFD_CLOEXEC

    return int(CALLS.create(time.CLOCK_MONOTONIC, TFD_CLOEXEC))


def _blocking_signalfd() -> int:
    """A signalfd for SIGUSR1 without SFD_NONBLOCK, as a C sender might make it."""
    # (the package's ``signalfd`` name is the factory: import the module itself)
    backend = importlib.import_module("fdloop.backends.linux.signalfd")
    fd = backend._signalfd(-1, ctypes.byref(backend._sigset(frozenset({SIGUSR1}))),
                           os.O_CLOEXEC)
    assert fd >= 0
    return int(fd)


@dataclass(frozen=True)
class Blocking:
    """A kernel object made blocking by its sender, then adopted with from_fd."""

    cls: Any
    make: Callable[[], int]  # the sender's blocking fd
    event: Callable[[Any, int], None]  # (adopted, the sender's dup): make one event happen
    read_nowait: Callable[[Any], object]
    read: Callable[[Any], Awaitable[object]]
    expected: object


BLOCKING = {
    "EventFD": Blocking(
        fdloop.EventFD, lambda: os.eventfd(0, os.EFD_CLOEXEC),
        lambda efd, theirs: os.eventfd_write(theirs, 3),
        lambda efd: efd.read_nowait(), lambda efd: efd.read(), 3,
    ),
    "TimerFD": Blocking(
        fdloop.TimerFD, _blocking_timerfd, lambda timer, theirs: timer.set(0.01),
        lambda timer: timer.wait_nowait(), lambda timer: timer.wait(), 1,
    ),
    "SignalFD": Blocking(
        fdloop.SignalFD, _blocking_signalfd, lambda sfd, theirs: send(SIGUSR1),
        lambda sfd: sfd.read_nowait().signo, lambda sfd: _signo(sfd), SIGUSR1,
    ),
}


async def _signo(sfd: fdloop.SignalFD) -> int:
    return (await sfd.read()).signo


def _linux_backend() -> None:
    if selected_name() != "linux":
        pytest.skip("adopting a kernel fd: the Linux backend's (kqueue: from_fd takes back "
                    "only what was detached in this process)")


@pytest.mark.parametrize("kind", BLOCKING)
def test_from_fd_leaves_the_senders_blocking_flag_alone_and_never_blocks(kind: str) -> None:
    """O_NONBLOCK lives on the open file description, which the adopted fd shares with
    the sender (here: a dup, as after fork, exec or SCM_RIGHTS): from_fd must not turn
    the sender's blocking fd non-blocking, and a read must still never block."""
    _linux_backend()
    case = BLOCKING[kind]
    fd = case.make()
    theirs = os.dup(fd)
    try:
        with case.cls.from_fd(fd) as adopted, no_hang():
            assert os.get_blocking(theirs)
            with pytest.raises(BlockingIOError):
                case.read_nowait(adopted)  # would block for good on the blocking description
            case.event(adopted, theirs)
            assert select.select([fd], [], [], 10)[0], "the event never came"
            assert case.read_nowait(adopted) == case.expected
            assert os.get_blocking(theirs)
    finally:
        os.close(theirs)


@pytest.mark.parametrize("kind", BLOCKING)
def test_an_adopted_blocking_fd_is_awaited_through_the_loop(
    kind: str, anyio_backend: Run
) -> None:
    """The loop's poll must not set O_NONBLOCK either (uvloop's add_reader would): the
    event comes from another thread while the task waits."""
    _linux_backend()
    case = BLOCKING[kind]

    async def body() -> None:
        fd = case.make()
        theirs = os.dup(fd)
        try:
            async with case.cls.from_fd(fd) as adopted:
                later = threading.Timer(0.05, case.event, (adopted, theirs))
                later.start()
                try:
                    assert await case.read(adopted) == case.expected
                finally:
                    later.join()
            assert os.get_blocking(theirs)
        finally:
            os.close(theirs)

    run(anyio_backend, body, signals=False)
