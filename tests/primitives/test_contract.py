"""What every primitive promises alike, written once and run over each of them.

* close() wakes every task waiting on the object with ClosedResourceError (fdloop's, which
  is anyio's): EventFD, TimerFD, SignalFD, ProcessFD, VirtualFD (through wait_events),
  the Channel's receiving end and a pipe stream.
* ``async for`` ends, without an error, when the object is closed (EventFD, TimerFD,
  SignalFD) or when the other end closes (Channel, pipe stream), after every item fed in.
* detach() hands the fd over open and leaves the object closed; from_fd() takes it back
  with its state (EventFD, TimerFD on each clock, SignalFD, MemFD, ProcessFD); from_fd()
  refuses a pipe (leaving it open), a closed fd number and a non-int.
* repr names the class and the fd while open, and says ``closed`` after.

Like tests/primitives/test_signalfd.py, async bodies run through ``anyio.run`` on asyncio,
uvloop and trio (see signal_harness.py: the pytest plugin's trio guest mode polls in a
worker thread that a process-directed signal could be delivered to), and everything here
runs on each backend (tests/conftest.py). What is particular to one primitive (which
state from_fd keeps beyond the fd, what else its repr shows) is in that primitive's own
test module.
"""

from __future__ import annotations

import os
import select
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import pytest

import fdloop

from ..helpers import eventually
from ..leaks import children_of
from .signal_harness import (
    SIGRT,
    SIGUSR1,
    SIGUSR2,
    TIMEOUT,
    blocked,
    require_alone,
    send,
    signal_state_is_left_as_found,  # noqa: F401  (autouse: SignalFD cases share the module)
    thread_directed_reach_signalfd,
)

# Idle threads of earlier tests draw SignalFD's warning; harmless here: every send aims at
# the main thread, or waits until no other thread could take it (signal_harness.send).
pytestmark = pytest.mark.filterwarnings("ignore::fdloop.SignalDeliveryWarning")

Run = tuple[str, dict[str, Any]]


def run(anyio_backend: Run, body: Callable[[], Awaitable[None]], signals: bool) -> None:
    """Run ``body`` on the loop ``anyio_backend`` names, bounded by TIMEOUT (a hang guard).

    A body that sends signals first waits to be the only thread that could take a
    process-directed one, where sends go to the process (signal_harness.send)."""
    if signals and not thread_directed_reach_signalfd():
        require_alone()

    async def bounded() -> None:
        with anyio.fail_after(TIMEOUT):
            await body()

    name, options = anyio_backend
    anyio.run(bounded, backend=name, backend_options=options)


def _pipe_reader() -> tuple[fdloop.PipeReceiveStream, Callable[[], None]]:
    read_end, write_end = os.pipe()
    return fdloop.PipeReceiveStream(read_end), lambda: os.close(write_end)


def _pipe_writer() -> tuple[fdloop.PipeSendStream, Callable[[], None]]:
    read_end, write_end = os.pipe()
    return fdloop.PipeSendStream(write_end), lambda: os.close(read_end)


def _channel_receiver() -> tuple[fdloop.ChannelReceiver, Callable[[], None]]:
    sender, receiver = fdloop.channel(capacity=64)
    return receiver, sender.close


def _channel_sender() -> tuple[fdloop.ChannelSender, Callable[[], None]]:
    sender, receiver = fdloop.channel(capacity=64)
    return sender, receiver.close


def _alone(obj: Any) -> tuple[Any, Callable[[], None]]:
    return obj, lambda: None


def _signals_given_back() -> None:
    assert not {SIGUSR1, SIGUSR2, SIGRT} & blocked()


async def _no_children_left() -> None:
    assert await eventually(lambda: not children_of(os.getpid()))


async def _nothing_more() -> None:
    return None


def _anywhere() -> None:
    return None


def _channel_backend() -> None:
    """Skip where there is no Channel (test_channel.py checks that it is refused there)."""
    if fdloop.backends.selected_name() != "linux":
        pytest.skip("no Channel on this backend")


# -- close() wakes every waiter ------------------------------------------------------------


@dataclass(frozen=True)
class Waited:
    """A primitive that a task can wait on while nothing arrives."""

    make: Callable[[], tuple[Any, Callable[[], None]]]  # the object, and its companions' close
    wait: Callable[[Any], Awaitable[object]]
    after_close: Callable[[], Awaitable[None]] = _nothing_more
    signals: bool = False
    waiters: int = 3  # a pipe stream takes one reader at a time (BusyResourceError)
    needs: Callable[[], None] = _anywhere  # skips where the backend has no such object


async def _signalfd_given_back() -> None:
    _signals_given_back()


WAITED = {
    "EventFD": Waited(lambda: _alone(fdloop.EventFD()), lambda efd: efd.read()),
    "TimerFD": Waited(lambda: _alone(fdloop.TimerFD()), lambda timer: timer.wait()),
    "SignalFD": Waited(
        lambda: _alone(fdloop.SignalFD({SIGUSR1})), lambda sfd: sfd.read(),
        after_close=_signalfd_given_back, signals=True,
    ),
    "ProcessFD": Waited(
        lambda: _alone(fdloop.spawn(["sleep", "100"])), lambda proc: proc.wait(),
        after_close=_no_children_left,
    ),
    "VirtualFD": Waited(
        lambda: _alone(fdloop.VirtualFD()), lambda vfd: fdloop.wait_events(vfd, select.POLLIN)
    ),
    "ChannelReceiver": Waited(
        _channel_receiver, lambda receiver: receiver.receive(), needs=_channel_backend
    ),
    "PipeReceiveStream": Waited(_pipe_reader, lambda reader: reader.read(), waiters=1),
}


@pytest.mark.parametrize("kind", WAITED)
def test_close_wakes_every_waiter_with_closed_resource_error(
    kind: str, anyio_backend: Run
) -> None:
    case = WAITED[kind]
    case.needs()

    async def body() -> None:
        obj, close_companions = case.make()
        errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await case.wait(obj)
            except fdloop.ClosedResourceError as exc:
                errors.append(exc)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(case.waiters):
                    tg.start_soon(waiter)
                await anyio.sleep(0.05)  # all of them are waiting
                obj.close()
        finally:
            close_companions()
        assert len(errors) == case.waiters
        assert all(isinstance(error, anyio.ClosedResourceError) for error in errors)
        await case.after_close()

    run(anyio_backend, body, case.signals)


# -- async for ends on close -----------------------------------------------------------------


@dataclass(frozen=True)
class Iterated:
    """A primitive iterated with ``async for``: how to feed item ``i``, what it yields as,
    and what ends the iteration (given the object and its companion)."""

    make: Callable[[], tuple[Any, Any]]  # the iterable and what feeds it
    feed: Callable[[Any, Any, int], Awaitable[None]]
    seen_as: Callable[[Any], object]
    expected: list[object]
    end: Callable[[Any, Any], Awaitable[None]]
    signals: bool = False
    needs: Callable[[], None] = _anywhere


async def _write_counter(efd: fdloop.EventFD, _: None, i: int) -> None:
    efd.write(i + 1)


async def _arm_once(timer: fdloop.TimerFD, _: None, i: int) -> None:
    timer.set(0.001)  # one shot: exactly one expiration per item


async def _send_signal(sfd: fdloop.SignalFD, _: None, i: int) -> None:
    send((SIGUSR1, SIGUSR2)[i % 2])  # one at a time (the test waits): none coalesce


async def _send_message(receiver: Any, sender: fdloop.ChannelSender, i: int) -> None:
    await sender.send(b"message %d" % i)


async def _write_line(reader: Any, write_end: int, i: int) -> None:
    os.write(write_end, b"line %d\n" % i)


async def _close_itself(obj: Any, _: Any) -> None:
    await obj.aclose()


async def _close_sender(receiver: Any, sender: fdloop.ChannelSender) -> None:
    await sender.aclose()


async def _close_write_end(reader: Any, write_end: int) -> None:
    os.close(write_end)


def _channel_pair() -> tuple[fdloop.ChannelReceiver, fdloop.ChannelSender]:
    sender, receiver = fdloop.channel(capacity=64)
    return receiver, sender


def _pipe_pair() -> tuple[fdloop.PipeReceiveStream, int]:
    read_end, write_end = os.pipe()
    return fdloop.PipeReceiveStream(read_end), write_end


ITERATED = {
    "EventFD": Iterated(
        lambda: (fdloop.EventFD(), None), _write_counter, lambda value: value, [1, 2, 3],
        _close_itself,
    ),
    "TimerFD": Iterated(
        lambda: (fdloop.TimerFD(), None), _arm_once, lambda count: count, [1, 1, 1],
        _close_itself,
    ),
    "SignalFD": Iterated(
        lambda: (fdloop.SignalFD({SIGUSR1, SIGUSR2}), None), _send_signal,
        lambda info: info.signo, [SIGUSR1, SIGUSR2, SIGUSR1], _close_itself, signals=True,
    ),
    "ChannelReceiver": Iterated(
        _channel_pair, _send_message, lambda message: message,
        [b"message 0", b"message 1", b"message 2"], _close_sender, needs=_channel_backend,
    ),
    "PipeReceiveStream": Iterated(
        _pipe_pair, _write_line, lambda line: line, [b"line 0\n", b"line 1\n", b"line 2\n"],
        _close_write_end,
    ),
}


def _at_least(seen: list[object], count: int) -> bool:
    return len(seen) >= count


@pytest.mark.parametrize("kind", ITERATED)
def test_async_for_yields_each_item_and_ends_on_close(kind: str, anyio_backend: Run) -> None:
    case = ITERATED[kind]
    case.needs()

    async def body() -> None:
        obj, feeder = case.make()
        seen: list[object] = []

        async def consume() -> None:
            async for item in obj:
                seen.append(case.seen_as(item))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                for i in range(len(case.expected)):
                    await case.feed(obj, feeder, i)
                    assert await eventually(partial(_at_least, seen, i + 1))
                await case.end(obj, feeder)
                # The consumer must now leave its loop by itself: the task group waits.
        finally:
            obj.close()
        assert seen == case.expected
        if case.signals:
            _signals_given_back()

    run(anyio_backend, body, case.signals)


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
        when_detached=_signals_given_back, finish=lambda _: _signals_given_back(),
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
    _signals_given_back()


# -- repr ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    make: Callable[[], tuple[Any, Callable[[], None]]]
    needs: Callable[[], None] = _anywhere


SHOWN = {
    "EventFD": Shown(lambda: _alone(fdloop.EventFD())),
    "TimerFD": Shown(lambda: _alone(fdloop.TimerFD())),
    "SignalFD": Shown(lambda: _alone(fdloop.SignalFD({SIGUSR1}))),
    "MemFD": Shown(lambda: _alone(fdloop.MemFD())),
    "VirtualFD": Shown(lambda: _alone(fdloop.VirtualFD())),
    "PipeReceiveStream": Shown(_pipe_reader),
    "PipeSendStream": Shown(_pipe_writer),
    "ChannelSender": Shown(_channel_sender, needs=_channel_backend),
    "ChannelReceiver": Shown(_channel_receiver, needs=_channel_backend),
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
