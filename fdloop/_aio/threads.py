"""Running a call in the thread of the loop that owns a registration.

An event loop's registrations may only be changed from the loop's own thread: asyncio's
selector and uvloop's libuv handles are not thread-safe, and a change made elsewhere does
not wake the loop, so a task woken from another thread runs only when something else
wakes the loop (trio: never). Closing an fd that a loop in another thread still polls
also breaks the design rule that the loop drops its registration before the number is
closed (the number may be reused at once).

So an fdloop object closed from a foreign thread hands the closing to the loop's thread
through the loop's own thread-safe entry — ``loop.call_soon_threadsafe`` (asyncio,
uvloop) or ``TrioToken.run_sync_soon`` (trio) — and, for ``close()``, waits until it has
run, as ``asyncio.run_coroutine_threadsafe(...).result()`` and
``trio.from_thread.run_sync`` do. A loop that can no longer run anything (closed, run
finished, or stopped and left idle) holds no task that could be woken; the call then
runs in the calling thread, which is safe because nothing polls concurrently.

:func:`loop_thread` says whether a given loop or trio run is "elsewhere" (running, in
another thread); :class:`LoopThread` runs a call there.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import forks

__all__ = ["LoopHome", "LoopThread", "loop_thread", "trio_token_here"]

_RECHECK_SECONDS = 0.1
"""How often a caller blocked in :meth:`LoopThread.call` checks that an asyncio loop
still runs (a loop stopped for good never runs the call: it then runs in the caller)."""


class LoopThread:
    """A loop (asyncio) or run (trio) running in another thread, and how to call into it."""

    __slots__ = ("_loop", "_token")

    def __init__(self, loop: asyncio.AbstractEventLoop | None, token: Any) -> None:
        self._loop = loop
        self._token = token

    def call(self, fn: Callable[[], None]) -> bool:
        """Run ``fn()`` in the loop's thread and wait until it has run there.

        Returns True once it ran there (re-raising what it raised), False if the loop
        can no longer run anything: the caller then runs ``fn`` itself. Never runs
        ``fn`` twice. Blocks the calling thread meanwhile; a loop thread that is itself
        blocked waiting for the caller would deadlock, as with trio.from_thread.run_sync.
        """
        once = _Once(fn)
        if not self._submit(once.run):
            return False
        while not once.done.wait(_RECHECK_SECONDS):
            loop = self._loop
            if loop is not None and (loop.is_closed() or not loop.is_running()):
                # Stopped or closed with our call still queued (asyncio drops the queue
                # at close): nothing polls now, so the caller may do it; the guard keeps
                # the loop from running it again if it is restarted.
                return once.claim_for_caller()
        once.reraise()
        return True

    def call_soon(self, fn: Callable[[], None]) -> bool:
        """Queue ``fn()`` for the loop's thread without waiting; False if the loop can
        no longer run anything (the caller then runs it). Errors ``fn`` raises there are
        dropped (a finalizer's close has nobody to report to)."""
        def quiet() -> None:
            with contextlib.suppress(Exception):  # trio would make it TrioInternalError
                fn()

        return self._submit(quiet)

    def _submit(self, fn: Callable[[], None]) -> bool:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(fn)
            except RuntimeError:  # closed meanwhile
                return False
            return True
        import trio

        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            return False
        # trio: "any call that doesn't raise this error is guaranteed to be fully
        # processed before trio.run exits".
        return True


class _Once:
    """``fn`` run at most once, by the loop or (after a stop) by the caller."""

    __slots__ = ("_error", "_fn", "_lock", "_taken", "done")

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._taken = False
        self._error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        with self._lock:
            if self._taken:
                return
            self._taken = True
        try:
            self._fn()
        except BaseException as exc:  # re-raised in the caller's thread, never in the loop
            self._error = exc
        finally:
            self.done.set()

    def claim_for_caller(self) -> bool:
        """True if the loop has run it after all (errors re-raised); False: caller's turn."""
        with self._lock:
            taken, self._taken = self._taken, True
        if not taken:
            return False
        self.done.wait()
        self.reraise()
        return True

    def reraise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error


def trio_token_here() -> Any:
    """The trio token of the run in this thread, or None outside trio."""
    try:
        import trio

        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


class LoopHome:
    """The asyncio loop or trio run of the thread that made something, kept to run a
    call there later (:meth:`elsewhere`)."""

    __slots__ = ("_loop", "_pid", "_token")

    def __init__(self) -> None:
        # trio first: under trio's guest mode an asyncio loop runs in the thread too, but
        # trio's calls work only inside the run (trio.lowlevel needs the run's state).
        self._token = trio_token_here() if "trio" in sys.modules else None
        self._loop = None if self._token is not None else asyncio._get_running_loop()
        self._pid = forks.pid

    def elsewhere(self) -> LoopThread | None:
        """That loop, if it runs in another thread right now (see :func:`loop_thread`);
        None in a forked child, whose copy of the loop is the parent's and runs nothing."""
        if self._pid != forks.pid:
            return None
        return loop_thread(self._loop, self._token)


def loop_thread(loop: asyncio.AbstractEventLoop | None, token: Any) -> LoopThread | None:
    """``loop`` (or the trio run of ``token``) if it runs in another thread right now.

    None when it is the loop of this thread, or is not running (closed, stopped, run
    finished): then nothing polls it concurrently and the caller may act itself.
    """
    if loop is not None:
        if asyncio._get_running_loop() is loop or loop.is_closed() or not loop.is_running():
            return None
        return LoopThread(loop, None)
    if token is None or trio_token_here() is token:
        return None
    # Whether the run is over shows only when the call is submitted (RunFinishedError).
    return LoopThread(None, token)
