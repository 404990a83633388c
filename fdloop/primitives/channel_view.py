"""``receive_view()``: one message of a Channel lent as a read-only memoryview of the ring.

The view is a window onto the receiver's read-only mapping of the ring (nothing is
copied). When the ``async with`` block ends it is released, and the message's space is
given back — unless a slice or an array made from the view is still alive (seen as an
extra reference to that mapping: each memoryview export holds one), in which case the
space is held back until it is gone, so the sender can never overwrite memory that
something may still read.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from .. import _aio
from . import channel_ring as ring

if TYPE_CHECKING:
    from .channel import ChannelReceiver

__all__ = ["MessageView"]


class MessageView:
    """``async with receiver.receive_view() as view``: one message lent as a memoryview."""

    __slots__ = ("_base", "_receiver", "_start", "_view")

    def __init__(self, receiver: ChannelReceiver) -> None:
        self._receiver = receiver
        self._base: memoryview | None = None
        self._view: memoryview | None = None
        self._start = -1

    async def __aenter__(self) -> memoryview:
        if self._base is not None:
            raise RuntimeError("this receive_view() is already in use; call it again")
        receiver = self._receiver
        while True:
            found = receiver._next_record("receive_view()")
            if found is not None:
                break
            await receiver._sleep(receiver._read + ring.RECORD_HEADER, "receive_view()")
        offset, length = found
        self._start = receiver._read
        receiver._read += ring.record_size(length)
        receiver._lent[self._start] = receiver._read
        receiver._open_views += 1
        at = ring.HEADER_SIZE + offset + 8
        self._base = memoryview(receiver._views)
        self._view = self._base[at : at + length]
        return self._view

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        receiver, view, base = self._receiver, self._view, self._base
        if view is None or base is None:
            return
        self._view = self._base = None
        receiver._open_views -= 1
        kept = False
        for part in (view, base):
            try:
                part.release()
            except BufferError:
                kept = True  # something holds an export of it (an array, a buffer)
        del view, base
        if receiver._handle.closed or receiver._pid != _aio.forks.pid:
            # (A block entered before a fork and left in the child: the message's space
            # is the parent's to give back, from its own view.)
            return
        if kept or sys.getrefcount(receiver._views) - receiver._views_base > receiver._open_views:
            receiver._stale.append(self._start)
            if exc is None:
                raise BufferError(
                    "a view made from receive_view()'s memoryview (a slice, "
                    "memoryview(view), an array) outlived its block; the message's space "
                    "is held back until it is gone")
        else:
            del receiver._lent[self._start]
        receiver._give_back()
