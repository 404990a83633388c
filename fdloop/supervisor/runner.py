"""One supervised program: its lifecycle task, restart policy, and graceful stop.

While a program runs, its *lifecycle task* (in the supervisor's task group) loops:
spawn, ``await proc.wait()`` — the pidfd becomes readable in the loop's poll —, apply
the restart policy, sleep out the backoff, spawn again. Nothing polls and nothing
handles SIGCHLD.

Requests (start, stop, restart) are never carried out by the task that asks. Each is
queued, in the order asked, on the program's *request worker* — a shielded task in the
supervisor's task group that runs them one at a time — and the asking task only waits
for it to finish. So a cancelled request (a cancel scope, ``task.cancel()``,
``asyncio.wait_for``) abandons the wait, never the work: a program is never left
"running" with nobody watching it, or "stopping" with nobody stopping it, and a SIGHUP
restart cannot interleave with a stop of the same program.

``stop`` cancels the lifecycle task and takes over its ProcessFD (how it then ends the
instance and its tree: :mod:`fdloop.supervisor.stopping`). After a cancellation
the task checks, at every resumption, whether it still owns the program (``self._scope
is scope``) and otherwise returns without touching anything: under trio, a ``wait()``
that had already completed resumes with its value even though its scope was cancelled,
so the cancellation alone cannot be relied on.

A forked child's copy of all this does nothing to the parent's programs: every step that
would signal, reap, spawn or change state first checks :meth:`Shared.forked`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .depends import await_dependants, await_dependencies
from .events import FINAL_STATES, EventKind, ProgramState, ProgramStatus
from .lifeline import spawn_guarded
from .program import ProgramSpec
from .readiness import Readiness
from .shared import Request, RequestKind, Shared
from .stopping import stop_tree, terminate

if TYPE_CHECKING:
    from ..primitives.exitstatus import ExitStatus
    from ..primitives.processfd import ProcessFD
    from .cgroup import ProgramCgroup

__all__ = ["ProgramRunner"]

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
        self.awaiting_dependencies = False
        """A start of it waits for a ``depends_on`` program to be ready (depends.py)."""
        self._streak = 0
        """Restarts since the last healthy run (one of at least ``spec.healthy_after``)."""
        self._started_at: float | None = None
        self._starting = False
        self._requests: deque[Request] = deque()
        self._working = False
        """The request worker task is running (it empties ``_requests``)."""
        self._cgroup: ProgramCgroup | None = None
        """The program's cgroup, once an instance was spawned into one."""
        self.readiness = Readiness(
            spec, shared.board, shared.start_notify_reader, self._emit, shared.notify
        )

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
            cgroup=None if self._cgroup is None else self._cgroup.usage(),
            ready=self.readiness.ready,
            status_text=self.readiness.status_text,
            main_pid=self.readiness.main_pid if proc is not None else None,
            errno=self.readiness.errno,
        )

    def is_down(self) -> bool:
        """Down for good: stopped, exited or given up, and no request queued or under way."""
        return (
            self.state in FINAL_STATES and self._scope is None and not self._starting
            and not self._working
        )

    def is_stopped(self) -> bool:
        """No instance running or about to (a queued request may still start one)."""
        return self.state in FINAL_STATES and self._scope is None and not self._starting

    @property
    def shared(self) -> Shared:
        return self._shared

    @property
    def has_requests(self) -> bool:
        """A request is queued behind the one under way."""
        return bool(self._requests)

    def dependency_failed(self, why: str) -> None:
        """A start dropped because a dependency is down for good: a failed start."""
        self.last_exit = None
        self.failed = True
        self._emit(EventKind.EXITED, error=why)
        self._set_state(ProgramState.EXITED)

    @property
    def idle(self) -> bool:
        """No request queued or under way."""
        return not self._working

    def ended_cleanly(self) -> bool:
        if self.state == ProgramState.GAVE_UP:
            return False
        return not (self.state == ProgramState.EXITED and self.failed)

    def submit(self, kind: RequestKind, *, ordered: bool = False) -> Request:
        """Queue a request (never waits); it runs after every request queued before it.

        The caller awaits ``request.done``; cancelling that wait leaves the request to
        run to its end. Outside ``async with`` (no task group) there is nothing running
        to act on, and the request is done at once.
        """
        request = Request(kind, ordered=ordered)
        task_group = self._shared.task_group
        if task_group is None:
            request.done.set()
            return request
        self._requests.append(request)
        if not self._working:
            try:
                task_group.start_soon(self._work)
            except RuntimeError:
                # The task group is already closing: shutdown has stopped everything.
                self._requests.clear()
                request.done.set()
                return request
            self._working = True
        return request

    async def _work(self) -> None:
        """The request worker: run queued requests in order until none is left.

        Shielded: a request half done would leave a child that nobody watches (a start)
        or a program "stopping" for ever (a stop). Every request is bounded: a stop by
        ``stop_timeout`` and SIGKILL, a start by one spawn.
        """
        with anyio.CancelScope(shield=True):
            try:
                while self._requests:
                    request = self._requests.popleft()
                    try:
                        self._shared.check_owner()
                        await self._carry_out(request)
                    except Exception as exc:  # handed to the asking task
                        request.error = exc
                    finally:
                        request.done.set()
            finally:
                self._working = False
                self._shared.notify()

    async def _carry_out(self, request: Request) -> None:
        kind = request.kind
        if kind == "stop":
            if request.ordered:
                await await_dependants(self)
            await self._stop_now()
        elif kind == "start":
            # Unless running or waiting to restart.
            if self._scope is None and not self._shared.closing:
                self._streak = 0
                if await await_dependencies(self):
                    await self._launch()
        else:
            if request.ordered:  # a restart of every program: dependants go down first
                await await_dependants(self)
            await self._stop_now()
            if not self._shared.closing and await await_dependencies(self):
                self.restarts += 1
                self._streak = 0
                await self._launch()

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

    async def _stop_now(self) -> None:
        """Stop the running instance (or the pending restart); the program stays stopped."""
        scope = self._scope
        if scope is None:
            if self._cgroup is not None and self._cgroup.populated():
                await stop_tree(  # its leftovers
                    self._cgroup, self.spec, self._shared.hurry, time.monotonic()
                )
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
                    status = await terminate(proc, self.spec, self._shared, self._cgroup)
                finally:
                    self._proc = None
                self.last_exit = status
                self.failed = False
                self._started_at = None
            self.readiness.ended(None)
            self._emit(EventKind.STOPPED, status=status)
            self.state = ProgramState.STOPPED
        finally:
            self._starting = False
            self._shared.notify()

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
                ran = proc is not None
                while proc is not None:
                    try:
                        status = await self.readiness.run(proc)
                    except Exception:
                        if self._shared.forked():
                            return  # the parent's child: not ours to wait for
                        raise
                    if self._scope is not scope or self._shared.forked():
                        return  # stop() took the process over, or it is the parent's
                    self._proc = None
                    self._shared.managed.pop(proc.pid, None)
                    proc.close()  # already reaped: closing only releases the pidfd
                    # MAINPID= handed the program over to another process: watch that.
                    self._proc = proc = self.readiness.successor(proc.pid)
                if ran:
                    self._record_exit(status)
                delay = self._next_delay()
                if delay is None:
                    self._scope = None
                    self._shared.notify()
                    return
                await anyio.sleep(delay)
                if self._scope is not scope or self._shared.forked():
                    return
                self.restarts += 1

    def _spawn(self) -> ProcessFD | None:
        """Start one instance; on failure record it as a failed run and return None."""
        if threading.current_thread() is not self._shared.owner_thread:
            raise RuntimeError(
                "a Supervisor spawns only from the thread that entered it (a program "
                "guarded by PR_SET_PDEATHSIG dies with the thread that spawned it)"
            )
        spawn = self._shared.spawn or spawn_guarded
        write_end: int | None = None
        try:
            cgroup = self._cgroup_to_join()
            launch, write_end = self.readiness.prepare()  # NOTIFY_SOCKET, fd:N, watchdog
            proc = spawn(launch) if cgroup is None else spawn(launch, cgroup=cgroup.path)
        except OSError as exc:
            self.readiness.spawn_failed(write_end)
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
        self.readiness.spawned(proc, write_end)
        self._shared.notify()
        return proc

    def _cgroup_to_join(self) -> ProgramCgroup | None:
        """The program's cgroup (made on first use) if the Supervisor has a tree and
        the program is guarded; a ``die_with_supervisor=False`` program stays outside,
        since the tree is killed when the supervisor goes."""
        tree = self._shared.cgroups
        if tree is None or not self.spec.die_with_supervisor:
            return None
        if self._cgroup is None:
            self._cgroup = tree.program(self.spec.name)
        return self._cgroup

    def _record_exit(self, status: ExitStatus) -> None:
        started = self._started_at
        self.last_exit = status
        self.failed = status.returncode != 0 or self.readiness.failed_start
        self._started_at = None
        if started is not None and time.monotonic() - started >= self.spec.healthy_after:
            self._streak = 0
        self._emit(EventKind.EXITED, pid=status.pid, status=status)
        self.readiness.ended(status)

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

