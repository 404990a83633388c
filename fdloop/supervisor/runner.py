"""One supervised program: its lifecycle task, restart policy, and graceful stop.

While a program runs, its *lifecycle task* (in the supervisor's task group) loops:
spawn, ``await proc.wait()`` — the pidfd becomes readable in the loop's poll —, apply
the restart policy, sleep out the backoff, spawn again. Nothing polls and nothing
handles SIGCHLD.

Requests (``start``/``stop``/``restart``) take the program's lock, so a SIGHUP restart
cannot interleave with a stop of the same program. ``stop`` cancels the lifecycle task
and takes over its ProcessFD. After a cancellation the task checks, at every
resumption, whether it still owns the program (``self._scope is scope``) and otherwise
returns without touching anything: under trio, a ``wait()`` that had already completed
resumes with its value even though its scope was cancelled, so the cancellation alone
cannot be relied on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..streams import DEVNULL
from .events import FINAL_STATES, EventHub, EventKind, ProgramState, ProgramStatus
from .program import ProgramSpec

if TYPE_CHECKING:
    from ..primitives.exitstatus import ExitStatus
    from ..primitives.processfd import ProcessFD


@dataclass(eq=False)
class Shared:
    """What the Supervisor shares with every program's runner."""

    hub: EventHub
    notify: Callable[[], None]
    """Wake ``Supervisor.wait()`` to re-check whether everything is down."""
    task_group: anyio.abc.TaskGroup | None = None
    """The supervisor's task group, once entered (lifecycle tasks run in it)."""
    hurry: anyio.Event | None = None
    """Set by a second SIGTERM/SIGINT: stops SIGKILL at once instead of waiting."""
    managed: dict[int, ProcessFD] = field(default_factory=dict)
    """Our running children by pid: subreaper mode must never reap these."""
    closing: bool = False
    """Shutting down: nothing is started or restarted any more."""


class ProgramRunner:
    """Runs one program by its spec; every method is called from the loop's thread."""

    def __init__(self, spec: ProgramSpec, shared: Shared) -> None:
        self.spec = spec
        self._shared = shared
        self.state = ProgramState.STOPPED
        self.restarts = 0
        """Automatic and requested restarts since the program was added."""
        self.last_exit: ExitStatus | None = None
        self.failed = False
        """Whether the most recent instance ended badly (spawn error or non-zero status)."""
        self._proc: ProcessFD | None = None
        """The running instance while the lifecycle task owns it."""
        self._scope: anyio.CancelScope | None = None
        """The lifecycle task's scope; None while no task runs the program."""
        self._streak = 0
        """Restarts since the last healthy run (one of at least ``spec.healthy_after``)."""
        self._started_at: float | None = None
        self._starting = False
        self._lock = anyio.Lock()

    # -- what the Supervisor asks ------------------------------------------------------------

    def status(self, now: float) -> ProgramStatus:
        running = self.state in (ProgramState.RUNNING, ProgramState.STOPPING)
        proc = self._proc if running else None
        return ProgramStatus(
            name=self.spec.name,
            state=self.state,
            pid=proc.pid if proc is not None else None,
            restarts=self.restarts,
            last_exit=self.last_exit,
            uptime=None if proc is None or self._started_at is None else now - self._started_at,
        )

    def is_down(self) -> bool:
        """Down for good: stopped, exited or given up, and no request under way."""
        return self.state in FINAL_STATES and self._scope is None and not self._starting

    def ended_cleanly(self) -> bool:
        if self.state == ProgramState.GAVE_UP:
            return False
        return not (self.state == ProgramState.EXITED and self.failed)

    async def start(self) -> None:
        """Start unless running or waiting to restart; returns once spawned (or failed)."""
        async with self._lock:
            if self._scope is not None or self._shared.closing:
                return
            self._streak = 0
            await self._launch()

    async def restart(self) -> None:
        """Stop, then start afresh (a restart that ends any failing streak)."""
        async with self._lock:
            await self._stop_locked()
            if self._shared.closing:
                return
            self.restarts += 1
            self._streak = 0
            await self._launch()

    async def stop(self) -> None:
        """Stop the running instance (or the pending restart) and stay stopped."""
        async with self._lock:
            await self._stop_locked()

    async def _launch(self) -> None:
        # Until the lifecycle task has spawned, the program still looks down; wait()
        # must not take that for the end (a SIGHUP restart passes through here).
        task_group = self._shared.task_group
        if task_group is None:
            raise RuntimeError("use the Supervisor in 'async with' first")
        self._starting = True
        try:
            await task_group.start(self._lifecycle)
        finally:
            self._starting = False
            self._shared.notify()

    # -- stopping ------------------------------------------------------------------------------

    async def _stop_locked(self) -> None:
        # Shielded: a half-done stop would leave a child running with nobody watching it.
        with anyio.CancelScope(shield=True):
            scope = self._scope
            if scope is None:
                return
            self._starting = True  # not down until the STOPPED state is set below
            try:
                scope.cancel()
                self._scope = None
                proc = self._proc  # ours now: the cancelled lifecycle task lets go of it
                status = None
                if proc is not None:
                    self.state = ProgramState.STOPPING
                    self._emit(EventKind.STOPPING, pid=proc.pid)
                    try:
                        status = await self._terminate(proc)
                    finally:
                        self._proc = None
                    self.last_exit = status
                    self.failed = False
                    self._started_at = None
                self._emit(EventKind.STOPPED, status=status)
                self.state = ProgramState.STOPPED
            finally:
                self._starting = False
                self._shared.notify()

    async def _terminate(self, proc: ProcessFD) -> ExitStatus:
        """stop_signal, up to stop_timeout (less if hurried), SIGKILL; always reaps."""
        try:
            proc.send_signal(self.spec.stop_signal)
            status = await self._wait_or_hurry(proc, self.spec.stop_timeout)
            if status is None:
                proc.kill()
                status = await proc.wait()
            return status
        finally:
            self._shared.managed.pop(proc.pid, None)
            await proc.aclose()

    async def _wait_or_hurry(self, proc: ProcessFD, timeout: float) -> ExitStatus | None:
        hurry = self._shared.hurry
        result: list[ExitStatus] = []
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as task_group:

                async def on_hurry() -> None:
                    await (hurry.wait() if hurry is not None else anyio.sleep_forever())
                    task_group.cancel_scope.cancel()

                task_group.start_soon(on_hurry)
                result.append(await proc.wait())
                task_group.cancel_scope.cancel()
        return result[0] if result else None

    # -- the lifecycle task ----------------------------------------------------------------------

    async def _lifecycle(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            reported = False
            while True:
                proc = self._spawn()
                if not reported:
                    task_status.started()
                    reported = True
                if proc is not None:
                    status = await proc.wait()
                    if self._scope is not scope:
                        return  # stop() took the process over
                    self._proc = None
                    self._shared.managed.pop(proc.pid, None)
                    proc.close()  # already reaped: closing only releases the pidfd
                    self._record_exit(status)
                delay = self._next_delay()
                if delay is None:
                    self._scope = None
                    self._shared.notify()
                    return
                await anyio.sleep(delay)
                if self._scope is not scope:
                    return
                self.restarts += 1

    def _spawn(self) -> ProcessFD | None:
        """Start one instance; on failure record it as a failed run and return None."""
        from ..primitives.spawn import spawn

        spec = self.spec
        try:
            proc = spawn(
                list(spec.argv),
                stdin=DEVNULL,  # a supervised program has no terminal to read from
                stdout=spec.stdout,
                stderr=spec.stderr,
                cwd=spec.cwd,
                env=spec.child_env(),
                # Its own session: a terminal's Ctrl-C reaches only the supervisor, which
                # then stops programs in order; and stop signals reach the whole group.
                start_new_session=True,
                kill_signal=spec.stop_signal,
                kill_timeout=spec.stop_timeout,
            )
        except OSError as exc:
            self.last_exit = None
            self.failed = True
            self._started_at = None
            self._emit(EventKind.EXITED, error=_describe_error(exc))
            return None
        self._shared.managed[proc.pid] = proc
        self._proc = proc
        self._started_at = time.monotonic()
        self.state = ProgramState.RUNNING
        self._emit(EventKind.STARTED, pid=proc.pid)
        self._shared.notify()
        return proc

    def _record_exit(self, status: ExitStatus) -> None:
        started = self._started_at
        self.last_exit = status
        self.failed = status.returncode != 0
        self._started_at = None
        if started is not None and time.monotonic() - started >= self.spec.healthy_after:
            self._streak = 0
        self._emit(EventKind.EXITED, pid=status.pid, status=status)

    def _next_delay(self) -> float | None:
        """Seconds until the next start, or None if the program stays down (state set)."""
        spec = self.spec
        wanted = spec.restart == "always" or (spec.restart == "on-failure" and self.failed)
        if not wanted or self._shared.closing:
            self._set_state(ProgramState.EXITED)
            return None
        if spec.max_restarts is not None and self._streak >= spec.max_restarts:
            self._emit(EventKind.GAVE_UP)
            self._set_state(ProgramState.GAVE_UP)
            return None
        delay = spec.restart_delay(self._streak)
        self._streak += 1
        self._set_state(ProgramState.BACKOFF)
        self._emit(EventKind.RESTARTING, delay=delay)
        return delay

    def _set_state(self, state: ProgramState) -> None:
        self.state = state
        self._shared.notify()

    def _emit(self, kind: EventKind, **details: Any) -> None:
        self._shared.hub.emit(kind, self.spec.name, restarts=self.restarts, **details)


def _describe_error(exc: OSError) -> str:
    if exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename!r}"
    return str(exc)

