"""ProcessFD: a handle on one process, awaited through the loop's poll.

The handle is a process fd (Linux pidfd): it names one process for as long as it is
open, so signalling through it can never hit a recycled pid, and it becomes readable
when the process exits. Our own children are reaped through the same fd (never
``waitpid(-1)``, never a SIGCHLD handler), so fdloop coexists with asyncio's and trio's
own subprocess support and never reaps a child it did not start.

Kill-on-close, as in FreeBSD's pdfork: the handle returned by :func:`spawn` ends its
child when closed (unless ``daemon=True``). ``aclose()`` sends ``kill_signal``, waits up
to ``kill_timeout`` and then SIGKILLs, always to the reap (shielded from cancellation);
``close()``, garbage collection and interpreter exit SIGKILL at once and never block —
a child that is not dead yet goes to :mod:`fdloop.primitives.reaper`. Handles from
:meth:`ProcessFD.open` and :meth:`ProcessFD.from_fd` only watch: they never kill or reap.
``fdloop.spawn`` (starting a child) lives in :mod:`fdloop.primitives.spawn`.
"""

from __future__ import annotations

import signal as _signal

import anyio

from .. import _aio, _validate
from ..backends import current as current_backend
from ..backends.contract import ProcessFDBackend
from ..errors import ClosedResourceError, UnsupportedOperation
from . import reaper
from .exitstatus import ExitStatus, ResourceUsage
from .process_api import ProcessAPI
from .resource import FDResource, naming_fd_limit
from .streams import DEFAULT_LIMIT, PipeReceiveStream, PipeSendStream

__all__ = ["ExitStatus", "ProcessFD", "ResourceUsage"]

_NO_PIPES: tuple[None, None, None] = (None, None, None)

REAP_GRACE_SECONDS = 0.25
"""How long ``wait()`` on a non-child gives its real parent to reap it after the exit
(the exit status exists only after that reap) before reporting an unknown status."""
SIGKILL_GRACE_SECONDS = 5.0
"""How long ``aclose()`` waits for the reap after SIGKILL before leaving it to the reaper
(SIGKILL is not instant: D state, a core dump in progress, a large address space)."""


class ProcessFD(FDResource[ProcessFDBackend], ProcessAPI):
    """A process handle: ``await wait()``, race-free signals, kill-on-close.

    Made by :func:`spawn` (our child: reaped by us, killed on close unless daemon),
    :meth:`open` or :meth:`from_fd` (any process: watched only). ``stdin``, ``stdout``,
    ``stderr`` are pipe streams for PIPE stdio, else None.

    **After fork** a handle belongs to the process that made it: its copy in a forked
    child names the parent's process through a shared fd. There ``send_signal()``,
    ``terminate()``, ``kill()``, ``poll()``, ``wait()`` and ``read()`` raise
    :class:`fdloop.UnsupportedOperation` naming the situation (a status known before the
    fork is still returned; signalling an exited process is still a no-op); ``close()``,
    ``aclose()``, ``detach()`` and garbage collection only drop the child's copy of the
    fd (nothing signalled, reaped or killed; the parent's loop registrations untouched).
    ``pid``, ``returncode``, ``status`` and ``fileno()`` still answer. To watch the
    process from the child, open its own handle with :meth:`ProcessFD.open`.

    **Threads:** ``close()`` may be called from any thread (a task waiting in another
    thread's loop wakes at once: the close runs there); so may ``send_signal()``,
    ``terminate()`` and ``kill()`` (one syscall), ``returncode``, ``pid``, ``status``,
    and ``poll()`` while no loop in another thread waits for the process (RuntimeError
    then). ``wait()`` and ``read()`` belong to one loop at a time.
    """

    _pid: int
    _owner: bool
    _owner_pid: int
    # Defaults kept on the class, and set on a handle only when its own value differs:
    # every attribute name ever set on a ProcessFD costs each handle 8 bytes of its
    # values array (CPython shares one key table per class and sizes every instance's
    # values by it), and a child spawned with no option, the usual case, needs none.
    stdin: PipeSendStream | None = None
    stdout: PipeReceiveStream | None = None
    stderr: PipeReceiveStream | None = None
    _daemon: bool = False
    _kill_signal: int = _signal.SIGTERM
    _kill_timeout: float = 5.0
    _new_session: bool = False
    _status: ExitStatus | None = None
    _hup_waiter: _aio.FDWaiter | None = None

    def __init__(self) -> None:
        raise TypeError(
            "ProcessFD is made by fdloop.spawn(), ProcessFD.open(pid) or ProcessFD.from_fd(fd)"
        )

    @classmethod
    def _wrap(
        cls,
        handle: ProcessFDBackend,
        *,
        owner: bool = False,
        daemon: bool = False,
        kill_signal: int = _signal.SIGTERM,
        kill_timeout: float = 5.0,
        new_session: bool = False,
        pipes: tuple[int | None, int | None, int | None] = _NO_PIPES,
        limit: int = DEFAULT_LIMIT,
    ) -> ProcessFD:
        self = cls.__new__(cls)
        # FDResource.__init__, with a shared waiter: process fds are waited on once each,
        # often many at a time, through the loop's ready set (see fdloop._aio).
        self._handle = handle
        self._waiter = _aio.FDWaiter(handle.fileno(), shared=True,
                                     child=owner and handle.is_child)
        self._pid = handle.pid
        self._owner = owner
        # (The class keeps the defaults: see there.)
        if daemon:
            self._daemon = daemon
        if kill_signal != cls._kill_signal:
            self._kill_signal = kill_signal
        if kill_timeout != cls._kill_timeout:
            self._kill_timeout = kill_timeout
        if new_session:
            self._new_session = new_session
        if pipes != _NO_PIPES:
            stdin, stdout, stderr = pipes
            self.stdin = PipeSendStream(stdin) if stdin is not None else None
            self.stdout = (PipeReceiveStream(stdout, limit=limit) if stdout is not None
                           else None)
            self.stderr = (PipeReceiveStream(stderr, limit=limit) if stderr is not None
                           else None)
        if owner:
            reaper.track(handle, (reaper.DAEMON if daemon else 0)
                         | (reaper.GROUP if new_session else 0))
        self._owner_pid = _aio.forks.pid  # (reaper.process_id(), without a call)
        return self

    # -- watching processes we did not start -----------------------------------------------

    @classmethod
    def open(cls, pid: int) -> ProcessFD:
        """Watch process ``pid`` (any process we may see, e.g. a grandchild).

        The handle never kills or reaps. Raises ProcessLookupError if there is no such
        process, ValueError/TypeError for a bad pid, OSError (EMFILE) when out of fds.
        """
        pid = _validate.integer("pid", pid, low=1)
        with naming_fd_limit(f"ProcessFD.open({pid})"):
            return cls._wrap(current_backend().process_open(pid))

    @classmethod
    def from_fd(cls, fd: int) -> ProcessFD:
        """Adopt a process fd received (SCM_RIGHTS, SCM_PIDFD) or inherited; watch-only.

        The ProcessFD then owns and closes ``fd``. Raises NotThisKindOfFD if ``fd`` is
        open but not a process fd, OSError if it is not open.
        """
        with naming_fd_limit(f"ProcessFD.from_fd({fd!r})"):
            return cls._wrap(current_backend().process_from_fd(fd))

    # -- state ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id (-1 if unknown, e.g. an adopted fd of a reaped process)."""
        return self._pid

    @property
    def returncode(self) -> int | None:
        """The exit code or ``-signal`` once the process has exited, else None.

        Polls while unknown (``poll()``: never blocks; reaps an exited child of ours), so
        it reflects an exit without a prior ``wait()``, as trio's does. In a forked child
        it only reports what was known before the fork.
        """
        if self._status is None and not self._handle.closed and not self._forked_copy():
            self._poll(refuse=False)
        return None if self._status is None else self._status.returncode

    @property
    def status(self) -> ExitStatus | None:
        """The final ExitStatus once ``wait()`` (or ``poll()``) has learnt it."""
        return self._status

    @property
    def daemon(self) -> bool:
        """True if closing this handle leaves the child running."""
        return self._daemon

    def poll(self) -> int | None:
        """Collect the exit status now if there is one; the returncode or None.

        Never blocks. For our own child this reaps it if it has exited. Raises
        UnsupportedOperation in a forked child (see the class docstring) unless the
        status was known before the fork.

        Safe from any thread while no loop in another thread waits for the process;
        while one does, the exit is that loop's to collect, and this raises RuntimeError
        (``returncode`` then answers from what is known, without polling).
        """
        if self._status is None and not self._handle.closed:
            self._refuse_in_forked_child("poll()")
            self._poll(refuse=True)
        return None if self._status is None else self._status.returncode

    def _poll(self, *, refuse: bool) -> None:
        """Collect the exit if there is one; while a loop in another thread waits for the
        process, leave it to that loop (``refuse``: with RuntimeError)."""
        if self._waiter.elsewhere() is not None:
            if not refuse:
                return
            raise RuntimeError(
                f"ProcessFD.poll() of pid {self._pid}: a loop in another thread waits for "
                "this process, and collecting its exit is that loop's; call poll() in that "
                "thread or await wait() there"
            )
        with self._in_use():  # (a close in another thread waits until the reap is done)
            if self._status is None and not self._handle.closed:
                if self._handle.is_child:
                    self._collect_child()
                elif self._handle.has_exited():
                    self._collect_watched()

    def _collect_child(self) -> None:
        raw = self._waiter.reaped
        if raw is not None:  # the loop's ready set reaped it as it reported the exit
            self._waiter.reaped = None
            status = ExitStatus.from_raw(raw)
        else:
            try:
                raw = self._handle.try_reap()
            except ChildProcessError:
                # Someone else reaped it (SIGCHLD set to SIG_IGN, a waitpid(-1) handler...):
                # the kernel kept the status for pidfd holders since 6.15.
                status = self._after_foreign_reap()
            else:
                if raw is None:
                    return  # still running
                status = ExitStatus.from_raw(raw)
        self._status = status
        reaper.untrack(self._handle)  # (its pid is free now: no longer ours)

    def _after_foreign_reap(self) -> ExitStatus:
        wait_status = self._handle.exit_info()
        if wait_status is None:
            return ExitStatus.unknown(self._pid)
        return ExitStatus.from_wait_status(self._pid, wait_status)

    def _collect_watched(self) -> bool:
        """For an exited non-child: take the status if its parent has reaped it."""
        wait_status = self._handle.exit_info()
        if wait_status is None:
            return False
        self._status = ExitStatus.from_wait_status(self._pid, wait_status)
        return True

    # -- waiting ---------------------------------------------------------------------------

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """Wait until the process exits and return its ExitStatus (an int: see there).

        Every caller gets the same result; a cancelled wait reaps nothing and loses
        nothing. For a process we did not start, the status exists only once its own
        parent has reaped it: ``wait()`` gives the parent REAP_GRACE_SECONDS after the
        exit, then returns an ExitStatus with ``known=False`` (call again later for the
        real one; the next wait returns as soon as the reap happens). Raises
        ClosedResourceError if the handle is closed before or while waiting, and
        UnsupportedOperation in a forked child (see the class docstring) unless the
        status was known before the fork. ``timeout`` (seconds, as Popen.wait's): raise
        fdloop.TimeoutExpired if the process still runs by then; it keeps running.
        """
        if timeout is not None:
            return await self._wait_at_most(timeout)  # (process_api.py)
        while self._status is None:
            if self._handle.closed:
                raise ClosedResourceError(f"{type(self).__name__} is closed")
            if self._owner_pid != _aio.forks.pid:
                self._refuse_in_forked_child("wait()")
            # The pidfd stays readable once a child has exited, so waiting first costs
            # nothing then, and saves a waitid while it still runs. (Awaited here, not
            # in a helper: a coroutine frame per waiting child is memory per child.)
            is_child = self._handle.is_child
            if not is_child and self._handle.has_exited():
                return await self._wait_for_foreign_reap()
            try:
                await self._waiter.wait()
            except ClosedResourceError:
                # aclose() collected the status, then closed: a waiter woken by that
                # close (before it saw the exit itself) gets the status like the others.
                if self._status is None:
                    raise
            if is_child and self._status is None:
                self._collect_child()
        return self._status

    async def read(self) -> ExitStatus:
        """The exit status, read from the process fd: the same as :meth:`wait`."""
        return await self.wait()

    async def _wait_for_foreign_reap(self) -> ExitStatus:
        if self._collect_watched():
            assert self._status is not None
            return self._status
        if self._hup_waiter is None:
            # Polled instead of the pidfd, which stays readable during the zombie window.
            with naming_fd_limit("ProcessFD.wait()"):
                self._hup_waiter = _aio.FDWaiter(self._handle.hup_fileno())
        with anyio.move_on_after(REAP_GRACE_SECONDS) as scope:
            await self._hup_waiter.wait()
        if self._collect_watched():
            assert self._status is not None
            return self._status
        if not scope.cancelled_caught:
            # Reaped, yet the kernel kept nothing (before 6.15, or another pid namespace).
            self._status = ExitStatus.unknown(self._pid)
            return self._status
        return ExitStatus.unknown(self._pid)

    # -- signals ---------------------------------------------------------------------------

    def send_signal(self, sig: int, *, group: bool | None = None) -> None:
        """Send ``sig`` through the process fd; a no-op once the process has exited.

        ``group`` (default: True for a child spawned with ``start_new_session=True``)
        signals its whole process group instead, while the leader is unreaped. Never
        falls back to a pid after the exit status was collected. Raises ValueError for
        an invalid signal, ClosedResourceError after close (unless already exited),
        PermissionError as kill(2) would, and UnsupportedOperation in a forked child
        (see the class docstring). Safe from any thread.
        """
        sig = signal_number("sig", sig, allow_zero=True)
        if self._status is not None:
            return
        with self._in_use():  # (safe from any thread: see FDResource._in_use)
            self._check_open()
            self._refuse_in_forked_child(f"send_signal({sig})")
            self._handle.send_signal(sig, group=self._new_session if group is None else group)

    def terminate(self) -> None:
        """Send SIGTERM (to the process group for ``start_new_session`` children)."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL (to the process group for ``start_new_session`` children)."""
        self.send_signal(_signal.SIGKILL)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the handle; for a running spawned non-daemon child, end it first.

        Sends ``kill_signal``, then closes ``stdin`` (so the EOF reaches a child that was
        already told to stop: it can never take truncated input as complete), waits up
        to ``kill_timeout`` seconds for the exit, then SIGKILL and waits for the reap. The
        wait is shielded from the cancellation of an enclosing scope; if the task is
        cancelled anyway (asyncio ``Task.cancel``), the child is SIGKILLed and left to
        the reaper. Pipe streams are closed. Idempotent.
        """
        if self._handle.closed:
            self._close_streams()
            return
        try:
            # Without a running loop (a task's coroutine closed by the garbage collector
            # after loop.close()) nothing can be awaited: close() kills without waiting.
            if self._owner and not self._daemon and self._status is None and (
                _aio.loop_running()
            ):
                with anyio.CancelScope(shield=True):
                    await self._end_child()
        finally:
            self.close()

    async def _end_child(self) -> None:
        if self._forked_copy():
            return  # the child is our parent's, not ours
        self._collect_child()
        if self._status is not None:
            return
        self._handle.send_signal(self._kill_signal, group=self._new_session)
        if self.stdin is not None:  # only now: see aclose()
            self.stdin.close()
        with anyio.move_on_after(self._kill_timeout):
            await self.wait()
        if self._status is None:
            self._handle.send_signal(_signal.SIGKILL, group=self._new_session)
            with anyio.move_on_after(SIGKILL_GRACE_SECONDS):
                await self.wait()

    def close(self) -> None:
        """Close now, never blocking; a running spawned non-daemon child is SIGKILLed.

        A child not yet reaped (the SIGKILLed one, or a daemon) is handed to the reaper,
        which reaps it when it exits. Waiting tasks get ClosedResourceError. Idempotent.
        From another thread while a loop polls the handle, the close runs in the loop's
        thread (see FDResource.close). In a forked child it only drops this copy.
        """
        # FDResource.close, written out for this class's two waiters (every child's path).
        if self._hup_waiter is None and self._waiter.close_if_idle():
            # (no waiter of ours holds the fd: close here, in any thread, unless a loop
            # in another thread waits for its poll events)
            there = None if self._handle.closed else _aio.events.elsewhere(self.fileno())
            if there is None or not there.call(self._close_once):
                self._close_once()
            return
        there = self._elsewhere()
        if there is None or not there.call(self.close):
            self._close_once()

    def _close_here(self) -> None:
        if self.stdin is not None or self.stdout is not None or self.stderr is not None:
            self._close_streams()
        handle = self._handle
        if handle.closed:
            return
        self._waiter.close()
        if self._hup_waiter is not None:
            self._hup_waiter.close()
        # Tasks in wait_events(self): the fd goes (or goes to the reaper), their wait ends.
        _aio.events.notify_closing(handle.fileno())
        if self._owner:
            reaper.untrack(handle)
        if (handle.is_child and self._status is None
                and self._owner_pid == _aio.forks.pid):  # (not a forked copy)
            self._collect_child()
            if self._status is None:
                try:
                    if not self._daemon:
                        handle.send_signal(_signal.SIGKILL, group=self._new_session)
                finally:  # (killed or not, the child is the reaper's from here)
                    with self._fd_lock():  # (a send_signal in another thread is done first)
                        handed = handle.transfer()
                    reaper.adopt(handed, daemon=self._daemon)
                return
        with self._fd_lock():
            handle.close()

    def detach(self) -> int:
        """Return the process fd unclosed; this handle stops owning (and killing) it.

        The caller then owns the fd and, for our child, its reaping.
        """
        self._check_open()
        if self._waiter.reaped is not None:
            self._collect_child()  # reaped already: the status stays ours to report
        self._close_streams()
        reaper.untrack(self._handle)
        if self._hup_waiter is not None:
            self._hup_waiter.close()
        return super().detach()

    def _waiters(self) -> tuple[_aio.FDWaiter | None, ...]:
        return (self._waiter, self._hup_waiter)

    def _forked_copy(self) -> bool:
        """True in a child forked after this handle was made (the handle is the parent's)."""
        return self._owner_pid != _aio.forks.pid

    def _refuse_in_forked_child(self, doing: str) -> None:
        if self._owner_pid == _aio.forks.pid:
            return
        whose = "child" if self._owner else "watched process"
        raise UnsupportedOperation(
            f"ProcessFD.{doing} on pid {self._pid}: this handle was made by process "
            f"{self._owner_pid} and copied into this forked child (pid "
            f"{reaper.process_id()}) by fork(); acting on it would act on its parent's "
            f"{whose}. A forked child may only close() its copy; to watch the process from "
            "here, open a handle of its own with ProcessFD.open(pid)"
        )

    def _close_streams(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def _state(self) -> str:
        words = [f"pid={self._pid}"]
        if self._status is not None:
            if self._status.known:
                words.append(f"exited, returncode={self._status.returncode}")
            else:
                words.append("exited, status unknown")
        elif not self._handle.closed:
            words.append("running")
        if self._daemon:
            words.append("daemon")
        if not self._owner:
            words.append("watch-only")
        if self._forked_copy():
            words.append(f"copy inherited from process {self._owner_pid}")
        return ", ".join(words)


_VALID_SIGNALS = frozenset(int(s) for s in _signal.valid_signals())
# (valid_signals() builds a set of Signals enums on every call: too slow for spawn's path)


def signal_number(name: str, value: object, *, allow_zero: bool = False) -> int:
    """A valid signal number (0 only with ``allow_zero``), else TypeError/ValueError."""
    number = _validate.integer(name, value, low=0 if allow_zero else 1)
    if number and number not in _VALID_SIGNALS:
        raise ValueError(f"{name}: {number} is not a valid signal number")
    return number
