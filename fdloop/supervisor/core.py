"""The Supervisor: keeps programs running, built only from ProcessFD and SignalFD.

Each running program has one *lifecycle task* in the supervisor's task group: spawn,
``await proc.wait()`` (the pidfd becomes readable in the loop's poll), apply the restart
policy, sleep out the backoff, spawn again. Nothing polls and nothing handles SIGCHLD:
an idle supervisor sleeps in the loop's poll until a pidfd or a signalfd is readable.

Requests (``start``/``stop``/``restart``) take the program's lock, so a SIGHUP restart
cannot interleave with a stop of the same program. ``stop`` cancels the lifecycle task
and takes over its ProcessFD: after a cancellation the task checks, at every resumption,
whether it still owns the program (``program.scope is scope``) and otherwise returns
without touching anything — under trio a ``wait()`` that already completed resumes with
its value even though its scope was cancelled, so the check cannot be left to the
cancellation alone.

Signals (``handle_signals=True``) and orphans (``subreaper=True``) are read from
SignalFDs by two more tasks; see :mod:`fdloop.supervisor.orphans`.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import NoSuchProgram
from ..streams import DEVNULL
from .events import (
    FINAL_STATES,
    Event,
    EventHub,
    EventKind,
    EventStream,
    ProgramState,
    ProgramStatus,
)
from .orphans import OrphanReaper
from .program import DEFAULT_BACKOFF, DEFAULT_STOP_TIMEOUT, ProgramSpec, make_spec

if TYPE_CHECKING:
    from ..primitives.exitstatus import ExitStatus
    from ..primitives.processfd import ProcessFD

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_SIGNALS = (signal.SIGHUP,)


@dataclass(eq=False)
class _Program:
    spec: ProgramSpec
    state: ProgramState = ProgramState.STOPPED
    proc: ProcessFD | None = None
    """The running instance while the lifecycle task owns it."""
    scope: anyio.CancelScope | None = None
    """The lifecycle task's scope; None while no task supervises the program."""
    restarts: int = 0
    streak: int = 0
    """Consecutive quick exits (runs shorter than ``spec.healthy_after``)."""
    last_exit: ExitStatus | None = None
    failed: bool = False
    """Whether the most recent instance ended badly (spawn error or non-zero status)."""
    started_at: float | None = None
    starting: bool = False
    """A start or restart request is under way: the program is not down for good."""
    lock: anyio.Lock = field(default_factory=anyio.Lock)


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
        self._handle_signals = handle_signals
        self._subreaper = subreaper
        self._programs: dict[str, _Program] = {}
        self._hub = EventHub()
        self._managed: dict[int, ProcessFD] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._orphans: OrphanReaper | None = None
        self._changed: anyio.Event | None = None
        self._shutdown: anyio.Event | None = None
        self._hurry: anyio.Event | None = None
        self._closing = False
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
        long it waits before SIGKILL. ``env`` is laid over this process's environment.
        ``stdout``/``stderr``: an fd to give the child (or ``fdloop.DEVNULL``,
        ``fdloop.STDOUT`` for stderr); None inherits ours.

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
        if self._closing:
            raise RuntimeError("the supervisor is shutting down")
        self._programs[spec.name] = _Program(spec)

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
        self._shutdown = anyio.Event()
        self._hurry = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            if self._subreaper:
                self._orphans = OrphanReaper(self._managed, self._hub, self._notify)
                await task_group.start(self._orphans.run)
            if self._handle_signals:
                await task_group.start(self._read_signals)
        except BaseException as exc:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        if task_group is None:
            return None
        self._closing = True
        with anyio.CancelScope(shield=True):
            await self._stop_all()
            if self._orphans is not None:
                await self._orphans.stop_remaining(self._orphan_timeout(), self._hurry)
        task_group.cancel_scope.cancel()
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None
            self._hub.close()
            self._notify()

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
            await self._start_one(program)

    async def stop(self, name: str | None = None) -> None:
        """Stop one program, or (``name=None``) all of them in parallel, and wait.

        Sends ``stop_signal``, waits up to ``stop_timeout`` for the exit, then SIGKILLs
        and reaps; a pending restart is cancelled. The program stays stopped until
        :meth:`start`. Finishes even if the calling task is cancelled meanwhile.
        """
        programs = self._select(name, entered=False)
        with anyio.CancelScope(shield=True):
            await self._each(self._stop_one, programs)

    async def restart(self, name: str | None = None) -> None:
        """Stop then start one program, or every program in parallel (``name=None``).

        Counts as a restart in ``status()``, ends a failing streak and revives a program
        that was given up.
        """
        programs = self._select(name)
        await self._each(self._restart_one, programs)

    def status(self) -> dict[str, ProgramStatus]:
        """A snapshot of every program: state, pid, restarts, last ExitStatus, uptime."""
        now = time.monotonic()
        result = {}
        for name, program in self._programs.items():
            proc = program.proc
            running = proc is not None and program.state in (
                ProgramState.RUNNING, ProgramState.STOPPING,
            )
            result[name] = ProgramStatus(
                name=name,
                state=program.state,
                pid=proc.pid if running and proc is not None else None,
                restarts=program.restarts,
                last_exit=program.last_exit,
                uptime=(now - program.started_at)
                if running and program.started_at is not None else None,
            )
        return result

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
        for program in self._programs.values():
            if program.state == ProgramState.GAVE_UP:
                return False
            if program.state == ProgramState.EXITED and program.failed:
                return False
        return True

    # -- helpers for requests ------------------------------------------------------------------

    def _select(self, name: str | None, *, entered: bool = True) -> list[_Program]:
        if entered:
            if self._task_group is None:
                raise RuntimeError("use the Supervisor in 'async with' first")
            if self._closing:
                raise RuntimeError("the supervisor is shutting down")
        if name is None:
            return list(self._programs.values())
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        try:
            return [self._programs[name]]
        except KeyError:
            raise NoSuchProgram(f"name: no program called {name!r}") from None

    async def _each(self, action: Any, programs: list[_Program]) -> None:
        if len(programs) == 1:
            await action(programs[0])
            return
        async with anyio.create_task_group() as task_group:
            for program in programs:
                task_group.start_soon(action, program)

    def _all_down(self) -> bool:
        return all(
            program.state in FINAL_STATES and program.scope is None and not program.starting
            for program in self._programs.values()
        )

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()

    def _set_state(self, program: _Program, state: ProgramState) -> None:
        program.state = state
        self._notify()

    def _emit(self, kind: EventKind, program: _Program, **details: Any) -> Event:
        return self._hub.emit(kind, program.spec.name, restarts=program.restarts, **details)

    async def _start_one(self, program: _Program) -> None:
        async with program.lock:
            if program.scope is not None or self._task_group is None or self._closing:
                return
            program.streak = 0
            program.starting = True
            try:
                await self._task_group.start(self._lifecycle, program)
            finally:
                program.starting = False
                self._notify()

    async def _restart_one(self, program: _Program) -> None:
        async with program.lock:
            # Between the stop and the start the program looks down; wait() must not
            # take that for the end.
            program.starting = True
            try:
                await self._stop_locked(program)
                if self._task_group is None or self._closing:
                    return
                program.restarts += 1
                program.streak = 0
                await self._task_group.start(self._lifecycle, program)
            finally:
                program.starting = False
                self._notify()

    async def _stop_one(self, program: _Program) -> None:
        async with program.lock:
            await self._stop_locked(program)

    async def _stop_locked(self, program: _Program) -> None:
        # Shielded: a half-done stop would leave a child running with nobody watching it.
        with anyio.CancelScope(shield=True):
            await self._stop_shielded(program)

    async def _stop_shielded(self, program: _Program) -> None:
        scope = program.scope
        if scope is None:
            return
        scope.cancel()
        program.scope = None
        proc, program.proc = program.proc, None
        status = None
        if proc is not None:
            program.state = ProgramState.STOPPING
            self._emit(EventKind.STOPPING, program, pid=proc.pid)
            status = await self._terminate(proc, program.spec)
            program.last_exit = status
            program.failed = False
            program.started_at = None
        self._emit(EventKind.STOPPED, program, status=status)
        self._set_state(program, ProgramState.STOPPED)

    async def _terminate(self, proc: ProcessFD, spec: ProgramSpec) -> ExitStatus:
        """stop_signal, up to stop_timeout (less if hurried), SIGKILL; always reaps."""
        try:
            proc.send_signal(spec.stop_signal)
            status = await self._wait_or_hurry(proc, spec.stop_timeout)
            if status is None:
                proc.kill()
                status = await proc.wait()
            return status
        finally:
            self._managed.pop(proc.pid, None)
            await proc.aclose()

    async def _wait_or_hurry(self, proc: ProcessFD, timeout: float) -> ExitStatus | None:
        hurry = self._hurry
        result: list[ExitStatus] = []
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as task_group:

                async def on_hurry() -> None:
                    if hurry is not None:
                        await hurry.wait()
                    else:
                        await anyio.sleep(math.inf)
                    task_group.cancel_scope.cancel()

                task_group.start_soon(on_hurry)
                result.append(await proc.wait())
                task_group.cancel_scope.cancel()
        return result[0] if result else None

    async def _stop_all(self) -> None:
        await self._each(self._stop_one, list(self._programs.values()))

    # -- the lifecycle task ----------------------------------------------------------------------

    async def _lifecycle(
        self, program: _Program, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        with anyio.CancelScope() as scope:
            program.scope = scope
            reported = False
            while True:
                proc = self._spawn(program)
                if not reported:
                    task_status.started()
                    reported = True
                if proc is not None:
                    status = await proc.wait()
                    if program.scope is not scope:
                        return  # stop() took the process over
                    program.proc = None
                    self._managed.pop(proc.pid, None)
                    proc.close()
                    self._record_exit(program, status)
                delay = self._next_delay(program)
                if delay is None:
                    program.scope = None
                    self._notify()
                    return
                await anyio.sleep(delay)
                if program.scope is not scope:
                    return
                program.restarts += 1

    def _spawn(self, program: _Program) -> ProcessFD | None:
        """Start one instance; on failure record it as a failed run and return None."""
        from ..primitives.spawn import spawn

        spec = program.spec
        try:
            proc = spawn(
                list(spec.argv),
                stdin=DEVNULL,  # a supervised program has no terminal to read from
                stdout=spec.stdout,
                stderr=spec.stderr,
                cwd=spec.cwd,
                env=spec.child_env(),
                start_new_session=True,
                kill_signal=spec.stop_signal,
                kill_timeout=spec.stop_timeout,
            )
        except OSError as exc:
            program.last_exit = None
            program.failed = True
            program.started_at = None
            self._emit(EventKind.EXITED, program, error=_describe_error(exc))
            return None
        self._managed[proc.pid] = proc
        program.proc = proc
        program.started_at = time.monotonic()
        program.state = ProgramState.RUNNING
        self._emit(EventKind.STARTED, program, pid=proc.pid)
        self._notify()
        return proc

    def _record_exit(self, program: _Program, status: ExitStatus) -> None:
        ran_for = time.monotonic() - (program.started_at or time.monotonic())
        program.last_exit = status
        program.failed = status.returncode != 0
        program.started_at = None
        if ran_for >= program.spec.healthy_after:
            program.streak = 0
        self._emit(EventKind.EXITED, program, pid=status.pid, status=status)

    def _next_delay(self, program: _Program) -> float | None:
        """Seconds until the next start, or None if the program stays down (state set)."""
        spec = program.spec
        wanted = spec.restart == "always" or (spec.restart == "on-failure" and program.failed)
        if not wanted or self._closing:
            self._set_state(program, ProgramState.EXITED)
            return None
        if spec.max_restarts is not None and program.streak >= spec.max_restarts:
            self._emit(EventKind.GAVE_UP, program)
            self._set_state(program, ProgramState.GAVE_UP)
            return None
        delay = spec.restart_delay(program.streak)
        program.streak += 1
        self._set_state(program, ProgramState.BACKOFF)
        self._emit(EventKind.RESTARTING, program, delay=delay)
        return delay

    # -- signals ---------------------------------------------------------------------------------

    async def _read_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        from ..primitives.signalfd import SignalFD

        async with SignalFD([*SHUTDOWN_SIGNALS, *RESTART_SIGNALS]) as signals:
            task_status.started()
            async for info in signals:
                signo = signal.Signals(info.signo)
                self._hub.emit(EventKind.SIGNAL, "", signal=signo, pid=info.pid)
                assert self._task_group is not None
                if signo in SHUTDOWN_SIGNALS:
                    if self._closing:
                        assert self._hurry is not None
                        self._hurry.set()
                    else:
                        self._closing = True
                        self._task_group.start_soon(self._stop_all)
                elif not self._closing:
                    self._task_group.start_soon(self._restart_all)

    async def _restart_all(self) -> None:
        await self._each(self._restart_one, list(self._programs.values()))


def _describe_error(exc: OSError) -> str:
    if exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename!r}"
    return str(exc)
