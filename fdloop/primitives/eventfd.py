"""EventFD: a 64-bit counter that tasks, threads and processes can signal through.

The counter lives in the kernel (Linux eventfd) or, on the kqueue backend, in fdloop's
own process; ``capabilities()`` says which. Writes never block; reads wait through the
running loop's poll until the counter is non-zero.
"""

from __future__ import annotations

from .. import _aio, _validate
from ..backends import current as current_backend
from ..backends.contract import EventFDBackend
from ..errors import ClosedResourceError
from .resource import FDResource, naming_fd_limit

MAX_COUNTER = 2**64 - 2
"""The largest value the counter can hold (eventfd(2): 0xfffffffffffffffe)."""


class EventFD(FDResource[EventFDBackend]):
    """An async counter: ``write(n)`` adds to it, ``await read()`` takes it.

    In counter mode ``read()`` returns the whole counter and resets it to 0; with
    ``semaphore=True`` it returns 1 and decrements the counter by one.

    Raises OSError (EMFILE, naming RLIMIT_NOFILE and ``fdloop.raise_fd_limit()``) when
    this process has no fd left; nothing is left open then.

    Threads: ``write()`` and ``read_nowait()`` are safe from any thread (a worker thread
    waking the loop is what the counter is for), as are ``close()`` and ``closed``;
    ``read()`` belongs to the loop that awaits it. Across ``fork()`` the counter is
    shared on purpose: parent and child both use it.
    """

    def __init__(self, initval: int = 0, *, semaphore: bool = False) -> None:
        initval = _validate.integer("initval", initval, low=0, high=2**32 - 1)
        if not isinstance(semaphore, bool):
            raise TypeError(f"semaphore must be a bool, not {type(semaphore).__name__}")
        with naming_fd_limit("EventFD()"):
            handle = current_backend().eventfd(initval, semaphore)
        super().__init__(handle)

    @classmethod
    def from_fd(cls, fd: int) -> EventFD:
        """Adopt an inherited or received eventfd; the EventFD then owns (and closes) it.

        Its flags are left as they were: O_NONBLOCK belongs to the open file description,
        which the sender shares, so a sender's blocking fd stays blocking (fdloop's reads
        and writes still never block; the loop polls a private proxy of the fd).

        Raises NotThisKindOfFD if ``fd`` is open but not an eventfd, OSError if it is
        not open, UnsupportedOperation where the backend's counter cannot be shared.
        """
        with naming_fd_limit(f"EventFD.from_fd({fd!r})"):
            return cls._wrap(current_backend().eventfd_from_fd(fd))

    @classmethod
    def _wrap(cls, handle: EventFDBackend) -> EventFD:
        self = cls.__new__(cls)
        FDResource.__init__(self, handle)
        # An adopted fd shares its flags with the sender: the loop polls the backend's
        # proxy for it instead (uvloop would make the fd itself non-blocking).
        if (poll_fileno := getattr(handle, "poll_fileno", None)) is not None:
            self._waiter = _aio.ReadableWaiter(poll_fileno())
        return self

    @property
    def semaphore(self) -> bool:
        """True in semaphore mode (each read takes 1)."""
        return self._handle.semaphore

    def write(self, n: int = 1) -> None:
        """Add ``n`` to the counter and wake readers. Never blocks.

        Raises ValueError for n outside 0..2**64-2, CounterOverflowError (an
        OverflowError) if the counter would pass 2**64 - 2 — the counter is then
        unchanged — and ClosedResourceError once closed. ``write(0)`` does nothing.
        """
        if type(n) is not int or not 0 < n <= MAX_COUNTER:  # (else: the usual call)
            n = _validate.integer("n", n, low=0, high=MAX_COUNTER)
            if not n:
                self._check_open()
                return
        with self._in_use():  # (safe from any thread: see FDResource._in_use)
            handle = self._handle
            if handle.closed:
                raise ClosedResourceError(f"{type(self).__name__} is closed")
            handle.write(n)

    async def read(self) -> int:
        """Wait until the counter is non-zero, then take it (or 1 in semaphore mode).

        A cancelled read takes nothing. Raises ClosedResourceError if the EventFD is
        closed before or while waiting.
        """
        # Try the read first (a writer in another thread or process has often been
        # there already), else wait on the reader, which the loop keeps registered
        # across reads, and read once per wake-up (see fdloop._aio.asyncio_library for
        # the stale readiness report that no longer wakes us for an empty counter).
        handle, waiter = self._handle, self._waiter
        while True:
            try:
                return handle.read()
            except BlockingIOError:
                await waiter.wait()

    def read_nowait(self) -> int:
        """Take the counter now; BlockingIOError if it is 0. Safe from any thread."""
        with self._in_use():
            self._check_open()
            return self._handle.read()

    def dup(self) -> EventFD:
        """A second EventFD on the same kernel counter, with its own fd.

        Raises ClosedResourceError once closed, OSError (EMFILE) as ``EventFD()`` does.
        """
        self._check_open()
        with naming_fd_limit("EventFD.dup()"):
            return self._wrap(self._handle.dup())

    def __aiter__(self) -> EventFD:
        return self

    async def __anext__(self) -> int:
        """Each value ``read()`` returns; iteration ends when the EventFD is closed."""
        try:
            return await self.read()
        except ClosedResourceError:
            raise StopAsyncIteration from None

    def _state(self) -> str:
        return "semaphore mode" if self.semaphore else "counter mode"
