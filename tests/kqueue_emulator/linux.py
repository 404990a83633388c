"""The Linux calls the kqueue emulator (tests/kqueue_emulator/) is built on.

timerfd and signalfd through ctypes (the stdlib has timerfd only from 3.13 and signalfd
never), plus the exit status of a process behind a pidfd without reaping it. Test code
only: fdloop itself never imports this.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import struct
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_NS = 1_000_000_000
TFD_TIMER_ABSTIME = 1
_SIGSET_BYTES = 128  # glibc's sigset_t
_SIGINFO_BYTES = 128  # struct signalfd_siginfo


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def readable(fd: int) -> bool:
    """True if ``fd`` polls readable right now."""
    return bool(poll_events(fd) & select.POLLIN)


def poll_events(fd: int) -> int:
    """The poll(2) revents of ``fd`` right now (POLLIN, POLLHUP...)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ready = poller.poll(0)
    return ready[0][1] if ready else 0


def timerfd_create(clock: int) -> int:
    return _check(_libc.timerfd_create(clock, os.O_NONBLOCK | os.O_CLOEXEC))


def timerfd_settime(fd: int, value_ns: int, interval_ns: int, *, absolute: bool = False) -> None:
    spec = _Itimerspec(
        _Timespec(*divmod(interval_ns, _NS)), _Timespec(*divmod(value_ns, _NS))
    )
    flags = TFD_TIMER_ABSTIME if absolute else 0
    _check(_libc.timerfd_settime(fd, flags, ctypes.byref(spec), None))


def timerfd_read(fd: int) -> int:
    """Expirations since the last read; 0 when none."""
    try:
        return int.from_bytes(os.read(fd, 8), "little")
    except BlockingIOError:
        return 0


def signalfd(fd: int, signals: object) -> int:
    """Create (fd=-1) or re-aim a non-blocking signalfd at ``signals``."""
    mask = ctypes.create_string_buffer(_SIGSET_BYTES)
    _check(_libc.sigemptyset(mask))
    for signo in signals:  # type: ignore[attr-defined]
        _check(_libc.sigaddset(mask, signo))
    return _check(_libc.signalfd(fd, mask, os.O_NONBLOCK | os.O_CLOEXEC))


def signalfd_read(fd: int) -> tuple[int, int] | None:
    """The number and code (ssi_signo, ssi_code) of the next pending signal, or None."""
    try:
        record = os.read(fd, _SIGINFO_BYTES)
    except BlockingIOError:
        return None
    signo, _errno, code = struct.unpack_from("Iii", record)
    return int(signo), int(code)


def pending_signals(thread: int | None) -> set[int]:
    """The signals pending for the whole process (``thread`` None: /proc ``ShdPnd``) or
    for one of its threads (its native id: that task's ``SigPnd``)."""
    path, key = ("/proc/self/status", "ShdPnd:") if thread is None else (
        f"/proc/self/task/{thread}/status", "SigPnd:")
    try:
        with open(path) as status:
            line = next(x for x in status if x.startswith(key))
    except (OSError, StopIteration):
        return set()  # the thread has ended
    bits = int(line.split(":", 1)[1], 16)
    return {n + 1 for n in range(bits.bit_length()) if bits >> n & 1}


@dataclass(frozen=True)
class ExitStatus:
    wait_status: int
    """As waitpid(2) would report it (0 when unknown)."""
    is_child: bool


_PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, 64-byte struct pidfd_info)
_PIDFD_INFO_EXIT = 8
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3


def exit_status(pidfd: int, pid: int) -> ExitStatus:
    """The wait status of the exited process behind ``pidfd``, leaving a child unreaped."""
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:
        info = None
    else:
        if info is not None:
            if info.si_code == _CLD_EXITED:
                return ExitStatus((info.si_status & 0xFF) << 8, True)
            core = 0x80 if info.si_code == _CLD_DUMPED else 0
            return ExitStatus(info.si_status | core, True)
    for _ in range(100):  # a zombie shows its status in /proc until its parent reaps it
        status = _zombie_exit_code(pid)
        if status is not None:
            return ExitStatus(status, False)
        reaped = _reaped_exit_code(pidfd)
        if reaped is not None:
            return ExitStatus(reaped, False)
    return ExitStatus(0, False)


def _zombie_exit_code(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state); exit_code is field 52.
    return int(fields[49]) if fields[0] == "Z" and len(fields) > 49 else None


def _reaped_exit_code(pidfd: int) -> int | None:
    buffer = bytearray(64)
    struct.pack_into("Q", buffer, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buffer)
    except OSError as error:
        if error.errno not in (errno.ESRCH, errno.EINVAL, errno.ENOTTY, errno.EREMOTE):
            raise
        return None
    mask = struct.unpack_from("Q", buffer, 0)[0]
    if mask & _PIDFD_INFO_EXIT:
        return int(struct.unpack_from("i", buffer, 60)[0])
    return None
