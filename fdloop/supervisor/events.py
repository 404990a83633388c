"""What a Supervisor reports: program states, events, status snapshots, and the fan-out.

Kinds and states are str enums; they compare equal to their value written with ``-``,
``_`` or a space (``EventKind.GAVE_UP == "gave-up" == "gave_up" == "gave up"``), so
callers need not remember which separator we chose.

:class:`EventHub` hands every event to every subscriber. Each subscriber first receives
the recent backlog (so ``sup.events()`` opened after ``start()`` still sees the
``started`` events), then live events, and its iteration ends when the Supervisor closes.
"""

from __future__ import annotations

import enum
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ..primitives.exitstatus import ExitStatus
    from .cgroup import CgroupUsage
    from .threads import Home

BACKLOG = 1000
"""How many past events a new subscriber is given first."""
QUEUE_LIMIT = 10_000
"""How many unread events one subscriber may hold; beyond, the oldest are dropped (and
counted in ``EventStream.dropped``): a stream that is kept but never read must not grow
with every restart of a crash-looping program for as long as the supervisor runs."""


def _canonical(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(" ", "-")


class _LooseStr(str, enum.Enum):
    """A str enum whose members also equal their value spelt with ``_`` or spaces."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return _canonical(other) == str(self.value)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return str(self.value)


class EventKind(_LooseStr):
    """What happened to a program (or, for SIGNAL and REAPED, to the supervisor)."""

    STARTED = "started"
    """A new instance is running (``pid`` set)."""
    EXITED = "exited"
    """The instance ended by itself (``status`` set; ``error`` instead if spawn failed)."""
    RESTARTING = "restarting"
    """A restart is scheduled in ``delay`` seconds."""
    GAVE_UP = "gave-up"
    """``max_restarts`` consecutive restarts did not help; the program stays down."""
    STOPPING = "stopping"
    """``stop_signal`` was sent (``pid`` set); SIGKILL follows after ``stop_timeout``."""
    STOPPED = "stopped"
    """Stopped on request (``status`` set if an instance was running)."""
    SIGNAL = "signal"
    """The supervisor received ``signal`` (SIGTERM/SIGINT: stop all; SIGHUP: restart all)."""
    REAPED = "reaped"
    """Subreaper mode: an adopted orphan ``pid`` was reaped with ``returncode``."""
    READY = "ready"
    """The running instance (``pid``) is ready, by its ``ready`` mode (READY=1, a
    newline on fd N, exit 0), or at once with ``ready="none"``."""
    STATUS = "status"
    """The program sent ``STATUS=`` (``text``)."""
    RELOADING = "reloading"
    """The program sent ``RELOADING=1`` (not ready until its next READY=1)."""
    READY_TIMEOUT = "ready-timeout"
    """Not ready within ``ready_timeout`` (``delay``): the instance is stopped, and the
    start counts as failed (the restart policy applies)."""
    WATCHDOG = "watchdog"
    """No WATCHDOG=1 for ``delay`` seconds: the instance gets SIGABRT (then SIGKILL after
    ``stop_timeout``) and the exit counts as a failure."""
    MAINPID = "mainpid"
    """The program named another process (``pid``) as its main process (MAINPID=)."""


class ProgramState(_LooseStr):
    """Where a program is in its life."""

    STOPPED = "stopped"
    """Not started yet, or stopped on request."""
    RUNNING = "running"
    BACKOFF = "backoff"
    """Exited; waiting out the backoff delay before the next start."""
    STOPPING = "stopping"
    EXITED = "exited"
    """Ended and the restart policy says it stays down (see ``last_exit``)."""
    GAVE_UP = "gave-up"
    """Failed ``max_restarts`` times in a row and stays down."""


FINAL_STATES = frozenset({ProgramState.STOPPED, ProgramState.EXITED, ProgramState.GAVE_UP})


@dataclass(frozen=True)
class Event:
    """One thing the supervisor saw or did."""

    kind: EventKind
    name: str
    """The program's name; ``""`` for supervisor-wide events (SIGNAL, REAPED)."""
    time: float
    """Wall-clock time (``time.time()``) at which it happened."""
    pid: int | None = None
    status: ExitStatus | None = None
    restarts: int = 0
    """How many times this program had been restarted when the event happened."""
    delay: float | None = None
    error: str | None = None
    signal: signal.Signals | None = None
    returncode: int | None = None
    text: str | None = None
    """STATUS= text (STATUS events) or why (READY_TIMEOUT, WATCHDOG, a dependency)."""

    def describe(self) -> str:  # noqa: PLR0911 - one return per kind reads best
        """A one-line human description, as ``fdloop supervise`` logs it."""
        who = self.name or "supervisor"
        if self.kind == EventKind.STARTED:
            return f"{who}: started (pid {self.pid})"
        if self.kind == EventKind.EXITED:
            if self.error is not None:
                return f"{who}: could not start: {self.error}"
            return f"{who}: exited ({describe_status(self.status)})"
        if self.kind == EventKind.RESTARTING:
            return f"{who}: restarting in {self.delay:.3g} s (restart {self.restarts + 1})"
        if self.kind == EventKind.GAVE_UP:
            return f"{who}: gave up after {self.restarts} restarts"
        if self.kind == EventKind.STOPPING:
            return f"{who}: stopping (pid {self.pid})"
        if self.kind == EventKind.STOPPED:
            if self.status is None:
                return f"{who}: stopped"
            return f"{who}: stopped ({describe_status(self.status)})"
        if self.kind == EventKind.SIGNAL:
            name = self.signal.name if self.signal is not None else "?"
            return f"{who}: received {name}"
        if self.kind in _NOTIFY_WORDS:
            words = _NOTIFY_WORDS[self.kind].format(self=self)
            return f"{who}: {words}" + (f": {self.text}" if self.text else "")
        return f"{who}: reaped orphan {self.pid} (returncode {self.returncode})"


_NOTIFY_WORDS = {
    EventKind.READY: "ready (pid {self.pid})",
    EventKind.STATUS: "status",
    EventKind.RELOADING: "reloading",
    EventKind.READY_TIMEOUT: "not ready within {self.delay:.3g} s",
    EventKind.WATCHDOG: "no watchdog ping for {self.delay:.3g} s",
    EventKind.MAINPID: "main process is now pid {self.pid}",
}


def describe_status(status: ExitStatus | None) -> str:
    if status is None or not status.known:
        return "status unknown"
    if status.signal is not None:
        try:
            name = signal.Signals(status.signal).name
        except ValueError:
            name = f"signal {status.signal}"
        return f"killed by {name}{', core dumped' if status.core_dumped else ''}"
    return f"exit code {status.exit_code}"


@dataclass(frozen=True)
class ProgramStatus:
    """A snapshot of one program, as ``Supervisor.status()`` returns it."""

    name: str
    state: ProgramState
    pid: int | None
    """The running instance's pid, else None."""
    restarts: int
    """Automatic and requested restarts since it was added."""
    last_exit: ExitStatus | None
    """How the most recent instance ended (None if none has ended yet)."""
    uptime: float | None
    """Seconds the current instance has been running, else None."""
    ready: bool = False
    """Ready by its ``ready`` mode (a ``ready="exit"`` program stays ready after exit 0)."""
    status_text: str | None = None
    """The last ``STATUS=`` the program sent (``ready="notify"``), else None."""
    main_pid: int | None = None
    """The main process: ``pid``, or the process named by MAINPID=."""
    errno: int | None = None
    """The last ``ERRNO=`` the program sent, else None."""
    cgroup: CgroupUsage | None = None
    """The program's whole tree (cgroup v2: CPU, memory.peak, processes) where the
    Supervisor runs programs in cgroups, else None (see fdloop.supervisor.cgroup)."""

    @property
    def last_status(self) -> ExitStatus | None:
        """Alias of ``last_exit``."""
        return self.last_exit

    def __getitem__(self, key: str) -> object:
        """Mapping-style access, ``status["state"]``, for code that treats it as a dict."""
        if key in _STATUS_KEYS:
            return getattr(self, key)
        raise KeyError(key)


_STATUS_KEYS = (
    "name", "state", "pid", "restarts", "last_exit", "uptime", "last_status", "ready",
    "status_text", "main_pid", "errno", "cgroup",
)


class EventStream:
    """An async iterator over a supervisor's events; ends when the supervisor closes.

    Holds at most QUEUE_LIMIT unread events (the oldest go first, counted in
    ``dropped``). Read it in the supervisor's thread: its loop is the one that wakes a
    waiting reader, so a read in another thread raises RuntimeError (and takes nothing)
    while the supervisor runs."""

    def __init__(
        self, backlog: deque[Event], closed: bool, hub: EventHub | None = None
    ) -> None:
        self._hub = hub
        self._queue: deque[Event] = deque(backlog, maxlen=QUEUE_LIMIT)
        self.dropped = 0
        """Events this stream lost because it was QUEUE_LIMIT events behind."""
        self._closed = closed
        self._wakeup: anyio.Event | None = None

    def _put(self, event: Event) -> None:
        if len(self._queue) == QUEUE_LIMIT:
            self.dropped += 1  # the append below pushes the oldest out
        self._queue.append(event)
        self._wake()

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        """The next event, waiting for one; StopAsyncIteration once closed and drained.
        RuntimeError in a thread other than the supervisor's (nothing is taken)."""
        self._check_thread()
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            # Shared by every task waiting on this stream, so that none is forgotten.
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._queue.popleft()

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds or once closed and drained.
        RuntimeError in a thread other than the supervisor's (nothing is taken)."""
        self._check_thread()
        with anyio.move_on_after(timeout):
            try:
                return await self.__anext__()
            except StopAsyncIteration:
                return None
        return None

    def _check_thread(self) -> None:
        # Once closed, nothing is put or woken any more: any thread may drain it.
        home = self._hub.home if self._hub is not None else None
        if home is None or self._closed or home.thread is threading.current_thread():
            return
        raise RuntimeError(
            f"a Supervisor's events() stream is read in the thread that runs the "
            f"Supervisor ({home.thread.name!r}), not in thread "
            f"{threading.current_thread().name!r}"
        )


class EventHub:
    """Delivers each event to every live EventStream and keeps a short backlog."""

    def __init__(self) -> None:
        self._backlog: deque[Event] = deque(maxlen=BACKLOG)
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._closed = False
        self.home: Home | None = None
        """Where the Supervisor runs (set on entering): its streams are read there."""

    def subscribe(self) -> EventStream:
        stream = EventStream(self._backlog, self._closed, self)
        if not self._closed:
            self._streams.add(stream)
        return stream

    def emit(self, kind: EventKind, name: str, **details: object) -> Event:
        event = Event(kind, name, time.time(), **details)  # type: ignore[arg-type]
        self._backlog.append(event)
        for stream in list(self._streams):
            stream._put(event)
        return event

    def close(self) -> None:
        self._closed = True
        for stream in list(self._streams):
            stream._close()
        self._streams.clear()
