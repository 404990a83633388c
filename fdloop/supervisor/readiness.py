"""When a supervised program counts as ready, and its watchdog.

Per program, ``ready`` says how it tells us (``ProgramSpec.ready``):

* ``"none"`` (default): ready as soon as it runs, as before readiness existed.
* ``"notify"``: systemd's sd_notify protocol. ``$NOTIFY_SOCKET`` names the
  Supervisor's one :class:`~fdloop.supervisor.notify.NotifySocket`; the program (or the
  process it names with MAINPID=) sends ``READY=1``. Datagrams are matched to the
  program by the sender's pidfd inode (see notify.py), never by what they say.
* ``"fd:N"``: s6's notification fd. The program finds the write end of a pipe at fd N
  and writes a newline to it when ready; we read the other end through the loop's poll.
* ``"exit"``: a one-shot set-up job, ready once it exits 0 (and ready it stays).

``ready_timeout``: an instance not ready in time gets ``stop_signal`` (SIGKILL after
``stop_timeout``) and its end counts as a failed start, for the restart policy.
``watchdog = SECONDS`` (notify only) puts ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` in the
program's environment; an instance that, once ready, goes that long without
``WATCHDOG=1`` (or that sends ``WATCHDOG=trigger``) gets SIGABRT, as systemd sends, then
SIGKILL after ``stop_timeout``, and its end counts as a failure. MAINPID= is accepted
only for a live process of the program's own session (see ``Readiness._main_pid``).

fd N and ``WATCHDOG_PID`` need a step in the child before the program runs — fd N is
usually taken in the supervisor (by the loop's own fds), and the pid is known only once
the child exists —, so those programs are started through a short Python launcher
(``_LAUNCHER``) that moves the pipe to N, sets ``WATCHDOG_PID`` to its own pid and execs
the program, which keeps that pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..primitives.events import POLLIN, notify_closing, wait_events
from .events import EventKind
from .notify import Notice, NoticeBoard, NotifySocket
from .program import ProgramSpec

if TYPE_CHECKING:
    from ..primitives.exitstatus import ExitStatus
    from ..primitives.processfd import ProcessFD

_LAUNCHER = (
    "import os, sys\n"
    "source, target, watchdog = (int(word) for word in sys.argv[1:4])\n"
    "if source >= 0:\n"
    "    os.dup2(source, target)\n"
    "    if source != target:\n"
    "        os.close(source)\n"
    "if watchdog:\n"
    "    os.environ['WATCHDOG_PID'] = str(os.getpid())\n"
    "os.execvp(sys.argv[4], sys.argv[4:])\n"
)
_READ_LIMIT = 4096
"""Bytes read from an fd:N pipe before a newline; a program writing more is not ready."""


class Readiness:
    """One program's readiness across its instances (ready flag, STATUS=, watchdog)."""

    def __init__(
        self, spec: ProgramSpec, board: NoticeBoard,
        start_reader: Callable[[NotifySocket], None],
        emit: Callable[..., None], changed: Callable[[], None],
    ) -> None:
        self.spec = spec
        self._board = board
        self._start_reader = start_reader
        self._emit = emit
        self._changed = changed
        self.ready = False
        self.status_text: str | None = None
        self.errno: int | None = None
        self.main_pid: int | None = None
        self.failed_start = False
        """The instance that just ended missed ready_timeout or a watchdog ping."""
        self._keys: list[tuple[str, int]] = []
        self._main_proc: ProcessFD | None = None
        """The process MAINPID= named (watch-only: never killed by closing it)."""
        self._main_key: tuple[str, int] | None = None
        self._notify_spec: ProgramSpec | None = None
        """The spec a plain notify program is spawned with (``$NOTIFY_SOCKET`` added)."""
        self._session: int | None = None
        """The running instance's session id (its pid: it leads a new session)."""
        self._pipe: int | None = None
        self._became_ready = anyio.Event()
        self._pinged = anyio.Event()
        self._triggered = False

    # -- before and after one instance ------------------------------------------------------

    def prepare(self) -> tuple[ProgramSpec, int | None]:
        """The spec to spawn this instance with, and the fd:N write end (closed by
        :meth:`spawned`, or by the caller if the spawn fails)."""
        spec = self.spec
        self.ready = False
        self.failed_start = False
        self._triggered = False
        self._became_ready = anyio.Event()
        self._pinged = anyio.Event()
        if spec.ready in ("none", "exit"):
            return spec, None
        if self._notify_spec is not None:  # the socket's path never changes: made once
            return self._notify_spec, None
        env = dict(spec.env or {})
        if spec.ready == "notify":
            env["NOTIFY_SOCKET"] = self._board.open(self._start_reader).path
            if spec.watchdog is not None:
                env["WATCHDOG_USEC"] = str(max(1, round(spec.watchdog * 1_000_000)))
            else:
                self._notify_spec = dataclasses.replace(spec, env=env)
                return self._notify_spec, None
        _check_program(spec, env)
        write_end = -1
        if spec.ready == "fd":
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(read_end, False)
            self._pipe = read_end
        assert spec.ready_fd is not None or spec.ready != "fd"
        argv = (
            sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write_end),
            str(spec.ready_fd or 0), "1" if spec.watchdog is not None else "0", *spec.argv,
        )
        pass_fds = (write_end,) if write_end >= 0 else ()
        return dataclasses.replace(spec, argv=argv, env=env, pass_fds=pass_fds), (
            write_end if write_end >= 0 else None
        )

    def spawn_failed(self, write_end: int | None) -> None:
        if write_end is not None:
            os.close(write_end)
        self._close_pipe()

    def spawned(self, proc: ProcessFD, write_end: int | None) -> None:
        """The instance runs: close our copy of its fd:N end, let it speak, maybe be ready."""
        if write_end is not None:
            os.close(write_end)  # the child has its own copy; EOF once it is gone
        self.main_pid = proc.pid
        self._session = proc.pid
        if self.spec.ready == "notify":
            key = self._board.register(proc.pid, self)
            if key is not None:
                self._keys.append(key)
        elif self.spec.ready == "none":
            self._set_ready(proc.pid, announce=False)

    def ended(self, status: ExitStatus | None) -> None:
        """The instance is gone (``status`` None: stopped on request)."""
        for key in self._keys:
            self._board.unregister(key)
        self._keys.clear()
        self._close_pipe()
        if self._main_proc is not None:
            self._main_proc.close()
            self._main_proc = None
        self.main_pid = None
        self._main_key = None
        self._session = None
        exit_ready = (
            self.spec.ready == "exit" and status is not None and status.returncode == 0
            and not self.failed_start
        )
        if exit_ready:
            self._set_ready(status.pid if status is not None else None)
        else:
            self.ready = False
            self._changed()

    def successor(self, exited_pid: int) -> ProcessFD | None:
        """After the spawned process ``exited_pid`` ended: the MAINPID process it handed
        over to, if that one has not ended too (then it is what the program is); else None.

        This is systemd's MAINPID= handover (a daemon that forks and lets the parent go).
        The successor is not our child: its exit is known once its new parent reaps it
        (us with ``subreaper=True``, else init), read through its pidfd."""
        if self.spec.ready != "notify":
            return None
        # A MAINPID= sent just before the exit may still be queued: read it first.
        self._board.receive_pending()
        main = self._main_proc
        if main is None or main.pid == exited_pid or main.poll() is not None:
            return None
        self._main_proc = None
        return main

    # -- while one instance runs ---------------------------------------------------------------

    async def run(self, proc: ProcessFD) -> ExitStatus:
        """Wait for the instance's exit, meanwhile watching its readiness and watchdog."""
        spec = self.spec
        # Nothing to watch without a timer or a pipe: READY=1 is handled as it arrives,
        # "exit" at the exit. (No task per instance then: restarts cost what they did.)
        timed = spec.ready_timeout is not None or spec.watchdog is not None
        if spec.ready == "none" or (spec.ready in ("notify", "exit") and not timed):
            return await proc.wait()
        result: list[ExitStatus] = []
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self.watch, proc)
            result.append(await proc.wait())
            task_group.cancel_scope.cancel()
        return result[0]

    async def watch(self, proc: ProcessFD) -> None:
        """Wait for readiness (enforcing ready_timeout), then keep the watchdog; return
        only by being cancelled (the instance ended) or after stopping the instance."""
        spec = self.spec
        if spec.ready in ("notify", "fd"):
            with anyio.move_on_after(spec.ready_timeout):
                await (self._read_pipe(proc.pid) if spec.ready == "fd"
                       else self._became_ready.wait())
            if not self.ready:
                assert spec.ready_timeout is not None
                self.failed_start = True
                self._emit(EventKind.READY_TIMEOUT, pid=proc.pid, delay=spec.ready_timeout)
                await self._end(proc, spec.stop_signal)
                return
        elif spec.ready == "exit" and spec.ready_timeout is not None:
            await anyio.sleep(spec.ready_timeout)
            self.failed_start = True
            self._emit(EventKind.READY_TIMEOUT, pid=proc.pid, delay=spec.ready_timeout)
            await self._end(proc, spec.stop_signal)
            return
        if spec.watchdog is None:
            await anyio.sleep_forever()
        while True:
            with anyio.move_on_after(spec.watchdog):
                await self._pinged.wait()
            if not self._pinged.is_set() or self._triggered:
                self.failed_start = True
                why = "WATCHDOG=trigger" if self._triggered else None
                self._emit(EventKind.WATCHDOG, pid=proc.pid, delay=spec.watchdog, text=why)
                await self._end(proc, signal.SIGABRT)
                return
            self._pinged = anyio.Event()

    async def _end(self, proc: ProcessFD, first: signal.Signals) -> None:
        """``first``, SIGKILL after stop_timeout; the lifecycle's wait() sees the exit."""
        proc.send_signal(first)
        with anyio.move_on_after(self.spec.stop_timeout):
            await proc.wait()
            return
        proc.kill()
        await anyio.sleep_forever()

    async def _read_pipe(self, pid: int) -> None:
        """Read the fd:N pipe until a newline (ready) or EOF / too much (never ready)."""
        fd = self._pipe
        assert fd is not None
        seen = 0
        while True:
            await wait_events(fd, POLLIN)
            try:
                chunk = os.read(fd, _READ_LIMIT)
            except BlockingIOError:
                continue
            if b"\n" in chunk:
                self._close_pipe()
                self._set_ready(pid)
                return
            seen += len(chunk)
            if not chunk or seen >= _READ_LIMIT:
                self._close_pipe()
                await anyio.sleep_forever()  # closed without a newline: not ready

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            fd, self._pipe = self._pipe, None
            with contextlib.suppress(OSError):
                notify_closing(fd)
            os.close(fd)

    # -- what the program says -------------------------------------------------------------------

    def receive(self, notice: Notice) -> None:
        """One datagram from this program's main process (checked by the NoticeBoard)."""
        fields = notice.fields
        if "MAINPID" in fields:
            self._main_pid(fields["MAINPID"])
        if "STATUS" in fields:
            self.status_text = fields["STATUS"]
            self._emit(EventKind.STATUS, pid=notice.pid, text=self.status_text)
        if fields.get("ERRNO", "").isdigit():
            self.errno = int(fields["ERRNO"])
        if fields.get("RELOADING") == "1":
            self.ready = False
            self._emit(EventKind.RELOADING, pid=notice.pid)
        if fields.get("STOPPING") == "1":
            self.ready = False
        if fields.get("READY") == "1":
            self._set_ready(self.main_pid)
        watchdog = fields.get("WATCHDOG")
        if watchdog in ("1", "trigger") and self.spec.watchdog is not None:
            self._triggered = watchdog == "trigger"
            self._pinged.set()
        self._changed()

    def _main_pid(self, text: str) -> None:
        """MAINPID=: accepted only for a live process of the program's own session.

        Without that check a program could name any process — pid 1 — and have the
        supervisor stop it later. The program runs as the leader of a new session
        (spawn_guarded), and its children stay in it unless they call setsid(); the
        session id outlives the leader, and no other session can take that id while a
        member of ours lives. The pidfd is opened first and checked alive after /proc is
        read, so /proc spoke about that very process (a live pid is never reused).
        """
        from ..primitives.processfd import ProcessFD

        if not text.isdigit() or not text.isascii() or int(text) <= 0:
            return
        pid = int(text)
        if pid == self.main_pid or self._session is None:
            return
        try:
            watched = ProcessFD.open(pid)
        except OSError:
            return  # gone already
        if _session_of(pid) != self._session or watched.poll() is not None:
            watched.close()
            return
        # From here on the inode (not the number) is what may speak, so a later
        # process given this pid cannot.
        key = self._board.register(pid, self)
        if key is None:
            watched.close()
            return
        if self._main_key is not None:
            self._board.unregister(self._main_key)
            self._keys.remove(self._main_key)
        self._keys.append(key)
        self._main_key = key
        if self._main_proc is not None:
            self._main_proc.close()
        self._main_proc = watched
        self.main_pid = pid
        self._emit(EventKind.MAINPID, pid=pid)

    def _set_ready(self, pid: int | None, *, announce: bool = True) -> None:
        was = self.ready
        self.ready = True
        self._became_ready.set()
        if announce and not was:
            self._emit(EventKind.READY, pid=pid)
        self._changed()


def _session_of(pid: int) -> int | None:
    """The session id of process ``pid`` (/proc/PID/stat), None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def _check_program(spec: ProgramSpec, env: dict[str, Any]) -> None:
    """Raise FileNotFoundError/PermissionError naming the program, as a spawn would:
    behind the launcher a wrong path would start fine and then fail in the child."""
    program = spec.argv[0]
    if "/" in program:
        path = os.path.join(spec.cwd or ".", program)
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file or directory", program)
        if not os.access(path, os.X_OK):
            raise PermissionError(13, "Permission denied", program)
        return
    search = {**os.environ, **env}.get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        raise FileNotFoundError(2, "No such file or directory", program)
