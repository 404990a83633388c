"""Which async library runs in this thread, and the small pieces of glue that differ
between asyncio and trio.

``current_library()`` is asked at every wait, so it is cheaper than sniffio's own;
``loop_running()`` tells code that may run outside any task (a finalizer, a garbage
collection callback) whether a loop is there at all. ``checkpoint()`` and ``sleep()`` call
the running library's own; ``move_on_after()`` and ``shielded()`` are anyio cancel scopes,
which work on both. ``_quietly`` is for calls into a loop that may already be torn down.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio
import sniffio

__all__ = [
    "checkpoint",
    "current_library",
    "loop_running",
    "move_on_after",
    "shielded",
    "sleep",
]


def current_library() -> str:
    """Name of the running async library: ``"asyncio"`` or ``"trio"``."""
    # sniffio's own order (thread-local, context variable, then asyncio), with a running
    # loop instead of asyncio.current_task(): this runs at every wait.
    name = sniffio.thread_local.name or sniffio.current_async_library_cvar.get()
    if name is not None:
        return name
    if asyncio._get_running_loop() is not None:
        return "asyncio"
    return sniffio.current_async_library()


def loop_running() -> bool:
    """True while an asyncio or trio loop runs in this thread (in a task or in the
    loop's own code); False elsewhere, e.g. in a coroutine that the garbage collector
    closes after its loop has ended."""
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


async def checkpoint() -> None:
    """Let other tasks run and deliver a pending cancellation."""
    if current_library() == "trio":
        import trio

        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


async def sleep(seconds: float) -> None:
    """Sleep on whichever library is running."""
    if current_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


# -- timeouts and shielding (ProcessFD's close path) --------------------------------------


def move_on_after(seconds: float) -> anyio.CancelScope:
    """``with move_on_after(t) as scope:`` — leave the block after ``t`` seconds;
    ``scope.cancelled_caught`` says whether it timed out. Works on asyncio and trio."""
    return anyio.move_on_after(seconds)


def shielded() -> anyio.CancelScope:
    """``with shielded():`` — the enclosed awaits are not interrupted by the cancellation
    of an enclosing trio/anyio scope. A bare asyncio ``Task.cancel()`` is not a scope and
    still gets through, so code using this must also clean up on CancelledError."""
    return anyio.CancelScope(shield=True)


def _quietly(call: Any, *args: Any) -> None:
    # The loop may already be closed or torn down; it then holds no waiter of ours.
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        call(*args)
