"""Reading a Supervisor's event stream in tests."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from fdloop.supervisor import Event, EventStream

HANG = 60.0
"""A hang guard only: a wait that passes it fails the test."""


async def until(events: EventStream, wanted: Callable[[Event], bool]) -> list[Event]:
    """Every event up to and including the first one ``wanted`` accepts."""
    seen: list[Event] = []
    with anyio.fail_after(HANG):
        async for event in events:
            seen.append(event)
            if wanted(event):
                return seen
    raise AssertionError(f"the event stream ended first; saw {[str(e.kind) for e in seen]}")


def steps(events: list[Event]) -> list[str]:
    """``name:kind`` of each event that names a program, in order."""
    return [f"{event.name}:{event.kind}" for event in events if event.name]
