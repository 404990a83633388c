"""signalfd(2): signals read from an fd instead of delivered to a handler.

Facts from the man page this code relies on: the fd reports a signal only while it is
pending for the thread that reads (or polls), which in practice means blocked in every
thread; each read returns whole 128-byte ``struct signalfd_siginfo`` records and fails
with EAGAIN on a non-blocking fd when nothing is pending; SIGKILL and SIGSTOP are
silently left out of the mask; the mask an fd watches is printed as ``sigmask:`` in
/proc/self/fdinfo. glibc's ``signalfd()`` takes its own 128-byte ``sigset_t`` (one bit
per signal, signal n at bit n-1 of an array of unsigned longs) and passes the kernel the
8 bytes it uses. The stdlib has no signalfd call, hence ctypes.

Blocking the signals and adjusting dispositions is shared with the kqueue backend, in
:mod:`fdloop.backends.posix.sigmask`.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading

from ..contract import SigInfoFields
from ..posix import nowait, sigmask
from ..posix.refusal import refused
from .pollproxy import ProxiedFD
from .procfs import fdinfo, require_kind

# Values of ssi_code (si_code) for signals sent by a process, from <asm-generic/siginfo.h>.
SI_USER = 0
SI_KERNEL = 0x80
SI_QUEUE = -1
SI_TIMER = -2
SI_MESGQ = -3
SI_ASYNCIO = -4
SI_SIGIO = -5
SI_TKILL = -6

# struct signalfd_siginfo, field by field (native byte order, no padding needed):
# signo errno code pid uid fd tid band overrun trapno status int | ptr utime stime addr |
# addr_lsb __pad2 syscall | call_addr | arch | 28 bytes of padding.
_SIGINFO = struct.Struct("=IiiIIiIIIIii QQQQ HHi Q I 28x")
assert _SIGINFO.size == 128

_SFD_CLOEXEC = os.O_CLOEXEC
_SFD_NONBLOCK = os.O_NONBLOCK
_ULONG_BITS = 8 * ctypes.sizeof(ctypes.c_ulong)
_SIGSET_T = ctypes.c_ulong * (1024 // _ULONG_BITS)  # glibc's sigset_t: 1024 bits

_libc = ctypes.CDLL(None, use_errno=True)
_signalfd = _libc.signalfd
_signalfd.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_signalfd.restype = ctypes.c_int

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # ssi_utime/ssi_stime count these


def _sigset(signals: frozenset[int]) -> ctypes.Array[ctypes.c_ulong]:
    sigset = _SIGSET_T()
    for signo in signals:
        word, bit = divmod(signo - 1, _ULONG_BITS)
        sigset[word] |= 1 << bit
    return sigset


def _signals_in_mask(hexmask: str) -> frozenset[int]:
    """The signals in a /proc mask such as ``0000000000000a00`` (SIGUSR1 and SIGUSR2)."""
    bits = int(hexmask, 16)
    return frozenset(n + 1 for n in range(bits.bit_length()) if bits >> n & 1)


class LinuxSignalFD(ProxiedFD):
    __slots__ = ("_takeover", "signals")

    def __init__(self, fd: int, takeover: sigmask.Takeover, *, shared: bool = False) -> None:
        self._takeover = takeover
        self.signals = takeover.signals
        # Adopted (shared): the description (and its O_NONBLOCK) is the sender's, and
        # the loop polls a proxy; see .pollproxy.
        super().__init__(fd, shared=shared)

    @classmethod
    def create(cls, signals: frozenset[int]) -> LinuxSignalFD:
        """A non-blocking, close-on-exec signalfd for ``signals`` (already validated)."""
        fd = _signalfd(-1, ctypes.byref(_sigset(signals)), _SFD_NONBLOCK | _SFD_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            error = OSError(errno, f"signalfd: {os.strerror(errno)}")
            raise refused(error, "signalfd4")
        try:
            takeover = sigmask.take(signals)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, takeover)

    @classmethod
    def adopt(cls, fd: int) -> LinuxSignalFD:
        """Own an inherited or received signalfd and take over the signals it watches;
        its flags (O_NONBLOCK, shared with the sender) are left alone."""
        require_kind(fd, "anon_inode:[signalfd]")
        signals = _signals_in_mask(fdinfo(fd).get("sigmask", "0"))
        takeover = sigmask.take(signals)
        try:
            return cls(fd, takeover, shared=True)
        except BaseException:
            takeover.release()  # no fd for the proxy: the signals go back, fd stays open
            raise

    def read(self) -> SigInfoFields:
        if self._proxy is not None:
            data = nowait.read(self.fileno(), _SIGINFO.size, "signalfd")
        else:
            data = os.read(self.fileno(), _SIGINFO.size)
        if len(data) != _SIGINFO.size:  # the kernel only hands out whole records
            raise OSError(f"signalfd returned {len(data)} bytes, not {_SIGINFO.size}")
        (signo, errno, code, pid, uid, fd, tid, band, overrun, trapno, status, value,
         ptr, utime, stime, addr, addr_lsb, _pad, syscall, call_addr, arch) = (
            _SIGINFO.unpack(data)
        )
        return SigInfoFields(
            signo=signo, errno=errno, code=code, pid=pid, uid=uid, fd=fd, tid=tid,
            band=band, overrun=overrun, trapno=trapno, status=status, value=value, ptr=ptr,
            utime=utime / _CLOCK_TICKS, stime=stime / _CLOCK_TICKS, addr=addr,
            addr_lsb=addr_lsb, syscall=syscall, call_addr=call_addr, arch=arch,
        )

    def exposed_threads(self) -> tuple[int, ...]:
        me = threading.get_native_id()
        wanted = self.signals
        exposed = []
        for name in os.listdir("/proc/self/task"):
            tid = int(name)
            if tid == me:
                continue
            try:
                with open(f"/proc/self/task/{name}/status") as status:
                    blocked = next(
                        line.split(":", 1)[1] for line in status if line.startswith("SigBlk:")
                    )
            except (OSError, StopIteration):
                continue  # the thread ended while we looked
            if not wanted <= _signals_in_mask(blocked.strip()):
                exposed.append(tid)
        return tuple(sorted(exposed))

    def close(self) -> None:
        try:
            self._takeover.release()
        finally:
            super().close()

    def detach(self) -> int:
        self.fileno()  # ClosedResourceError before anything is given back
        self._takeover.release()
        return super().detach()
