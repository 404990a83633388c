"""The only place in fdloop that knows asyncio from trio.

Everything else awaits through the names re-exported here, and never asks which library
is running. Each module owns one concern:

* :mod:`.library` — :class:`AsyncLibrary`, what fdloop asks of an async library (the
  anyio ``AsyncBackend`` model), and ``running()``, the one function that decides which
  library runs (``current_library``, ``loop_running``, ``checkpoint``, ``sleep`` ask it);
* :mod:`.asyncio_library`, :mod:`.trio_library` — one implementation per library
  (uvloop is asyncio's): waits, watches, background tasks, small awaits;
* :mod:`.waiter` — :class:`FDWaiter` (alias ``ReadableWaiter``): any number of tasks wait
  until one fd is readable or writable, through the running loop's own poll;
* :mod:`.readyset` — one private epoll/kqueue per loop that watches many fds (ProcessFD's
  pidfds) behind a single loop registration, for ``FDWaiter(fd, shared=True)``;
* :mod:`.background` — ``start_background``: a task with no caller awaiting it;
* :mod:`.watch` — ``watch_in_running_loop``: call a function when a fd becomes readable,
  with nobody awaiting it (the reaper's watch on a closed ProcessFD's child);
* :mod:`.threads` — ``loop_thread``/:class:`LoopThread`: run a call (a close) in the
  thread of the loop that holds a registration, through the loop's thread-safe entry;
* :mod:`.forks` — ``forks.pid``, kept current across fork: how an object copied into a
  forked child knows that its registrations are the parent's, to be left alone.
"""

from . import forks
from .library import (
    AsyncLibrary,
    checkpoint,
    current_library,
    loop_running,
    running,
    sleep,
)
from .threads import LoopThread, loop_thread
from .waiter import FDWaiter, ReadableWaiter
from .watch import Watch, watch_in_running_loop

__all__ = [
    "AsyncLibrary",
    "FDWaiter",
    "LoopThread",
    "ReadableWaiter",
    "Watch",
    "checkpoint",
    "current_library",
    "forks",
    "loop_running",
    "loop_thread",
    "running",
    "sleep",
    "watch_in_running_loop",
]
