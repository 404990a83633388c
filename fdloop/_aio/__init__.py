"""The only place in fdloop that knows asyncio from trio.

Everything else awaits through the names re-exported here, and never asks which library
is running. Each module owns one concern:

* :mod:`.library` — which library runs (``current_library``, ``loop_running``) and the
  small awaits and cancel scopes that differ between the two (``checkpoint``, ``sleep``,
  ``move_on_after``, ``shielded``);
* :mod:`.waiter` — :class:`FDWaiter` (alias ``ReadableWaiter``): any number of tasks wait
  until one fd is readable or writable, through the running loop's own poll;
* :mod:`.readyset` — one private epoll/kqueue per loop that watches many fds (ProcessFD's
  pidfds) behind a single loop registration, for ``FDWaiter(fd, shared=True)``;
* :mod:`.watch` — ``watch_in_running_loop``: call a function when a fd becomes readable,
  with nobody awaiting it (the reaper's watch on a closed ProcessFD's child);
* :mod:`.threads` — ``loop_thread``/:class:`LoopThread`: run a call (a close) in the
  thread of the loop that holds a registration, through the loop's thread-safe entry;
* :mod:`.forks` — ``forks.pid``, kept current across fork: how an object copied into a
  forked child knows that its registrations are the parent's, to be left alone.
"""

from . import forks
from .library import (
    checkpoint,
    current_library,
    loop_running,
    move_on_after,
    shielded,
    sleep,
)
from .threads import LoopThread, loop_thread
from .waiter import FDWaiter, ReadableWaiter
from .watch import Watch, watch_in_running_loop

__all__ = [
    "FDWaiter",
    "LoopThread",
    "ReadableWaiter",
    "Watch",
    "checkpoint",
    "current_library",
    "forks",
    "loop_running",
    "loop_thread",
    "move_on_after",
    "shielded",
    "sleep",
    "watch_in_running_loop",
]
