"""wait_events / watch_events: await any poll event on any fd, through the running loop.

``await wait_events(fd, POLLPRI)`` returns once the file reports one of the events, with
the mask it reported; ``async for mask in watch_events(fd, POLLPRI)`` reports them as they
come. The kernel does the polling (see :mod:`fdloop._aio.events` and, on Linux,
:mod:`fdloop.backends.linux.uring`): the loop itself only watches one completion fd, so a
file that stays readable costs nothing while a task waits for its POLLPRI, and files that
reset their event when polled (PSI triggers, ``/proc/self/mountinfo``) lose nothing.

The constants are ``select``'s (``POLLRDHUP`` is Linux's 0x2000 where ``select`` lacks it).
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from typing import Protocol

from .._aio import events as _events

POLLIN = select.POLLIN
POLLPRI = select.POLLPRI
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLRDHUP: int = getattr(select, "POLLRDHUP", 0x2000)
POLL_EVENTS = POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP
EVENT_NAMES = {
    POLLIN: "POLLIN", POLLPRI: "POLLPRI", POLLOUT: "POLLOUT", POLLERR: "POLLERR",
    POLLHUP: "POLLHUP", POLLRDHUP: "POLLRDHUP",
}


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def event_names(mask: int) -> str:
    """``"POLLIN|POLLPRI"`` for a mask (bits outside the six named ones as hex)."""
    names = [name for bit, name in EVENT_NAMES.items() if mask & bit]
    rest = mask & ~POLL_EVENTS
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def validate_events(argument: str, events: object, *, allow_zero: bool = False) -> int:
    """``events`` as an int made only of the six poll bits; TypeError/ValueError naming
    ``argument`` otherwise."""
    if not isinstance(events, int) or isinstance(events, bool):
        raise TypeError(f"{argument} must be an int poll mask (select.POLLIN | ...), not "
                        f"{type(events).__name__}")
    if events & ~POLL_EVENTS or events < 0:
        raise ValueError(f"{argument}={events:#x}: only POLLIN, POLLPRI, POLLOUT, POLLERR, "
                         "POLLHUP and POLLRDHUP are supported")
    if not events and not allow_zero:
        raise ValueError(f"{argument} must name at least one poll event, got 0")
    return events


def _fd_of(fd_or_object: int | HasFileno) -> int:
    if isinstance(fd_or_object, bool):
        raise TypeError("fd_or_object must be an fd or have fileno(), not bool")
    if isinstance(fd_or_object, int):
        fd = fd_or_object
    else:
        fileno = getattr(fd_or_object, "fileno", None)
        if fileno is None:
            raise TypeError("fd_or_object must be an fd or have fileno(), not "
                            f"{type(fd_or_object).__name__}")
        fd = fileno()
        if not isinstance(fd, int):
            raise TypeError(f"fileno() returned {type(fd).__name__}, not an int")
    if fd < 0:
        raise ValueError(f"fd_or_object: fd must be >= 0, got {fd}")
    return fd


async def wait_events(fd_or_object: int | HasFileno, events: int) -> int:
    """Wait until the fd reports any of ``events``; return the mask it reported.

    Level-triggered like poll(2): returns at once if an event holds now. POLLERR and
    POLLHUP are reported even when not asked for (poll(2) always reports them). Any
    number of tasks may wait on one fd; a cancelled wait takes nothing from the others.
    Raises ClosedResourceError if the fd is closed through fdloop (``close()`` of a
    VirtualFD, or ``fdloop.notify_closing(fd)`` before closing your own fd), OSError
    (EBADF) if it is not open, ValueError/TypeError for bad arguments, and
    UnsupportedOperation for an event the backend cannot wait for (kqueue: POLLPRI).
    """
    events = validate_events("events", events)
    subscription = _events.subscribe(_fd_of(fd_or_object), events)
    try:
        return await subscription.next()
    finally:
        subscription.close()


async def watch_events(fd_or_object: int | HasFileno, events: int) -> AsyncIterator[int]:
    """``async for mask in watch_events(fd, events)``: each report of ``events``.

    With multishot poll requests (io_uring, kqueue) a report comes per wake-up of the
    file whose poll shows one of the events: a condition that stays true (POLLHUP, an
    unread sysfs change) is reported once, not over and over. With one-shot requests
    (Linux AIO) each step is a ``wait_events()``, level-triggered. Reports that arrive
    while the consumer is busy are kept, in order. Ends (StopAsyncIteration) when the fd
    is closed through fdloop; raises as ``wait_events`` does otherwise.
    """
    events = validate_events("events", events)
    subscription = _events.subscribe(_fd_of(fd_or_object), events, watch=True)
    try:
        while True:
            try:
                mask = await subscription.next()
            except _closed_errors():
                return
            yield mask
    finally:
        subscription.close()


def _closed_errors() -> type[BaseException]:
    from ..errors import ClosedResourceError

    return ClosedResourceError


def notify_closing(fd_or_object: int | HasFileno) -> None:
    """Before closing an fd that tasks wait on with ``wait_events``: wake them with
    ClosedResourceError (a kernel poll request holds the file, so the close alone would
    never end their wait). Thread-safe: the waits of a loop running in another thread
    are ended in that thread, and this returns once they are (a loop thread blocked
    waiting for the caller would deadlock). fdloop's own objects do it in ``close()``."""
    _events.notify_closing(_fd_of(fd_or_object))
