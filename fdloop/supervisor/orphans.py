"""Subreaper mode: adopt orphaned descendants and reap them, woken by SIGCHLD via SignalFD.

When a supervised program forks a child and exits (a daemonizing server, ``sh -c
'worker &'``), the kernel hands the orphan to the nearest subreaper — this process, once
``PR_SET_CHILD_SUBREAPER`` is set — and it becomes our zombie when it exits. SIGCHLD is
taken over by a SignalFD, so it arrives as a readable fd in the loop's poll rather than
through a handler. Each wake-up reaps every zombie child whose pid the supervisor does
not manage (see :mod:`fdloop.backends.linux.subreaper` for how managed children are
spared). Standard signals coalesce, so one SIGCHLD may stand for many exits: each sweep
reaps all it can find, and one sweep runs at start-up for orphans that came earlier.

At shutdown the orphans still running are asked to stop like programs are: SIGTERM,
then SIGKILL after the timeout, and reaped.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Collection

import anyio
import anyio.abc

from .events import EventHub, EventKind

KILL_GRACE = 5.0
"""Seconds to wait for SIGKILLed orphans to become reapable before giving up on them."""


class OrphanReaper:
    """Owns subreaper status and the SIGCHLD SignalFD for one Supervisor."""

    def __init__(
        self, managed: Collection[int], hub: EventHub, on_change: Callable[[], None],
        forked: Callable[[], bool] = lambda: False,
    ) -> None:
        """``forked()`` tells a forked child's copy, which must reap nothing: the
        zombies there are the child's own, and their owners (subprocess, say) wait."""
        self._managed = managed
        self._forked = forked
        self._hub = hub
        self._on_change = on_change
        self._reaped = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Become a subreaper and reap orphans until cancelled; then stop being one."""
        from ..backends.linux import subreaper
        from ..primitives.signalfd import SignalFD

        was_subreaper = subreaper.is_child_subreaper()
        async with SignalFD([signal.SIGCHLD]) as sigchld:
            subreaper.set_child_subreaper(True)
            try:
                task_status.started()
                self._sweep()
                async for _info in sigchld:
                    self._sweep()
            finally:
                if not was_subreaper:
                    subreaper.set_child_subreaper(False)

    def _spared(self) -> set[int]:
        """Children that a ProcessFD will reap: never ours to take.

        Our own programs, plus every child another part of this process spawned with
        fdloop (another Supervisor, a plain ``fdloop.spawn``, or one handed to the
        ProcessFD reaper after its handle was closed): reaping those would steal
        their exit status.
        """
        from ..primitives import reaper

        spared = set(self._managed)
        spared |= reaper.children()
        return spared

    def _sweep(self) -> None:
        from ..backends.linux import subreaper

        if self._forked():
            return

        for pid, returncode in subreaper.reap_unmanaged(self._spared()):
            self._hub.emit(EventKind.REAPED, "", pid=pid, returncode=returncode)
        reaped, self._reaped = self._reaped, anyio.Event()
        reaped.set()
        self._on_change()

    def orphans(self) -> list[int]:
        """Pids of the adopted (unmanaged) children still alive or unreaped."""
        from ..backends.linux import subreaper

        return subreaper.unmanaged_children(self._spared())

    async def stop_remaining(self, timeout: float, hurry: anyio.Event | None) -> None:
        """SIGTERM every remaining orphan, SIGKILL after ``timeout`` (or when hurried)."""
        from ..backends.linux import subreaper

        self._sweep()
        remaining = self.orphans()
        if not remaining:
            return
        for pid in remaining:
            subreaper.signal_child(pid, signal.SIGTERM)
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as task_group:

                async def on_hurry() -> None:
                    if hurry is not None:
                        await hurry.wait()
                        task_group.cancel_scope.cancel()

                task_group.start_soon(on_hurry)
                await self._until_gone()
                task_group.cancel_scope.cancel()
        for pid in self.orphans():
            subreaper.signal_child(pid, signal.SIGKILL)
        with anyio.move_on_after(KILL_GRACE):
            await self._until_gone()

    async def _until_gone(self) -> None:
        while True:
            self._sweep()
            if not self.orphans():
                return
            await self._reaped.wait()
