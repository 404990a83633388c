"""Taking signals over from ordinary delivery, and giving them back: process-wide books.

A signal that a SignalFD reads must never reach its ordinary disposition first. So while at
least one SignalFD wants a signal, fdloop

* blocks it in the signal mask of the thread that created the SignalFD (threads started
  later inherit that mask; threads that already run keep theirs, which is why SignalFD
  warns about them), and
* switches a SIG_IGN disposition to SIG_DFL, because the kernel throws an ignored signal
  away when it is generated, before any reader could see it. SIG_DFL is harmless while
  the signal is blocked.

Both changes are reference-counted per signal (the mask per thread and signal, since a
mask belongs to one thread), so overlapping SignalFDs share them and only the last one to
leave puts back what the first one found. Giving a signal back discards the instances
still pending (they were addressed to the SignalFD, which is gone; delivering them late
could run a default action such as terminating the process), then unblocks it.

SIGCHLD is never set to SIG_IGN, not even to restore it: that disposition makes the
kernel reap children on its own, which would steal every ProcessFD's exit status. A
SIGCHLD found ignored is therefore left at SIG_DFL.

POSIX calls only (``pthread_sigmask``, ``signal``, ``sigtimedwait``): both backends use it.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from dataclasses import dataclass

from ...errors import SignalDeliveryWarning

__all__ = ["Takeover", "for_child", "signal_name", "take", "taken_over"]


@dataclass
class _Blocked:
    refs: int
    we_blocked: bool
    """False when the signal was already blocked in that thread: then it stays blocked."""


@dataclass
class _Disposition:
    refs: int
    unignored: bool
    """True when fdloop switched SIG_IGN to SIG_DFL for this signal."""


_lock = threading.Lock()
_blocked: dict[tuple[int, int], _Blocked] = {}  # (thread ident, signo)
_dispositions: dict[int, _Disposition] = {}


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork time; it does not exist in the child.
    # The books stay: the child inherits the mask and dispositions they describe.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Takeover:
    """One holder's claim on a set of signals; ``release()`` gives it back, once."""

    __slots__ = ("_released", "_thread", "signals")

    def __init__(self, signals: frozenset[int], thread: int) -> None:
        self.signals = signals
        self._thread = thread
        self._released = False

    def release(self) -> None:
        """Drop this claim; the last claim on a signal restores its mask bit and disposition.

        Emits SignalDeliveryWarning if the mask or disposition cannot be put back from the
        calling thread (a thread's mask can only be changed by that thread, a disposition
        only by the main thread).
        """
        problems: list[str] = []
        with _lock:
            if self._released:
                return
            self._released = True
            reignore, unblock = self._drop_references()
            for signo in sorted(reignore):
                # A user (or another library) may have installed a handler meanwhile: theirs.
                if signal.getsignal(signo) != signal.SIG_DFL:
                    continue
                try:
                    # SIG_IGN also discards whatever instance of it is pending.
                    signal.signal(signo, signal.SIG_IGN)
                except ValueError:
                    problems.append(
                        f"{signal_name(signo)} stays at SIG_DFL instead of SIG_IGN: only the main "
                        "thread can change a disposition; close the SignalFD there"
                    )
            if unblock:
                if self._thread == threading.get_ident():
                    _discard_pending(unblock)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, unblock)
                elif thread_alive(self._thread):
                    names = ", ".join(signal_name(s) for s in sorted(unblock))
                    problems.append(
                        f"{names} stays blocked in thread {self._thread}: a thread's signal "
                        "mask can only be changed by that thread; close the SignalFD in the "
                        "thread that created it"
                    )
        for problem in problems:
            warnings.warn(problem, SignalDeliveryWarning, stacklevel=3)

    def _drop_references(self) -> tuple[list[int], list[int]]:
        reignore: list[int] = []
        unblock: list[int] = []
        for signo in self.signals:
            disposition = _dispositions[signo]
            disposition.refs -= 1
            if disposition.refs == 0:
                del _dispositions[signo]
                if disposition.unignored and signo != signal.SIGCHLD:
                    reignore.append(signo)
            key = (self._thread, signo)
            blocked = _blocked[key]
            blocked.refs -= 1
            if blocked.refs == 0:
                del _blocked[key]
                if blocked.we_blocked:
                    unblock.append(signo)
        return reignore, unblock


def take(signals: frozenset[int]) -> Takeover:
    """Block ``signals`` in the calling thread and un-ignore them; return the claim.

    Raises ValueError, changing nothing, if one of them is SIG_IGN and the calling thread
    is not the main thread (only the main thread may change a disposition).
    """
    thread = threading.get_ident()
    with _lock:
        ignored = [
            s for s in signals
            if s not in _dispositions and signal.getsignal(s) == signal.SIG_IGN
        ]
        if ignored and threading.current_thread() is not threading.main_thread():
            names = ", ".join(signal_name(s) for s in sorted(ignored))
            raise ValueError(
                f"signals: {names} is ignored (SIG_IGN), so the kernel would discard it "
                "before a SignalFD could read it, and only the main thread can change that; "
                "create this SignalFD in the main thread"
            )
        # Block first: between the two steps an un-ignored but unblocked signal would run
        # its default action (for most signals: terminate the process).
        already_blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        for signo in signals:
            entry = _blocked.get((thread, signo))
            if entry is None:
                _blocked[thread, signo] = _Blocked(1, signo not in already_blocked)
            else:
                entry.refs += 1
            disposition = _dispositions.get(signo)
            if disposition is None:
                _dispositions[signo] = _Disposition(1, signo in ignored)
            else:
                disposition.refs += 1
        for signo in ignored:
            signal.signal(signo, signal.SIG_DFL)
    return Takeover(signals, thread)


_NOTHING_TAKEN: frozenset[int] = frozenset()


def taken_over() -> frozenset[int]:
    """The signals fdloop has blocked (in some thread) or un-ignored, right now.

    A process spawned meanwhile inherits the blocked mask (and the SIG_DFL that replaced
    a SIG_IGN); the spawner uses this to give the child the ordinary delivery back.
    """
    if not _blocked and not _dispositions:
        return _NOTHING_TAKEN  # the common case, read without the lock at every spawn
    with _lock:
        blocked = {signo for (_thread, signo), entry in _blocked.items() if entry.we_blocked}
        unignored = {signo for signo, entry in _dispositions.items() if entry.unignored}
    return frozenset(blocked | unignored)


def for_child() -> tuple[int, ...]:
    """:func:`taken_over` as a spawn request carries it: the signals, in order, whose
    ordinary delivery a child is given back (``()``, the common case, with no lock)."""
    taken = taken_over()
    return tuple(sorted(taken)) if taken else ()


def _discard_pending(signals: list[int]) -> None:
    # Only instances this thread can see (its own and the process's) can be taken here.
    pending = signal.sigpending()
    for signo in signals:
        while signo in pending:
            if hasattr(signal, "sigtimedwait"):
                if signal.sigtimedwait([signo], 0) is None:
                    break  # another thread took it meanwhile
            else:  # macOS has no sigtimedwait; sigwait returns at once for a pending signal
                signal.sigwait([signo])
            pending = signal.sigpending()


def thread_alive(ident: int) -> bool:
    """True while the Python thread ``threading.get_ident()`` called ``ident`` runs."""
    return any(thread.ident == ident for thread in threading.enumerate())


def signal_name(signo: int) -> str:
    """``SIGUSR1``, ``SIGRTMIN+3``, or ``signal 40`` where the number has no name."""
    try:
        return signal.Signals(signo).name
    except ValueError:
        rtmin = getattr(signal, "SIGRTMIN", None)
        if rtmin is not None and signo > rtmin:
            return f"SIGRTMIN+{signo - rtmin}"
        return f"signal {signo}"
