"""What every fdloop primitive shares: owning one fd and closing it exactly once.

:class:`FDResource` gives each primitive ``fileno()``, ``close()``, ``aclose()``,
``closed``, ``detach()``, sync and async context management, a ResourceWarning when it
is garbage-collected open, and ``_wait_readable()`` which waits through the running
loop's poll (see :mod:`fdloop._aio`). :class:`naming_fd_limit` is how every public call
that makes a new fd reports running out of them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from .._aio import ReadableWaiter
from ..backends.fdlimit import out_of_fds
from ..errors import ClosedResourceError


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

    An EMFILE or ENFILE raised inside leaves as :func:`fdloop.backends.fdlimit.out_of_fds`
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


class FDResource(Generic[H]):
    """Base class: owns one backend handle and the waiter for its fd."""

    _handle: H
    _waiter: ReadableWaiter

    def __init__(self, handle: H) -> None:
        self._handle = handle
        self._waiter = ReadableWaiter(handle.fileno())

    # -- ownership -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()``, ``aclose()`` or ``detach()`` has run."""
        return self._handle.closed

    def fileno(self) -> int:
        """The pollable fd. Raises ClosedResourceError once closed."""
        return self._handle.fileno()

    def close(self) -> None:
        """Close the fd; tasks waiting on it get ClosedResourceError. Idempotent."""
        if not self._handle.closed:
            self._waiter.close()
            self._handle.close()

    async def aclose(self) -> None:
        """Close, as ``close()`` does; subclasses may wait for a clean shutdown."""
        self.close()

    def detach(self) -> int:
        """Stop owning the fd and return it unclosed; waiters get ClosedResourceError."""
        self._check_open()
        self._waiter.close()
        return self._handle.detach()

    def _check_open(self) -> None:
        if self._handle.closed:
            raise ClosedResourceError(f"{type(self).__name__} is closed")

    def _wait_readable(self) -> Coroutine[Any, Any, None]:
        """Await it at once: the waiter's own coroutine, without a frame of ours."""
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
        """Release the fd from a finalizer: must not block and must not raise."""
        with contextlib.suppress(Exception):  # a finalizer has nobody to report to
            self.close()

    def _state(self) -> str:
        """Extra words for repr, e.g. ``counter mode``; subclasses override."""
        return ""

    def __repr__(self) -> str:
        where = "closed" if self._handle.closed else f"fd={self._handle.fileno()}"
        extra = self._state()
        return f"<fdloop.{type(self).__name__} {where}{', ' + extra if extra else ''}>"
