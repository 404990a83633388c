"""What every primitive promises alike about waiting, written once and run over each.

* close() wakes every task waiting on the object with ClosedResourceError (fdloop's, which
  is anyio's): EventFD, TimerFD, SignalFD, ProcessFD, VirtualFD (through wait_events),
  the Channel's receiving end and both pipe streams.
* ``async for`` ends, without an error, when the object is closed (EventFD, TimerFD,
  SignalFD) or when the other end closes (Channel, pipe stream), after every item fed in.

Async bodies run through ``anyio.run`` on asyncio, uvloop and trio (contract_helpers.run),
and everything here runs on each backend (tests/conftest.py). What the fd itself promises
(detach/from_fd, repr, the garbage collector's warning) is test_contract_fd.py; what is
particular to one primitive stays in that primitive's own test module.
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
from .contract_helpers import (
    Run,
    alone,
    anywhere,
    channel_backend,
    channel_receiver,
    no_children_left,
    nothing_more,
    pipe_reader,
    pipe_writer,
    run,
    signals_given_back,
)
from .signal_harness import (
    SIGUSR1,
    SIGUSR2,
    send,
    signal_state_is_left_as_found,  # noqa: F401  (autouse: SignalFD cases share the module)
)

# Idle threads of earlier tests draw SignalFD's warning; harmless here: every send aims at
# the main thread, or waits until no other thread could take it (signal_harness.send).
pytestmark = pytest.mark.filterwarnings("ignore::fdloop.SignalDeliveryWarning")


# -- close() wakes every waiter ------------------------------------------------------------


@dataclass(frozen=True)
class Waited:
    """A primitive that a task can wait on while nothing arrives."""

    make: Callable[[], tuple[Any, Callable[[], None]]]  # the object, and its companions' close
    wait: Callable[[Any], Awaitable[object]]
    after_close: Callable[[], Awaitable[None]] = nothing_more
    signals: bool = False
    waiters: int = 3  # a pipe stream takes one reader at a time (BusyResourceError)
    needs: Callable[[], None] = anywhere  # skips where the backend has no such object


async def _signalfd_given_back() -> None:
    signals_given_back()


WAITED = {
    "EventFD": Waited(lambda: alone(fdloop.EventFD()), lambda efd: efd.read()),
    "TimerFD": Waited(lambda: alone(fdloop.TimerFD()), lambda timer: timer.wait()),
    "SignalFD": Waited(
        lambda: alone(fdloop.SignalFD({SIGUSR1})), lambda sfd: sfd.read(),
        after_close=_signalfd_given_back, signals=True,
    ),
    "ProcessFD": Waited(
        lambda: alone(fdloop.spawn(["sleep", "100"])), lambda proc: proc.wait(),
        after_close=no_children_left,
    ),
    "VirtualFD": Waited(
        lambda: alone(fdloop.VirtualFD()), lambda vfd: fdloop.wait_events(vfd, select.POLLIN)
    ),
    "ChannelReceiver": Waited(
        channel_receiver, lambda receiver: receiver.receive(), needs=channel_backend
    ),
    "PipeReceiveStream": Waited(pipe_reader, lambda reader: reader.read(), waiters=1),
    "PipeSendStream": Waited(
        pipe_writer, lambda writer: writer.send(b"f" * (4 << 20)), waiters=1  # > a pipe
    ),
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
    needs: Callable[[], None] = anywhere


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
        [b"message 0", b"message 1", b"message 2"], _close_sender, needs=channel_backend,
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
            signals_given_back()

    run(anyio_backend, body, case.signals)


# -- a closed object refuses -------------------------------------------------------------------


@dataclass(frozen=True)
class Refusing:
    """A primitive's calls that must raise ClosedResourceError once it is closed."""

    make: Callable[[], Any]
    calls: Callable[[Any], list[Callable[[], object]]]
    wait: Callable[[Any], Awaitable[object]]


REFUSING = {
    "EventFD": Refusing(
        fdloop.EventFD,
        lambda efd: [efd.fileno, lambda: efd.write(1), efd.read_nowait, efd.detach, efd.dup],
        lambda efd: efd.read(),
    ),
    "TimerFD": Refusing(
        fdloop.TimerFD,
        lambda timer: [timer.fileno, lambda: timer.set(1), timer.disarm, timer.get,
                       timer.now, timer.wait_nowait, timer.detach],
        lambda timer: timer.wait(),
    ),
    "SignalFD": Refusing(
        lambda: fdloop.SignalFD({SIGUSR1}),
        lambda sfd: [sfd.fileno, sfd.read_nowait, sfd.detach],
        lambda sfd: sfd.read(),
    ),
}


@pytest.mark.parametrize("kind", REFUSING)
def test_closed_object_refuses_everything_and_double_close_is_fine(
    kind: str, anyio_backend: Run
) -> None:
    case = REFUSING[kind]

    async def body() -> None:
        obj = case.make()
        obj.close()
        obj.close()
        await obj.aclose()
        assert obj.closed
        assert "closed" in repr(obj)
        for call in case.calls(obj):
            with pytest.raises(fdloop.ClosedResourceError):
                call()
        with pytest.raises(fdloop.ClosedResourceError):
            await case.wait(obj)
        with pytest.raises(fdloop.ClosedResourceError):
            with obj:
                pass
        signals_given_back()

    run(anyio_backend, body, signals=False)
