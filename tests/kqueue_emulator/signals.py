"""The emulated EVFILT_SIGNAL: which signals a real kqueue records, and how it counts them.

Part of the kqueue emulator (see tests/kqueue_emulator/__init__.py). What the two kernels
do, read in their sources:

* **Every send counts.** FreeBSD ``sys/kern/kern_sig.c``: ``tdsendsignal()`` calls
  ``KNOTE_LOCKED(p->p_klist, NOTE_SIGNAL | sig)`` before it looks at the disposition or
  the pending set, and ``filt_signal()`` does ``kn->kn_data++`` for its signal. xnu
  ``bsd/kern/kern_sig.c``: ``psignal_internal()`` calls ``proc_knote(sig_proc,
  NOTE_SIGNAL | signum)`` before the "ignored" check, and ``filt_signal()`` does
  ``kn->kn_hook32++``. So three SIGUSR1 sent while none was read give ``data`` = 3,
  where Linux keeps one pending standard signal and drops the other two.
* **macOS records only process-directed signals.** xnu's ``psignal_internal()`` skips
  the knote for ``PSIG_THREAD`` sends (``if ((flavor & (PSIG_VFORK | PSIG_THREAD)) ==
  0) proc_knote(...)``), which is what ``__pthread_kill()`` (pthread_kill, raise) and
  ``psignal_uthread()`` (SIGSYS) use, and a fault goes through ``threadsignal()``, which
  posts no knote at all. A write to a broken pipe or socket raises SIGPIPE with plain
  ``psignal()`` there (``sys_generic.c``, ``uipc_syscalls.c``): process-directed, so
  recorded. FreeBSD records thread-directed signals too (``tdsendsignal`` with a thread).

How the emulator follows that on Linux: the signals are read from one process-wide
signalfd (:class:`SignalHub`), whose records tell a thread-directed send by its code
(SI_TKILL: tgkill, so pthread_kill and raise; a positive code on a fault signal: the
kernel's own trap), which the macOS flavour then does not count. The sends Linux drops
are counted at the send: while the emulator is installed, ``os.kill``, ``os.killpg``,
``signal.pthread_kill`` and ``signal.raise_signal`` aimed at this process first look
whether the signal is already pending where the send would put it (/proc ``ShdPnd`` for
the process, the thread's ``SigPnd``), and if so count the one Linux is about to drop.
The real call is always made, unchanged.

Emulation limit: sends that do not pass through those four functions of this process
(another process's kill(2), C code, the kernel's own SIGCHLD or SIGPIPE, ``sigqueue``
through ctypes) still coalesce while pending, as on Linux.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from . import linux
from .filters import KQ_EV_CLEAR, _Knote, kevent

SI_TKILL = -6  # tgkill(2): pthread_kill and raise (asm-generic/siginfo.h)
_TRAPS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
          signal.SIGSYS}
_SIGRTMIN = getattr(signal, "SIGRTMIN", 34)


def thread_directed(signo: int, code: int) -> bool:
    """Whether a signalfd record is a signal that Linux aimed at one thread."""
    return code == SI_TKILL or (code > 0 and signo in _TRAPS)


class _SignalKnote(_Knote):
    """EVFILT_SIGNAL: "Takes the signal number to monitor as the identifier and returns
    when the given signal is delivered to the process. This coexists with the signal()
    and sigaction() facilities, and has a lower precedence. The filter will record all
    attempts to deliver a signal to a process, even if the signal has been marked as
    SIG_IGN, except for the SIGCHLD signal, which, if ignored, will not be recorded by the
    filter. Event notification happens after normal signal delivery processing. data
    returns the number of times the signal has occurred since the last call to kevent().
    This filter automatically sets the EV_CLEAR flag internally."

    How it is imitated, and why not with a Python signal handler: a handler would change
    the signal's disposition (SIG_IGN would no longer ignore, SIG_DFL would no longer
    terminate), which is exactly what kqueue promises not to touch. Instead, while any
    knote watches a signal, the emulator *blocks* it in the registering thread and reads
    it from one process-wide signalfd (:class:`SignalHub`): Linux queues a blocked
    signal even when it is SIG_IGN (kernel/signal.c: "Blocked signals are never
    ignored"), and an ignored SIGCHLD is never generated at all, so both halves of the
    sentence above hold. Each delivery read is counted for every knote watching it (all
    kqueues see it, as with the real filter), except a thread-directed one for a macOS
    knote (see the module docstring), and so is each send Linux drops as a duplicate.
    For a disposition that is not "ignore", the emulator then performs the normal
    delivery itself: it unblocks the signal for a moment and raises it in this thread,
    so a handler runs and SIG_DFL terminates.

    Emulation limits: (1) duplicates of a pending standard signal sent from outside this
    process's os.kill/os.killpg/signal.pthread_kill/signal.raise_signal coalesce before
    the emulator sees them, so ``data`` can be lower than on a real kqueue (never 0);
    (2) threads that existed before registration do not block the signal and may take it
    instead (and run or discard it); (3) the normal action of a non-ignored signal runs
    late, when some kqueue next calls control(); (4) a signal that the program itself
    keeps blocked is counted and then dropped, where the kernel would leave it pending
    until unblocked.
    """

    def __init__(self, kq: Any, change: kevent) -> None:
        if not 0 < change.ident < signal.NSIG:
            raise OSError(errno.EINVAL, "invalid signal number")
        super().__init__(kq, change)
        self.flags |= KQ_EV_CLEAR
        self.count = 0
        self.darwin = kq.fdloop_emulated_platform == "darwin"
        self.source = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            _HUB.watch(self)
        except BaseException:
            super().close()  # a registration that fails leaves nothing behind
            raise

    def records(self, directed_at_thread: bool) -> bool:
        """Whether this kqueue's kernel records a send of that direction."""
        return not (directed_at_thread and self.darwin)

    def deliver(self) -> None:
        """One recorded send of the signal (called by the hub, under the hub's lock)."""
        self.count += 1
        assert self.source is not None
        os.eventfd_write(self.source, 1)

    def poll(self) -> kevent | None:
        _HUB.drain()
        return self.event(0, self.count) if self.count else None

    def reported(self) -> None:
        self.count = 0
        assert self.source is not None
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.source)

    def close(self) -> None:
        _HUB.unwatch(self)
        super().close()


class SignalHub:
    """The one signalfd that all emulated EVFILT_SIGNAL knotes of this process share."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.fd = -1
        self.watchers: dict[int, list[_SignalKnote]] = {}
        self.blocked_here: set[int] = set()

    def watch(self, knote: _SignalKnote) -> None:
        with self.lock:
            signo = knote.ident
            if signo not in self.watchers:
                if signo not in signal.pthread_sigmask(signal.SIG_BLOCK, []):
                    signal.pthread_sigmask(signal.SIG_BLOCK, [signo])
                    self.blocked_here.add(signo)
                self.watchers[signo] = []
                try:
                    self.fd = linux.signalfd(self.fd, self.watchers)
                except OSError:
                    # Emulation limit: the signalfd costs an fd (EMFILE) where a real
                    # EVFILT_SIGNAL costs none. The failed registration changes nothing.
                    del self.watchers[signo]
                    if signo in self.blocked_here:
                        self.blocked_here.discard(signo)
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
                    raise
            self.watchers[signo].append(knote)

    def unwatch(self, knote: _SignalKnote) -> None:
        with self.lock:
            signo = knote.ident
            watchers = self.watchers.get(signo, [])
            if knote not in watchers:
                return
            watchers.remove(knote)
            if watchers:
                return
            self.drain()  # what is pending now belongs to the knotes still watching
            del self.watchers[signo]
            if self.watchers:
                self.fd = linux.signalfd(self.fd, self.watchers)
            else:
                os.close(self.fd)
                self.fd = -1
            if signo in self.blocked_here:
                self.blocked_here.discard(signo)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])

    def drain(self) -> None:
        with self.lock:
            while self.fd >= 0:
                record = linux.signalfd_read(self.fd)
                if record is None:
                    return
                signo, code = record
                directed = thread_directed(signo, code)
                for knote in self.watchers.get(signo, ()):
                    if knote.records(directed):
                        knote.deliver()
                self._normal_delivery(signo)

    def sending(self, signo: int, thread: int | None, send: Callable[[], None]) -> None:
        """Make a send to this process (``thread``: the native id it is aimed at, None
        for the whole process), first counting it if Linux is about to drop it."""
        if not isinstance(signo, int) or signo not in self.watchers or signo >= _SIGRTMIN:
            send()  # nobody watches it, or a real-time signal (Linux queues those)
            return
        with self.lock:
            if signo in self.watchers and signo in linux.pending_signals(thread):
                for knote in self.watchers[signo]:
                    if knote.records(thread is not None):
                        knote.deliver()
            send()

    def _normal_delivery(self, signo: int) -> None:
        if signo not in self.blocked_here:
            # The program blocks it itself: normal delivery would leave it pending.
            # Emulation limit: it was consumed from the signalfd, so it is dropped.
            return
        handler = signal.getsignal(signo)
        if handler in (signal.SIG_IGN, None) or (
            handler == signal.SIG_DFL and signo in _IGNORED_BY_DEFAULT
        ):
            return
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
        try:
            _REAL["raise_signal"](signo)
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, [signo])


_IGNORED_BY_DEFAULT = {signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT}
_HUB = SignalHub()

# -- the send hooks ----------------------------------------------------------------------

_REAL: dict[str, Any] = {
    "kill": os.kill, "killpg": os.killpg, "pthread_kill": signal.pthread_kill,
    "raise_signal": signal.raise_signal,
}


def _kill(pid: int, signo: int) -> None:
    if pid == os.getpid():
        _HUB.sending(signo, None, lambda: _REAL["kill"](pid, signo))
    else:
        _REAL["kill"](pid, signo)


def _killpg(pgid: int, signo: int) -> None:
    if pgid == os.getpgrp():
        _HUB.sending(signo, None, lambda: _REAL["killpg"](pgid, signo))
    else:
        _REAL["killpg"](pgid, signo)


def _pthread_kill(ident: int, signo: int) -> None:
    native = next((t.native_id for t in threading.enumerate() if t.ident == ident), None)
    if native is None:  # not a Python thread we know: nothing to compare with
        _REAL["pthread_kill"](ident, signo)
    else:
        _HUB.sending(signo, native, lambda: _REAL["pthread_kill"](ident, signo))


def _raise_signal(signo: int) -> None:
    _HUB.sending(signo, threading.get_native_id(), lambda: _REAL["raise_signal"](signo))


def install_send_hooks(setattr_: Any) -> None:
    """Route this process's own sends through the hub (see the module docstring)."""
    setattr_(os, "kill", _kill)
    setattr_(os, "killpg", _killpg)
    setattr_(signal, "pthread_kill", _pthread_kill)
    setattr_(signal, "raise_signal", _raise_signal)
