"""What both ends of a ``fdloop.Channel`` share, and how ``from_fds`` checks its fds.

:class:`_End` owns an end's parts — the mapped ring (:mod:`.channel_ring` has its layout
and protocol), the two EventFD doorbells, the hang-up socket — and its waits: an end
waits through one ready set (a private epoll holding its doorbell and its socket)
registered with the running loop, so it works on asyncio, uvloop and trio alike and
never blocks the loop. ``ChannelSender``/``ChannelReceiver`` and ``channel()`` are in
:mod:`.channel`.
"""

from __future__ import annotations

import _thread
import contextlib
import mmap
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

from .. import _aio
from ..backends import current as current_backend
from ..backends.posix import channel as os_channel
from ..errors import NotThisKindOfFD, UnsupportedOperation
from . import channel_ring as ring
from .eventfd import EventFD
from .memfd import MemFD
from .resource import FDResource
from .seals import GROW_BIT, NO_WRITES_BITS, SHRINK_BIT

_bound: weakref.WeakSet[_End] = weakref.WeakSet()
"""Every end, so that a forked child turns their inline fast paths off: the checked
path, which refuses a forked copy, then handles every call there (and the fast paths
need no pid comparison of their own)."""


def _forget_in_child() -> None:
    for end in list(_bound):
        end._fast = False


_aio.forks.at_fork_in_child(_forget_in_child)


E = TypeVar("E", bound="_End")


class _End(FDResource[Any]):
    """What both ends share: the mapped ring, the doorbells, the socket, the waits.

    **After fork** an end belongs to the process that made (or adopted) it. The copy
    ``os.fork()`` leaves in a child maps the same ring and holds the same doorbells and
    socket, but not the parent's local indices: a send there would overwrite what the
    parent's sender is about to write, a receive would take a message the parent's
    receiver delivers again. So every send and receive of a copy raises
    :class:`fdloop.UnsupportedOperation`, and a wait that was under way at the fork
    ends that way too if it wakes in the child. ``close()``, garbage collection and the
    child's exit only drop the child's fds and mappings: the parent's socket stays open
    (no hang-up), no marker is sent, no header word is written. ``fds()`` still
    answers, so that the child can adopt an end of its own with ``from_fds`` on dup'ed
    fds (see :meth:`_refuse_in_forked_child`); that end is an ordinary one.
    """

    _wait_word: int
    _peer_word: int

    def _setup(self, memfd: MemFD, data_bell: EventFD, room_bell: EventFD,
               sock: os_channel.HangupSocket, capacity: int) -> None:
        wait_bell = room_bell if self._wait_word == ring.W_SENDER_WAITS else data_bell
        ready = current_backend().ready_set()
        try:
            ready.add(wait_bell.fileno())
            ready.add(sock.fileno())
            self._map = memfd.mmap()
        except BaseException:
            ready.close()
            if hasattr(self, "_map"):
                self._map.close()
            raise
        FDResource.__init__(self, ready)
        self._memfd, self._data_bell, self._room_bell, self._sock = (
            memfd, data_bell, room_bell, sock)
        self._wait_bell = wait_bell
        self._ring_bell = data_bell if wait_bell is room_bell else room_bell
        self._capacity = capacity
        self._words = memoryview(self._map)[: ring.HEADER_SIZE].cast("Q")
        self._data = memoryview(self._map)[ring.HEADER_SIZE:]
        self._data_words = self._data.cast("Q")
        self._broken: BaseException | None = None
        self._pid = -1
        self._here()

    def _here(self) -> None:
        """Bind to this process: its pid and the local indices, taken from the ring."""
        self._pid = _aio.forks.pid
        # An uncontended lock's acquire and release are locked instructions: on x86 each
        # is a full fence (the one reordering TSO allows, a store passing a later load,
        # cannot cross it). Python has no other way to ask for one.
        lock = _thread.allocate_lock()
        self._fence_acquire, self._fence_release = lock.acquire, lock.release
        # The inline fast paths of send/receive run only while nothing is unusual: open,
        # not broken, in the process that bound it (a fork turns them off: see _bound).
        self._fast = self._broken is None
        _bound.add(self)

    # -- what it is ----------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Bytes in the ring's data area."""
        return self._capacity

    @property
    def max_message_size(self) -> int:
        """The largest message, in bytes: ``capacity - 8`` (a longer one is a ValueError)."""
        return self._capacity - ring.RECORD_HEADER

    def fds(self) -> tuple[int, int, int, int]:
        """(memfd, data doorbell, room doorbell, socket): hand them to the other process
        (``spawn(..., pass_fds=end.fds())``, ``socket.send_fds``), which rebuilds its end
        with ``from_fds``; then close this end here. Raises ClosedResourceError once
        closed."""
        self._check_open()
        return (self._memfd.fileno(), self._data_bell.fileno(), self._room_bell.fileno(),
                self._sock.fileno())

    def detach(self) -> int:
        """Not possible: an end is several fds. Hand it over with ``fds()`` instead."""
        raise UnsupportedOperation("a Channel end is four fds: hand it over with fds() and "
                                   "from_fds(), then close it")

    # -- waiting -------------------------------------------------------------------------

    async def _sleep(self, target: int, doing: str) -> None:
        """Wait until the peer's index may have reached ``target`` (the doorbell rang, or
        the socket has news), or return at once if it already has. Consumes nothing.
        ``doing`` names the caller's method for the refusal in a forked child."""
        words = self._words
        words[self._wait_word] = target
        try:
            self._fence_acquire()  # the WAITS store before the index load (see above)
            self._fence_release()
            if self._peer_index() >= target:
                return
            await self._wait_readable()
            # A task asleep here when its process forked may wake in the child: the
            # doorbell's count and the socket's markers are the parent's to consume.
            self._refuse_in_forked_child(doing)
            # Woken: usually by the doorbell. Only when it has not rung is the socket
            # asked (it stays readable once it has news, so nothing is missed).
            try:
                self._wait_bell.read_nowait()
            except BlockingIOError:
                self._socket_news()
        finally:
            # In a forked child (the copy of a sleeping task cancelled or closed there,
            # as at its exit) the WAITS word is the parent's, still asleep on it:
            # clearing it would stop the peer from ringing the parent's doorbell.
            if not self._handle.closed and self._pid == _aio.forks.pid:
                words[self._wait_word] = 0

    def _ring_peer(self, index: int) -> None:
        """After publishing ``index``: ring the peer's doorbell if it sleeps for it."""
        self._fence_acquire()  # the index store before the WAITS load
        self._fence_release()
        waits = self._words[self._peer_word]
        if waits and waits <= index:
            self._ring_bell.write(1)

    def _peer_index(self) -> int:
        raise NotImplementedError

    def _socket_news(self) -> None:
        raise NotImplementedError

    def _refuse_in_forked_child(self, doing: str) -> None:
        """Raise UnsupportedOperation if this end is a copy that fork() made in a child
        (see the class docstring); the one check every send and receive makes."""
        if self._pid == _aio.forks.pid:
            return
        kind = type(self).__name__
        raise UnsupportedOperation(
            f"{kind}.{doing}: this end belongs to process {self._pid} and was copied into "
            f"this forked child (pid {_aio.forks.pid}) by fork(); it shares that "
            "process's ring, so using it here would take or overwrite that process's "
            "messages. A forked child may only close() its copy. To use the end here, "
            f"adopt it: end = {kind}.from_fds([os.dup(fd) for fd in copy.fds()]), then "
            "copy.close() (and stop using it in the parent: one process per end at a "
            "time)"
        )

    def _fail(self, error: BaseException) -> BaseException:
        """Remember why this end is broken (every later call raises the same) and
        return the error to raise."""
        self._broken = error
        self._fast = False
        return error

    def _again(self) -> BaseException:
        """A fresh copy of the error that broke this end (a new traceback each time)."""
        error = self._broken
        assert error is not None
        return type(error)(*error.args)

    # -- closing -------------------------------------------------------------------------

    def _close_here(self) -> None:
        if self._handle.closed:
            return
        self._fast = False
        self._waiter.close()
        # Tasks in wait_events(end): their requests hold the file, the close alone would
        # never end their wait (FDResource._close_here does the same).
        _aio.events.notify_closing(self._handle.fileno())
        self._goodbye()
        for view in (self._words, self._data_words, self._data):
            view.release()
        close_mapping(self._map)
        for part in (self._sock, self._data_bell, self._room_bell, self._memfd):
            part.close()
        self._handle.close()

    def _goodbye(self) -> None:
        """What this end tells the peer as it closes (the sender: its marker)."""

    def _state(self) -> str:
        copy = (f", copy inherited from process {self._pid}"
                if self._pid != _aio.forks.pid else "")
        if self._handle.closed:
            return f"capacity={self._capacity}{copy}"
        return (f"capacity={self._capacity}, written={self._words[ring.W_WRITE_INDEX]}, "
                f"read={self._words[ring.W_READ_INDEX]}{copy}")

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_fds(cls: type[E], fds: Sequence[int]) -> E:
        """Rebuild this end from the four fds another process handed over (``fds()``).

        The ring is checked first: a memfd, not hugetlb, sealed with SEAL_SHRINK and
        SEAL_GROW but not against writes, with a Channel header whose sizes match the
        file; then two eventfds and an AF_UNIX stream socket. The new end owns the fds.

        Raises TypeError/ValueError for something that is not four distinct fds,
        NotThisKindOfFD (a ValueError) naming the fd and what is wrong with it — the fds
        are then left open and unowned, as they were — OSError for a closed fd, and
        UnsupportedOperation where no Channel can be built (see ``capabilities()``).
        """
        numbers = _check_fds(fds)
        refuse_if_unsupported()
        adopted: list[Any] = []
        try:
            memfd = MemFD.from_fd(numbers[0])
            adopted.append(memfd)
            capacity = _check_ring(memfd)
            data_bell = _adopt_bell(numbers[1], "fds[1] (data doorbell)")
            adopted.append(data_bell)
            room_bell = _adopt_bell(numbers[2], "fds[2] (room doorbell)")
            adopted.append(room_bell)
            sock = os_channel.HangupSocket.adopt(numbers[3])
            adopted.append(sock)
            self = cls.__new__(cls)
            self._setup(memfd, data_bell, room_bell, sock, capacity)
        except BaseException:
            for part in reversed(adopted):
                part.detach()
            raise
        self._adopted()
        return self

    def _adopted(self) -> None:
        """Take up the ring where the handed-over end left it."""


def refuse_if_unsupported() -> None:
    why = current_backend().channel_refusal()
    if why is not None:
        raise UnsupportedOperation(why)


def _check_fds(fds: object) -> tuple[int, int, int, int]:
    if isinstance(fds, (str, bytes)) or not isinstance(fds, Sequence):
        raise TypeError(f"fds must be a sequence of four fds (from end.fds()), not "
                        f"{type(fds).__name__}")
    if len(fds) != 4:
        raise ValueError(f"fds must hold four fds (memfd, data doorbell, room doorbell, "
                         f"socket), got {len(fds)}")
    for i, fd in enumerate(fds):
        if type(fd) is not int:
            raise TypeError(f"fds[{i}] must be an int, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"fds[{i}] must be >= 0, got {fd}")
    if len(set(fds)) != 4:
        raise ValueError(f"fds must be four different fds, got {tuple(fds)}")
    return fds[0], fds[1], fds[2], fds[3]


def _check_ring(memfd: MemFD) -> int:
    """The ring's capacity, once the memfd is known to be safe to map."""
    if memfd.hugetlb:
        raise NotThisKindOfFD("fds[0]: the memfd is hugetlb-backed; a Channel ring never is "
                              "(a sealed hugetlb file can still fault when huge pages run out)")
    seals = int(memfd.seals)
    if seals & (SHRINK_BIT | GROW_BIT) != SHRINK_BIT | GROW_BIT:
        raise NotThisKindOfFD("fds[0]: the memfd is not sealed with SEAL_SHRINK|SEAL_GROW, so "
                              "its size could change under the mapping (SIGBUS)")
    if seals & NO_WRITES_BITS:
        raise NotThisKindOfFD("fds[0]: the memfd is sealed against writes; a Channel ring "
                              "must be writable by both ends")
    size = memfd.size  # cannot shrink from here on: SEAL_SHRINK
    return ring.check_header(memfd.pread(ring.HEADER_SIZE, 0), size)


def _adopt_bell(fd: int, what: str) -> EventFD:
    try:
        bell = EventFD.from_fd(fd)
    except NotThisKindOfFD as exc:
        raise NotThisKindOfFD(f"{what}: {exc}") from None
    if bell.semaphore:
        bell.detach()
        raise NotThisKindOfFD(f"{what}: fd {fd} is a semaphore-mode eventfd; a Channel's "
                              "doorbells are counters")
    return bell


def close_mapping(mapping: mmap.mmap) -> None:
    # A view lent by receive_view() may still be referenced somewhere (BufferError): the
    # mapping, and its fd, then go with the last reference instead.
    with contextlib.suppress(BufferError):
        mapping.close()
