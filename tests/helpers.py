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


SECCOMP_PRELUDE = r'''
import ctypes, struct

def refuse_syscalls(numbers, error):
    """Install a seccomp filter on this process that fails each syscall in ``numbers``
    with ``error`` (as a container's profile does) and allows every other. For a fresh
    interpreter only: the filter lasts until it exits, and children inherit it."""
    code = [(0x20, 0, 0, 0)]                          # A = seccomp_data.nr
    for number in numbers:
        code.append((0x15, 0, 1, number))             # A == number ? next : skip one
        code.append((0x06, 0, 0, 0x00050000 | error)) # SECCOMP_RET_ERRNO | error
    code.append((0x06, 0, 0, 0x7FFF0000))             # SECCOMP_RET_ALLOW
    program = b"".join(struct.pack("HBBI", *op) for op in code)
    refuse_syscalls.program = buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxP", len(code), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()
'''
"""Python source defining ``refuse_syscalls(numbers, error)``, for the script of a fresh
interpreter that must meet a kernel refusing some calls (seccomp, SECCOMP_RET_ERRNO).
The numbers of syscalls added since Linux 5.1 (424 and up: pidfd_send_signal 424,
pidfd_open 434, clone3 435) are the same on every architecture."""
