"""SignalFD on kqueue: EVFILT_SIGNAL counts deliveries; fdloop turns counts into reads.

kqueue(2), EVFILT_SIGNAL: "Takes the signal number to monitor as the identifier and
returns when the given signal is delivered to the process. This coexists with the
signal() and sigaction() facilities, and has a lower precedence. The filter will record
all attempts to deliver a signal to a process, even if the signal has been marked as
SIG_IGN, except for the SIGCHLD signal, which, if ignored, will not be recorded by the
filter. [...] data returns the number of times the signal has occurred since the last
call to kevent(). This filter automatically sets the EV_CLEAR flag internally."

So the kernel records a signal when it is *generated*, whatever the mask or the
disposition says. fdloop therefore takes signals over from ordinary delivery exactly as
on Linux, with :mod:`fdloop.backends.posix.sigmask` (blocked in the creating thread, SIG_IGN
switched to SIG_DFL — which also keeps an ignored SIGCHLD recordable — restored on close,
pending instances discarded then). That keeps one contract for both backends: handlers
do not run while a SignalFD is open, spawned children get ordinary delivery back
(``signals_taken_over``), and nothing is left ignored behind a child's exec. (Setting
SIG_IGN instead would also keep delivery away from threads, but every child would
inherit the ignored signals across exec.)

Each EVFILT_SIGNAL event with ``data`` = n becomes n reads of a SigInfoFields holding
only ``signo``: the kernel counts sends but keeps no siginfo (sender, code, value) for
them. Unlike Linux, standard signals do not coalesce: FreeBSD's ``tdsendsignal()`` posts
the knote on every send, before it looks at the pending set, and ``filt_signal()`` adds
one to ``data`` each time (xnu's ``psignal_internal()`` and ``filt_signal()`` alike), so
three SIGUSR1 sent before a read give three reads. Reads left over from one event make
the kqueue readable through an EVFILT_USER event.

Which sends count differs: FreeBSD records a signal aimed at one thread too (thr_kill,
pthread_kill, a fault), but xnu posts the knote only for process-directed sends
(``if ((flavor & (PSIG_VFORK | PSIG_THREAD)) == 0) proc_knote(...)``), and a fault
(``threadsignal()``) posts none: on macOS pthread_kill, raise() and faults never reach a
SignalFD, while kill(2), killpg(2), a child's SIGCHLD and the SIGPIPE of a write (plain
``psignal()`` there) do. ``capabilities()`` says so.
"""

from __future__ import annotations

import collections
import os
import threading

from ..contract import SigInfoFields
from ..posix import sigmask
from .platform import EV_ADD, EV_CLEAR, EVFILT_SIGNAL, NOTE_TRIGGER, host
from .queue import KqueueHandle

_PENDING_IDENT = 0  # the EVFILT_USER event that stands for "reads left over"


class KqueueSignalFD(KqueueHandle):
    """EVFILT_SIGNAL events for a set of signals, in a private kqueue."""

    kind = "SignalFD"

    def __init__(self, signals: frozenset[int]) -> None:
        super().__init__()
        self.signals = signals
        self._unread: collections.deque[int] = collections.deque()
        self._takeover: sigmask.Takeover | None = None
        try:
            self._take_over()
            user = self.platform.EVFILT_USER
            self._control(
                [self._kevent(signo, EVFILT_SIGNAL, EV_ADD) for signo in sorted(signals)]
                + [self._kevent(_PENDING_IDENT, user, EV_ADD | EV_CLEAR)]
            )
        except BaseException:
            self._release()
            self._kq.close()
            raise

    @classmethod
    def create(cls, signals: frozenset[int]) -> KqueueSignalFD:
        return cls(signals)

    @classmethod
    def adopt(cls, fd: int) -> KqueueSignalFD:
        """Take back a SignalFD detached in this process, and its signals with it."""
        handle = cls.adopt_detached(fd)
        handle._take_over()
        return handle

    def _take_over(self) -> None:
        self._takeover = sigmask.take(self.signals)

    def _release(self) -> None:
        takeover, self._takeover = self._takeover, None
        if takeover is not None:
            takeover.release()

    def read(self) -> SigInfoFields:
        for event in self._control(None, 64):
            if event.filter == EVFILT_SIGNAL:
                self._unread.extend([int(event.ident)] * int(event.data))
        if not self._unread:
            raise BlockingIOError("no signal pending")
        signo = self._unread.popleft()
        if self._unread:
            self._control([self._kevent(_PENDING_IDENT, self.platform.EVFILT_USER, 0,
                                        NOTE_TRIGGER)])
        return SigInfoFields(signo=signo)

    def exposed_threads(self) -> tuple[int, ...]:
        """Other threads that do not block every one of ``signals``.

        Only where /proc shows per-thread masks (the Linux test emulator); FreeBSD and
        macOS offer no way to read another thread's mask, so there this returns ().
        """
        if not host().proc_thread_masks:
            return ()
        me = threading.get_native_id()
        exposed = []
        for name in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{name}/status") as status:
                    line = next(x for x in status if x.startswith("SigBlk:"))
            except (OSError, StopIteration):
                continue  # the thread ended while we looked
            blocked = int(line.split(":", 1)[1], 16)
            if int(name) != me and any(not blocked >> (s - 1) & 1 for s in self.signals):
                exposed.append(int(name))
        return tuple(sorted(exposed))

    def _closing(self) -> None:
        self._release()

    def _moved_to(self, other: KqueueHandle) -> None:
        # The parked copy keeps the kqueue; the signals go back now, as the contract says.
        self._release()
        assert isinstance(other, KqueueSignalFD)
        other._takeover = None
