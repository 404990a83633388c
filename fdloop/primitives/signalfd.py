"""SignalFD: signals read one by one from an fd, through the running loop's poll.

A SignalFD takes its signals over from ordinary delivery (handlers, default actions) for
as long as it is open, and gives them back when the last SignalFD for a signal closes;
:mod:`fdloop.backends.posix.sigmask` keeps those books. Each read returns a
:class:`SignalInfo`: who sent the signal, why, and what came with it, as far as the
backend can tell (the Linux signalfd tells everything; the kqueue one only the number).
"""

from __future__ import annotations

import numbers
import signal
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from signal import Signals

from .. import _aio
from .._aio.threads import LoopHome, LoopThread
from ..backends import current as current_backend
from ..backends.contract import SignalFDBackend
from ..backends.posix import sigmask
from ..errors import ClosedResourceError, SignalDeliveryWarning, UnsupportedOperation
from .resource import FDResource, naming_fd_limit

__all__ = ["SignalFD", "SignalInfo", "signals_taken_over"]

_UNCATCHABLE: dict[int, str] = {signal.SIGKILL: "SIGKILL", signal.SIGSTOP: "SIGSTOP"}
# Signals the kernel raises synchronously, in the thread whose instruction caused them (a
# bad access, a bad instruction, a division by zero, a breakpoint, a seccomp trap). Linux
# (force_sig_fault/force_sig_seccomp) and FreeBSD (trapsignal) do not queue such a signal
# when it is blocked: they unblock it, reset it to SIG_DFL and so end the process. A
# SignalFD would promise what it can never keep: refused. (Only a kill(2)-sent copy could
# be read; the rare asynchronous SIGBUS of a memory failure, BUS_MCEERR_AO, is not worth
# the false promise for every mapping fault, e.g. touching a shrunk MemFD's mmap.)
_SYNCHRONOUS: frozenset[int] = frozenset(
    getattr(signal, name) for name in
    ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS") if hasattr(signal, name)
)
# Linux C libraries keep the signals from 32 up to their SIGRTMIN (glibc: 32 and 33) for
# their threads and silently drop them from every mask: a SignalFD could never take them.
_LIBC_RESERVED = (
    range(32, signal.SIGRTMIN) if sys.platform.startswith("linux") else range(0)
)


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """One signal as a SignalFD read it.

    Names follow the kernel's ``siginfo`` (signalfd_siginfo without ``ssi_``). A field is
    None when the backend cannot know it; on Linux every field is filled, with 0 where it
    does not apply to this kind of signal.
    """

    signo: int
    """The signal number."""
    code: int | None = None
    """Why it was sent (si_code): e.g. SI_USER for kill(2), SI_QUEUE for sigqueue(3),
    SI_TKILL for tgkill/pthread_kill, CLD_EXITED and friends for SIGCHLD."""
    pid: int | None = None
    """The sending process (for SIGCHLD: the child)."""
    uid: int | None = None
    """The real user id of the sender."""
    status: int | None = None
    """SIGCHLD: the exit code, or the signal that ended or stopped the child."""
    errno: int | None = None
    """An errno value that came with the signal (the kernel leaves it 0 here)."""
    value: int | None = None
    """The int sent with sigqueue(3) or a POSIX timer (ssi_int)."""
    ptr: int | None = None
    """The same value as a pointer-sized integer (ssi_ptr)."""
    utime: float | None = None
    """SIGCHLD: user CPU seconds the child used."""
    stime: float | None = None
    """SIGCHLD: system CPU seconds the child used."""
    addr: int | None = None
    """The faulting address of a hardware-generated signal."""
    addr_lsb: int | None = None
    """SIGBUS from a memory failure: the least significant bit of the reported address."""
    fd: int | None = None
    """SIGIO/SIGPOLL: the fd that became ready."""
    band: int | None = None
    """SIGIO/SIGPOLL: the band event."""
    tid: int | None = None
    """The kernel id of the POSIX timer that fired."""
    overrun: int | None = None
    """The POSIX timer's overrun count."""
    trapno: int | None = None
    """The trap number of a hardware-generated signal, on architectures that have one."""
    syscall: int | None = None
    """SIGSYS from seccomp: the system call number."""
    call_addr: int | None = None
    """SIGSYS from seccomp: the address of the system call instruction."""
    arch: int | None = None
    """SIGSYS from seccomp: the AUDIT_ARCH_* of the system call."""

    @property
    def signal(self) -> Signals | int:
        """``signo`` as a ``signal.Signals`` member, or the plain int when it has none."""
        try:
            return Signals(self.signo)
        except ValueError:
            return self.signo

    def __repr__(self) -> str:
        # Most fields are 0 for most signals; show who sent it and only what was filled in.
        shown = [f"signo={sigmask.signal_name(self.signo)}"]
        for field in fields(self)[1:]:
            value = getattr(self, field.name)
            if value or (value is not None and field.name in ("code", "pid", "uid")):
                shown.append(f"{field.name}={value!r}")
        return f"SignalInfo({', '.join(shown)})"


class SignalFD(FDResource[SignalFDBackend]):
    """Takes over delivery of ``signals`` and lets tasks ``await read()`` them.

    While open, the signals are blocked in the calling thread (and in threads it starts
    later, which inherit the mask), and a SIG_IGN disposition is switched to SIG_DFL —
    the kernel discards an ignored signal before anyone could read it. The last SignalFD
    for a signal to close restores the mask bit and the disposition, discarding
    instances still pending (as unread data dies with a closed socket). SIGCHLD is never
    set back to SIG_IGN: that would let the kernel reap children behind fdloop's back.

    Caveat: the kernel hands a process-wide signal to any thread that does not block
    it. A thread that was already running when the SignalFD was created keeps its own
    mask, may take the signal, and then runs its ordinary disposition (for most signals
    the default action terminates the whole process) instead of reaching the SignalFD.
    Create SignalFDs before starting threads; a SignalDeliveryWarning says when some
    other thread could take one of the signals.

    Threads: a thread's mask can only be changed by that thread, so the close belongs to
    the thread that created the SignalFD. ``close()``/``aclose()`` from another thread
    run there when a loop (or trio run) runs there, and return once done. Where that
    thread runs no loop, the fd is closed all the same and a SignalDeliveryWarning says
    which signals stay blocked there. ``read_nowait()`` and ``closed`` are safe from any
    thread; ``read()`` belongs to the loop that awaits it.

    Under trio's guest mode (and any loop that polls from a helper thread) the poll runs
    in that helper thread: it must block the signals too, and its poll only sees
    signals sent to the whole process, not ones aimed at another thread (pthread_kill).

    A handler for a taken-over signal (``signal.signal``, ``loop.add_signal_handler``)
    does not run while the SignalFD is open; handlers for other signals are untouched.

    How many reads a burst of signals gives depends on the backend (``capabilities()``):

    * Linux (signalfd): a standard signal coalesces while pending (three SIGUSR1 sent
      before a read: one read); real-time signals queue (three sent: three reads).
    * kqueue (FreeBSD, macOS): EVFILT_SIGNAL counts every send, so each is one read,
      standard or real-time (three SIGUSR1: three reads). On macOS only signals sent to
      the whole process reach a SignalFD (kill(2), killpg(2), a child's SIGCHLD, the
      SIGPIPE of a write): xnu records none aimed at one thread, so pthread_kill(),
      raise() and faults never arrive there.

    Children: a program started by ``subprocess``, ``os.fork``/``os.posix_spawn`` or
    asyncio while a SignalFD is open inherits the blocked mask (exec keeps it, and
    ``Popen(restore_signals=True)`` only resets SIGPIPE/SIGXFSZ dispositions), so for
    example ``Popen.terminate()`` does nothing to it while SIGTERM is held.
    ``fdloop.spawn()``/``fdloop.run()`` give their children ordinary delivery back; for
    other spawners, run the program through :meth:`child_argv`.

    Raises TypeError or ValueError naming ``signals`` for an empty set, a non-int, a bool,
    a number outside 1..NSIG-1, SIGKILL or SIGSTOP (the kernel cannot give them to
    anyone), the synchronous fault signals SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and
    SIGSYS (the kernel unblocks a real fault and ends the process instead of queueing
    it, so only a kill(2)-sent copy could ever be read) and the signals glibc reserves for
    itself (32, 33); nothing is changed then.
    Raises OSError (EMFILE, naming RLIMIT_NOFILE and ``fdloop.raise_fd_limit()``) when
    this process has no fd left; the mask and dispositions are then as they were.
    """

    def __init__(self, signals: Iterable[int]) -> None:
        wanted = _validate_signals(signals)
        names = ", ".join(sigmask.signal_name(signo) for signo in sorted(wanted))
        with naming_fd_limit(f"SignalFD([{names}])"):
            super().__init__(current_backend().signalfd(wanted))
            self._home = LoopHome()  # (where a close from elsewhere is run)
            # (the thread check lists /proc/self/task, which takes an fd too)
            self._warn_about_exposed_threads()

    @classmethod
    def from_fd(cls, fd: int) -> SignalFD:
        """Adopt an inherited or received signalfd, taking over the signals it watches.

        Its flags are left as they were (O_NONBLOCK is shared with the sender); reads
        never block all the same.

        Raises NotThisKindOfFD if ``fd`` is open but not a signalfd, OSError if it is not
        open (or EMFILE, out of fds), UnsupportedOperation where the backend cannot adopt
        one. When it raises, ``fd`` is still open and the signals are not taken over.
        """
        self = cls.__new__(cls)
        with naming_fd_limit(f"SignalFD.from_fd({fd!r})"):
            handle = current_backend().signalfd_from_fd(fd)
            FDResource.__init__(self, handle)
            self._home = LoopHome()  # (where a close from elsewhere is run)
            # An adopted fd shares its flags with the sender: the loop polls the backend's
            # proxy for it instead (uvloop would make the fd itself non-blocking).
            if (poll_fileno := getattr(handle, "poll_fileno", None)) is not None:
                self._waiter = _aio.ReadableWaiter(poll_fileno())
            self._warn_about_exposed_threads(adopted=True)
        return self

    @property
    def signals(self) -> frozenset[int]:
        """The signals taken over, as ``signal.Signals`` members where they have one."""
        return frozenset(_as_signal(signo) for signo in self._handle.signals)

    async def read(self) -> SignalInfo:
        """Wait until one of the signals is pending, then take it.

        A cancelled read takes nothing. Raises ClosedResourceError if the SignalFD is
        closed before or while waiting.
        """
        while True:
            try:
                return SignalInfo(**self._handle.read())
            except BlockingIOError:
                await self._wait_readable()

    def read_nowait(self) -> SignalInfo:
        """Take one pending signal now; BlockingIOError if none is pending. Safe from any
        thread (a signal aimed at one thread is read only by that thread)."""
        with self._in_use():
            self._check_open()
            fields = self._handle.read()
        return SignalInfo(**fields)

    def detach(self) -> int:
        """Return the fd unclosed and give the signals back, as ``close()`` does.

        Whoever receives the fd has to take the signals over again (``from_fd`` does),
        or they are delivered the ordinary way instead of to the fd.
        """
        return super().detach()

    def _elsewhere(self) -> LoopThread | None:
        # Besides a loop that polls the fd: the loop of the thread that made the SignalFD,
        # the only thread that can unblock the signals again.
        return super()._elsewhere() or self._home.elsewhere()

    @staticmethod
    def child_argv(argv: Sequence[str]) -> list[str]:
        """``argv`` to run with the signals SignalFDs hold given back to the program.

        For spawners other than ``fdloop.spawn`` (``subprocess.Popen``, asyncio's
        ``create_subprocess_exec``, ``os.posix_spawn``), whose children inherit those
        signals blocked: ``Popen(SignalFD.child_argv(["sleep", "30"]))`` runs ``sleep``
        through a short-lived Python (``sys.executable -I -S``) that unblocks the signals
        :func:`signals_taken_over` names right now, sets SIGPIPE and SIGXFSZ back to
        SIG_DFL (which that Python ignores at start-up, as subprocess's
        ``restore_signals`` would) and execs the program by PATH lookup (same pid, so
        ``terminate()`` reaches it; a signal that arrives first ends the trampoline the
        same way). No ``preexec_fn``, so it is safe with threads; the cost is one small
        interpreter start (about 10 ms). Returns ``argv`` unchanged (as a list) while no
        signal is taken over. A program that cannot be run exits with status 127 and
        a message on stderr, as a shell's would. Raises TypeError for a ``str`` or an
        empty ``argv``, UnsupportedOperation if ``sys.executable`` is unknown.
        """
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
            raise TypeError(
                f"argv must be a sequence of arguments, not {type(argv).__name__}"
            )
        if not argv:
            raise TypeError("argv must not be empty")
        taken = signals_taken_over()
        if not taken:
            return list(argv)
        if not sys.executable:
            raise UnsupportedOperation(
                "SignalFD.child_argv needs sys.executable to run its trampoline, and this "
                "interpreter does not know its own path"
            )
        numbers_ = ",".join(str(int(signo)) for signo in sorted(taken))
        return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, numbers_, *argv]

    def __aiter__(self) -> SignalFD:
        return self

    async def __anext__(self) -> SignalInfo:
        """Each signal ``read()`` returns; iteration ends when the SignalFD is closed."""
        try:
            return await self.read()
        except ClosedResourceError:
            raise StopAsyncIteration from None

    def _warn_about_exposed_threads(self, *, adopted: bool = False) -> None:
        try:
            threads = self._handle.exposed_threads()
            if not threads:
                return
            names = ", ".join(sigmask.signal_name(s) for s in sorted(self._handle.signals))
            ids = ", ".join(map(str, threads))
            warnings.warn(
                f"{names}: thread(s) {ids} do not block these signals (a thread that was "
                "already running keeps its own mask); the kernel may hand a signal to one "
                "of them, where it runs its ordinary disposition instead of reaching the "
                "SignalFD",
                SignalDeliveryWarning,
                stacklevel=3,
            )
        except BaseException:
            # The threads could not be listed (EMFILE), or the warning was turned into an
            # error: nobody gets this object, so the signals go back now, and the fd too:
            # to its owner if from_fd was adopting it, else closed.
            if adopted:
                self.detach()
            else:
                self.close()
            raise

    def _state(self) -> str:
        return " ".join(sigmask.signal_name(s) for s in sorted(self._handle.signals))


def signals_taken_over() -> frozenset[int]:
    """The signals SignalFDs have blocked or un-ignored in this process right now.

    A child spawned meanwhile inherits that blocked mask; a spawner unblocks these (and
    sets them to SIG_DFL) in the child so that it gets ordinary signal delivery.
    """
    return sigmask.taken_over()


# Run by SignalFD.child_argv in a fresh ``python -I -S``: argv[1] holds the signal numbers.
_TRAMPOLINE = """\
import os, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, [int(n) for n in sys.argv[1].split(",")])
for name in ("SIGPIPE", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as error:
    sys.stderr.write(f"{sys.argv[2]}: {error.strerror}\\n")
    sys.stderr.flush()
    os._exit(127)
"""


def _validate_signals(signals: object) -> frozenset[int]:
    if isinstance(signals, (str, bytes)) or not isinstance(signals, Iterable):
        raise TypeError(
            f"signals must be an iterable of signal numbers, not {type(signals).__name__}"
        )
    wanted = set()
    for item in signals:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"signals must hold ints, not {type(item).__name__} ({item!r})")
        signo = int(item)
        if not 1 <= signo < signal.NSIG:
            raise ValueError(f"signals: {signo} is not a signal number (1..{signal.NSIG - 1})")
        if signo in _UNCATCHABLE:
            raise ValueError(
                f"signals: {_UNCATCHABLE[signo]} can never be blocked, caught or read; "
                "the kernel always acts on it itself"
            )
        if signo in _SYNCHRONOUS:
            name = sigmask.signal_name(signo)
            raise ValueError(
                f"signals: {name} is raised synchronously by a fault in the thread that "
                f"caused it, and the kernel then unblocks it and ends the process instead "
                f"of queueing it, so a SignalFD could only ever read a {name} sent with "
                "kill(2); handle faults with a signal handler or faulthandler instead"
            )
        if signo in _LIBC_RESERVED:
            raise ValueError(f"signals: {signo} is reserved by the C library for its threads")
        wanted.add(signo)
    if not wanted:
        raise ValueError("signals must not be empty")
    return frozenset(wanted)


def _as_signal(signo: int) -> int:
    try:
        return Signals(signo)
    except ValueError:
        return signo
