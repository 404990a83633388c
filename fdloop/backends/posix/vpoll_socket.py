"""VirtualFD built from a loopback TCP connection, where the kernel has no EFD_VPOLL.

Mainline Linux (and the BSDs) have no fd whose poll mask its owner sets. A connected TCP
socket comes closest: its poll (``tcp_poll``) derives each event from state we can drive
from the other end, and it is a real socket that every poller, every loop and every
process (fork, exec, SCM_RIGHTS) sees the same way. The consumer's fd is one end
(``C``); the owner keeps the peer (``P``). Per event, measured on 6.18:

======== ======================================= ========================================
event    raised by                               cleared by
======== ======================================= ========================================
POLLIN   P sends one byte (``b"\\0"``)            reading it back from C
POLLPRI  P sends one urgent byte (MSG_OOB):       ``recv(MSG_OOB)`` on C
         POLLPRI alone (the mark is not counted
         as readable data)
POLLOUT  raising C's SO_SNDBUF over a backlog     lowering it again (the minimum)
         that can never drain (P never reads;
         its window is 0): no ACK in flight, so
         nothing changes it behind our back
POLLRDHUP P's FIN (shutdown SHUT_WR); brings      never: a FIN cannot be taken back
         POLLIN with it
POLLHUP  both directions shut (ours first:        never
         POLLOUT shows early, then POLLIN,
         POLLRDHUP and POLLHUP together)
POLLERR  a reset (P closes with SO_LINGER 0):     never (a consumer's read takes the
         brings POLLHUP, POLLIN, POLLRDHUP and    error: ECONNRESET once, then EOF)
         POLLOUT; the queued bytes are dropped
======== ======================================= ========================================

Ruled out (also measured): an AF_UNIX socketpair's MSG_OOB raises POLLIN along with
POLLPRI and POLLIN stays after ``recv(MSG_OOB)``; filling and draining a send buffer
makes POLLOUT racy (ACKs in flight raise it again after ``set()`` returned).

What a consumer sees if it does I/O on the fd: ``read()`` returns the POLLIN marker byte
(``b"\\0"``, one per raise) and so clears POLLIN; it blocks (or EAGAIN) when POLLIN is
clear. ``write()`` blocks (or EAGAIN) while POLLOUT is clear — except a small write that
fits the free room of the last queued buffer, accepted without a memory check; while
POLLOUT is set the bytes are accepted into the backlog nobody reads, and enough of them
clear POLLOUT. Neither
desynchronises the owner: ``events`` is read from the kernel, and the next ``set()``
puts the asked-for mask back (it sizes SO_SNDBUF from the backlog as it is then).
"""

from __future__ import annotations

import errno
import fcntl
import select
import socket
import struct
import termios
import threading
import time

from ...errors import ClosedResourceError, UnsupportedOperation

IN, PRI, OUT, ERR, HUP = (select.POLLIN, select.POLLPRI, select.POLLOUT, select.POLLERR,
                          select.POLLHUP)
RDHUP = getattr(select, "POLLRDHUP", 0x2000)
ALL = IN | PRI | OUT | ERR | HUP | RDHUP

_SIOCATMARK = 0x8905  # the next byte to read is the urgent one
_SIOCOUTQNSD = 0x894B  # Linux: bytes not yet sent (SIOCOUTQ counts unacked ones too)
_SETTLE_SECONDS = 2.0

RAISES = IN | PRI | OUT | RDHUP | HUP | ERR
CLEARS = IN | PRI | OUT
COMPANIONS = {RDHUP: IN, HUP: IN | RDHUP | OUT, ERR: HUP | IN | RDHUP | OUT}
"""What raising a one-way event brings along on this construction."""


def fidelity() -> tuple[str, ...]:
    """Per event, what this construction can do (for capabilities())."""
    return (
        "POLLIN, POLLPRI, POLLOUT: raised and cleared at will",
        "POLLRDHUP: one-way (a FIN), raises POLLIN with it",
        "POLLHUP: one-way, raises POLLIN, POLLRDHUP and POLLOUT with it",
        "POLLERR: one-way (a reset), raises POLLHUP, POLLIN, POLLRDHUP and POLLOUT; a "
        "consumer's read takes it",
        "a consumer's read()/write() can clear POLLIN/POLLOUT (the next set() restores)",
    )


class SocketVirtualFD:
    """The consumer end of a loopback TCP connection whose events the peer drives."""

    native = False
    kernel_object = "loopback TCP connection"
    raises, clears = RAISES, CLEARS

    def __init__(self, events: int = 0) -> None:
        self._lock = threading.Lock()
        self._consumer, self._peer = _connected_pair()
        self._fd = self._consumer.fileno()
        self._one_way = 0  # the one-way events raised so far
        try:
            _stick_backlog(self._consumer)
            if events:
                self.set(events)
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, events: int = 0) -> SocketVirtualFD:
        return cls(events)

    # -- the OwnedFD part -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        if self._fd < 0:
            raise ClosedResourceError("VirtualFD is closed")
        return self._fd

    def close(self) -> None:
        with self._lock:
            self._fd = -1
            self._peer.close()
            self._consumer.close()

    def detach(self) -> int:
        """The consumer's fd, no longer driven: the peer closes (consumers see EOF)."""
        with self._lock:
            self.fileno()  # ClosedResourceError once closed
            self._fd = -1
            self._peer.close()
            return self._consumer.detach()

    # -- events -----------------------------------------------------------------------

    @property
    def events(self) -> int:
        """The events a consumer's poll sees now (asked of the kernel)."""
        with self._lock:
            return self._current()

    def _current(self) -> int:
        poller = select.poll()
        poller.register(self.fileno(), ALL)
        ready = poller.poll(0)
        return ready[0][1] & ALL if ready else 0

    def set(self, events: int) -> int:
        """Make ``events`` the mask; returns the mask consumers now see (with the
        companions of one-way events). UnsupportedOperation, changing nothing, when
        asked to clear what cannot be cleared or raise what cannot be raised."""
        with self._lock:
            now = self._current()
            events |= _companions(events)
            stuck = self._one_way | _companions(self._one_way)
            dropped = now & ~events & stuck
            if dropped:
                raise UnsupportedOperation(
                    f"events: {_names(dropped)} cannot be cleared on this VirtualFD (a "
                    f"{self.kernel_object}: {_names(self._one_way)} was raised, which is "
                    "one-way)")
            blocked = events & ~now & _unraisable(self._one_way)
            if blocked:
                raise UnsupportedOperation(
                    f"events: {_names(blocked)} can no longer be raised on this VirtualFD "
                    f"({_names(self._one_way)} was raised: the peer's side is shut)")
            self._apply(now, events)
            return self._current()

    def _apply(self, now: int, events: int) -> None:
        consumer, peer = self._consumer, self._peer
        if events & ERR and not self._one_way & ERR:
            self._one_way |= ERR | HUP | RDHUP
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # a reset: every queued byte (markers, backlog) is dropped
            _wait_for(consumer, ERR)
            return
        if now & IN and not events & IN:
            keep_urgent = bool(now & PRI and events & PRI)
            if keep_urgent and _at_mark(consumer):
                # The urgent byte comes before the marker: reading past it would end
                # the urgent mode (urg_data is reset once copied_seq passes urg_seq), so
                # a fresh urgent byte goes after the marker first (the kernel drops the
                # old one, unread, at the head of the stream).
                peer.send(b"!", socket.MSG_OOB | socket.MSG_DONTWAIT)
                _wait_for_mark_moved(consumer)
            _drain_data(consumer, stop_at_mark=keep_urgent)
        if now & PRI and not events & PRI:
            _drain(consumer, socket.MSG_OOB)
            if not events & IN:
                # The urgent byte stays in the stream as a hole until a normal read
                # passes it; with no marker to keep, pass it now (the read then finds
                # nothing): unread holes pile up in the receive queue, and after ~18 of
                # them each new urgent byte waited 40 ms for the peer (measured).
                _drain_data(consumer, stop_at_mark=False)
        if events & PRI and not now & PRI:
            peer.send(b"!", socket.MSG_OOB | socket.MSG_DONTWAIT)
        if events & IN and not now & IN and not events & (RDHUP | HUP):
            peer.send(b"\0", socket.MSG_DONTWAIT)
        if events & HUP and not self._one_way & HUP:
            # Our side first: a consumer then sees POLLOUT (a companion) early, and
            # POLLIN, POLLRDHUP and POLLHUP together when the peer's FIN lands; the other
            # order showed POLLIN|POLLRDHUP alone in between (a child polled it).
            self._one_way |= HUP
            consumer.shutdown(socket.SHUT_WR)
        if events & (RDHUP | HUP) and not self._one_way & RDHUP:
            self._one_way |= RDHUP
            peer.shutdown(socket.SHUT_WR)
        if not self._one_way & HUP:
            self._set_out(consumer, bool(events & OUT))
        if not self._one_way & RDHUP:
            # Acknowledge the peer's bytes now. The consumer never sends, so its ACKs
            # are delayed once the connection's quick ACKs (16) are spent, and the
            # peer's window of unacknowledged segments then held each new byte back for
            # the 40 ms delayed-ACK timer (measured). TCP_QUICKACK sends the pending ACK.
            consumer.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        # Loopback delivers in the sending call's softirq, but not always before it
        # returns: wait (briefly) until the consumer's poll shows what we sent.
        _wait_for(consumer, (events | _companions(self._one_way)) & (IN | PRI | RDHUP | HUP))

    def _set_out(self, consumer: socket.socket, on: bool) -> None:
        # On: writable when sndbuf - queued >= queued / 2 (sk_stream_is_writeable), and
        # queued counts skb overhead too, so leave room (the kernel doubles the value).
        # Off: the minimum (SOCK_MIN_SNDBUF), far below the stuck backlog.
        size = max(65536, 4 * _queued(consumer, termios.TIOCOUTQ)) if on else 1
        consumer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _unraisable(one_way: int) -> int:
    """What can no longer be raised once ``one_way`` events were (the peer's send side
    is shut after RDHUP; nothing moves after a reset)."""
    if one_way & ERR:
        return ALL
    return PRI if one_way & RDHUP else 0


def _at_mark(consumer: socket.socket) -> bool:
    return bool(_queued(consumer, _SIOCATMARK))


def _wait_for_mark_moved(consumer: socket.socket) -> None:
    deadline = time.monotonic() + 1.0
    while _at_mark(consumer) and time.monotonic() < deadline:
        time.sleep(0)


def _companions(one_way: int) -> int:
    extra = 0
    for event, brings in COMPANIONS.items():
        if one_way & event:
            extra |= brings
    return extra


def _names(mask: int) -> str:
    return "|".join(name for name, bit in (("POLLIN", IN), ("POLLPRI", PRI), (
        "POLLOUT", OUT), ("POLLERR", ERR), ("POLLHUP", HUP), ("POLLRDHUP", RDHUP))
        if mask & bit)


def _connected_pair() -> tuple[socket.socket, socket.socket]:
    family, host = socket.AF_INET, "127.0.0.1"
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        family, host = socket.AF_INET6, "::1"
        listener = socket.socket(family, socket.SOCK_STREAM)
    with listener:
        # The smallest receive buffer, inherited by the accepted end: a small window,
        # so that a small backlog fills it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        listener.bind((host, 0))
        listener.listen(1)
        consumer = socket.socket(family, socket.SOCK_STREAM)
        try:
            consumer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
            consumer.connect(listener.getsockname())
            peer, _address = listener.accept()
        except BaseException:
            consumer.close()
            raise
    peer.setblocking(False)
    # Each marker and urgent byte must leave at once: with Nagle a small segment waits
    # for the ACK of the previous one, which a delayed ACK holds back 40 ms (measured:
    # p99 of a set -> seen round trip 42 ms).
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return consumer, peer


def _queued(sock: socket.socket, request: int) -> int:
    buffer = bytearray(4)
    fcntl.ioctl(sock.fileno(), request, buffer)
    return int(struct.unpack("i", buffer)[0])


def _stick_backlog(consumer: socket.socket) -> None:
    """Fill the peer's window and the consumer's send buffer, then wait until nothing
    is in flight (every sent byte ACKed): from then on no ACK can change POLLOUT."""
    chunk = bytes(65536)
    while True:
        try:
            consumer.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        queued = _queued(consumer, termios.TIOCOUTQ)
        try:
            unsent = _queued(consumer, _SIOCOUTQNSD)
        except OSError:
            unsent = queued  # not Linux: trust the window (checked once below)
        if queued and unsent == queued:
            return
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, "VirtualFD: the loopback backlog never settled")
        time.sleep(0.001)


def _drain_data(consumer: socket.socket, *, stop_at_mark: bool) -> None:
    """Read the POLLIN markers. A read *at* the urgent mark skips the urgent byte and
    ends the urgent mode (POLLPRI): with ``stop_at_mark`` reading stops there (each
    read stops short of the mark by itself once it has copied something)."""
    while not (stop_at_mark and _at_mark(consumer)):
        try:
            if not consumer.recv(65536, socket.MSG_DONTWAIT):
                return
        except (BlockingIOError, InterruptedError):
            return


def _drain(consumer: socket.socket, flags: int) -> None:
    while True:
        try:
            if not consumer.recv(65536, flags | socket.MSG_DONTWAIT):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            if error.errno == errno.EINVAL:  # MSG_OOB with no urgent byte pending
                return
            raise
        if flags & socket.MSG_OOB:
            return


def _wait_for(consumer: socket.socket, events: int) -> None:
    if not events:
        return
    poller = select.poll()
    poller.register(consumer.fileno(), ALL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        ready = poller.poll(0)
        if ready and ready[0][1] & events == events:
            return
        time.sleep(0)
