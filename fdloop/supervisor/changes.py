"""Changing a running Supervisor: signal, remove, replace, apply a new set, shut down.

What ``fdloop ctl`` and its ``reload`` need, as Supervisor methods (the Supervisor class
inherits :class:`ChangesMixin`). Every change runs as ordinary requests on the programs'
request workers (see :mod:`fdloop.supervisor.runner`), so it is never half done when the
asking task is cancelled. While a change is under way the supervisor never counts as
"down": a program replaced by a new spec is stopped before its successor starts, and
:meth:`Supervisor.wait` must not take that moment for the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .program import ProgramSpec, signal_number
from .runner import ProgramRunner
from .threads import any_thread, at_home

if TYPE_CHECKING:
    from .shared import RequestKind, Shared


@dataclass(frozen=True)
class Changes:
    """What :meth:`ChangesMixin.apply` did, by program name (in the new specs' order)."""

    added: tuple[str, ...] = ()
    """New programs, registered and started."""
    removed: tuple[str, ...] = ()
    """Programs no longer wanted: stopped and forgotten."""
    changed: tuple[str, ...] = ()
    """Programs whose spec differs: stopped, and started again with the new spec if
    they had been up (running, starting or waiting to restart)."""
    unchanged: tuple[str, ...] = ()
    """Programs left alone (still running, or not, as before)."""

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added), "removed": list(self.removed),
            "changed": list(self.changed), "unchanged": list(self.unchanged),
        }


class ChangesMixin:
    """Supervisor methods that change the set of programs, or reach one, while running."""

    _busy = 0
    """Changes under way: while non-zero the supervisor is not down (see module doc)."""

    if TYPE_CHECKING:  # provided by Supervisor
        _programs: dict[str, ProgramRunner]
        _shared: Shared

        def _select(self, name: str | None, *, entered: bool = True) -> list[ProgramRunner]:
            ...

        async def _request(
            self, programs: list[ProgramRunner], kind: RequestKind, *, shield: bool = False
        ) -> None: ...

        def _notify(self) -> None: ...

        def _begin_shutdown(self) -> None: ...

        async def _until_idle(self) -> None: ...

        def add_spec(self, spec: ProgramSpec) -> None: ...

        async def start(self, name: str | None = None) -> None: ...

    @any_thread
    def signal(self, name: str, sig: int | str) -> bool:
        """Send ``sig`` (a number, or a name such as ``"HUP"``) to ``name``'s instance.

        It goes through the instance's process fd, to its whole process group (as stop
        signals do), so it can never reach a recycled pid. Returns True if an instance
        was running (or stopping) and was signalled, False if there was none (stopped,
        exited, waiting to restart): nothing is sent then. Never waits. Raises
        NoSuchProgram for an unknown name, ValueError/TypeError naming ``sig`` for a bad
        signal, RuntimeError in a forked child. Any thread: the instance is looked up
        and signalled in the supervisor's thread, so it cannot be closed meanwhile.
        """
        signo = signal_number("sig", sig)
        program = self._select(name, entered=False)[0]
        # The runner keeps its running instance in _proc (None between instances).
        proc = program._proc
        if proc is None or proc.returncode is not None:
            return False
        proc.send_signal(signo)
        return True

    @at_home(shield=True)
    async def remove(self, name: str) -> None:
        """Stop ``name`` (as :meth:`stop` does, waiting for it) and forget it.

        From the start of the call the program is gone from ``names`` and ``status()``
        and no request can reach it. Raises NoSuchProgram for an unknown name,
        RuntimeError outside ``async with``, during shutdown or in a forked child. Any
        thread (see :meth:`Supervisor.start`).
        """
        program = self._select(name)[0]
        del self._programs[name]
        self._busy += 1
        try:
            await self._request([program], "stop", shield=True)
            cgroups = self._shared.cgroups
            if cgroups is not None and name not in self._programs:  # not added again
                cgroups.forget(name)
        finally:
            self._busy -= 1
            self._notify()

    @at_home()
    async def replace(self, spec: ProgramSpec) -> bool:
        """Give the program called ``spec.name`` a new spec; return whether it restarted.

        The old instance is stopped (and waited for); if the program was up — running,
        starting or waiting to restart — it starts again with ``spec``, its restart
        count and backoff starting afresh; if it was down (stopped, exited, given up) it
        stays down with the new spec. Raises TypeError for a non-ProgramSpec,
        NoSuchProgram for an unknown name, RuntimeError as :meth:`remove` does. Any
        thread (see :meth:`Supervisor.start`).
        """
        if not isinstance(spec, ProgramSpec):
            raise TypeError(f"spec must be a ProgramSpec, not {type(spec).__name__}")
        old = self._select(spec.name)[0]
        was_up = not old.is_down()
        # The successor takes the name (and its place in the order) at once, so that a
        # request made meanwhile reaches the new spec, never the one being stopped.
        new = ProgramRunner(spec, self._shared)
        self._programs[spec.name] = new
        self._busy += 1
        try:
            await self._request([old], "stop", shield=True)
            if was_up and not self._shared.closing:
                await self._start_unless_waiting(spec.name)
        finally:
            self._busy -= 1
            self._notify()
        return was_up and not self._shared.closing

    @at_home()
    async def apply(self, specs: Sequence[ProgramSpec]) -> Changes:
        """Make the supervised programs those of ``specs``, touching only what differs.

        Programs not in ``specs`` are removed, those whose spec differs are replaced (see
        :meth:`replace`), all in parallel; then the new ones are added and started (each
        after what it depends on, as :meth:`start` does).
        Programs whose spec is equal are left alone. Afterwards ``names`` follows the
        order of ``specs``. Everything is checked before anything changes: TypeError for
        a non-ProgramSpec, ValueError for a name given twice, RuntimeError outside
        ``async with``, during shutdown or in a forked child. Returns :class:`Changes`.
        Any thread (see :meth:`Supervisor.start`).
        """
        specs = list(specs)
        seen: set[str] = set()
        for index, spec in enumerate(specs):
            if not isinstance(spec, ProgramSpec):
                raise TypeError(f"specs[{index}] must be a ProgramSpec, not {type(spec).__name__}")
            if spec.name in seen:
                raise ValueError(f"specs[{index}]: the name {spec.name!r} is given twice")
            seen.add(spec.name)
        self._select(None)  # the checks that every request makes
        current = dict(self._programs)
        removed = [name for name in current if name not in seen]
        changed = [
            spec for spec in specs if spec.name in current and current[spec.name].spec != spec
        ]
        added = [spec for spec in specs if spec.name not in current]
        self._busy += 1
        try:
            async with anyio.create_task_group() as task_group:
                for name in removed:
                    task_group.start_soon(self.remove, name)
                for spec in changed:
                    task_group.start_soon(self.replace, spec)
            for spec in added:
                self.add_spec(spec)
            # In place: the runners' shared state holds this very dict.
            order = [self._programs.pop(spec.name) for spec in specs]
            self._programs.update((runner.spec.name, runner) for runner in order)
            if not self._shared.closing:
                async with anyio.create_task_group() as task_group:
                    for spec in added:  # start() brings up what each depends on first
                        task_group.start_soon(self._start_unless_waiting, spec.name)
        finally:
            self._busy -= 1
            self._notify()
        changed_names = {spec.name for spec in changed}
        added_names = {spec.name for spec in added}
        return Changes(
            added=tuple(spec.name for spec in added),
            removed=tuple(removed),
            changed=tuple(spec.name for spec in specs if spec.name in changed_names),
            unchanged=tuple(
                spec.name for spec in specs
                if spec.name not in changed_names and spec.name not in added_names
            ),
        )

    async def _start_unless_waiting(self, name: str) -> None:
        """:meth:`start`, but return once the program waits for a dependency to be
        ready: its start stays queued and happens then, and a reload must not hang
        for as long as a dependency is not ready (for ever without ready_timeout)."""
        program = self._programs[name]

        async def leave_when_waiting(scope: anyio.CancelScope) -> None:
            while not program.awaiting_dependencies:
                await self._shared.wait_change()
            scope.cancel()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(leave_when_waiting, task_group.cancel_scope)
            await self.start(name)
            task_group.cancel_scope.cancel()

    @at_home(shield=True)
    async def shutdown(self) -> None:
        """Stop every program for good, as SIGTERM does with ``handle_signals=True``.

        Nothing starts or restarts afterwards; :meth:`wait` returns once all are down.
        Waits until every stop has finished (``stop_timeout``, then SIGKILL), even if the
        caller is cancelled meanwhile (the stops run in the supervisor's task). Calling
        it again, or during shutdown, only waits. RuntimeError outside ``async with`` or
        in a forked child. Any thread (see :meth:`Supervisor.start`).
        """
        self._select(None, entered=False)
        if self._shared.task_group is None:
            raise RuntimeError("use the Supervisor in 'async with' first")
        self._begin_shutdown()
        self._notify()
        with anyio.CancelScope(shield=True):
            await self._until_idle()


__all__ = ["Changes", "ChangesMixin"]

