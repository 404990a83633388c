"""The Supervisor: keeps programs running, built only from ProcessFD and SignalFD.

Each program is a :class:`~fdloop.supervisor.runner.ProgramRunner` (its lifecycle task,
restart policy and graceful stop); this module holds the public object that owns them:
configuration, the task group they run in, requests by name, status, events, and the
two optional SignalFD readers — SIGTERM/SIGINT/SIGHUP (``handle_signals=True``) and
SIGCHLD for orphans (``subreaper=True``, see :mod:`fdloop.supervisor.orphans`). An idle
supervisor sleeps in the loop's poll until a pidfd or a signalfd becomes readable.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ..errors import NoSuchProgram, UnsupportedOperation
from .events import EventHub, EventKind, EventStream, ProgramStatus
from .orphans import OrphanReaper
from .program import DEFAULT_BACKOFF, DEFAULT_STOP_TIMEOUT, ProgramSpec, make_spec
from .runner import ProgramRunner, Shared

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_SIGNALS = (signal.SIGHUP,)


class Supervisor:
    """Runs programs, restarts them by policy with exponential backoff, and reports.

    Use as ``async with fdloop.Supervisor() as sup:``; leaving the block stops every
    program (``stop_signal``, ``stop_timeout``, then SIGKILL — all programs in parallel)
    and ends every :meth:`events` iterator.

    ``handle_signals=True`` reads SIGTERM, SIGINT and SIGHUP through a SignalFD (no
    Python signal handler): SIGTERM/SIGINT stop every program and make :meth:`wait`
    return, a second one SIGKILLs whatever is still stopping; SIGHUP restarts every
    program. ``subreaper=True`` (Linux) makes this process a child subreaper and reaps
    orphaned descendants as SIGCHLD (read through a SignalFD) announces them; it reaps
    every child of this process that the supervisor does not manage, so do not combine
    it with other code in the same process that waits for its own children by pid.
    """

    def __init__(self, *, handle_signals: bool = False, subreaper: bool = False) -> None:
        if not isinstance(handle_signals, bool):
            raise TypeError(f"handle_signals must be a bool, not {type(handle_signals).__name__}")
        if not isinstance(subreaper, bool):
            raise TypeError(f"subreaper must be a bool, not {type(subreaper).__name__}")
        if subreaper and not sys.platform.startswith("linux"):
            raise UnsupportedOperation(
                "subreaper: PR_SET_CHILD_SUBREAPER is Linux-only (FreeBSD's "
                "procctl(PROC_REAP_ACQUIRE) is not supported yet)"
            )
        self._handle_signals = handle_signals
        self._subreaper = subreaper
        self._programs: dict[str, ProgramRunner] = {}
        self._hub = EventHub()
        self._shared = Shared(self._hub, self._notify)
        self._orphans: OrphanReaper | None = None
        self._changed: anyio.Event | None = None
        self._entered = False

    # -- configuration ---------------------------------------------------------------------

    def add(
        self,
        name: str,
        argv: Sequence[str] | str,
        *,
        restart: str = "on-failure",
        backoff: tuple[float, float] | float = DEFAULT_BACKOFF,
        max_restarts: int | None = None,
        stop_signal: int | str = signal.SIGTERM,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> None:
        """Register a program (it is not started until :meth:`start`).

        ``argv`` is a list of strings, or one string split as a shell would (shlex).
        ``restart``: ``"on-failure"`` (non-zero exit or killed by a signal), ``"always"``
        or ``"never"``. ``backoff=(initial, maximum)``: the first restart waits
        ``initial`` seconds, each further one of a streak twice as long, up to
        ``maximum``; a run lasting at least ``maximum`` (and 1 s) ends the streak.
        ``max_restarts``: after this many restarts in one streak the program is given up
        (None: never). ``stop_signal``/``stop_timeout``: how :meth:`stop` asks, and how
        long it waits before SIGKILL; each program runs in a session of its own, and
        both signals go to its whole process group (a shell's children too). ``env`` is
        laid over this process's environment. ``stdout``/``stderr``: an fd to give the
        child (or ``fdloop.DEVNULL``, ``fdloop.STDOUT`` for stderr); None inherits ours.

        Raises TypeError/ValueError naming the bad argument (nothing is added then).
        """
        spec = make_spec(
            name, argv, restart=restart, backoff=backoff, max_restarts=max_restarts,
            stop_signal=stop_signal, stop_timeout=stop_timeout, env=env, cwd=cwd,
            stdout=stdout, stderr=stderr,
        )
        self.add_spec(spec)

    def add_spec(self, spec: ProgramSpec) -> None:
        """Register an already validated :class:`ProgramSpec`."""
        if not isinstance(spec, ProgramSpec):
            raise TypeError(f"spec must be a ProgramSpec, not {type(spec).__name__}")
        if spec.name in self._programs:
            raise ValueError(f"name: a program called {spec.name!r} was already added")
        if self._shared.closing:
            raise RuntimeError("the supervisor is shutting down")
        self._programs[spec.name] = ProgramRunner(spec, self._shared)

    @property
    def names(self) -> list[str]:
        """The programs' names, in the order they were added."""
        return list(self._programs)

    # -- entering and leaving ----------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        if self._entered:
            raise RuntimeError("a Supervisor can be entered only once")
        self._entered = True
        self._changed = anyio.Event()
        self._shared.hurry = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._shared.task_group = task_group
        try:
            if self._subreaper:
                self._orphans = OrphanReaper(self._shared.managed, self._hub, self._notify)
                await task_group.start(self._orphans.run)
            if self._handle_signals:
                await task_group.start(self._read_signals)
        except BaseException as exc:
            self._shared.task_group = None
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._shared.task_group
        if task_group is None:
            return None
        self._shared.closing = True
        stop_error: BaseException | None = None
        try:
            with anyio.CancelScope(shield=True):
                await self._stop_all()
                if self._orphans is not None:
                    await self._orphans.stop_remaining(
                        self._orphan_timeout(), self._shared.hurry
                    )
        except BaseException as error:  # still close the task group, then report it
            stop_error = error
        task_group.cancel_scope.cancel()
        try:
            suppressed = await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._shared.task_group = None
            self._hub.close()
            self._notify()
        if stop_error is not None:
            raise stop_error
        return suppressed

    def _orphan_timeout(self) -> float:
        timeouts = [program.spec.stop_timeout for program in self._programs.values()]
        return max(timeouts, default=DEFAULT_STOP_TIMEOUT)

    # -- requests ------------------------------------------------------------------------------

    async def start(self, name: str | None = None) -> None:
        """Start one program, or (``name=None``) every program that is not running.

        Returns once each is spawned (its ``started`` event emitted) or its spawn has
        failed (an ``exited`` event with ``error``; the restart policy then applies).
        A program already running or waiting to restart is left alone; one that exited
        or was given up starts afresh. Raises NoSuchProgram for an unknown name,
        RuntimeError outside ``async with`` or during shutdown.
        """
        for program in self._select(name):
            await program.start()

    async def stop(self, name: str | None = None) -> None:
        """Stop one program, or (``name=None``) all of them in parallel, and wait.

        Sends ``stop_signal``, waits up to ``stop_timeout`` for the exit, then SIGKILLs
        and reaps; a pending restart is cancelled. The program stays stopped until
        :meth:`start`. Finishes even if the calling task is cancelled meanwhile.
        """
        programs = self._select(name, entered=False)
        with anyio.CancelScope(shield=True):
            await _each(ProgramRunner.stop, programs)

    async def restart(self, name: str | None = None) -> None:
        """Stop then start one program, or every program in parallel (``name=None``).

        Counts as a restart in ``status()``, ends a failing streak and revives a program
        that was given up.
        """
        programs = self._select(name)
        await _each(ProgramRunner.restart, programs)

    def status(self) -> dict[str, ProgramStatus]:
        """A snapshot of every program: state, pid, restarts, last ExitStatus, uptime."""
        now = time.monotonic()
        return {name: program.status(now) for name, program in self._programs.items()}

    def events(self) -> EventStream:
        """An async iterator of :class:`Event`: the recent past first, then live events.

        Kinds: started, exited, restarting, gave-up, stopping, stopped (per program),
        signal and reaped (supervisor-wide). Iteration ends when the supervisor closes.
        Each call returns an independent iterator.
        """
        return self._hub.subscribe()

    async def wait(self) -> dict[str, ProgramStatus]:
        """Wait until every program is down for good (stopped, exited or given up).

        With ``handle_signals=True`` that is also what SIGTERM/SIGINT lead to. Returns
        :meth:`status`. Returns at once if nothing was started.
        """
        while not self._all_down():
            changed = self._changed
            if changed is None:
                raise RuntimeError("use the Supervisor in 'async with' first")
            await changed.wait()
        return self.status()

    def all_clean(self) -> bool:
        """True if every program that ran ended cleanly: exit code 0, or stopped on request.

        A program given up, or one that exited with a failure and stays down, is not clean.
        """
        return all(program.ended_cleanly() for program in self._programs.values())

    # -- helpers -----------------------------------------------------------------------------

    def _select(self, name: str | None, *, entered: bool = True) -> list[ProgramRunner]:
        if entered:
            if self._shared.task_group is None:
                raise RuntimeError("use the Supervisor in 'async with' first")
            if self._shared.closing:
                raise RuntimeError("the supervisor is shutting down")
        if name is None:
            return list(self._programs.values())
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        try:
            return [self._programs[name]]
        except KeyError:
            raise NoSuchProgram(f"name: no program called {name!r}") from None

    def _all_down(self) -> bool:
        return all(program.is_down() for program in self._programs.values())

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()

    async def _stop_all(self) -> None:
        await _each(ProgramRunner.stop, list(self._programs.values()))

    async def _restart_all(self) -> None:
        await _each(ProgramRunner.restart, list(self._programs.values()))

    # -- signals ---------------------------------------------------------------------------------

    async def _read_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        from ..primitives.signalfd import SignalFD

        async with SignalFD([*SHUTDOWN_SIGNALS, *RESTART_SIGNALS]) as signals:
            task_status.started()
            async for info in signals:
                signo = signal.Signals(info.signo)
                self._hub.emit(EventKind.SIGNAL, "", signal=signo, pid=info.pid)
                shared = self._shared
                assert shared.task_group is not None and shared.hurry is not None
                if signo in SHUTDOWN_SIGNALS:
                    if shared.closing:
                        shared.hurry.set()  # a second one: SIGKILL what is still stopping
                    else:
                        shared.closing = True
                        shared.task_group.start_soon(self._stop_all)
                elif not shared.closing:
                    shared.task_group.start_soon(self._restart_all)


async def _each(
    action: Callable[[ProgramRunner], Coroutine[Any, Any, None]], programs: list[ProgramRunner]
) -> None:
    """Run ``action`` on every program at once and wait for all of them."""
    if len(programs) == 1:
        await action(programs[0])
        return
    async with anyio.create_task_group() as task_group:
        for program in programs:
            task_group.start_soon(action, program)
