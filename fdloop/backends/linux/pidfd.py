"""pidfd: a process handle that names one process for as long as the fd is open.

Kernel facts this module relies on (pidfd_open(2), pidfd_send_signal(2), waitid(2),
``include/uapi/linux/pidfd.h``; each re-checked on 6.18 by research/process_probe.py):

* A pidfd is readable (POLLIN) once the process has exited and readable+POLLHUP once it
  has been reaped. It stays so: level-triggered, so whoever polls it must stop once the
  exit is known.
* ``waitid(P_PIDFD, fd, WEXITED|WNOHANG)`` reaps our own child through the fd (never a
  recycled pid); it says ECHILD for a process that is not our unreaped child. The raw
  syscall takes a fifth ``struct rusage *`` argument that glibc's wrapper hides; we call
  the raw syscall for it (through the compiled extension where it is built, else through
  ctypes) and fall back to ``os.waitid`` (no rusage) elsewhere.
* ``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT`` (Linux 6.15+) gives the wait status after
  the process has been reaped, by anyone: that is how a status stolen by a foreign
  reaper, or the status of a non-child, is recovered. The 64-byte VER0 struct already
  holds ``exit_code``; the buffer is zeroed and the returned mask checked, as the header
  asks.
* ``pidfd_send_signal`` succeeds on a zombie (the signal goes nowhere) and fails with
  ESRCH after reap, so signalling through a pidfd can never hit a recycled pid.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import select
import signal
import struct
import threading
from collections.abc import Callable

from ...errors import ClosedResourceError
from ..contract import Capability, OwnedFD, RawExit
from ..posix.pipe import close_ends
from ..posix.refusal import refused
from ..request import SpawnRequest
from .procfs import require_kind
from .spawn import _clone_spawn as _extension
from .spawn import spawn_child, spawns_with_pidfd

_P_PIDFD = 3
_WEXITED = 4
_WNOHANG = 1
_WNOWAIT = 0x01000000
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3
_PIDFD_SIGNAL_PROCESS_GROUP = 4

_PIDFD_INFO_EXIT = 8
_PIDFD_INFO_SIZE = 64  # VER0; exit_code is at offset 60
_PIDFD_GET_INFO = 0xC000FF0B | (_PIDFD_INFO_SIZE << 16)  # _IOWR(0xFF, 11, 64 bytes)

_SYS_WAITID = {"x86_64": 247, "aarch64": 95}.get(platform.machine())
_SIGINFO_SIZE = 128
_RUSAGE_SIZE = 144

_pidfd_open = os.pidfd_open  # a module global so tests can wrap it to inject a reaper
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long] * 6


_buffers = threading.local()  # siginfo + rusage, reused per thread (ctypes drops the GIL)


def _raw_waitid(fd: int, options: int) -> RawExit | None:
    """waitid(P_PIDFD) with rusage; None while the child runs. ECHILD → ChildProcessError."""
    # Kept lean on purpose: it runs right after a child exits, when every extra Python
    # step costs several times its usual price (measured: the wrapping once cost twice
    # the syscall). One buffer holds siginfo then rusage, read by one unpack.
    buffers = _buffers.__dict__.get("buffers")
    if buffers is None:
        buffer = ctypes.create_string_buffer(_SIGINFO_SIZE + _RUSAGE_SIZE)
        address = ctypes.addressof(buffer)
        buffers = _buffers.buffers = (buffer, address, address + _SIGINFO_SIZE)
    buffer, siginfo_address, rusage_address = buffers
    # No zeroing needed: since Linux 4.13 (P_PIDFD needs 5.4) waitid writes every siginfo
    # field it reports, si_pid = 0 included when WNOHANG found nothing.
    while _syscall(_SYS_WAITID or 0, _P_PIDFD, fd, siginfo_address, options, rusage_address):
        err = ctypes.get_errno()
        if err != errno.EINTR:  # ctypes does not retry EINTR for us (PEP 475 does not apply)
            raise OSError(err, os.strerror(err))
    code, pid, status, utime_s, utime_us, stime_s, stime_us, maxrss = _unpack_waitid(buffer)
    if pid == 0:
        return None  # (the rusage half was not written)
    if code == _CLD_EXITED:
        wait_status = (status & 0xFF) << 8
    else:
        wait_status = (status & 0x7F) | (0x80 if code == _CLD_DUMPED else 0)
    return _new_tuple(RawExit, (
        pid, wait_status, utime_s + utime_us / 1e6, stime_s + stime_us / 1e6,
        maxrss * 1024,  # Linux reports ru_maxrss in KiB
    ))


# siginfo: si_code at 8, si_pid at 16, si_status at 24; then struct rusage: ru_utime and
# ru_stime (timevals), ru_maxrss.
_unpack_waitid = struct.Struct(f"=8xi4xi4xi{_SIGINFO_SIZE - 28}x5q").unpack_from
_new_tuple = tuple.__new__  # RawExit without its Python-level __new__


def _stdlib_waitid(fd: int, options: int) -> RawExit | None:
    result = os.waitid(_P_PIDFD, fd, options)
    if result is None:
        return None
    return RawExit(result.si_pid, _wait_status(result.si_code, result.si_status))


def reaps_natively() -> bool:
    """True when children are reaped through the compiled extension (else ctypes)."""
    return _native_reap is not None


def _native_waitid(fd: int, options: int) -> RawExit | None:
    assert _native_reap is not None
    raw = _native_reap(fd, options)
    return None if raw is None else _new_tuple(RawExit, raw)


# The compiled fast path (the same raw waitid, a fraction of ctypes' cost) where built.
_native_reap: Callable[[int, int], tuple[int, int, float, float, int] | None] | None = (
    getattr(_extension, "reap", None))
_python_waitid = _raw_waitid if _SYS_WAITID is not None else _stdlib_waitid
_waitid = _native_waitid if _native_reap is not None else _python_waitid


def use_python_waitid() -> None:
    """Reap through ctypes (or os.waitid) from now on, not the extension."""
    global _native_reap, _waitid
    _native_reap = None
    _waitid = _python_waitid


def reap_pidfd(fd: int) -> RawExit | None:
    """Reap the exited child behind pidfd ``fd`` (None while it runs); ECHILD raises
    ChildProcessError. The ready set's pure-Python collection calls this."""
    return _waitid(fd, _WEXITED | _WNOHANG)


def _wait_status(code: int, status: int) -> int:
    """The classic wait(2) status word for a CLD_* code and si_status."""
    if code == _CLD_EXITED:
        return (status & 0xFF) << 8
    return (status & 0x7F) | (0x80 if code == _CLD_DUMPED else 0)


class LinuxPidFD(OwnedFD):
    """One pidfd. ``is_child``: we spawned it and are the one who reaps it."""

    __slots__ = ("_hup_epoll", "is_child", "pid")

    def __init__(self, fd: int, pid: int, is_child: bool) -> None:
        self._fd = fd  # (OwnedFD.__init__, written out: one of these per child)
        self.pid = pid
        self.is_child = is_child
        self._hup_epoll: select.epoll | None = None

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def spawn(
        cls, request: SpawnRequest
    ) -> tuple[LinuxPidFD, tuple[int | None, int | None, int | None]]:
        """Start the child and return its pidfd: the one clone(CLONE_PIDFD) made, or
        (without the compiled extension) one opened after posix_spawn (:meth:`open_child`).

        Returns the pidfd and the parent's ends of PIPE stdio. If the pidfd cannot be
        had, the pipe ends are closed too.
        """
        pid, pidfd, parent_ends = spawn_child(request)
        if pidfd is not None:  # made by the clone itself: it names this child, always
            return cls(pidfd, pid, True), parent_ends
        try:
            return cls.open_child(pid), parent_ends
        except BaseException:
            close_ends(parent_ends)
            raise

    @classmethod
    def open_child(cls, pid: int) -> LinuxPidFD:
        """The pidfd of ``pid``, a child we just started and have not reaped.

        ``pidfd_open`` by pid is safe only while the pid is our unreaped child; it is
        proven afterwards with ``waitid(WNOWAIT)``, which says ECHILD for anything else
        (someone reaped it, and the number may already name a stranger): the fd is then
        closed and ChildProcessError raised. If ``pidfd_open`` itself fails (EMFILE), the
        child is killed and reaped through its pid — still safe, since nobody else has
        reaped it — and the error says what to raise.
        """
        try:
            fd = _pidfd_open(pid, 0)  # pidfds are always close-on-exec
        except ProcessLookupError:
            raise ChildProcessError(
                errno.ECHILD,
                f"child {pid} ran, exited and was reaped by someone else before its pidfd "
                "was opened (SIGCHLD set to SIG_IGN, a SIGCHLD handler or a thread calling "
                "wait()?); its exit status is lost",
            ) from None
        except OSError as exc:
            _kill_and_reap_pid(pid)
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise OSError(
                    exc.errno,
                    # spawn() names the limit and the cure in front of this.
                    f"could not open a pidfd for the new child {pid}; the child was "
                    "killed and reaped",
                ) from exc
            if exc.errno in (errno.ENOSYS, errno.EPERM):
                raise _pidfd_refused(exc, f"for the new child {pid}; the child was killed "
                                     "and reaped") from exc
            raise
        try:
            os.waitid(_P_PIDFD, fd, _WEXITED | _WNOHANG | _WNOWAIT)
        except ChildProcessError:
            os.close(fd)
            raise ChildProcessError(
                errno.ECHILD,
                f"child {pid} was reaped by someone else before fdloop could check its "
                "pidfd; refusing a pidfd that may name another process",
            ) from None
        return cls(fd, pid, True)

    @classmethod
    def open_pid(cls, pid: int) -> LinuxPidFD:
        """Watch-only pidfd of any process; ProcessLookupError if it does not exist,
        ValueError if ``pid`` is a thread id other than its process's."""
        try:
            return cls(os.pidfd_open(pid, 0), pid, False)
        except FileNotFoundError:  # ENOENT: a thread that does not lead its group
            process = _thread_group_of(pid)
            raise ValueError(
                f"pid {pid} is a thread of process {process}, not a process: "
                f"open {process} instead" if process else f"pid {pid} is a thread, not a process"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPERM):
                raise _pidfd_refused(exc, f"for pid {pid}") from exc
            raise

    @classmethod
    def adopt(cls, fd: int) -> LinuxPidFD:
        """Own a received or inherited pidfd (watch-only). NotThisKindOfFD otherwise."""
        require_kind(fd, "anon_inode:[pidfd]", "pidfd:")
        pid = -1
        with open(f"/proc/self/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("Pid:"):
                    pid = int(line.split()[1])
        return cls(fd, pid, False)

    def transfer(self) -> LinuxPidFD:
        """A new object owning this fd; this one becomes closed without closing it."""
        return LinuxPidFD(self.detach(), self.pid, self.is_child)

    def close(self) -> None:
        if self._hup_epoll is not None:
            self._hup_epoll.close()
            self._hup_epoll = None
        fd, self._fd = self._fd, -1  # (OwnedFD.close, written out: once per child)
        if fd >= 0:
            os.close(fd)

    # -- state ---------------------------------------------------------------------------

    def try_reap(self) -> RawExit | None:
        """Reap our child if it has exited; None while it runs. ECHILD → ChildProcessError."""
        fd = self._fd  # (fileno(), written out: this runs once per child)
        if fd < 0:
            raise ClosedResourceError(f"{type(self).__name__} is closed")
        return _waitid(fd, _WEXITED | _WNOHANG)

    def has_exited(self) -> bool:
        """True once the process has exited (zombie or reaped); never blocks."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def exit_info(self) -> int | None:
        """The wait status from PIDFD_INFO_EXIT, or None: not yet reaped, or a kernel
        before 6.15 (no exit info) or before 6.13 (no PIDFD_GET_INFO)."""
        buffer = bytearray(_PIDFD_INFO_SIZE)
        struct.pack_into("=Q", buffer, 0, _PIDFD_INFO_EXIT)
        try:
            fcntl.ioctl(self.fileno(), _PIDFD_GET_INFO, buffer)
        except OSError as exc:
            if exc.errno in (errno.ESRCH, errno.ENOTTY, errno.EINVAL, errno.EREMOTE):
                return None
            raise
        (mask,) = struct.unpack_from("=Q", buffer, 0)
        if not mask & _PIDFD_INFO_EXIT:
            return None
        (status,) = struct.unpack_from("=i", buffer, 60)
        return int(status)

    def hup_fileno(self) -> int:
        """An fd that becomes readable only when the process is reaped.

        A private epoll watching the pidfd for no events at all still reports EPOLLHUP,
        which a pidfd raises at reap; unlike the pidfd itself it is not readable during
        the zombie window, so a loop polling it does not spin while a non-child waits
        for its real parent.
        """
        if self._hup_epoll is None:
            self._hup_epoll = select.epoll()
            self._hup_epoll.register(self.fileno(), 0)
        return self._hup_epoll.fileno()

    # -- signals -------------------------------------------------------------------------

    def send_signal(self, signo: int, *, group: bool = False) -> None:
        """Deliver ``signo`` (to the process group when ``group``); ESRCH is ignored.

        Where the kernel cannot do it through the fd (a seccomp filter refusing
        ``pidfd_send_signal`` with ENOSYS or EPERM, as older container profiles do; a
        group before Linux 6.9, EINVAL), our own child is signalled by pid instead: see
        :meth:`_send_by_pid`. A process that is not our child can only be signalled
        through its pidfd: the refusal is raised, naming the call.
        """
        fd = self.fileno()
        try:
            signal.pidfd_send_signal(fd, signo, None, _PIDFD_SIGNAL_PROCESS_GROUP if group else 0)
        except ProcessLookupError:
            return
        except OSError as exc:
            refusal = exc.errno in (errno.ENOSYS, errno.EPERM)
            if self.is_child and (refusal or (group and exc.errno == errno.EINVAL)):
                self._send_by_pid(signo, group=group)
                return
            if not refusal:
                raise
            raise refused(
                exc, "pidfd_send_signal", "a seccomp filter?",
                f": process {self.pid} is not our child, so it cannot be signalled safely "
                "by pid",
            ) from exc

    def _send_by_pid(self, signo: int, *, group: bool) -> None:
        # kill()/killpg() by number is safe only while the pid is our unreaped child: the
        # kernel cannot give the number (or the group id it leads) to another process
        # before the reap. waitid(WNOWAIT) proves that just before the call, reaping
        # nothing; ECHILD means someone else reaped it (the number may be a stranger's
        # now): the process is gone, and signalling a gone process is a no-op.
        try:
            os.waitid(_P_PIDFD, self.fileno(), _WEXITED | _WNOHANG | _WNOWAIT)
        except ChildProcessError:
            return
        try:
            if group:
                os.killpg(self.pid, signo)
            else:
                os.kill(self.pid, signo)
        except ProcessLookupError:
            if group:  # the group is gone but its leader's zombie is not: as pidfd would
                self._send_by_pid(signo, group=False)


def _pidfd_refused(exc: OSError, which: str) -> OSError:
    # pidfd_open has no permission check of its own: EPERM, like ENOSYS, is a seccomp
    # filter's (or a kernel before 5.3).
    return refused(
        exc, "pidfd_open", "a seccomp filter, or a kernel before 5.3?",
        f" {which}: fdloop needs a pidfd for every process it handles",
    )


def _thread_group_of(tid: int) -> int | None:
    try:
        with open(f"/proc/{tid}/status") as status:
            for line in status:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _kill_and_reap_pid(pid: int) -> None:
    # Only for a child that nobody but us can have reaped yet (see open_child).
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def process_capability(backend: str) -> Capability:
    """What ProcessFD can do on this kernel."""
    missing = [
        "kernel-enforced kill of children when this process is killed (Linux 7.1 "
        "CLONE_PIDFD_AUTOKILL); opt in per child with die_with_parent=True (PR_SET_PDEATHSIG)"
    ]
    if not _kernel_at_least(6, 15):
        missing.insert(
            0, "exit status after a foreign reaper, and of non-children (PIDFD_INFO_EXIT, 6.15)"
        )
    if _SYS_WAITID is None:
        missing.append(f"rusage in ExitStatus (raw waitid not wired for {platform.machine()})")
    if not spawns_with_pidfd():
        missing.append(
            "a pidfd made by the spawn itself (the _clone_spawn extension was not built): "
            "a child reaped by someone else before pidfd_open is refused, but under "
            "SIGCHLD=SIG_IGN and pid pressure its pid may already name another child of ours"
        )
    return Capability("ProcessFD", backend, True, "pidfd", tuple(missing))
