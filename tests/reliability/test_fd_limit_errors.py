"""Out of fds: every public call that makes an fd says which limit it hit, and undoes itself.

One table, one row per call. Each row is swept as ``spawn``'s is in test_spawn_faults:
with exactly k = 0, 1, 2, ... fd numbers left under a lowered RLIMIT_NOFILE (filled with
real /dev/null fds, see conditions.free_fds), the call either succeeds — the sweep ends
there — or raises. Every failure must be a real EMFILE whose message names the call,
RLIMIT_NOFILE and ``fdloop.raise_fd_limit()``, chained to the kernel's own error, and
must leave no fd open (and none of the caller's closed) and the signal mask,
dispositions and SignalFD books as they were. A call that makes an fd must fail at
least at k = 0. Run on the backend in FDLOOP_BACKEND (run this file with
FDLOOP_BACKEND=kqueue too: the kqueue backend makes a kqueue per primitive).
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from fdloop import PIPE, EventFD, MemFD, ProcessFD, SignalFD, TimerFD, spawn
from fdloop.primitives.resource import naming_fd_limit
from fdloop.primitives.signalfd import signals_taken_over

from ..leaks import open_fds
from ..primitives.process_helpers import state_of
from .conditions import free_fds

SIGNO = signal.SIGUSR2
MAX_FREE = 8
"""No call here needs more fds than this at once (the kqueue emulator's are the most)."""


@dataclass(frozen=True)
class Row:
    doing: str
    """What the error message must name (``{arg}``: what prepare returned)."""
    call: Callable[[Any], Any]
    """Makes the fd(s); gets what ``prepare`` returned. Its result is closed at the end."""
    prepare: Callable[[ExitStack], Any] = lambda stack: None
    """Runs before the limit is lowered; registers its own clean-up on the stack."""
    makes_fd: bool = True
    """False for from_fd: it adopts an fd (and only may open one along the way)."""


def _closing(stack: ExitStack, obj: Any) -> Any:
    stack.callback(obj.close)
    return obj


def _ignored(stack: ExitStack) -> None:
    """SIGUSR2 at SIG_IGN: SignalFD switches it to SIG_DFL, a failure must switch it back."""
    stack.callback(signal.signal, SIGNO, signal.getsignal(SIGNO))
    signal.signal(SIGNO, signal.SIG_IGN)


def _detached(make: Callable[[], Any]) -> Callable[[ExitStack], int]:
    def prepare(stack: ExitStack) -> int:
        obj = make()
        fd: int = obj.detach()
        # If no from_fd ever adopts it (the test failed early), adopt it here to close it:
        # on the kqueue backend a plain os.close would skip the state kept beside the fd.
        stack.callback(_adopt_and_close, type(obj), fd)
        return fd

    return prepare


def _adopt_and_close(kind: Any, fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError:
        return  # adopted (and closed) by the test itself
    try:
        kind.from_fd(fd).close()
    except Exception:
        os.close(fd)


def _memfd_from_fd(stack: ExitStack) -> int:
    return _detached(lambda: MemFD("blob", 64))(stack)


def _signalfd_from_fd(stack: ExitStack) -> int:
    _ignored(stack)
    return _detached(lambda: SignalFD([SIGNO]))(stack)


ROWS: dict[str, Row] = {
    "EventFD()": Row("EventFD()", lambda _: EventFD()),
    "EventFD(semaphore)": Row("EventFD()", lambda _: EventFD(5, semaphore=True)),
    "EventFD.dup()": Row(
        "EventFD.dup()", lambda efd: efd.dup(), lambda stack: _closing(stack, EventFD(1))
    ),
    "EventFD.from_fd()": Row(
        "EventFD.from_fd({arg})", EventFD.from_fd, _detached(EventFD), makes_fd=False
    ),
    "TimerFD(monotonic)": Row("TimerFD(clock='monotonic')", lambda _: TimerFD()),
    "TimerFD(realtime)": Row("TimerFD(clock='realtime')", lambda _: TimerFD("realtime")),
    "TimerFD.from_fd()": Row(
        "TimerFD.from_fd({arg})", TimerFD.from_fd, _detached(TimerFD), makes_fd=False
    ),
    "SignalFD()": Row("SignalFD([SIGUSR2])", lambda _: SignalFD([SIGNO]), _ignored),
    "SignalFD.from_fd()": Row(
        "SignalFD.from_fd({arg})", SignalFD.from_fd, _signalfd_from_fd, makes_fd=False
    ),
    "MemFD()": Row("MemFD('blob')", lambda _: MemFD("blob")),
    "MemFD(size)": Row("MemFD('blob')", lambda _: MemFD("blob", 4096)),
    "MemFD.from_bytes()": Row("MemFD('blob')", lambda _: MemFD.from_bytes(b"x", False, "blob")),
    "MemFD.dup()": Row(
        "MemFD.dup()", lambda memfd: memfd.dup(), lambda stack: _closing(stack, MemFD("d", 8))
    ),
    "MemFD.mmap()": Row(
        "MemFD.mmap()", lambda memfd: memfd.mmap(),
        lambda stack: _closing(stack, MemFD("m", 4096)),
    ),
    "MemFD.mmap(read-only)": Row(
        "MemFD.mmap()", lambda memfd: memfd.mmap(writable=False),
        lambda stack: _closing(stack, MemFD("m", 4096)),
    ),
    "MemFD.from_fd()": Row(
        "MemFD.from_fd({arg})", MemFD.from_fd, _memfd_from_fd, makes_fd=False
    ),
    "ProcessFD.open()": Row(
        "ProcessFD.open({arg})", ProcessFD.open, lambda stack: os.getpid()
    ),
    "ProcessFD.from_fd()": Row(
        "ProcessFD.from_fd({arg})", ProcessFD.from_fd,
        _detached(lambda: ProcessFD.open(os.getpid())), makes_fd=False,
    ),
}


def _signal_state() -> tuple[set[int], object, frozenset[int]]:
    return signal.pthread_sigmask(signal.SIG_BLOCK, []), signal.getsignal(SIGNO), (
        signals_taken_over()
    )


# No signal is ever sent here: a thread left running by an earlier test is harmless.
@pytest.mark.filterwarnings("ignore::fdloop.SignalDeliveryWarning")
@pytest.mark.parametrize("name", ROWS)
async def test_out_of_fds_names_the_limit_and_leaves_nothing(name: str) -> None:
    row = ROWS[name]
    with ExitStack() as stack:
        arg = row.prepare(stack)
        doing = row.doing.format(arg=arg)
        failures = 0
        for k in range(MAX_FREE + 1):
            fds, signals = open_fds(), _signal_state()
            result = error = None
            with free_fds(k):
                try:
                    result = row.call(arg)
                except OSError as exc:
                    error = exc
            if result is not None:
                result.close()
                break
            assert error is not None
            message = str(error)
            assert error.errno == errno.EMFILE, f"k={k}: {error!r}"
            assert doing in message, f"k={k}: {message}"
            assert "RLIMIT_NOFILE" in message and "raise_fd_limit" in message, message
            assert isinstance(error.__cause__, OSError), "the kernel's error is not chained"
            assert error.__cause__.errno == errno.EMFILE
            assert open_fds() == fds, f"k={k}: fds opened or closed by the failed call"
            assert _signal_state() == signals, f"k={k}: signal state changed"
            failures += 1
        else:
            pytest.fail(f"{name} still failed with {MAX_FREE} fds free")
    if row.makes_fd:
        assert failures >= 1, f"{name} makes an fd, yet succeeded with none free"


def test_other_errors_pass_unchanged() -> None:
    refused = PermissionError(errno.EPERM, "no")
    with pytest.raises(PermissionError) as caught, naming_fd_limit("EventFD()"):
        raise refused
    assert caught.value is refused


def test_enfile_names_the_system_table() -> None:
    with pytest.raises(OSError, match=r"MemFD\('x'\): the system-wide table") as caught, (
        naming_fd_limit("MemFD('x')")
    ):
        raise OSError(errno.ENFILE, os.strerror(errno.ENFILE))
    assert caught.value.errno == errno.ENFILE


async def test_waiting_for_a_foreign_reap_names_the_limit() -> None:
    # A process we did not start that has exited: wait() then watches for its parent's
    # reap through an fd it makes on first use (an epoll; on kqueue, a kqueue).
    parent = spawn(["sh", "-c", "sleep 0 & echo $!; exec sleep 100"], stdout=PIPE)
    try:
        assert parent.stdout is not None
        orphaned = int(await parent.stdout.readline())  # its parent never reaps it
        while state_of(orphaned) != "Z":
            await anyio.sleep(0.01)
        with ProcessFD.open(orphaned) as watcher:
            fds = open_fds()
            with pytest.raises(OSError) as caught, free_fds(0):
                await watcher.wait()
            assert caught.value.errno == errno.EMFILE
            assert "ProcessFD.wait()" in str(caught.value), caught.value
            assert open_fds() == fds
            status = await watcher.wait()  # with fds free again: the reap never comes
            assert not status.known
    finally:
        await parent.aclose()
