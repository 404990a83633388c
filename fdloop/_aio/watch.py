"""Fire-and-forget watches: call a function once when a fd becomes readable, from the
loop running in this thread, with no task of the caller's waiting for it.

:mod:`fdloop.primitives.reaper` uses this on ProcessFD's close path, to reap a child the
moment it exits after its owner closed without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import forks
from .library import running_or_none
from .threads import LoopThread, loop_thread

__all__ = ["Watch", "watch_in_running_loop"]


class Watch:
    """One watch: ``stop()`` ends it; ``elsewhere()`` names the loop thread that owns it.

    The watch lives in its loop's poll: only that loop's thread may stop it (see
    :mod:`fdloop._aio.threads`), and in a forked child it belongs to the parent, so
    ``stop()`` there does nothing.
    """

    __slots__ = ("_active", "_loop", "_pid", "_stop", "_token")

    def __init__(self, stop: Callable[[], None], loop: asyncio.AbstractEventLoop | None,
                 token: Any, active: Callable[[], bool]) -> None:
        self._stop = stop
        self._loop = loop
        self._token = token
        self._active = active
        self._pid = forks.pid

    def stop(self) -> None:
        """End the watch; call it from the loop's thread, before the fd is closed."""
        if self._pid == forks.pid:
            self._stop()

    def elsewhere(self) -> LoopThread | None:
        """The loop thread of this watch if it runs in another thread right now (the
        caller must then leave the fd to that loop); None otherwise."""
        if self._pid != forks.pid or not self._active():
            return None
        return loop_thread(self._loop, self._token)


def watch_in_running_loop(fd: int, callback: Callable[[], None]) -> Watch | None:
    """Call ``callback()`` once, from the loop running in this thread, when ``fd`` is
    readable; return the :class:`Watch`. Returns None when no asyncio or trio loop runs
    in this thread (or it cannot take the watch now): the caller must then keep the fd
    and check it itself.

    asyncio: an ``add_reader`` callback. trio: a system task, so it does not belong to
    any user nursery; it ends quietly when the run ends (nothing is called then).
    Stopping must happen before ``fd`` is closed.
    """
    library = running_or_none()
    return None if library is None else library.watch(fd, callback)
