"""A wake-up that brings nothing never turns into a busy loop (issue 12, kqueue findings).

A shared waiter (``FDWaiter(fd, shared=True)``, the one ProcessFD waits with, through the
loop's ready set) is woken once per event, so being woken and then waiting again means
the fd polled readable without the event: the kernel (or a kqueue implementation) says
ready and the backend finds nothing. Here an eventfd that always polls readable stands
for such an fd, on the ready set of whichever backend is in force.
"""

from __future__ import annotations

import os
import time

import anyio

from fdloop import _aio


async def test_a_shared_waiter_woken_for_nothing_backs_off() -> None:
    always_ready = os.eventfd(1, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    waiter = _aio.FDWaiter(always_ready, shared=True)
    started = time.monotonic()
    try:
        for _ in range(10):
            await waiter.wait()
    finally:
        waiter.close()
        os.close(always_ready)
    # Without the back-off ten wakes take microseconds (each one a ready set built and
    # closed). With it: 1 ms doubling to 50 ms, at least 213 ms for ten (sleeps never
    # end early; a slow machine only makes it longer).
    assert time.monotonic() - started >= 0.15


async def test_the_back_off_starts_again_after_a_wait_that_was_not_woken() -> None:
    always_ready = os.eventfd(1, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    waiter = _aio.FDWaiter(always_ready, shared=True)
    try:
        for _ in range(8):  # the delay grows to 50 ms
            await waiter.wait()
        with anyio.move_on_after(0):  # a wait that ends by cancellation
            await waiter.wait()
        await waiter.wait()  # starts at once again: no delay carried over
        assert waiter._backoff == 0.0
    finally:
        waiter.close()
        os.close(always_ready)
