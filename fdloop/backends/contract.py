"""What a backend promises to the portable primitives: :class:`Backend` and its objects.

A backend (``fdloop.backends.current()``) is one object satisfying :class:`Backend`:
one factory per primitive, each returning an object of the Protocol below it. A backend
object owns exactly one pollable fd and performs non-blocking operations on it: an
operation that would block raises ``BlockingIOError`` and the primitive waits for
readability through :mod:`fdloop._aio`, then retries. Backends never await and never
know which async library runs; primitives never make a syscall of their own.

:class:`OwnedFD` is the shared base: it holds the fd number, closes it once, and after
``close()``/``detach()`` never touches that number again.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypedDict

from ..errors import ClosedResourceError
from .request import SpawnRequest

PipeEnds = tuple[int | None, int | None, int | None]
"""The parent's ends of a child's PIPE stdio (None where that stream is not piped)."""


@dataclass(frozen=True)
class Capability:
    """How one primitive is provided by one backend."""

    primitive: str
    backend: str
    native: bool
    """True when a kernel object does the work; False when fdloop emulates it."""
    kernel_object: str
    """What the pollable fd is, e.g. ``eventfd`` or ``kqueue (EVFILT_USER)``."""
    missing: tuple[str, ...] = field(default=())
    """What the DESIGN contract asks for that this backend cannot provide here."""


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
    """Reads signals that were taken over from ordinary delivery (see backends/posix/sigmask.py).

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


class ReadySetBackend(Protocol):
    """A private poll set (epoll, kqueue) whose one fd the loop watches for many fds."""

    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...
    def add(self, fd: int) -> None:
        """Watch ``fd`` for readability, level-triggered, until it is discarded."""
        ...
    def add_once(self, fd: int, child: bool = False) -> None:
        """Watch ``fd`` until ``ready()`` reports it once; it is then no longer watched
        (no ``discard`` needed), and ``add_once`` again re-arms it. ``child``: ``fd`` is
        the process fd of our child, for ``ready_reaped()`` to reap where it can."""
        ...
    def ready_reaped(self) -> list[tuple[int, object]]:
        """``ready()``, each fd paired with the exit status of the child its report
        reaped (a ``child`` member that exited, where the backend reaps here: a plain
        tuple shaped as RawExit), else a non-tuple (None, an errno): that child's owner
        then reaps it itself."""
        ...
    def discard(self, fd: int) -> None: ...
    def ready(self) -> list[int]:
        """The member fds readable now (never blocks)."""
        ...


class PollRequestsBackend(Protocol):
    """A kernel ring of one-shot or multishot poll requests (io_uring, Linux AIO, kqueue)."""

    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...
    def submit(self, token: int, fd: int, events: int, *, multishot: bool = False) -> None: ...
    def cancel(self, token: int) -> None: ...
    def completions(self) -> list[tuple[int, int, bool]]:
        """(token, events, more to come) of each finished request (never blocks)."""
        ...


class VirtualFDBackend(Protocol):
    """An fd whose poll events its owner sets."""

    @property
    def events(self) -> int: ...
    @property
    def kernel_object(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def set(self, events: int) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...


class Backend(Protocol):
    """One backend: a factory per primitive, each returning the Protocol named.

    ``fdloop.backends.current()`` gives the one in force. A factory raises the kernel's
    OSError (EMFILE, ENOMEM, ...) with nothing left open, and UnsupportedOperation for
    what the backend cannot do here (``capabilities()`` says what that is).
    """

    name: str
    """``linux`` or ``kqueue``: the FDLOOP_BACKEND value that chooses it."""

    def eventfd(self, initval: int, semaphore: bool) -> EventFDBackend: ...
    def eventfd_from_fd(self, fd: int) -> EventFDBackend: ...
    def timerfd(self, clock: str) -> TimerFDBackend: ...
    def timerfd_from_fd(self, fd: int) -> TimerFDBackend: ...
    def signalfd(self, signals: frozenset[int]) -> SignalFDBackend: ...
    def signalfd_from_fd(self, fd: int) -> SignalFDBackend: ...
    def memfd(self, name: str, size: int, allow_sealing: bool, hugetlb: bool) -> MemFDBackend: ...
    def memfd_from_fd(self, fd: int) -> MemFDBackend: ...
    def spawn_process(self, request: SpawnRequest) -> tuple[ProcessFDBackend, PipeEnds]:
        """Start the child ``request`` describes: its handle (``is_child``) and the
        parent's ends of its PIPE stdio. On failure nothing is left: no fd, no child."""
        ...
    def process_open(self, pid: int) -> ProcessFDBackend:
        """A watch-only handle on a visible process; ProcessLookupError if there is none."""
        ...
    def process_from_fd(self, fd: int) -> ProcessFDBackend: ...
    def ready_set(self) -> ReadySetBackend: ...
    def virtual_fd(self, events: int) -> VirtualFDBackend: ...
    def poll_requests(self) -> PollRequestsBackend: ...
    def channel_refusal(self) -> str | None:
        """Why a Channel cannot be built or adopted here, or None when it can."""
        ...
    def capabilities(self) -> list[Capability]:
        """Per primitive: native or emulated, its kernel object, what is missing."""
        ...
