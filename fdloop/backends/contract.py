"""What a backend object promises to the portable primitives.

A backend object owns exactly one pollable fd and performs non-blocking operations on
it: an operation that would block raises ``BlockingIOError`` and the primitive waits for
readability through :mod:`fdloop._aio`, then retries. Backends never await and never
know which async library runs; primitives never make a syscall of their own.

:class:`OwnedFD` is the shared base: it holds the fd number, closes it once, and after
``close()``/``detach()`` never touches that number again.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from typing import NamedTuple, Protocol, TypedDict

from ..errors import ClosedResourceError


class OwnedFD:
    """One fd that this object closes exactly once."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The fd number; ClosedResourceError once closed or detached."""
        if self._fd < 0:
            raise ClosedResourceError(f"{type(self).__name__} is closed")
        return self._fd

    def close(self) -> None:
        """Close the fd; a second call does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership and return the fd number without closing it."""
        fd = self.fileno()
        self._fd = -1
        return fd


class EventFDBackend(Protocol):
    """A 64-bit counter with eventfd(2) semantics."""

    semaphore: bool

    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...

    def read(self) -> int:
        """Take the counter (or 1 in semaphore mode); BlockingIOError while it is 0."""
        ...

    def write(self, value: int) -> None:
        """Add ``value`` (already validated, 0 < value < 2**64 - 1) to the counter.

        Raises CounterOverflowError, leaving the counter untouched, if the sum would pass
        2**64 - 2.
        """
        ...

    def dup(self) -> EventFDBackend:
        """A second handle on the same counter."""
        ...


class TimerFDBackend(Protocol):
    """A timer with timerfd(2) semantics; every time is an int of nanoseconds.

    The fd is readable while expirations are unread. A periodic timer runs on the grid
    ``first + k * interval`` however late it is read (no drift), and counts overruns.
    """

    clock: str
    """``realtime``, ``monotonic`` or ``boottime`` (an adopted fd may report another)."""

    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...

    def settime(
        self, value_ns: int, interval_ns: int, *, absolute: bool, cancel_on_set: bool
    ) -> None:
        """Arm (``value_ns`` > 0) or disarm (``value_ns`` == 0) and drop the unread count.

        ``value_ns`` is relative to now, or a time on the timer's clock when
        ``absolute``; ``interval_ns`` 0 means one-shot. Values are validated (at most
        2**63 - 1); ``cancel_on_set`` only comes with ``absolute`` on a realtime clock.
        A backend that cannot watch the wall clock raises UnsupportedOperation.
        """
        ...

    def gettime(self) -> tuple[int, int]:
        """(time left until the next expiry, interval); (0, 0) when disarmed."""
        ...

    def read(self) -> int:
        """Take the expirations counted since the last read or set (>= 1).

        BlockingIOError while there are none. ClockChanged if the wall clock was set
        while armed with ``cancel_on_set``: the count is dropped, the timer stays armed
        (a periodic one on its schedule, re-read against the new wall clock).
        """
        ...

    def now(self) -> int:
        """The current time of the timer's clock, as used by ``absolute``."""
        ...


class MemFDBackend(Protocol):
    """An anonymous shared-memory file with memfd_create(2) semantics.

    Seals are ints in the fcntl(2) F_SEAL_* encoding (SEAL 1, SHRINK 2, GROW 4, WRITE 8,
    FUTURE_WRITE 0x10, EXEC 0x20), which FreeBSD shares. Each method is one syscall and
    raises the kernel's OSError (EPERM for a sealed-off operation, EBUSY for SEAL_WRITE
    while a writable shared mapping exists); the portable MemFD loops, pre-checks seals
    and words the errors. A backend that cannot seal raises UnsupportedOperation from
    ``add_seals`` and reports 0 from ``seals``.
    """

    name: str
    hugetlb: bool
    writable: bool
    """False for an adopted fd that was opened read-only."""
    page_size: int
    """Granularity of mmap offsets (and, with hugetlb, of sizes)."""

    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...

    def size(self) -> int: ...
    def truncate(self, size: int) -> None:
        """Set the size (validated >= 0); ValueError if the backend needs another multiple."""
        ...
    def seek(self, offset: int, whence: int) -> int: ...
    def read(self, n: int) -> bytes:
        """One read(2) at the file position; b"" at the end."""
        ...
    def pread(self, n: int, offset: int) -> bytes: ...
    def write(self, data: memoryview) -> int:
        """One write(2) at the file position; returns how many bytes it took."""
        ...
    def pwrite(self, data: memoryview, offset: int) -> int: ...
    def mmap(self, length: int, offset: int, writable: bool) -> mmap.mmap:
        """A MAP_SHARED mapping (range already checked against the size)."""
        ...
    def seals(self) -> int: ...
    def add_seals(self, seals: int) -> None: ...
    def dup(self) -> MemFDBackend:
        """A second handle on the same file (and the same file position)."""
        ...


class _SigInfoSigno(TypedDict):
    signo: int


class SigInfoFields(_SigInfoSigno, total=False):
    """What a backend read about one signal: ``signo`` always, the rest where it knows.

    Keys are the signalfd_siginfo names without ``ssi_`` (``value`` is ``ssi_int``);
    ``utime``/``stime`` are seconds. A key a backend cannot know is simply absent.
    """

    errno: int
    code: int
    pid: int
    uid: int
    fd: int
    tid: int
    band: int
    overrun: int
    trapno: int
    status: int
    value: int
    ptr: int
    utime: float
    stime: float
    addr: int
    addr_lsb: int
    syscall: int
    call_addr: int
    arch: int


class SignalFDBackend(Protocol):
    """Reads signals that were taken over from ordinary delivery (see backends/sigmask.py).

    Creating one takes the signals over, ``close()`` and ``detach()`` give them back.
    """

    signals: frozenset[int]

    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int:
        """Give the signals back (as close does) and return the fd unclosed."""
        ...

    def read(self) -> SigInfoFields:
        """Take one pending signal; BlockingIOError while none is pending."""
        ...

    def exposed_threads(self) -> tuple[int, ...]:
        """Ids of other threads that do not block one of ``signals`` (they could take it)."""
        ...


class RawExit(NamedTuple):
    """What reaping a child says: its pid, the wait(2) status word and, where the
    backend reads them, CPU seconds and peak RSS in bytes."""

    pid: int
    status: int
    user_cpu: float | None = None
    system_cpu: float | None = None
    max_rss: int | None = None


class ProcessFDBackend(Protocol):
    """A handle on one process that can never name a recycled pid.

    ``fileno()`` is the pollable handle (readable once the process has exited).
    ``is_child``: we spawned it and reap it; otherwise it is watch-only.
    """

    pid: int
    is_child: bool

    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...

    def transfer(self) -> ProcessFDBackend:
        """A new object owning the same handle; this one becomes closed (handle kept)."""
        ...

    def try_reap(self) -> RawExit | None:
        """Reap our exited child; None while it runs; ChildProcessError if someone else
        reaped it (or it is not our child)."""
        ...

    def has_exited(self) -> bool:
        """True once the process has exited, reaped or not. Never blocks."""
        ...

    def exit_info(self) -> int | None:
        """The wait status the kernel kept after the reap (by anyone), or None."""
        ...

    def hup_fileno(self) -> int:
        """An fd readable only once the process has been reaped (no zombie window)."""
        ...

    def send_signal(self, signo: int, *, group: bool = False) -> None:
        """Signal the process (or its process group); a reaped process is ignored."""
        ...


class SpawnBackend(Protocol):
    """Starts a child and returns its ProcessFDBackend (``is_child`` True)."""

    def __call__(
        self,
        path: str,
        argv: Sequence[bytes],
        env: Sequence[bytes] | None,
        *,
        stdio: tuple[int | None, int | None, int | None],
        cwd: bytes | None,
        pass_fds: Sequence[int],
        start_new_session: bool,
        default_signals: Sequence[int],
    ) -> tuple[ProcessFDBackend, tuple[int | None, int | None, int | None]]:
        """The handle and the parent's ends of PIPE stdio (None where not piped)."""
        ...
