"""The asyncio ready set is made once per loop and kept, empty, while the loop lives.

A program that spawns and waits for one child at a time used to create an epoll, add
and remove a loop reader and close the epoll for every child. These tests drive their
own loops (the stdlib's and uvloop's), so that they can watch what happens when the
loop is closed or dropped: the set's fd must not outlive its loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from collections.abc import Callable

import pytest
import uvloop

import fdloop
from fdloop._aio import readyset

from ..leaks import open_fds

TRUE = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

pytestmark = pytest.mark.skipif(
    not hasattr(fdloop.backends.current(), "ready_set"),
    reason="this backend has no ready set (waiters use the loop directly)",
)


async def _one_child() -> None:
    with fdloop.spawn([TRUE]) as proc:
        assert await proc.wait() == 0


def _new_fds(before: set[int]) -> set[int]:
    return open_fds() - before


def _hub_fd(loop: asyncio.AbstractEventLoop) -> int | None:
    hub = readyset._asyncio_hubs.get(id(loop))
    if hub is None or hub._loop() is not loop:
        return None
    fd: int = hub._set.fileno()
    return fd


@pytest.mark.parametrize("name", list(LOOPS))
def test_one_set_serves_every_child_and_closes_with_the_loop(name: str) -> None:
    before = open_fds()
    loop = LOOPS[name]()
    try:
        loop.run_until_complete(_one_child())
        hub_fd = _hub_fd(loop)
        assert hub_fd is not None, "the ready set was closed with its last member"
        fds_after_one = _new_fds(before)
        assert hub_fd in fds_after_one
        for _ in range(3):
            loop.run_until_complete(_one_child())
            assert _hub_fd(loop) == hub_fd
        assert _new_fds(before) == fds_after_one  # nothing made per child
    finally:
        loop.close()
    gc.collect()  # (the loop is closed but still referenced here: the sweep drops it)
    assert _hub_fd(loop) is None
    assert _new_fds(before) == set()


def test_a_loop_dropped_unclosed_takes_its_set_along() -> None:
    # The stdlib loop only: a uvloop loop dropped unclosed is never freed (its libuv
    # handles hold it; its own fds stay open too), so only close() ends it.
    before = open_fds()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_one_child())
    assert _hub_fd(loop) is not None
    key = id(loop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed event loop"
        del loop
        gc.collect()
    assert key not in readyset._asyncio_hubs
    assert _new_fds(before) == set()
