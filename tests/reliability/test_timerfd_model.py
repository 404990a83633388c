"""TimerFD against a model of timerfd(2), driven by hypothesis, on the real clock.

Expiration counts are made exact without trusting the machine's speed: every deadline is
either in the past by a known number of whole intervals plus half an interval, or far in
the future. With INTERVAL = 100 s, a periodic timer whose first expiry was k intervals
and a half ago has fired exactly k + 1 times when it is read, provided the read comes
within 50 s of the set — a margin no test step comes near. So:

* absolute deadline in the past, periodic: exactly k + 1 expirations; one-shot: exactly 1;
* ``set(0)``: fires at once, exactly 1; a deadline 1000 s ahead: 0 (for the test's life);
* ``disarm()``: 0, and ``get() == (0.0, 0.0)``; any set drops unread expirations (re-arm
  resets the count);
* ``get()`` agrees with the setting: ``(remaining, interval)`` with remaining within the
  half-interval window for a periodic past deadline, (0, 0) for a fired one-shot.

Waiting tasks, cancelled waits and a final close are mixed in, as in the EventFD model:
every expiration ends up with exactly one reader (a waiter or ``wait_nowait``), a
cancelled wait takes nothing, and closing wakes every waiter with ClosedResourceError.
Runs on both backends (Linux timerfd, kqueue EVFILT_TIMER) and on every loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fdloop

INTERVAL = 100.0
FAR = 1000.0
SETTLE_TIMEOUT = 5.0  # liveness bound against lost wake-ups, not a speed check

PAST, NOW, FUTURE, DISARM, TAKE, GET, WAITER, CANCEL = (
    "past", "now", "future", "disarm", "take", "get", "waiter", "cancel",
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just(PAST), st.integers(0, 6), st.booleans()),  # k, periodic
        st.tuples(st.just(NOW), st.just(0), st.booleans()),
        st.tuples(st.just(FUTURE), st.just(0), st.booleans()),  # absolute?
        st.tuples(st.just(DISARM), st.just(0), st.just(False)),
        st.tuples(st.just(TAKE), st.just(0), st.just(False)),
        st.tuples(st.just(GET), st.just(0), st.just(False)),
        st.tuples(st.just(WAITER), st.just(0), st.just(False)),
        st.tuples(st.just(CANCEL), st.integers(0, 7), st.just(False)),
    ),
    max_size=25,
)


def fdloop_backends() -> list[str]:
    chosen = os.environ.get("FDLOOP_BACKEND", "").strip().lower()
    return [chosen] if chosen else ["linux", "kqueue"]


@dataclass
class Model:
    pending: int = 0
    fired: int = 0  # every expiration the model expects the kernel to have counted
    taken: int = 0
    setting: str = "disarmed"  # disarmed | periodic-past | fired-once | future

    def arm(self, setting: str, expirations: int) -> None:
        self.fired -= self.pending  # unread expirations are dropped by any set
        self.pending = expirations
        self.fired += expirations
        self.setting = setting


@dataclass
class Waiter:
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    value: int | None = None
    closed: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)


async def run_waiter(timer: fdloop.TimerFD, waiter: Waiter) -> None:
    try:
        with waiter.scope:
            waiter.value = await timer.wait()
    except fdloop.ClosedResourceError:
        waiter.closed = True
    finally:
        waiter.done.set()


async def settle(model: Model, waiters: list[Waiter]) -> None:
    with anyio.fail_after(SETTLE_TIMEOUT):
        while True:
            await anyio.sleep(0)
            for waiter in waiters:
                if waiter.value is not None and waiter.done.is_set():
                    assert waiter.value == model.pending, "a waiter got a wrong count"
                    model.taken += waiter.value
                    model.pending = 0
                    waiter.value = None
            if model.pending == 0 or all(w.done.is_set() for w in waiters):
                return
            await anyio.sleep(0.001)


def check_get(timer: fdloop.TimerFD, model: Model) -> None:
    remaining, interval = timer.get()
    if model.setting in ("disarmed", "fired-once"):
        assert (remaining, interval) == (0.0, 0.0)
    elif model.setting == "periodic-now":
        assert INTERVAL - 60 < remaining <= INTERVAL and interval == INTERVAL
    elif model.setting == "periodic-past":
        # The next expiry is half an interval after the set, minus the time since.
        assert 0 < remaining <= INTERVAL / 2 and interval == INTERVAL
    else:
        assert FAR - 60 < remaining <= FAR and interval in (0.0, INTERVAL)


@pytest.mark.parametrize("fdloop_backend", fdloop_backends(), indirect=True)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(clock=st.sampled_from(["monotonic", "realtime", "boottime"]), program=steps)
async def test_timerfd_matches_the_model(
    fdloop_backend: str, clock: str, program: list[tuple[str, int, bool]]
) -> None:
    model = Model()
    waiters: list[Waiter] = []
    timer = fdloop.TimerFD(clock)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        for op, number, flag in program:
            if op == PAST:
                now = timer.now()
                # A monotonic or boottime clock only reaches back to boot: on a machine
                # up for less than k intervals, go back as far as it allows.
                back = max(0, min(number, int((now - INTERVAL) // INTERVAL)))
                if flag:
                    timer.set(now - back * INTERVAL - INTERVAL / 2, INTERVAL, absolute=True)
                    model.arm("periodic-past", back + 1)
                else:
                    timer.set(now - back * INTERVAL - 1, absolute=True)
                    model.arm("fired-once", 1)
            elif op == NOW:
                timer.set(0, INTERVAL if flag else 0)
                model.arm("periodic-now" if flag else "fired-once", 1)
            elif op == FUTURE:
                after = timer.now() + FAR if flag else FAR
                timer.set(after, INTERVAL, absolute=flag)
                model.arm("future", 0)
            elif op == DISARM:
                timer.disarm()
                model.arm("disarmed", 0)
            elif op == TAKE:
                await settle(model, waiters)
                if model.pending:
                    assert timer.wait_nowait() == model.pending
                    model.taken += model.pending
                    model.pending = 0
                else:
                    with pytest.raises(BlockingIOError):
                        timer.wait_nowait()
            elif op == GET:
                check_get(timer, model)
            elif op == WAITER:
                waiter = Waiter()
                waiters.append(waiter)
                tg.start_soon(run_waiter, timer, waiter)
            elif op == CANCEL and waiters:
                waiters[number % len(waiters)].scope.cancel()
            await settle(model, waiters)
            if model.pending:
                assert all(w.done.is_set() for w in waiters), "lost wake-up: count unread"
        await settle(model, waiters)
        try:
            left = timer.wait_nowait()
        except BlockingIOError:
            left = 0
        assert left == model.pending, "the kernel's count differs from the model"
        assert model.fired == model.taken + left, "an expiration was lost or invented"
        # A waiter whose cancel was asked for but not yet delivered may end either way
        # when the close comes first (cancelled or closed): only the others must be closed.
        waiting = [w for w in waiters if not w.done.is_set() and not w.scope.cancel_called]
        timer.close()
        with anyio.fail_after(SETTLE_TIMEOUT):
            for waiter in waiting:
                await waiter.done.wait()
        assert all(w.closed for w in waiting)
