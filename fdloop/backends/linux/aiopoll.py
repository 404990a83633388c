"""One-shot poll requests through Linux AIO (``IOCB_CMD_POLL``, 4.18), the fallback of
:mod:`.uring` where io_uring is refused.

Each request is an iocb with ``IOCB_CMD_POLL`` and the poll mask in ``aio_buf``;
``IOCB_FLAG_RESFD`` makes its completion add 1 to an eventfd, which is the fd the event
loop watches. Like io_uring's, the request is completed by the poll that saw the event,
so files that reset their event when polled (mountinfo, PSI triggers) lose nothing.
AIO has no multishot poll: a watch re-arms after every completion, so a condition that
stays true is reported again each time (see :mod:`fdloop._aio.events`).

The kernel reads an iocb when it is submitted and names it by its user address from then
on (``io_cancel`` looks a request up by it): each iocb is kept alive here until its
completion has been collected.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform

from ..contract import OwnedFD
from . import pollcheck

_NUMBERS = {  # io_setup, io_destroy, io_getevents, io_submit, io_cancel
    "x86_64": (206, 207, 208, 209, 210),
    "aarch64": (0, 1, 4, 2, 3),
    "riscv64": (0, 1, 4, 2, 3),
}
_CMD_POLL = 5
_FLAG_RESFD = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _IOCB(ctypes.Structure):
    # aio_abi.h on a little-endian machine (aio_key and aio_rw_flags swap on big-endian).
    _fields_ = [
        ("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32), ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32),
    ]


class _Event(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _call(number: int, *args: object) -> int:
    while True:
        result = _libc.syscall(number, *args)
        if result >= 0:
            return int(result)
        code = ctypes.get_errno()
        if code != errno.EINTR:
            raise OSError(code, os.strerror(code))


class AIOPolls(OwnedFD):
    """An AIO context whose poll completions signal an eventfd (the fd this owns)."""

    multishot = False
    kernel_object = "Linux AIO (IOCB_CMD_POLL)"

    __slots__ = ("_checked", "_context", "_numbers", "_requests")

    def __init__(self, entries: int = 256) -> None:
        import sys

        numbers = _NUMBERS.get(platform.machine())
        if numbers is None or sys.byteorder != "little":
            raise OSError(errno.ENOSYS, f"AIO poll is not wired up for {platform.machine()}")
        self._numbers = numbers
        self._context = ctypes.c_ulong(0)
        _call(numbers[0], entries, ctypes.byref(self._context))
        try:
            super().__init__(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
        except BaseException:
            _call(numbers[1], self._context)
            raise
        self._requests: dict[int, _IOCB] = {}
        self._checked: dict[int, tuple[int, int]] = {}

    def submit(self, token: int, fd: int, events: int, *, multishot: bool = False) -> None:
        """Ask the kernel to poll ``fd`` once for ``events`` (POLLERR and POLLHUP always
        included). Raises OSError (EBADF for a closed fd, EAGAIN when the context is
        full); ``multishot`` must be False."""
        if multishot:
            raise ValueError("AIO polls are one-shot")
        checked = pollcheck.needs_check(fd)
        iocb = _IOCB(aio_data=token, aio_lio_opcode=_CMD_POLL, aio_fildes=fd,
                     aio_buf=pollcheck.request_mask(events, checked), aio_flags=_FLAG_RESFD,
                     aio_resfd=self.fileno())
        batch = (ctypes.POINTER(_IOCB) * 1)(ctypes.pointer(iocb))
        _call(self._numbers[3], self._context, 1, batch)
        self._requests[token] = iocb
        if checked:
            self._checked[token] = (fd, events)

    def cancel(self, token: int) -> None:
        """Withdraw a request; its completion then reports mask 0 (or the mask, if it
        completed first). A request that already ended is ignored."""
        iocb = self._requests.get(token)
        if iocb is None:
            return
        result = _Event()
        # Always "EINPROGRESS" for a poll: the completion still arrives through the ring.
        _libc.syscall(self._numbers[4], self._context, ctypes.byref(iocb), ctypes.byref(result))

    def completions(self) -> list[tuple[int, int, bool]]:
        """Every completion waiting now, as ``(token, mask or -errno, False)``."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fileno())
        out: list[tuple[int, int, bool]] = []
        batch = (_Event * 64)()
        while True:
            count = _call(self._numbers[2], self._context, 0, 64, batch,
                          ctypes.byref(_Timespec(0, 0)))
            for event in batch[:count]:
                self._requests.pop(event.data, None)
                check = self._checked.pop(event.data, None)
                res = event.res
                if check is not None and res > 0:
                    res = pollcheck.checked_answer(*check)
                out.append((event.data, res, False))
            if count < 64:
                return out

    def close(self) -> None:
        if self._fd >= 0:
            # io_destroy cancels what is still pending and waits for it: nothing of
            # ours is referenced by the kernel after it returns.
            _libc.syscall(self._numbers[1], self._context)
            self._requests.clear()
        super().close()

    def detach(self) -> int:
        raise TypeError("a poll ring cannot be detached")
