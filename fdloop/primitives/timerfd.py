"""TimerFD: a one-shot or periodic timer that tasks await through the loop's poll.

The timer lives in the kernel (Linux timerfd) or, on the kqueue backend, in a kqueue
(EVFILT_TIMER); ``capabilities()`` says which. It counts expirations until they are read,
so a late reader learns how many it missed instead of losing them, and a periodic timer
stays on its ``first + k * interval`` schedule however late it is read.

Times cross the backend seam as integer nanoseconds; this module turns the user's
seconds into them and back.
"""

from __future__ import annotations

from typing import Literal

from .. import _aio, _validate
from ..backends import current as current_backend
from ..backends.contract import TimerFDBackend
from ..errors import ClosedResourceError
from .resource import FDResource, naming_fd_limit

Clock = Literal["monotonic", "realtime", "boottime"]
CLOCKS: tuple[Clock, ...] = ("monotonic", "realtime", "boottime")

_NS = 1_000_000_000
MAX_NANOSECONDS = 2**63 - 1
"""The longest time a timer takes: the kernel keeps times as signed 64-bit nanoseconds."""
MAX_SECONDS = MAX_NANOSECONDS // _NS
"""The largest whole number of seconds within MAX_NANOSECONDS: about 292 years
(absolute realtime values reach the year 2262)."""


class TimerFD(FDResource[TimerFDBackend]):
    """A timer on one clock: ``set()`` arms it, ``await wait()`` counts its expirations.

    ``clock`` is ``"monotonic"`` (never jumps; stops while the machine is suspended),
    ``"boottime"`` (like monotonic, but keeps running through suspend) or
    ``"realtime"`` (the wall clock; it can be set, see ``cancel_on_set``).
    A new timer is disarmed. Raises OSError (EMFILE, naming RLIMIT_NOFILE and
    ``fdloop.raise_fd_limit()``) when this process has no fd left.

    Threads: ``set()``, ``disarm()``, ``get()``, ``now()`` and ``wait_nowait()`` (one
    system call each) are safe from any thread, as are ``close()`` and ``closed``;
    ``wait()`` belongs to the loop that awaits it.

    Fork: the timer is shared with a forked child, so a copy there refuses ``set()``,
    ``disarm()``, ``wait()`` and ``wait_nowait()`` (UnsupportedOperation): it would
    change or take the parent's expirations. ``close()`` drops only the child's fd; a
    child that means to share the timer adopts it with ``TimerFD.from_fd(os.dup(fd))``.
    """

    def __init__(self, clock: Clock = "monotonic") -> None:
        clock = _validate.one_of("clock", clock, CLOCKS)  # type: ignore[assignment]
        with naming_fd_limit(f"TimerFD(clock={clock!r})"):
            handle = current_backend().timerfd(clock)
        super().__init__(handle)
        self._keep_out_of_forks()

    @classmethod
    def from_fd(cls, fd: int) -> TimerFD:
        """Adopt an inherited or received timer fd; the TimerFD then owns (and closes) it.

        Its setting and unread count are kept, and so are its flags (O_NONBLOCK is
        shared with the sender; reads never block all the same). Raises NotThisKindOfFD
        if ``fd`` is open but not a timer, OSError if it is not open,
        UnsupportedOperation where the backend cannot adopt one.
        """
        with naming_fd_limit(f"TimerFD.from_fd({fd!r})"):
            return cls._wrap(current_backend().timerfd_from_fd(fd))

    @classmethod
    def _wrap(cls, handle: TimerFDBackend) -> TimerFD:
        self = cls.__new__(cls)
        FDResource.__init__(self, handle)
        self._keep_out_of_forks()
        # An adopted fd shares its flags with the sender: the loop polls the backend's
        # proxy for it instead (uvloop would make the fd itself non-blocking).
        if (poll_fileno := getattr(handle, "poll_fileno", None)) is not None:
            self._waiter = _aio.ReadableWaiter(poll_fileno())
        return self

    @property
    def clock(self) -> str:
        """The clock the timer runs on, e.g. ``"monotonic"``."""
        return self._handle.clock

    def set(
        self, after: float, interval: float = 0, absolute: bool = False,
        cancel_on_set: bool = False,
    ) -> None:
        """Arm the timer (replacing any previous setting) and drop unread expirations.

        The first expiry is ``after`` seconds from now, or, with ``absolute=True``, the
        moment the timer's clock reads ``after`` (see ``now()``); a time already past
        fires at once. ``after=0`` also fires at once (the kernel would read 0 as
        "disarm": use ``disarm()`` for that). A non-zero ``interval`` repeats the timer
        every ``interval`` seconds after the first expiry; 0 makes it one-shot.

        ``cancel_on_set=True`` (realtime clock with ``absolute=True`` only) makes the
        next ``wait()`` raise ClockChanged when the wall clock is set discontinuously.

        Raises TypeError/ValueError naming the argument for a non-number, NaN, infinity,
        a negative time or one past MAX_SECONDS (about 292 years), and for
        ``cancel_on_set`` without a realtime clock and ``absolute=True``; the previous
        setting is then untouched. ClosedResourceError once closed.
        """
        after_ns = max(1, _nanoseconds("after", after))
        interval_ns = _nanoseconds("interval", interval)
        absolute = _flag("absolute", absolute)
        cancel_on_set = _flag("cancel_on_set", cancel_on_set)
        if cancel_on_set:
            # timerfd_create(2): TFD_TIMER_CANCEL_ON_SET only acts together with
            # TFD_TIMER_ABSTIME on a CLOCK_REALTIME timer; the kernel would silently
            # ignore it anywhere else, so we refuse instead.
            if not self.clock.startswith("realtime"):
                raise ValueError(
                    f"cancel_on_set needs the realtime clock; this timer runs on {self.clock}"
                )
            if not absolute:
                raise ValueError("cancel_on_set needs absolute=True (a wall-clock time)")
        self._refuse_forked_copy("set()")
        with self._in_use():  # (safe from any thread: see FDResource._in_use)
            self._check_open()
            self._handle.settime(
                after_ns, interval_ns, absolute=absolute, cancel_on_set=cancel_on_set
            )

    def disarm(self) -> None:
        """Stop the timer and drop unread expirations; waiters keep waiting.

        Raises ClosedResourceError once closed.
        """
        self._refuse_forked_copy("disarm()")
        with self._in_use():
            self._check_open()
            self._handle.settime(0, 0, absolute=False, cancel_on_set=False)

    def get(self) -> tuple[float, float]:
        """``(remaining, interval)`` in seconds; ``(0.0, 0.0)`` when disarmed.

        ``remaining`` is relative to now even for an absolute setting; ``interval`` is 0
        for a one-shot timer. Raises ClosedResourceError once closed.
        """
        with self._in_use():
            self._check_open()
            remaining, interval = self._handle.gettime()
        return remaining / _NS, interval / _NS

    def now(self) -> float:
        """The current time of the timer's clock in seconds, the scale ``absolute`` uses."""
        with self._in_use():
            self._check_open()
            return self._handle.now() / _NS

    async def wait(self) -> int:
        """Wait for the timer to expire; return the expirations since the last wait.

        A reader that comes late gets every expiration it missed (e.g. 5), never fewer.
        Waits forever on a disarmed timer (until it is set or closed). Always lets other
        tasks run first, so a fast periodic timer cannot starve the loop. A cancelled
        wait takes nothing. Raises ClockChanged (the count is dropped, the timer stays
        armed) for a ``cancel_on_set`` timer whose wall clock was set, and
        ClosedResourceError if the timer is closed before or while waiting.
        """
        self._refuse_forked_copy("wait()")
        await _aio.checkpoint()
        while True:
            try:
                return self._handle.read()
            except BlockingIOError:
                await self._wait_readable()

    def wait_nowait(self) -> int:
        """Take the expirations now; BlockingIOError if there are none.

        Raises ClockChanged and ClosedResourceError as ``wait()`` does.
        """
        self._refuse_forked_copy("wait_nowait()")
        with self._in_use():
            self._check_open()
            return self._handle.read()

    def __aiter__(self) -> TimerFD:
        return self

    async def __anext__(self) -> int:
        """Each count ``wait()`` returns; iteration ends when the TimerFD is closed."""
        try:
            return await self.wait()
        except ClosedResourceError:
            raise StopAsyncIteration from None

    def _state(self) -> str:
        if self._handle.closed:
            return self.clock
        try:
            remaining, interval = self._handle.gettime()
        except OSError:  # a repr must not raise, whatever state the fd is in
            return self.clock
        if not remaining:
            return f"{self.clock}, disarmed"
        every = f", every {interval / _NS:g}s" if interval else ""
        return f"{self.clock}, armed ({remaining / _NS:g}s left{every})"


def _nanoseconds(name: str, value: object) -> int:
    """A validated duration (or absolute time) in seconds as whole nanoseconds."""
    too_long = f"{name} must be <= {MAX_SECONDS} seconds (about 292 years), got {value!r:.40}"
    try:
        seconds = _validate.seconds(name, value)
    except OverflowError:  # an int too large for a float
        raise ValueError(too_long) from None
    if seconds > MAX_SECONDS:
        raise ValueError(too_long)
    # Ints convert exactly; a float is rounded to the nearest nanosecond, and a positive
    # value that rounds to 0 becomes 1 ns so it keeps its meaning (armed, periodic).
    nanoseconds = value * _NS if isinstance(value, int) else round(seconds * _NS)
    if seconds > 0:
        nanoseconds = max(1, nanoseconds)
    return int(nanoseconds)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value
