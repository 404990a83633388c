"""Poll requests on an io_uring: the kernel polls a file for us, once or on every wake-up.

This is how ``fdloop.wait_events`` asks Linux for events beyond readable and writable.
Each request is an ``IORING_OP_POLL_ADD`` for one fd and a poll mask; its completion
(a CQE carrying the mask the file reported) lands in the ring's completion queue, and the
ring fd polls readable while completions wait there — so the event loop watches that one
fd and nothing else. Why a poll *request* rather than a private epoll that the loop
watches (the ready-set technique of :mod:`.readyset`): some files reset their event when
they are polled — ``/proc/self/mountinfo`` (``mounts_poll`` records the namespace's event
counter) and PSI triggers (``psi_trigger_poll`` takes the event with a cmpxchg). The
loop's poll of an outer epoll re-polls the inner file to decide readiness, which consumes
the event, and the inner ``epoll_wait`` then finds nothing: the event is lost (measured
on 6.18: the outer epoll readable, the inner empty). A poll request is completed by the
very poll that saw the event, so the mask it reports is the one that was consumed.

Measured on 6.18 (Python, one-shot poll of an eventfd, submit + trigger + reap): io_uring
6.1 us, Linux AIO ``IOCB_CMD_POLL`` 15.3 us (an eventfd read and an io_getevents more,
and 8% of completions deferred to a workqueue). io_uring also has multishot polls
(``IORING_POLL_ADD_MULTI``, 5.13): one request reports every later wake-up whose poll
matches (edge-triggered, so a condition that stays true is reported once, not in a
loop). Where io_uring is refused (``kernel.io_uring_disabled``, a seccomp filter such as
the default one of container runtimes), :mod:`.aiopoll` does one-shot requests.

Ring memory is shared with the kernel: we only write submission entries and the SQ tail
before ``io_uring_enter`` (a syscall, hence a full barrier), and read completions after
the loop's poll said the ring fd is readable (also after a syscall).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import sys

from ..contract import OwnedFD
from . import pollcheck

_SETUP, _ENTER = 425, 426  # the same on every architecture (the unified syscall table)
_OP_POLL_ADD, _OP_POLL_REMOVE = 6, 7
_POLL_ADD_MULTI = 1
_CQE_F_MORE = 1 << 1
_FEAT_SINGLE_MMAP = 1
_OFF_SQ_RING, _OFF_CQ_RING, _OFF_SQES = 0, 0x8000000, 0x10000000
_REMOVAL = 1 << 63  # user_data of a removal request: its own CQE is ignored

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

_U32 = struct.Struct("=I")
_SQE = struct.Struct("=BBHiQQIIQ")  # opcode flags ioprio fd off addr len poll32 user_data
_SQE_BYTES = 64  # the rest (buf_index, personality, splice_fd_in, addr3) stays zero
_CQE = struct.Struct("=QiI")  # user_data res flags
_SQ_CQ_OVERFLOW = 1 << 1
_ENTER_GETEVENTS = 1


class _Offsets(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in (
        "head", "tail", "ring_mask", "ring_entries", "flags_or_overflow", "dropped_or_cqes",
        "array_or_flags", "resv1")] + [("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in (
        "sq_entries", "cq_entries", "flags", "sq_thread_cpu", "sq_thread_idle", "features",
        "wq_fd", "resv0", "resv1", "resv2")] + [("sq_off", _Offsets), ("cq_off", _Offsets)]


class URingPolls(OwnedFD):
    """A private io_uring used only for poll requests (close-on-exec)."""

    multishot = True
    kernel_object = "io_uring (IORING_OP_POLL_ADD)"

    __slots__ = ("_checked", "_cq", "_maps", "_sq", "_sq_flags", "_sqes")

    def __init__(self, entries: int = 256) -> None:
        params = _Params()
        fd = _libc.syscall(_SETUP, entries, ctypes.byref(params))
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"io_uring_setup: {os.strerror(code)}")
        super().__init__(fd)
        self._checked: dict[int, tuple[int, int]] = {}
        try:
            self._map(params)
        except BaseException:
            self.close()
            raise

    def _map(self, p: _Params) -> None:
        sq, cq = p.sq_off, p.cq_off
        sq_size = sq.array_or_flags + p.sq_entries * 4
        cq_size = cq.dropped_or_cqes + p.cq_entries * _CQE.size
        if p.features & _FEAT_SINGLE_MMAP:
            ring = mmap.mmap(self._fd, max(sq_size, cq_size), offset=_OFF_SQ_RING)
            self._maps = [ring]
            cq_ring = ring
        else:
            ring = mmap.mmap(self._fd, sq_size, offset=_OFF_SQ_RING)
            cq_ring = mmap.mmap(self._fd, cq_size, offset=_OFF_CQ_RING)
            self._maps = [ring, cq_ring]
        self._sqes = mmap.mmap(self._fd, p.sq_entries * _SQE_BYTES, offset=_OFF_SQES)
        self._maps.append(self._sqes)
        # (ring, head, tail, mask, array/cqes)
        self._sq = (ring, sq.head, sq.tail, _U32.unpack_from(ring, sq.ring_mask)[0],
                    sq.array_or_flags)
        self._sq_flags = (ring, sq.flags_or_overflow)
        self._cq = (cq_ring, cq.head, cq.tail, _U32.unpack_from(cq_ring, cq.ring_mask)[0],
                    cq.dropped_or_cqes)

    def submit(self, token: int, fd: int, events: int, *, multishot: bool = False) -> None:
        """Ask the kernel to poll ``fd`` for ``events`` (POLLERR and POLLHUP are always
        included); completion comes as ``(token, mask or -errno, more)`` from
        :meth:`completions`. ``multishot``: report every later wake-up whose poll
        matches, until cancelled. Raises OSError if the ring refuses the request."""
        checked = pollcheck.needs_check(fd)
        asked = pollcheck.request_mask(events, checked)
        if sys.byteorder == "big":  # the kernel swaps poll32_events' halves there
            asked = ((asked << 16) | (asked >> 16)) & 0xFFFFFFFF
        self._push(_OP_POLL_ADD, fd, 0, _POLL_ADD_MULTI if multishot else 0, events=asked,
                   data=token)
        if checked:
            self._checked[token] = (fd, events)

    def cancel(self, token: int) -> None:
        """Withdraw a request; its last completion then says ``-ECANCELED`` (or the mask,
        if it completed first). A request that already ended is ignored."""
        self._checked.pop(token, None)
        self._push(_OP_POLL_REMOVE, -1, token, 0, events=0, data=token | _REMOVAL)

    def _push(self, op: int, fd: int, addr: int, length: int, *, events: int, data: int
              ) -> None:
        ring, _head_off, tail_off, mask, array_off = self._sq
        tail = _U32.unpack_from(ring, tail_off)[0]
        index = tail & mask
        start = index * _SQE_BYTES
        _SQE.pack_into(self._sqes, start, op, 0, 0, fd, 0, addr, length, events, data)
        self._sqes[start + _SQE.size:start + _SQE_BYTES] = bytes(_SQE_BYTES - _SQE.size)
        _U32.pack_into(ring, array_off + 4 * index, index)
        _U32.pack_into(ring, tail_off, (tail + 1) & 0xFFFFFFFF)
        while True:
            done = _libc.syscall(_ENTER, self.fileno(), 1, 0, 0, None, 0)
            if done >= 0:
                return
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            # Not consumed: take the entry back so the next submission reuses the slot.
            _U32.pack_into(ring, tail_off, tail)
            raise OSError(code, f"io_uring_enter: {os.strerror(code)}")

    def completions(self) -> list[tuple[int, int, bool]]:
        """Every completion waiting now, as ``(token, mask or -errno, more)``; ``more``
        is True while a multishot request stays armed. Never blocks."""
        ring, head_off, tail_off, mask, cqes_off = self._cq
        head = _U32.unpack_from(ring, head_off)[0]
        tail = _U32.unpack_from(ring, tail_off)[0]
        out: list[tuple[int, int, bool]] = []
        while head != tail:
            data, res, flags = _CQE.unpack_from(ring, cqes_off + (head & mask) * _CQE.size)
            head = (head + 1) & 0xFFFFFFFF
            if data & _REMOVAL:
                continue
            more = bool(flags & _CQE_F_MORE)
            check = self._checked.get(data) if more else self._checked.pop(data, None)
            if check is not None and res > 0:
                res = pollcheck.checked_answer(*check)
            out.append((data, res, more))
        _U32.pack_into(ring, head_off, head)
        flags_ring, flags_off = self._sq_flags
        if _U32.unpack_from(flags_ring, flags_off)[0] & _SQ_CQ_OVERFLOW:
            # Completions the full queue could not take wait in the kernel: flush them in.
            _libc.syscall(_ENTER, self.fileno(), 0, 0, _ENTER_GETEVENTS, None, 0)
            out.extend(self.completions())
        return out

    def close(self) -> None:
        maps, self._maps = getattr(self, "_maps", []), []
        for mapping in maps:
            mapping.close()
        super().close()

    def detach(self) -> int:
        raise TypeError("a poll ring cannot be detached")
