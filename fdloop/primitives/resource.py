"""What every fdloop primitive shares: owning one fd and closing it exactly once.

:class:`FDResource` gives each primitive ``fileno()``, ``close()``, ``aclose()``,
``closed``, ``detach()``, sync and async context management, a ResourceWarning when it
is garbage-collected open, and ``_wait_readable()`` which waits through the running
loop's poll (see :mod:`fdloop._aio`). :class:`naming_fd_limit` is how every public call
that makes a new fd reports running out of them.

Threads: ``close()`` (and ``aclose()``, ``detach()``, garbage collection) may happen in
any thread. When a loop running in another thread holds the fd's registration (a task
waits, or asyncio kept the registration from an earlier wait), the close is run in that
loop's thread (see :mod:`fdloop._aio.threads`) and ``close()`` returns once it has run:
the waiters are woken at once and the loop has dropped the registration before the fd
number is closed. A finalizer only queues it there, never waiting. Two threads closing
at once close once.

Fork: an object copied into a forked child closes only the child's copy of its fd; the
registrations are the parent's and are left alone (see :mod:`fdloop._aio.forks`).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from .._aio import ReadableWaiter, forks
from .._aio import events as poll_events
from .._aio.threads import LoopThread
from ..backends.posix.fdlimit import out_of_fds
from ..errors import ClosedResourceError, UnsupportedOperation


class Handle(Protocol):
    """The part of a backend object that FDResource relies on."""

    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...


H = TypeVar("H", bound=Handle)
Self = TypeVar("Self", bound="FDResource[Any]")


class naming_fd_limit:  # lower case, as contextlib.suppress: it reads as a clause
    """``with naming_fd_limit("EventFD()"):`` around the step that makes a new fd.

    An EMFILE or ENFILE raised inside leaves as :func:`fdloop.backends.posix.fdlimit.out_of_fds`
    words it (same errno; names the call, RLIMIT_NOFILE with its soft and hard values, and
    ``fdloop.raise_fd_limit()``), chained to the kernel's error; anything else passes
    unchanged. It only rewords: whatever the step made must already be undone by the step
    itself (the backends close what they opened and give back signals they took).
    """

    __slots__ = ("_doing",)

    def __init__(self, doing: str) -> None:
        self._doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, OSError):
            error = out_of_fds(exc, self._doing)
            if error is not exc:
                raise error from exc


def _new_locks() -> tuple[threading.RLock, ...]:
    return tuple(threading.RLock() for _ in range(64))


_IN_USE = _new_locks()
"""Locks striped by object (see FDResource._in_use). Reentrant: a finalizer run by a
collection inside a locked section may close another object of the same stripe."""


def _new_locks_after_fork() -> None:
    # A lock another thread held at the fork (inside its syscall) would stay held in
    # the child, where that thread does not exist: a close there would wait for ever.
    global _IN_USE
    _IN_USE = _new_locks()


forks.at_fork_in_child(_new_locks_after_fork)

_closing: dict[int, object] = {}
"""id() of each object being closed right now, so that a second thread's close returns
instead of closing the fd number twice (dict.setdefault is atomic)."""


class FDResource(Generic[H]):
    """Base class: owns one backend handle and the waiter for its fd.

    Thread safety: ``close()``, ``aclose()``, ``detach()`` and ``closed`` may be used from
    any thread, and wake tasks waiting in another thread's loop at once (in ``wait_events``
    too). The awaitables belong to the loop that awaits the object; each class says which
    of its other methods are safe from any thread (the non-blocking calls that are one
    system call: ``EventFD.write()``, ``TimerFD.set()``, ``ProcessFD.send_signal()``...)
    and which refuse (``ProcessFD.poll()`` while another thread's loop waits). Such a
    method checks that the object is open and makes its system call holding
    :meth:`_in_use`, whose lock the close takes too (:meth:`_fd_lock`), so that the fd
    number cannot be closed, and then reused by an unrelated open, between the check
    and the call.
    """

    _handle: H
    _waiter: ReadableWaiter
    _made_by = -1
    """The pid of the process that made the object, for a class whose copy in a forked
    child must not act (see :meth:`_keep_out_of_forks`); -1 where copies may act as the
    original does (EventFD and MemFD are shared across fork on purpose)."""

    def __init__(self, handle: H) -> None:
        self._handle = handle
        self._waiter = ReadableWaiter(handle.fileno())

    def _keep_out_of_forks(self) -> None:
        """Make this object's copies in forked children refuse to act (see
        :meth:`_refuse_forked_copy`): its kernel object (a timer, a readiness the owner
        sets) is shared with such a child, which would change it under its parent."""
        self._made_by = forks.pid

    def _refuse_forked_copy(self, doing: str) -> None:
        if self._made_by not in (-1, forks.pid):
            name = type(self).__name__
            raise UnsupportedOperation(
                f"{name}.{doing}: this {name} was made by process {self._made_by} and "
                f"copied into this forked child (pid {forks.pid}) by fork(); the kernel "
                "object is shared, so acting on it here would act on the parent's. A "
                "forked child may only close() its copy"
            )

    # -- ownership -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()``, ``aclose()`` or ``detach()`` has run."""
        return self._handle.closed

    def fileno(self) -> int:
        """The pollable fd. Raises ClosedResourceError once closed."""
        return self._handle.fileno()

    def close(self) -> None:
        """Close the fd; tasks waiting on it get ClosedResourceError. Idempotent.

        From any thread: if a loop in another thread polls the fd, the close runs in
        that loop's thread and this returns once it has (so a loop thread that is
        blocked waiting for the caller would deadlock).
        """
        if not self._handed_over(self.close):
            self._close_once()

    def _close_once(self) -> None:
        turn = object()
        if _closing.setdefault(id(self), turn) is not turn:
            return  # being closed right now (by another thread, or further up this one)
        try:
            self._close_here()
        finally:
            del _closing[id(self)]

    def _close_here(self) -> None:
        """The closing itself, in the loop's thread (or where no loop polls the fd);
        subclasses extend it. Runs once per close() call; must be idempotent."""
        if not self._handle.closed:
            self._waiter.close()
            # A task in wait_events(self) waits on a kernel poll request that holds the
            # file open: the close alone would never end its wait.
            poll_events.notify_closing(self._handle.fileno())
            with self._fd_lock():
                self._handle.close()

    def _fd_lock(self) -> threading.RLock:
        """The lock that closing and detaching hold while the fd number is let go of,
        and that a method safe from any thread holds across its use of the fd (one of a
        fixed set, chosen by the object's identity: no lock object per fd)."""
        return _IN_USE[(id(self) >> 4) & 63]

    def _in_use(self) -> threading.RLock:
        """:meth:`_fd_lock`, for a method safe from any thread to hold across its check
        that the object is open and its system call. ClosedResourceError at once while
        a close is under way, so that threads calling such a method in a loop cannot
        keep the closing one waiting for the lock."""
        if id(self) in _closing:
            raise ClosedResourceError(f"{type(self).__name__} is closed")
        return self._fd_lock()

    def _waiters(self) -> tuple[ReadableWaiter | None, ...]:
        """Every waiter of this object (subclasses with more than one extend this)."""
        return (self._waiter,)

    def _handed_over(self, close: Any, *, wait: bool = True) -> bool:
        """Run ``close()`` in the thread of a loop that holds one of our registrations,
        when that loop runs in another thread; True if it ran (or, without ``wait``,
        was queued) there. False: the caller closes here."""
        there = self._elsewhere()
        if there is None:
            return False
        return there.call(close) if wait else there.call_soon(close)

    def _elsewhere(self) -> LoopThread | None:
        """The loop thread that must run this object's close, if not the calling one:
        one holding a waiter of ours, or a task in ``wait_events(self)`` (its requests
        are that loop's to withdraw before the number is let go of)."""
        for waiter in self._waiters():
            there = waiter.elsewhere() if waiter is not None else None
            if there is not None:
                return there
        if self._handle.closed:
            return None
        return poll_events.elsewhere(self._handle.fileno())

    async def aclose(self) -> None:
        """Close, as ``close()`` does; subclasses may wait for a clean shutdown."""
        self.close()

    def detach(self) -> int:
        """Stop owning the fd and return it unclosed; waiters get ClosedResourceError."""
        self._check_open()
        self._waiter.close()
        with self._fd_lock():
            return self._handle.detach()

    def _check_open(self) -> None:
        if self._handle.closed:
            raise ClosedResourceError(f"{type(self).__name__} is closed")

    def _wait_readable(self) -> Awaitable[None]:
        """Await it at once: the running library's own awaitable, without a frame of ours."""
        return self._waiter.wait()

    # -- context management, finalization, repr -------------------------------------------

    def __enter__(self: Self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self: Self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and not handle.closed:
            warnings.warn(
                f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self
            )
            self._finalize()

    def _finalize(self) -> None:
        """Release the fd from a finalizer: must not block and must not raise.

        A collection may run in any thread: if a loop in another thread polls the fd,
        the close is queued to that thread (the fd stays open until it runs there).
        """
        with contextlib.suppress(Exception):  # a finalizer has nobody to report to
            if not self._handed_over(self.close, wait=False):
                self._close_once()

    def _state(self) -> str:
        """Extra words for repr, e.g. ``counter mode``; subclasses override."""
        return ""

    def __repr__(self) -> str:
        where = "closed" if self._handle.closed else f"fd={self._handle.fileno()}"
        extra = self._state()
        return f"<fdloop.{type(self).__name__} {where}{', ' + extra if extra else ''}>"
