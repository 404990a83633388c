"""The Supervisor: keeps programs running, built only from ProcessFD and SignalFD.

Each program is a :class:`~fdloop.supervisor.runner.ProgramRunner` (its lifecycle task,
restart policy and graceful stop); this module holds the public object that owns them:
configuration, the task group they run in, requests by name, status and events. How
it winds down — leaving ``async with``, and the SignalFD reader of SIGTERM/SIGINT/SIGHUP
(``handle_signals=True``) — is :mod:`fdloop.supervisor.shutdown`'s; SIGCHLD for orphans
(``subreaper=True``) is :mod:`fdloop.supervisor.orphans`'. An idle supervisor sleeps in
the loop's poll until a pidfd or a signalfd becomes readable.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence

import anyio
import anyio.abc
import anyio.lowlevel

from ..errors import NoSuchProgram, UnsupportedOperation
from .changes import ChangesMixin
from .depends import check_graph, with_dependencies
from .events import EventHub, EventStream, ProgramStatus
from .orphans import OrphanReaper
from .program import DEFAULT_BACKOFF, DEFAULT_STOP_TIMEOUT, ProgramSpec, make_spec
from .runner import ProgramRunner
from .shared import Request, RequestKind, Shared
from .shutdown import ShutdownMixin
from .threads import Home, any_thread, at_home


class Supervisor(ShutdownMixin, ChangesMixin):
    """Runs programs, restarts them by policy with exponential backoff, and reports.

    Use as ``async with fdloop.Supervisor() as sup:``; leaving the block stops every
    program (``stop_signal``, ``stop_timeout``, then SIGKILL — all programs in parallel)
    and ends every :meth:`events` iterator.

    ``handle_signals=True`` reads SIGTERM, SIGINT and SIGHUP through a SignalFD (no
    Python signal handler): SIGTERM/SIGINT stop every program and make :meth:`wait`
    return, a second one SIGKILLs whatever is still stopping; SIGHUP restarts every
    program (one read before :meth:`start` is applied once start() has run).
    ``subreaper=True`` (Linux) makes this process a child subreaper and reaps
    orphaned descendants as SIGCHLD (read through a SignalFD) announces them; it reaps
    every child of this process that the supervisor does not manage, so do not combine
    it with other code in the same process that waits for its own children by pid.

    Every method may be cancelled at any await (a cancel scope, ``task.cancel()``,
    ``asyncio.wait_for``): a request is carried out by the supervisor's own task, and
    cancelling only stops the caller from waiting for it (see :meth:`start`).

    Threads: every public method and property may be called from any thread (a
    signal-handling thread, a worker, another thread's asyncio or trio loop), before,
    inside and after ``async with``. Called outside the thread whose loop entered the
    Supervisor, the call is carried out in that thread (:mod:`fdloop.supervisor.threads`):
    a plain method blocks its caller until the supervisor's loop has run it; a coroutine
    method runs as a task of the supervisor's loop while the caller's own loop awaits it,
    with the same results, errors and cancellation rules. Two things stay with the
    supervisor's thread: leaving ``async with`` (``__aexit__``) and reading an
    :meth:`events` stream — from another thread both raise RuntimeError at once, naming
    the supervisor's thread, and change nothing.

    After ``os.fork()`` the child's copy of a Supervisor belongs to the parent: in the
    child every request raises RuntimeError, leaving the block stops nothing, and no
    program of the parent is signalled, reaped, restarted or marked exited there.
    """

    def __init__(
        self, *, handle_signals: bool = False, subreaper: bool = False,
        cgroups: bool | str = False,
    ) -> None:
        """``cgroups``: run each program in a cgroup v2 of its own (its whole tree is
        stopped with cgroup.kill and accounted in ``status()``; see
        :mod:`fdloop.supervisor.cgroup`): True (raise UnsupportedOperation at ``async
        with`` where that cannot be done), ``"auto"`` (where it can, else process groups)
        or False (process groups, the default)."""
        if not isinstance(cgroups, bool) and cgroups != "auto":
            if isinstance(cgroups, str):
                raise ValueError(f"cgroups must be True, False or 'auto', got {cgroups!r}")
            raise TypeError(
                f"cgroups must be True, False or 'auto', not {type(cgroups).__name__}"
            )
        self._cgroups_wanted = cgroups
        self._cgroups_why_not = "cgroups=False"
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
        self._shared.programs = self._programs
        self._shared.changed = lambda: self._changed
        self._orphans: OrphanReaper | None = None
        self._changed: anyio.Event | None = None
        self._entered = False
        self._shutdown_error: BaseException | None = None
        self._started = False
        """Whether start() was called: a SIGHUP read before that waits for it."""
        self._restart_after_start = False
        """A SIGHUP came before start(): restart every program once start() has run."""
        self._adding = threading.Lock()
        """Two threads adding before ``async with`` cannot both take one name."""

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
        die_with_supervisor: bool = True,
        ready: str = "none",
        ready_timeout: float | None = None,
        watchdog: float | None = None,
        depends_on: Sequence[str] = (),
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
        ``die_with_supervisor`` (default True): the kernel SIGKILLs the program if this
        process dies without stopping it (even by SIGKILL), through PR_SET_PDEATHSIG
        where util-linux's setpriv is found (see :mod:`fdloop.supervisor.lifeline` for
        what that covers); False lets it outlive us.

        ``ready``: when the program counts as ready (:mod:`fdloop.supervisor.readiness`)
        — ``"none"`` (once running), ``"notify"`` (it sends READY=1 to
        ``$NOTIFY_SOCKET``, systemd's sd_notify), ``"fd:N"`` (it writes a newline to fd
        N, s6's notification-fd) or ``"exit"`` (it exited 0). ``ready_timeout``: seconds
        to become ready, else the instance is stopped and the start counts as failed.
        ``watchdog`` (notify only): seconds; ``WATCHDOG_USEC`` is set and an instance
        that sends no WATCHDOG=1 for that long gets SIGABRT. ``depends_on``: programs
        that must be ready before this one starts; a shutdown stops this one first.

        Raises TypeError/ValueError naming the bad argument (nothing is added then); a
        dependency cycle is a ValueError naming the programs. Any thread: while the
        Supervisor runs, the program is added in its thread.
        """
        spec = make_spec(
            name, argv, restart=restart, backoff=backoff, max_restarts=max_restarts,
            stop_signal=stop_signal, stop_timeout=stop_timeout, env=env, cwd=cwd,
            stdout=stdout, stderr=stderr, die_with_supervisor=die_with_supervisor,
            ready=ready, ready_timeout=ready_timeout, watchdog=watchdog,
            depends_on=depends_on,
        )
        self.add_spec(spec)

    @any_thread
    def add_spec(self, spec: ProgramSpec) -> None:
        """Register an already validated :class:`ProgramSpec`. Any thread (as :meth:`add`)."""
        if not isinstance(spec, ProgramSpec):
            raise TypeError(f"spec must be a ProgramSpec, not {type(spec).__name__}")
        with self._adding:
            if spec.name in self._programs:
                raise ValueError(f"name: a program called {spec.name!r} was already added")
            if self._shared.closing:
                raise RuntimeError("the supervisor is shutting down")
            specs = [program.spec for program in self._programs.values()]
            check_graph([*specs, spec], complete=False)  # unknown names: at __aenter__
            self._programs[spec.name] = ProgramRunner(spec, self._shared)

    @property
    @any_thread
    def names(self) -> list[str]:
        """The programs' names, in the order they were added. Any thread."""
        return list(self._programs)

    # -- entering and leaving ----------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        if self._entered:
            raise RuntimeError("a Supervisor can be entered only once")
        check_graph(program.spec for program in self._programs.values())
        self._entered = True
        self._shared.owner_pid = os.getpid()
        self._shared.owner_thread = threading.current_thread()
        self._shared.owner_loop = anyio.lowlevel.current_token()
        home = Home()
        self._changed = anyio.Event()
        self._shared.hurry = anyio.Event()
        self._make_cgroups()  # raises before anything runs
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._shared.task_group = task_group
        try:
            await task_group.start(home.serve, task_group)
            self._shared.home = self._hub.home = home
            if self._subreaper:
                self._orphans = OrphanReaper(
                    self._shared.managed, self._hub, self._notify, self._shared.forked
                )
                await task_group.start(self._orphans.run)
            if self._handle_signals:
                await task_group.start(self._read_signals)
        except BaseException as exc:
            self._shared.task_group = None
            if self._shared.cgroups is not None:
                with anyio.CancelScope(shield=True):
                    await self._shared.cgroups.aclose(0)
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _make_cgroups(self) -> None:
        if self._cgroups_wanted is False:
            return
        from .cgroup import CgroupTree

        tree, why = CgroupTree.create()
        if tree is None:
            if self._cgroups_wanted is True:
                raise UnsupportedOperation(f"cgroups=True: {why}")
            self._cgroups_why_not = why
        self._shared.cgroups = tree

    @property
    @any_thread
    def cgroup_root(self) -> str | None:
        """The cgroup directory holding one cgroup per program, or None (process groups).
        Any thread."""
        tree = self._shared.cgroups
        return None if tree is None else tree.root

    @property
    @any_thread
    def process_trees(self) -> str:
        """How a program's tree is stopped: by its cgroup (where), or by process group
        (and why not by cgroup). Any thread."""
        if self._shared.cgroups is not None:
            return f"one cgroup per program under {self._shared.cgroups.root}"
        return f"process groups (no cgroups: {self._cgroups_why_not})"

    # -- requests ------------------------------------------------------------------------------

    @at_home()
    async def start(self, name: str | None = None) -> None:
        """Start one program, or (``name=None``) every program that is not running.

        Returns once each is spawned (its ``started`` event emitted) or its spawn has
        failed (an ``exited`` event with ``error``; the restart policy then applies).
        A program already running or waiting to restart is left alone; one that exited
        or was given up starts afresh. Raises NoSuchProgram for an unknown name,
        RuntimeError outside ``async with``, during shutdown or in a forked child.

        Cancelled before its first checkpoint, it does nothing; cancelled later, the
        start still happens (and the program is watched and restarted as usual): the
        request runs in the supervisor's own task, in the order requests were made.

        Any thread: awaited in another thread's loop, the request is made in the
        supervisor's thread and the caller's loop waits for it (as do :meth:`stop`,
        :meth:`restart`, :meth:`wait`, :meth:`remove`, :meth:`replace`, :meth:`apply`
        and :meth:`shutdown`).
        """
        programs = self._select(name)
        check_graph(program.spec for program in self._programs.values())
        specs = {name: program.spec for name, program in self._programs.items()}
        names = with_dependencies([program.spec.name for program in programs], specs)
        self._started = True
        await self._request([self._programs[name] for name in names], "start")
        if self._restart_after_start:
            # A SIGHUP that came while we were starting up (see _read_signals).
            self._restart_after_start = False
            self._restart_all()

    @at_home(shield=True)
    async def stop(self, name: str | None = None) -> None:
        """Stop one program, or (``name=None``) all of them in parallel, and wait.

        Sends ``stop_signal``, waits up to ``stop_timeout`` for the exit, then SIGKILLs
        and reaps; a pending restart is cancelled. The program stays stopped until
        :meth:`start`. Finishes even if the calling task is cancelled meanwhile (a
        native asyncio ``task.cancel()`` ends only the wait: the stop goes on in the
        supervisor's task, and :meth:`wait` returns once it is done). Any thread (see
        :meth:`start`).
        """
        programs = self._select(name, entered=False)
        await self._request(programs, "stop", shield=True, ordered=name is None)

    @at_home()
    async def restart(self, name: str | None = None) -> None:
        """Stop then start one program, or every program (``name=None``) as a shutdown
        and a start would: dependants stopped first, each started again once what it
        depends on is ready again.

        Counts as a restart in ``status()``, ends a failing streak and revives a program
        that was given up. Cancelled after its first checkpoint, the restart still runs
        to its end in the supervisor's task (as :meth:`start` describes). Any thread
        (see :meth:`start`): nothing is stopped before every check has passed.
        """
        if name is not None:
            await self._request(self._select(name), "restart")
            return
        self._select(None)  # raises as a request would
        await anyio.lowlevel.checkpoint_if_cancelled()
        requests = self._restart_all()
        self._notify()
        for request in requests:
            await request.done.wait()
        for request in requests:
            if request.error is not None:
                raise request.error

    async def _request(
        self, programs: list[ProgramRunner], kind: RequestKind, *, shield: bool = False,
        ordered: bool = False,
    ) -> None:
        """Queue ``kind`` on every program, wait for all; re-raise the first error.
        ``ordered`` stops: each waits for its dependants to be down first."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled already: do nothing
        requests: list[Request] = [program.submit(kind, ordered=ordered) for program in programs]
        self._notify()
        with anyio.CancelScope(shield=shield):
            for request in requests:
                await request.done.wait()
        for request in requests:
            if request.error is not None:
                raise request.error

    @any_thread
    def status(self) -> dict[str, ProgramStatus]:
        """A snapshot of every program: state, pid, restarts, last ExitStatus, uptime.

        Any thread: the snapshot is taken in the supervisor's thread, so it is
        consistent; :class:`ProgramStatus` is immutable."""
        now = time.monotonic()
        return {name: program.status(now) for name, program in self._programs.items()}

    @any_thread
    def events(self) -> EventStream:
        """An async iterator of :class:`Event`: the recent past first, then live events.

        Kinds: started, exited, restarting, gave-up, stopping, stopped (per program),
        signal and reaped (supervisor-wide). Iteration ends when the supervisor closes.
        Each call returns an independent iterator. It may be made in any thread, but
        a stream is read only in the supervisor's thread (its loop wakes the reader):
        reading it elsewhere raises RuntimeError and takes nothing from it.
        """
        return self._hub.subscribe()

    @at_home()
    async def wait(self) -> dict[str, ProgramStatus]:
        """Wait until every program is down for good (stopped, exited or given up).

        With ``handle_signals=True`` that is also what SIGTERM/SIGINT lead to. Returns
        :meth:`status`. Returns at once if nothing was started. RuntimeError in a
        forked child (the programs are the parent's). Any thread (see :meth:`start`).
        """
        self._shared.check_owner()
        while not self._all_down():
            changed = self._changed
            if changed is None:
                raise RuntimeError("use the Supervisor in 'async with' first")
            await changed.wait()
        return self.status()

    @any_thread
    def all_clean(self) -> bool:
        """True if every program that ran ended cleanly: exit code 0, or stopped on request.

        A program given up, or one that exited with a failure and stays down, is not clean.
        Any thread.
        """
        return all(program.ended_cleanly() for program in self._programs.values())

    # -- helpers -----------------------------------------------------------------------------

    def _select(self, name: str | None, *, entered: bool = True) -> list[ProgramRunner]:
        self._shared.check_owner()
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
        # A change under way (ChangesMixin: replace, apply) may stop a program before
        # its successor starts: not the end.
        if self._busy:
            return False
        return all(program.is_down() for program in self._programs.values())

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()

    def _restart_all(self) -> list[Request]:
        """Queue a restart on every program (never waits); the requests to wait for.
        Ordered: each stop waits for the program's dependants to be down, and each
        start for what it depends on to be ready again (runner.py, depends.py)."""
        return [program.submit("restart", ordered=True) for program in self._programs.values()]
