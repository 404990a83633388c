"""Library-neutral task plumbing for contenders (asyncio, uvloop and trio).

Kept deliberately thin — a bare ``asyncio.gather`` or a trio nursery — so that the glue
costs the same for every contender and nothing of anyio's sits on the measured path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sniffio


async def run_all(
    functions: Sequence[Callable[[], Awaitable[Any]]],
    meanwhile: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Run every function as its own task; run ``meanwhile`` alongside; wait for all."""
    if sniffio.current_async_library() == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for function in functions:
                nursery.start_soon(function)
            if meanwhile is not None:
                await meanwhile()
        return
    tasks = [asyncio.ensure_future(function()) for function in functions]
    try:
        if meanwhile is not None:
            await meanwhile()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def nap(seconds: float) -> None:
    """Sleep on whichever library is running."""
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


async def settle() -> None:
    """Give freshly started tasks a moment to reach their first wait."""
    await nap(0.05)


class Gate:
    """An event for the running library: ``open()`` from the loop, ``await passed()``."""

    def __init__(self) -> None:
        self._trio = sniffio.current_async_library() == "trio"
        if self._trio:
            import trio

            self._event: Any = trio.Event()
        else:
            self._event = asyncio.Event()

    def open(self) -> None:
        self._event.set()

    async def passed(self) -> None:
        await self._event.wait()


def run_on(loop: str | None, function: Callable[..., Any], *args: Any) -> Any:
    """Run a contender: an async function on ``loop``, or a plain call when None."""
    if loop is None:
        return function(*args)
    if loop == "trio":
        import trio

        return trio.run(function, *args)
    if loop == "uvloop":
        import uvloop

        return _asyncio_run(function(*args), uvloop.new_event_loop)
    return _asyncio_run(function(*args), None)


def _asyncio_run(
    coroutine: Any, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> Any:
    loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coroutine)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
