"""Which async library runs in this thread, decided in one function, and the interface
that each library's glue implements.

The model is anyio's ``AsyncBackend``: :class:`AsyncLibrary` states once what fdloop asks
of an event loop (wait on a fd for an :class:`~fdloop._aio.waiter.FDWaiter`, watch a fd
for the reaper, run a background task, a checkpoint, a sleep), and one object per library
provides it — :mod:`.asyncio_library` (the stdlib loop, uvloop, any loop with
``add_reader``) and :mod:`.trio_library`. :func:`running` is the only place that decides
which one runs; nothing else in fdloop asks.

``loop_running()`` tells code that may run outside any task (a finalizer, a garbage
collection callback) whether a loop is there at all. ``_quietly`` is for calls into a
loop that may already be torn down. Cancel scopes are anyio's own
(``anyio.move_on_after``, ``anyio.CancelScope(shield=True)``), which work on both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sniffio

if TYPE_CHECKING:
    from .waiter import FDWaiter
    from .watch import Watch

__all__ = [
    "AsyncLibrary",
    "checkpoint",
    "current_library",
    "loop_running",
    "running",
    "running_or_none",
    "sleep",
]


class AsyncLibrary:
    """What fdloop needs from one async library; one instance per library."""

    name: str
    """sniffio's name for the library: ``"asyncio"`` or ``"trio"``."""

    def wait(self, waiter: FDWaiter) -> Awaitable[None]:
        """Return what the caller awaits, at once, until ``waiter``'s fd may be ready.

        Raises (or the awaitable raises) ClosedResourceError if the waiter is closed
        before or while waiting, RuntimeError if another loop or run waits on it now.
        """
        raise NotImplementedError

    def release(self, waiter: FDWaiter, fd: int) -> None:
        """At ``waiter.close()``: drop this library's registration of ``fd`` and wake
        the tasks waiting on it with ClosedResourceError (``fd`` is still open)."""
        raise NotImplementedError

    def watch(self, fd: int, callback: Callable[[], None]) -> Watch | None:
        """Call ``callback()`` once, from this thread's loop, when ``fd`` is readable
        (see :func:`fdloop._aio.watch.watch_in_running_loop`); None if the loop cannot."""
        raise NotImplementedError

    def start_background(
        self, function: Callable[[], Awaitable[None]], name: str, on_end: Callable[[], None]
    ) -> Callable[[], None] | None:
        """Run ``function()`` with nobody awaiting it (see
        :func:`fdloop._aio.background.start_background`); its cancel function or None."""
        raise NotImplementedError

    async def checkpoint(self) -> None:
        """Let other tasks run and deliver a pending cancellation."""
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` on this library's clock."""
        raise NotImplementedError


# Each library's object, imported at first use (trio's imports trio: only once a trio
# run asks), then kept here: an import statement costs a Python-level call every time.
_trio: AsyncLibrary | None = None
_asyncio: AsyncLibrary | None = None


def _trio_library() -> AsyncLibrary:
    global _trio
    if _trio is None:
        from .trio_library import TRIO

        _trio = TRIO
    return _trio


def _asyncio_library() -> AsyncLibrary:
    global _asyncio
    if _asyncio is None:
        from .asyncio_library import ASYNCIO

        _asyncio = ASYNCIO
    return _asyncio


def running() -> AsyncLibrary:
    """The library running in this thread: the one place fdloop decides it.

    sniffio's own order (its thread-local, then its context variable) names trio; any
    other thread is taken for asyncio, whose calls then raise
    ``sniffio.AsyncLibraryNotFoundError`` (a RuntimeError) when no loop runs here. The
    asyncio loop itself is looked up once, by the call that needs it: this runs at
    every wait, and each lookup costs a getpid() on Python before 3.12.

    In a child forked inside a running loop or trio run, that loop's copy is refused
    (RuntimeError; see :func:`_check_not_inherited`); a loop the child starts itself is used.
    """
    name = sniffio.thread_local.name or sniffio.current_async_library_cvar.get()
    if _forked_inside is not None:
        name = _check_not_inherited(name)
    if name == "trio":
        return _trio if _trio is not None else _trio_library()
    return _asyncio if _asyncio is not None else _asyncio_library()


def running_or_none() -> AsyncLibrary | None:
    """:func:`running` if a loop or run is running in this thread, else None (also for
    a loop a forked child inherited)."""
    name = sniffio.thread_local.name or sniffio.current_async_library_cvar.get()
    if _forked_inside is not None:
        try:
            name = _check_not_inherited(name)
        except RuntimeError:
            return None
    if name == "trio":
        return _trio_library()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if loop.is_closed():
        return None
    return _asyncio if _asyncio is not None else _asyncio_library()


# -- a child forked inside a running loop ------------------------------------------------
#
# os.fork() from a task copies the running loop or trio run into the child, but not its
# epoll set: the child's copy of the loop's epoll fd names the parent's own set, so a
# registration made there (epoll_ctl) changes what the parent's loop is told, and the
# parent's events may wake the child. asyncio already disowns its copy (its running
# loop is looked up per pid before 3.12 and forgotten at fork since); trio does not, and
# sniffio would still name trio there, so anyio (fdloop's cancel scopes and task groups
# included) would drive even a loop the child starts with trio's calls. In a child
# forked inside a trio run, sniffio's copied name is therefore cleared; fdloop never
# waits through the copied loop or run, and says why; a loop the child starts itself
# (asyncio.run) is used as any other.

_run_at_fork: str | None = None
"""During a fork: "trio" or "asyncio" if the forking thread runs one."""
_forked_inside: tuple[str, int] | None = None
"""In a child forked inside a running loop or run: which library, and the parent's pid."""


def _before_fork() -> None:
    global _run_at_fork
    if (sniffio.thread_local.name or sniffio.current_async_library_cvar.get()) == "trio":
        _run_at_fork = "trio"
    elif asyncio._get_running_loop() is not None:
        _run_at_fork = "asyncio"


def _after_fork_in_parent() -> None:
    global _run_at_fork
    _run_at_fork = None


def _after_fork_in_child() -> None:
    global _run_at_fork, _forked_inside
    if _run_at_fork is not None:
        _forked_inside = (_run_at_fork, os.getppid())
        _run_at_fork = None
    if _forked_inside is not None and _forked_inside[0] == "trio":
        # (trio itself clears these as its run ends; the copied run never ends here)
        sniffio.thread_local.name = None
        if sniffio.current_async_library_cvar.get() == "trio":
            sniffio.current_async_library_cvar.set(None)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _check_not_inherited(name: str | None) -> str | None:
    """``name`` where a loop or run of the child's own runs; RuntimeError if only the
    copy of the parent's can be running here."""
    assert _forked_inside is not None
    inherited, parent = _forked_inside
    if asyncio._get_running_loop() is not None:
        return name  # a loop the child started (asyncio's copy is never found: see above)
    if name == "trio" and inherited != "trio":
        return name  # a trio run the child started
    what = "trio run" if inherited == "trio" else "asyncio loop"
    raise RuntimeError(
        f"this process was forked inside a running {what} of process {parent}: its copy "
        "here shares that process's epoll set, so fdloop will not wait through it; "
        "start an event loop of the child's own (asyncio.run) or exec a program"
    )


def current_library() -> str:
    """Name of the running async library: ``"asyncio"`` or ``"trio"``."""
    return running().name


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


def checkpoint() -> Awaitable[None]:
    """Let other tasks run and deliver a pending cancellation (await it at once)."""
    return running().checkpoint()


def sleep(seconds: float) -> Awaitable[None]:
    """Sleep on whichever library is running (await it at once)."""
    return running().sleep(seconds)


def _quietly(call: Any, *args: Any) -> None:
    # The loop may already be closed or torn down; it then holds no waiter of ours.
    # (try/except, not contextlib.suppress: this runs at every shared wait's end, and
    # suppress costs three Python-level calls)
    try:  # noqa: SIM105
        call(*args)
    except (RuntimeError, ValueError, OSError):
        pass
