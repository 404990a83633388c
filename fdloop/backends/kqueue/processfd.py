"""ProcessFD on kqueue: EVFILT_PROC/NOTE_EXIT on the pid, reaped with wait4.

kqueue(2), EVFILT_PROC: "Takes the process ID to monitor as the identifier and the events
to watch for in fflags, and returns when the process performs one or more of the
requested events. If a process can normally see another process, it can attach an event
to it." NOTE_EXIT: "The process has exited. The exit status will be stored in data"
(FreeBSD). macOS stores it only when NOTE_EXITSTATUS is asked for, which it allows for a
child only; registering on a process that has already exited (a zombie) fails there with
ESRCH, where FreeBSD reports the exit at once. Platform facts this module codes against:

* **No process handle.** FreeBSD's pdfork(2) gives one (EVFILT_PROCDESC, kill on last
  close), but it is fork(2): the child runs a copy of this Python process, where only
  async-signal-safe calls are allowed before exec in a threaded program, so Python cannot
  use it safely (and posix_spawn has no descriptor-returning variant before FreeBSD 15.1's
  pdrfork). macOS has nothing of the kind. So the process is named by its pid.
* **A pid is safe only while the process is our unreaped child**: until it is reaped,
  the kernel cannot give the number to anyone else. So a signal is sent only until
  NOTE_EXIT has been seen (the kernel queues it at the exit, before any reap); what is
  left is the instant between that check and kill(2), in which a process that exits,
  is reaped by someone else and has its pid reused would be hit — a risk Linux's pidfd
  does not have.
* **Exit before wait**: kqueue can report NOTE_EXIT a moment before waitpid(WNOHANG) can
  reap (seen on macOS; trio's ``_subprocess.py`` waits with a blocking wait after the
  event for that reason). Once NOTE_EXIT was seen, ``try_reap`` therefore blocks in wait4
  — for that moment only.
* NOTE_EXIT arrives once (EV_ONESHOT|EV_EOF). To stay readable after the exit, as a pidfd
  does, the kqueue also holds an EVFILT_USER event, triggered without EV_CLEAR once the
  exit is known.

Kill-on-close, the reaper and daemon children work as on Linux: they are built on
``send_signal``/``try_reap`` by the portable layer.
"""

from __future__ import annotations

import copy
import errno
import os
import signal
from typing import Any

from ..contract import PipeEnds, RawExit
from ..posix.pipe import close_ends
from ..request import SpawnRequest
from .platform import EV_ADD, EVFILT_PROC, NOTE_EXIT, NOTE_TRIGGER, host, kqueue_module
from .queue import KqueueHandle
from .spawn import ChildStarter, start_child

_EXITED_IDENT = 0  # the EVFILT_USER event that keeps the kqueue readable after the exit


def _is_our_child(pid: int) -> bool:
    """Whether ``pid`` is our unreaped child (waitid WNOWAIT reaps nothing)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


class KqueueProcessFD(KqueueHandle):
    """One process watched through EVFILT_PROC in a private kqueue."""

    kind = "ProcessFD"

    def __init__(self, pid: int, is_child: bool) -> None:
        super().__init__()
        self.pid = pid
        self.is_child = is_child
        self._exited = False
        self._exit_status: int | None = None
        self._reaped = False
        self._never_ready: Any = None
        self._status_in_data = True
        try:
            self._control([self._kevent(_EXITED_IDENT, self.platform.EVFILT_USER, EV_ADD)])
            self._watch()
        except BaseException:
            self._kq.close()
            raise

    def _watch(self) -> None:
        # macOS puts the status in data only for our own child (NOTE_EXITSTATUS), which
        # a process opened by pid may also be.
        ours = self.is_child or _is_our_child(self.pid)
        self._status_in_data = ours or not self.platform.NOTE_EXITSTATUS
        fflags = NOTE_EXIT | (self.platform.NOTE_EXITSTATUS if ours else 0)
        try:
            self._control([self._kevent(self.pid, EVFILT_PROC, EV_ADD, fflags)])
        except ProcessLookupError:
            # macOS refuses a zombie with ESRCH (trio's kqueue.py treats that as "has
            # exited"); anything else is no process of ours, or none at all.
            if self.is_child and not _is_our_child(self.pid):
                raise ChildProcessError(
                    errno.ECHILD,
                    f"child {self.pid} was reaped by someone else before fdloop could "
                    "watch it (SIGCHLD set to SIG_IGN, or a thread calling wait()?); its "
                    "exit status is lost",
                ) from None
            os.kill(self.pid, 0)  # ProcessLookupError: there is no such process at all
            # Exited before it could be watched: the status comes from reaping it (a
            # foreign reaper that wins that race takes it for good on macOS).
            self._mark_exited(None)

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def spawn(
        cls, request: SpawnRequest, starter: ChildStarter | None = None
    ) -> tuple[KqueueProcessFD, PipeEnds]:
        """Start the child (see spawn.start_child), then watch it; on failure nothing is
        left behind."""
        pid, parent_ends = start_child(request, starter)
        try:
            return cls(pid, True), parent_ends
        except BaseException:
            # The pid is our unreaped child: killing and reaping it by pid is safe.
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass  # reaped by someone else already
            close_ends(parent_ends)
            raise

    @classmethod
    def open_pid(cls, pid: int) -> KqueueProcessFD:
        """Watch-only handle on any visible process; ProcessLookupError if none."""
        return cls(pid, False)

    @classmethod
    def adopt(cls, fd: int) -> KqueueProcessFD:
        """A ProcessFD detached in this process, taken back watch-only."""
        handle = cls.adopt_detached(fd)
        handle.is_child = False
        return handle

    def transfer(self) -> KqueueProcessFD:
        self.fileno()
        moved = copy.copy(self)
        self._open = False
        return moved

    def _closing(self) -> None:
        if self._never_ready is not None:
            self._never_ready.close()
            self._never_ready = None

    # -- state ---------------------------------------------------------------------------

    def _mark_exited(self, status: int | None) -> None:
        if not self._exited:
            self._exited = True
            self._exit_status = status
            self._control([self._kevent(_EXITED_IDENT, self.platform.EVFILT_USER, 0,
                                        NOTE_TRIGGER)])

    def _poll(self) -> None:
        for event in self._control(None, 4):
            if event.filter == EVFILT_PROC and event.fflags & NOTE_EXIT:
                self._mark_exited(self._status_from(int(event.data)))

    def _status_from(self, data: int) -> int | None:
        # macOS: data is 0 for a process that is not our child: not a status.
        return data if self._status_in_data else None

    def has_exited(self) -> bool:
        if not self._exited:
            self._poll()
        return self._exited

    def try_reap(self) -> RawExit | None:
        self._poll()
        if self._reaped:
            raise ChildProcessError(errno.ECHILD, f"process {self.pid} was already reaped")
        # After NOTE_EXIT the reap may lag a moment behind the event: wait for it then.
        raw = self._reap(0 if self._exited else os.WNOHANG)
        if raw is not None:
            self._mark_exited(raw.status)
        return raw

    def _reap(self, options: int) -> RawExit | None:
        pid, status, usage = os.wait4(self.pid, options)
        if pid == 0:
            return None
        self._reaped = True
        # ru_maxrss: kilobytes on FreeBSD (and Linux), bytes on macOS.
        rss = usage.ru_maxrss * host().maxrss_unit
        return RawExit(pid, status, usage.ru_utime, usage.ru_stime, rss)

    def exit_info(self) -> int | None:
        self.has_exited()
        return self._exit_status

    def hup_fileno(self) -> int:
        """kqueue has no "reaped" event; the status comes with NOTE_EXIT or never.

        Returns the fd of an empty kqueue, which is never readable: a caller waiting for
        a reap waits out its own timeout.
        """
        self.fileno()
        if self._never_ready is None:
            self._never_ready = kqueue_module().kqueue()
        return int(self._never_ready.fileno())

    # -- signals -------------------------------------------------------------------------

    def send_signal(self, signo: int, *, group: bool = False) -> None:
        """Signal by pid, but never once the exit was seen.

        kqueue queues NOTE_EXIT when the process exits, before anyone can reap it, so
        an exit seen here means the pid may already be reaped (by us, a foreign reaper
        or a non-child's parent) and reused; a signal to the zombie would do nothing
        anyway. What remains is the moment between this check and kill(2).

        A process group outlives its leader's exit: the group of our child is still
        signalled after that exit, for as long as waitid(WNOWAIT) shows the leader is
        our unreaped child, whose pid (and so the group id) cannot be reused before it
        is reaped.
        """
        self.fileno()
        if self._reaped:
            return
        exited = self.has_exited()
        if exited and not (group and self.is_child):
            return
        try:
            if exited:  # our new-session child's group, its leader not reaped yet
                if _is_our_child(self.pid):
                    os.killpg(self.pid, signo)
            elif group:
                os.killpg(self.pid, signo)
            else:
                os.kill(self.pid, signo)
        except ProcessLookupError:
            return
