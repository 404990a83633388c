"""The one place that knows which async library is running (being split into modules)."""

from .waiter import (
    FDWaiter,
    ReadableWaiter,
    checkpoint,
    current_library,
    loop_running,
    move_on_after,
    shielded,
    sleep,
    watch_in_running_loop,
)

__all__ = [
    "FDWaiter",
    "ReadableWaiter",
    "checkpoint",
    "current_library",
    "loop_running",
    "move_on_after",
    "shielded",
    "sleep",
    "watch_in_running_loop",
]
