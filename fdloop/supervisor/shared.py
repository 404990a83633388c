"""What a Supervisor shares with its programs' runners, and one queued request.

:class:`Shared` is the state every :class:`~fdloop.supervisor.runner.ProgramRunner`
reads and changes (the task group, the event hub, whether we are closing, the managed
children, the notify board, the programs by name); :class:`Request` is one start, stop
or restart waiting on a program's request worker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc

from .events import EventHub
from .notify import NoticeBoard, NotifySocket

if TYPE_CHECKING:
    from ..primitives.processfd import ProcessFD
    from .cgroup import CgroupTree
    from .runner import ProgramRunner
    from .threads import Home

RequestKind = Literal["start", "stop", "restart"]


class ForkedCopy(RuntimeError):
    """This Supervisor was inherited through fork(): it acts on nothing of the parent's."""


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
    owner_pid: int = 0
    """The process that entered the Supervisor (0 before); see :meth:`forked`."""
    owner_loop: object = None
    """The event loop (or trio run) the Supervisor was entered in, as anyio names it
    (``anyio.lowlevel.current_token()``): where its task group lives."""
    owner_thread: threading.Thread | None = None
    """The thread that entered the Supervisor: the only one that may spawn (a
    PR_SET_PDEATHSIG child dies with the thread that spawned it)."""
    home: Home | None = None
    """The thread and loop that entered the Supervisor, where every call is carried
    out (threads.py); None before ``async with``."""
    spawn: Callable[..., ProcessFD] | None = None
    """How to start one instance, called as ``spawn(spec)``, or ``spawn(spec,
    cgroup=PATH)`` for a program with a cgroup; None: spawn_guarded."""
    cgroups: CgroupTree | None = None
    """One cgroup per program (fdloop.supervisor.cgroup), or None: process groups."""
    board: NoticeBoard = field(default_factory=NoticeBoard)
    """The NOTIFY_SOCKET and who may speak on it (readiness.py)."""
    programs: dict[str, ProgramRunner] = field(default_factory=dict)
    """Every program by name (the Supervisor's own dict), for depends_on."""
    changed: Callable[[], anyio.Event | None] = lambda: None
    """The event the next ``notify()`` sets (None outside ``async with``)."""

    async def wait_change(self) -> None:
        """Wait for the next ``notify()``: a state, readiness or request change."""
        changed = self.changed()
        if changed is None:
            raise RuntimeError("use the Supervisor in 'async with' first")
        await changed.wait()

    def start_notify_reader(self, notify_socket: NotifySocket) -> None:
        if self.task_group is None:
            raise RuntimeError("use the Supervisor in 'async with' first")
        self.task_group.start_soon(notify_socket.serve, self.board.deliver)

    def forked(self) -> bool:
        """Whether this is a forked child's copy: its programs belong to the parent.

        os.getpid() is a real system call (glibc stopped caching it), so it is right in
        a child made by any kind of fork.
        """
        return self.owner_pid != 0 and os.getpid() != self.owner_pid

    def check_owner(self) -> None:
        """Raise ForkedCopy in a forked child (before it can touch a parent's child)."""
        if self.forked():
            raise ForkedCopy(
                f"this Supervisor belongs to process {self.owner_pid}; process "
                f"{os.getpid()} inherited it through fork() and cannot start, stop, signal "
                "or reap the parent's programs"
            )


@dataclass(eq=False)
class Request:
    """One queued start/stop/restart; the asking task waits for ``done``."""

    kind: RequestKind
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    ordered: bool = False
    """Part of stopping everything: first wait for the programs depending on this one."""
