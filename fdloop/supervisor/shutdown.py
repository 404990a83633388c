"""How a Supervisor winds down: leaving ``async with``, and the signals that ask for it.

The Supervisor class inherits :class:`ShutdownMixin`. Leaving the block queues a stop
on every program (dependants first, see :mod:`fdloop.supervisor.depends`), waits for
the request workers to finish even if the leaving task is cancelled, then stops the
orphans (subreaper mode) and the cgroup tree. With ``handle_signals=True`` a SignalFD
reads SIGTERM/SIGINT (begin that shutdown; a second one hurries it to SIGKILL) and
SIGHUP (restart every program), with no Python signal handler.
"""

from __future__ import annotations

import signal
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel

from .events import EventHub, EventKind
from .program import DEFAULT_STOP_TIMEOUT
from .threads import refuse_elsewhere

if TYPE_CHECKING:
    from .orphans import OrphanReaper
    from .runner import ProgramRunner
    from .shared import Request, Shared

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_SIGNALS = (signal.SIGHUP,)


class ShutdownMixin:
    """Supervisor methods that stop everything: ``__aexit__`` and the signal reader."""

    if TYPE_CHECKING:  # provided by Supervisor
        _programs: dict[str, ProgramRunner]
        _shared: Shared
        _hub: EventHub
        _orphans: OrphanReaper | None
        _changed: anyio.Event | None
        _shutdown_error: BaseException | None
        _started: bool
        _restart_after_start: bool

        def _notify(self) -> None: ...

        def _restart_all(self) -> list[Request]: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop every program (and orphan) and close; ends every events() iterator.

        Waits for the stops even if cancelled. A native asyncio cancellation (which a
        shield cannot hold) is remembered, the stops are still waited for, and it is
        raised at the end. In a forked child nothing is stopped: the programs are the
        parent's. Only in the thread that entered: RuntimeError elsewhere, with nothing
        stopped.
        """
        task_group = self._shared.task_group
        if task_group is None:
            return None
        refuse_elsewhere(self._shared, "Supervisor.__aexit__ (leaving 'async with')")
        cancelled: BaseException | None = None
        stop_error: BaseException | None = None
        if self._shared.forked():
            if anyio.lowlevel.current_token() != self._shared.owner_loop:
                # Left from a loop of the child's own: the task group, its tasks and
                # their loop are copies that can never run here (exiting the group
                # would wait for them for ever). Leave them all be.
                self._shared.task_group = None
                return None
            try:
                task_group.cancel_scope.cancel()
            except RuntimeError:
                # asyncio forgets the running loop in a forked child: this copy of it
                # can never run again, nor can our tasks. Leave them all be.
                self._shared.task_group = None
                return None
        else:
            self._begin_shutdown()
            shutdown = anyio.Event()
            task_group.start_soon(self._shut_down, shutdown)
            while not shutdown.is_set():
                try:
                    with anyio.CancelScope(shield=True):
                        await shutdown.wait()
                except anyio.get_cancelled_exc_class() as error:
                    cancelled = error  # asyncio task.cancel(): finish the shutdown first
            stop_error = self._shutdown_error
        task_group.cancel_scope.cancel()
        try:
            suppressed = await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._shared.task_group = None
            self._shared.board.close()
            self._hub.close()
            self._notify()
        if stop_error is not None:
            raise stop_error
        if cancelled is not None:
            raise cancelled
        return suppressed

    def _begin_shutdown(self) -> None:
        """From now on nothing starts; every program's stop is queued (never waits)."""
        if not self._shared.closing:
            self._shared.closing = True
            for program in self._programs.values():
                program.submit("stop", ordered=True)  # dependants first (depends.py)
            self._notify()

    async def _shut_down(self, done: anyio.Event) -> None:
        """Wait for every queued request to finish, then stop the orphans; set ``done``."""
        try:
            with anyio.CancelScope(shield=True):
                await self._until_idle()
                if self._orphans is not None:
                    await self._orphans.stop_remaining(
                        self._orphan_timeout(), self._shared.hurry
                    )
                if self._shared.cgroups is not None:
                    await self._shared.cgroups.aclose(self._orphan_timeout())
        except Exception as error:  # raised by __aexit__
            self._shutdown_error = error
        finally:
            done.set()

    async def _until_idle(self) -> None:
        while not all(program.idle for program in self._programs.values()):
            changed = self._changed
            assert changed is not None
            await changed.wait()

    def _orphan_timeout(self) -> float:
        timeouts = [program.spec.stop_timeout for program in self._programs.values()]
        return max(timeouts, default=DEFAULT_STOP_TIMEOUT)

    async def _read_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        from ..primitives.signalfd import SignalFD

        async with SignalFD([*SHUTDOWN_SIGNALS, *RESTART_SIGNALS]) as signals:
            task_status.started()
            async for info in signals:
                if self._shared.forked():
                    continue  # the child's own signals: not for the parent's programs
                signo = signal.Signals(info.signo)
                self._hub.emit(EventKind.SIGNAL, "", signal=signo, pid=info.pid)
                shared = self._shared
                assert shared.task_group is not None and shared.hurry is not None
                if signo in SHUTDOWN_SIGNALS:
                    if shared.closing:
                        shared.hurry.set()  # a second one: SIGKILL what is still stopping
                    else:
                        self._begin_shutdown()
                elif shared.closing:
                    pass
                elif self._started:
                    self._restart_all()
                else:
                    # Before start() nothing runs that a restart could act on; the
                    # signal still asked for one: start() applies it once it has run.
                    self._restart_after_start = True
