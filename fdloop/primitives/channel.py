"""Channel: a one-way, bounded message channel between processes over a shared ring.

``sender, receiver = fdloop.channel(capacity=1 << 20)`` makes a sealed MemFD ring with
two EventFD doorbells and a socketpair whose hang-up marks the end (the layout and the
protocol, enough for a C peer, are in :mod:`.channel_ring`; what both ends share is in
:mod:`.channel_end`). Each end is four fds (``fds()``); another process rebuilds its end
with ``ChannelSender.from_fds(fds)`` / ``ChannelReceiver.from_fds(fds)``, after which the
creator closes its own copy, as with a pipe. Duplex is two channels.

``send()`` copies a message into the ring once and waits for room (backpressure: it
never drops and never buffers more than the ring). ``receive()`` returns the next
message as bytes; ``receive_view()`` lends a read-only memoryview of the ring itself.
The ends, as anyio streams do: EndOfStream once every copy of the sender was closed and
the queued messages are read; BrokenResourceError when the receiver is gone or the
peer's process died without closing (SIGKILL); ClosedResourceError on a closed end;
ChannelCorruptedError (a BrokenResourceError) when the peer broke the protocol.

One task at a time per end is the intended use, but several tasks of one process may
share an end: each send and each receive is atomic with respect to the others.

Fork: the copy of an end that ``os.fork()`` leaves in a child refuses to send or
receive (UnsupportedOperation), and closing or collecting it there leaves the parent's
channel as it was; a child that wants the end adopts it explicitly with ``from_fds`` on
dup'ed fds (see :class:`.channel_end._End`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from .. import _aio, _validate
from ..backends.posix import channel as os_channel
from ..errors import BrokenResourceError, ClosedResourceError
from . import channel_ring as ring
from .channel_end import _End, close_mapping, refuse_if_unsupported
from .channel_view import MessageView
from .eventfd import EventFD
from .memfd import MemFD
from .memfile import bytes_like
from .seals import GROW_BIT, SEAL_BIT, SHRINK_BIT

if TYPE_CHECKING:
    import mmap

    from typing_extensions import Buffer

__all__ = ["ChannelReceiver", "ChannelSender", "channel"]

DEFAULT_CAPACITY = 1 << 20
PEER_CHECK_SECONDS = 0.05
"""A send that need not wait asks the socket whether the receiver is gone at most this
often: a system call on every message would cost more than the message."""


class ChannelSender(_End):
    """The sending end: ``await send(data)``; see :func:`fdloop.channel`."""

    _wait_word = ring.W_SENDER_WAITS
    _peer_word = ring.W_RECEIVER_WAITS

    def _here(self) -> None:
        super()._here()
        self._write = self._words[ring.W_WRITE_INDEX]
        self._read_seen = self._words[ring.W_READ_INDEX]
        self._next_check = 0.0

    def _adopted(self) -> None:
        self._sock.send_marker(os_channel.OPENED)

    async def send(self, item: Buffer) -> None:
        """Append one message (bytes or any contiguous buffer); waits for room.

        Returns once the message is in the ring; a cancelled send sent nothing. Raises
        ValueError for a message longer than ``max_message_size``, TypeError for a
        non-buffer, BrokenResourceError once the receiver is gone (every copy closed, or
        its process died) — at the latest ``PEER_CHECK_SECONDS`` after, and from then
        on every time — ChannelCorruptedError if the receiver broke the protocol,
        ClosedResourceError if this end is closed before or while waiting.
        """
        if type(item) is bytes and self._fast:
            # The common case inline: the record fits before the end, in room already
            # known to be free, and the receiver was asked about lately.
            n, capacity, write = len(item), self._capacity, self._write
            size = 8 + ((n + 7) & ~7)
            offset = write % capacity
            if (offset + size <= capacity and write + size - self._read_seen <= capacity
                    and time.monotonic() < self._next_check):
                self._data_words[offset >> 3] = n
                self._data[offset + 8 : offset + 8 + n] = item
                write += size
                self._write = write
                words = self._words
                words[ring.W_WRITE_INDEX] = write  # one aligned 8-byte store
                self._fence_acquire()  # ...ordered before the WAITS load
                self._fence_release()
                waits = words[ring.W_RECEIVER_WAITS]
                if waits and waits <= write:
                    self._ring_bell.write(1)
                return
        view = self._checked(item, "send()")
        while True:
            target = self._try_send(view)
            if not target:
                return
            await self._sleep(target, "send()")

    def send_nowait(self, item: Buffer) -> None:
        """Append one message now, or raise anyio.WouldBlock (nothing sent) when the
        ring has no room for it; otherwise raises as ``send()`` does."""
        if self._try_send(self._checked(item, "send_nowait()")):
            raise anyio.WouldBlock

    def _checked(self, item: Buffer, doing: str) -> memoryview:
        view = bytes_like("item", item)
        if len(view) > self._capacity - ring.RECORD_HEADER:
            raise ValueError(f"item: a message of {len(view)} bytes does not fit a ring of "
                             f"capacity {self._capacity} (at most "
                             f"{self._capacity - ring.RECORD_HEADER} bytes)")
        if self._handle.closed:
            raise ClosedResourceError("ChannelSender is closed")
        self._refuse_in_forked_child(doing)
        if self._broken is not None:
            raise self._again()
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + PEER_CHECK_SECONDS
            if self._sock.peer_gone():
                raise self._gone()
        return view

    def _try_send(self, view: memoryview) -> int:
        """Write and publish the record if it fits: 0. Else the READ_INDEX to wait for."""
        capacity, write, n = self._capacity, self._write, len(view)
        size = ring.record_size(n)
        offset = write % capacity
        read = self._peer_index()
        if offset + size > capacity:  # does not fit before the end: skip to offset 0
            skip = capacity - offset
            if write + skip - read > capacity:
                return write + skip - capacity
            self._data_words[offset >> 3] = ring.SKIP
            write += skip
            self._publish(write)
            offset = 0
        if write + size - read > capacity:
            return write + size - capacity
        self._data_words[offset >> 3] = n
        self._data[offset + 8 : offset + 8 + n] = view
        self._publish(write + size)
        return 0

    def _publish(self, write: int) -> None:
        self._write = write
        self._words[ring.W_WRITE_INDEX] = write  # one aligned 8-byte store
        self._ring_peer(write)

    def _peer_index(self) -> int:
        read = self._words[ring.W_READ_INDEX]
        if read != self._read_seen:
            if read % 8 or not self._read_seen < read <= self._write:
                raise self._fail(ring.corrupted(
                    f"READ_INDEX went from {self._read_seen} to {read} with WRITE_INDEX at "
                    f"{self._write}"))
            self._read_seen = read
        return read

    def _socket_news(self) -> None:
        data, gone = self._sock.drain()
        if data:
            raise self._fail(ring.corrupted(f"{len(data)} unexpected bytes on the sender's "
                                            "socket (the receiver never writes)"))
        if gone:
            raise self._gone()

    def _gone(self) -> BaseException:
        return self._fail(BrokenResourceError(
            "the Channel's receiver is gone (every copy closed, or its process died)"))

    def _goodbye(self) -> None:
        if self._pid == _aio.forks.pid:
            self._sock.send_marker(os_channel.CLOSED)

    @classmethod
    def from_fds(cls, fds: Sequence[int]) -> ChannelSender:
        """Rebuild the sender from the fds of another process's ``sender.fds()``; see
        :meth:`_End.from_fds` for the checks made and what is raised."""
        return super().from_fds(fds)


class ChannelReceiver(_End):
    """The receiving end: ``await receive()``, ``async for``, ``receive_view()``."""

    _wait_word = ring.W_RECEIVER_WAITS
    _peer_word = ring.W_SENDER_WAITS

    def _setup(self, memfd: MemFD, data_bell: EventFD, room_bell: EventFD,
               sock: os_channel.HangupSocket, capacity: int) -> None:
        self._views: mmap.mmap = memfd.mmap(writable=False)
        try:
            super()._setup(memfd, data_bell, room_bell, sock, capacity)
        except BaseException:
            self._views.close()
            raise
        self._views_base = sys.getrefcount(self._views)

    def _here(self) -> None:
        super()._here()
        self._read = self._given_back = self._words[ring.W_READ_INDEX]
        self._write_seen = self._words[ring.W_WRITE_INDEX]
        self._lent: dict[int, int] = {}  # start -> end of each message lent as a view
        self._stale: list[int] = []      # starts of views kept past their block
        self._open_views = 0
        self._peer_gone = False

    async def receive(self) -> bytes:
        """Wait for the next message and return it as bytes (a copy; see receive_view).

        A cancelled receive took nothing. Raises anyio.EndOfStream once every copy of
        the sender was closed and every message before that was received;
        BrokenResourceError (after the queued messages) when the sender's process died
        without closing it; ChannelCorruptedError if the sender broke the protocol;
        ClosedResourceError if this end is closed before or while waiting.
        """
        read = self._read
        if self._fast and read < self._write_seen and not self._lent:
            # The common case inline: a message already known to be there.
            capacity = self._capacity
            offset = read % capacity
            length = self._data_words[offset >> 3]
            size = 8 + ((length + 7) & ~7)  # a SKIP makes it huge: the slow path's turn
            if offset + size <= capacity and read + size <= self._write_seen:
                message = self._data[offset + 8 : offset + 8 + length].tobytes()
                read += size
                self._read = self._given_back = read
                words = self._words
                words[ring.W_READ_INDEX] = read  # one aligned 8-byte store
                self._fence_acquire()  # ...ordered before the WAITS load
                self._fence_release()
                waits = words[ring.W_SENDER_WAITS]
                if waits and waits <= read:
                    self._ring_bell.write(1)
                return message
        while True:
            found = self._next_record("receive()")
            if found is not None:
                offset, length = found
                message = bytes(self._data[offset + 8 : offset + 8 + length])
                self._read += ring.record_size(length)
                self._give_back()
                return message
            await self._sleep(self._read + ring.RECORD_HEADER, "receive()")

    def receive_nowait(self) -> bytes:
        """The next message if one is there now, else raise anyio.WouldBlock; otherwise
        raises as ``receive()`` does."""
        found = self._next_record("receive_nowait()")
        if found is None:
            raise anyio.WouldBlock
        offset, length = found
        message = bytes(self._data[offset + 8 : offset + 8 + length])
        self._read += ring.record_size(length)
        self._give_back()
        return message

    def receive_view(self) -> MessageView:
        """``async with receiver.receive_view() as view:`` — the next message as a
        read-only memoryview into the ring, valid inside the block (nothing is copied).

        Its space is given back when the block ends, and ``view`` is released then (using
        it raises ValueError). Slices, ``memoryview(view)`` or arrays made from it must
        not outlive the block either: if one does, the space is held back (the sender
        waits, never overwriting it) until it is gone, and a block that ended normally
        raises BufferError to say so. Entering the block waits and raises as
        ``receive()`` does.
        """
        return MessageView(self)

    def __aiter__(self) -> ChannelReceiver:
        return self

    async def __anext__(self) -> bytes:
        """Each message ``receive()`` returns; iteration ends at EndOfStream."""
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    # -- the ring ------------------------------------------------------------------------

    def _next_record(self, doing: str) -> tuple[int, int] | None:
        """(data offset, length) of the next message, skipping SKIP records; None when
        the ring is empty; raises the end of the stream once the sender is gone.
        ``doing`` names the public method, for the refusal of a forked copy."""
        if self._handle.closed:
            raise ClosedResourceError("ChannelReceiver is closed")
        self._refuse_in_forked_child(doing)
        if self._broken is not None:
            raise self._again()
        capacity = self._capacity
        while True:
            read = self._read
            if self._peer_index() == read:
                if self._peer_gone:
                    raise self._end()
                return None
            offset = read % capacity
            length = self._data_words[offset >> 3]
            if length == ring.SKIP:
                if offset == 0 or read + capacity - offset > self._write_seen:
                    raise self._fail(ring.corrupted(f"a SKIP record at offset {offset}"))
                self._read = read + capacity - offset
                self._give_back()  # the sender may be waiting for exactly this space
                continue
            if (length > capacity - ring.RECORD_HEADER or offset + 8 + length > capacity
                    or read + ring.record_size(length) > self._write_seen):
                raise self._fail(ring.corrupted(
                    f"a record of {length} bytes at offset {offset} runs past the data "
                    f"area ({capacity} bytes) or past WRITE_INDEX {self._write_seen}"))
            return offset, length

    def _peer_index(self) -> int:
        write = self._words[ring.W_WRITE_INDEX]
        if write != self._write_seen:
            if write % 8 or not self._write_seen < write <= self._given_back + self._capacity:
                raise self._fail(ring.corrupted(
                    f"WRITE_INDEX went from {self._write_seen} to {write} with READ_INDEX at "
                    f"{self._given_back} and capacity {self._capacity}"))
            self._write_seen = write
        return write

    def _give_back(self) -> None:
        """Publish READ_INDEX up to the oldest message still lent out."""
        if self._stale and sys.getrefcount(self._views) - self._views_base == self._open_views:
            for start in self._stale:  # the last view kept past its block is gone
                del self._lent[start]
            self._stale.clear()
        given = min(self._lent) if self._lent else self._read
        if given != self._given_back:
            self._given_back = given
            self._words[ring.W_READ_INDEX] = given  # one aligned 8-byte store
            self._ring_peer(given)

    def _socket_news(self) -> None:
        data, gone = self._sock.drain()
        if data:
            opened, closed = data.count(os_channel.OPENED), data.count(os_channel.CLOSED)
            if opened + closed != len(data):
                raise self._fail(ring.corrupted(f"unknown bytes {data[:16]!r} on the socket"))
            self._words[ring.W_SENDER_COPIES] += opened - closed
        if gone:
            self._peer_gone = True

    def _end(self) -> BaseException:
        copies = self._words[ring.W_SENDER_COPIES]
        if copies == 0:
            return anyio.EndOfStream()
        return self._fail(BrokenResourceError(
            "the Channel's sender is gone without closing: its process died (or exited) "
            f"with {copies} cop{'y' if copies == 1 else 'ies'} of the sender still open"))

    def _close_here(self) -> None:
        if self._handle.closed:
            return
        super()._close_here()
        close_mapping(self._views)


def channel(capacity: int = DEFAULT_CAPACITY) -> tuple[ChannelSender, ChannelReceiver]:
    """A new one-way channel: ``sender, receiver = fdloop.channel(capacity=1 << 20)``.

    ``capacity`` is the size of the ring's data area in bytes (a multiple of 8, at least
    64); the largest message is ``capacity - 8`` bytes. Both ends start in this process:
    hand one to another process with ``fds()`` and ``from_fds()``, then close it here.

    Raises TypeError/ValueError for a bad capacity; UnsupportedOperation where no
    Channel can be built (a CPU other than x86-64; the kqueue backend without a native
    eventfd and a sealable memfd — ``capabilities()`` says); OSError when out of fds.
    """
    capacity = _validate.integer("capacity", capacity, low=ring.MIN_CAPACITY,
                                 high=ring.MAX_CAPACITY)
    if capacity % 8:
        raise ValueError(f"capacity must be a multiple of 8, got {capacity}")
    refuse_if_unsupported()
    made: list[MemFD | EventFD | os_channel.HangupSocket | _End] = []
    try:
        memfd = MemFD("fdloop-channel", ring.HEADER_SIZE + capacity)
        made.append(memfd)
        memfd.seal(SHRINK_BIT | GROW_BIT | SEAL_BIT)
        with memfd.mmap(ring.HEADER_SIZE) as header, memoryview(header) as raw, \
                raw.cast("Q") as words:
            ring.init_header(words, capacity)
        data_bell, room_bell = EventFD(), EventFD()
        made += [data_bell, room_bell]
        sender_sock, receiver_sock = os_channel.HangupSocket.pair()
        made += [sender_sock, receiver_sock]
        copies = (memfd.dup(), data_bell.dup(), room_bell.dup())
        made += copies
        sender = ChannelSender.__new__(ChannelSender)
        sender._setup(memfd, data_bell, room_bell, sender_sock, capacity)
        made = [sender, *copies, receiver_sock]
        receiver = ChannelReceiver.__new__(ChannelReceiver)
        receiver._setup(copies[0], copies[1], copies[2], receiver_sock, capacity)
    except BaseException:
        for part in reversed(made):
            part.close()
        raise
    return sender, receiver
