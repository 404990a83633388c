"""Helpers every test directory shares: the stress size and waiting for a condition.

* :func:`scaled` multiplies a full-size count by FDLOOP_STRESS_SCALE (unset: 1.0, the
  size RELIABILITY.md reports; CI's .ci/run sets 0.1), rounded, never below ``minimum``.
* :func:`eventually` lets the running loop turn until a condition holds (a hang guard,
  not a timing assertion).
* :func:`no_hang` turns a call that would block for good into a TimeoutError.

Reading /proc for leaks is tests/leaks.py; process lookups are in
tests/primitives/process_helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import anyio


def stress_scale() -> float:
    """FDLOOP_STRESS_SCALE as a float (1.0 when unset or unreadable; never negative)."""
    try:
        return max(0.0, float(os.environ.get("FDLOOP_STRESS_SCALE", "1")))
    except ValueError:
        return 1.0


def scaled(full: int, minimum: int = 1) -> int:
    """``full`` times the stress scale, rounded to the nearest count, at least ``minimum``."""
    return max(minimum, round(full * stress_scale()))


async def eventually(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Let the loop run until ``predicate()`` is true; give up after ``timeout`` seconds.

    Returns the predicate's last answer as a bool, so that ``assert await eventually(...)``
    fails with the condition still false rather than hanging.
    """
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)
    return bool(predicate())


@contextlib.contextmanager
def no_hang(seconds: float = 10.0) -> Iterator[None]:
    """Turn a call that blocks for good into a TimeoutError (SIGALRM interrupts it).

    For sync tests only, in the main thread: SIGALRM's handler is replaced meanwhile."""

    def expired(signo: int, frame: object) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
