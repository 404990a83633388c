"""Which process this is, kept current across ``fork()``: the rule for a forked child.

``os.fork()`` (multiprocessing's fork start method, prefork servers) copies every fdloop
object into the child, but not the kernel objects behind them: the child's fds name the
*same* open file descriptions as the parent's. An epoll set — the event loop's, trio's,
our ready set — is shared, so an ``EPOLL_CTL_DEL`` made by the child removes the parent's
registration and the parent's ``wait()`` never wakes; a process fd is shared, so the
child could signal or reap the parent's children. A forked child must therefore leave
that shared state alone: every object that registers an fd somewhere records ``pid`` at
that moment and, once it finds itself in another process, forgets its registrations
without touching the kernel (and the primitives refuse to act on the parent's children).

``pid`` is updated by an ``os.register_at_fork`` hook rather than asked of the kernel,
because it is compared on every wait; ``at_fork_in_child()`` lets a module forget its
own tables in the child the same way. A child made by something other than
``os.fork()`` (a C extension calling fork(2) directly) is not seen: Python's own
fork-dependent state is broken there too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

__all__ = ["at_fork_in_child", "pid"]

pid: int = os.getpid()
"""This process's id, kept current in forked children (read it as ``forks.pid``)."""

_hooks: list[Callable[[], None]] = []


def at_fork_in_child(hook: Callable[[], None]) -> None:
    """Call ``hook()`` in every child forked from now on, after ``pid`` is updated.

    A hook must only forget what the parent owns (clear tables, close the child's own
    copies of fds); it must not touch a kernel object the parent still uses.
    """
    _hooks.append(hook)


def _after_fork_in_child() -> None:
    global pid
    pid = os.getpid()
    for hook in _hooks:
        with contextlib.suppress(Exception):  # one failing table must not keep others
            hook()


os.register_at_fork(after_in_child=_after_fork_in_child)
