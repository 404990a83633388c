"""Background tasks: run a coroutine function in the running loop with no caller awaiting it.

:class:`fdloop.PipeSendStream` uses this for what asyncio's write transports do with a
writer callback: bytes that ``write()`` could not hand to the kernel at once keep
flowing while nobody awaits ``drain()``, and ``close()`` flushes the rest before it
closes the fd.

asyncio: a task of the running loop, referenced from here until it ends (the loop keeps
only weak references to tasks). trio: a system task, which belongs to no user nursery.
Either is cancelled when its run ends (``asyncio.run``'s final cancellation, trio's end
of the main task). The function must catch its own errors: in trio an exception that
escapes a system task ends the whole run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .library import running_or_none

__all__ = ["start_background"]


def start_background(
    function: Callable[[], Awaitable[None]], name: str, on_end: Callable[[], None]
) -> Callable[[], None] | None:
    """Start ``function()`` as a background task of the loop running in this thread.

    ``on_end()`` is called once the task is over, however it ended: also when it was
    cancelled before ``function`` ever ran (asyncio then never enters its body), so
    state that says "a task is running" can always be reset there. Returns a function
    that cancels the task (a no-op once it has ended), or None, without calling
    anything, when no asyncio or trio loop runs here (e.g. a finalizer, plain
    synchronous code): the caller must then do without.
    """
    library = running_or_none()
    return None if library is None else library.start_background(function, name, on_end)
