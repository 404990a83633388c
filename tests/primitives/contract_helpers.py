"""What the contract tests (test_contract.py, test_contract_fd.py) share: the runner
and the small makers their case tables use.

``run`` runs an async body through ``anyio.run`` on the loop the ``anyio_backend``
fixture names, as tests/primitives/test_signalfd.py does (see signal_harness.py: the
pytest plugin's trio guest mode polls in a worker thread that a process-directed signal
could be delivered to). A maker returns the object and a function that closes its
companions (the other end of its pipe or channel).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
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
    thread_directed_reach_signalfd,
)

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


def pipe_reader() -> tuple[fdloop.PipeReceiveStream, Callable[[], None]]:
    read_end, write_end = os.pipe()
    return fdloop.PipeReceiveStream(read_end), lambda: os.close(write_end)


def pipe_writer() -> tuple[fdloop.PipeSendStream, Callable[[], None]]:
    read_end, write_end = os.pipe()
    return fdloop.PipeSendStream(write_end), lambda: os.close(read_end)


def channel_receiver() -> tuple[fdloop.ChannelReceiver, Callable[[], None]]:
    sender, receiver = fdloop.channel(capacity=64)
    return receiver, sender.close


def channel_sender() -> tuple[fdloop.ChannelSender, Callable[[], None]]:
    sender, receiver = fdloop.channel(capacity=64)
    return sender, receiver.close


def alone(obj: Any) -> tuple[Any, Callable[[], None]]:
    return obj, lambda: None


def signals_given_back() -> None:
    assert not {SIGUSR1, SIGUSR2, SIGRT} & blocked()


async def no_children_left() -> None:
    assert await eventually(lambda: not children_of(os.getpid()))


async def nothing_more() -> None:
    return None


def anywhere() -> None:
    return None


def channel_backend() -> None:
    """Skip where there is no Channel (test_channel.py checks that it is refused there)."""
    if fdloop.backends.selected_name() != "linux":
        pytest.skip("no Channel on this backend")
