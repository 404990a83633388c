"""EventFD against a pure-Python model of eventfd(2), driven by hypothesis.

Each example is a random program of writes, non-blocking reads, reader tasks, cancelled
readers and a final close, run on a real EventFD under every loop. After each step the
loop is left to settle and the model's invariants are checked:

* nothing is lost or invented: written == taken by readers + taken by read_nowait + left;
* no lost wake-up: while the counter is non-zero, no reader task is left waiting;
* a cancelled reader takes nothing; closing wakes every waiting reader;
* a write that would carry the counter past 2**64 - 2 raises CounterOverflowError and
  leaves the counter exactly as it was.

Runs on both backends (the kernel's eventfd, and the kqueue one's own counter).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fdloop

WRITE, READ_NOWAIT, START_READER, CANCEL_READER = "write", "read_nowait", "reader", "cancel"
OVERFLOW = "overflow"
MAX_COUNTER = 2**64 - 2

steps = st.lists(
    st.one_of(
        st.tuples(st.just(WRITE), st.integers(0, 5)),
        st.tuples(st.just(READ_NOWAIT), st.just(0)),
        st.tuples(st.just(START_READER), st.just(0)),
        st.tuples(st.just(CANCEL_READER), st.integers(0, 7)),
        st.tuples(st.just(OVERFLOW), st.integers(1, 3)),
    ),
    max_size=30,
)

SETTLE_TIMEOUT = 5.0  # a liveness bound against lost wake-ups, not a speed check


@dataclass
class Model:
    semaphore: bool
    counter: int = 0
    written: int = 0
    taken: int = 0

    def write(self, n: int) -> None:
        self.counter += n
        self.written += n

    def take(self) -> int:
        value = 1 if self.semaphore else self.counter
        self.counter -= value
        self.taken += value
        return value


@dataclass
class Reader:
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    value: int | None = None
    closed_error: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)


async def run_reader(efd: fdloop.EventFD, reader: Reader) -> None:
    try:
        with reader.scope:
            reader.value = await efd.read()
    except fdloop.ClosedResourceError:
        reader.closed_error = True
    finally:
        reader.done.set()


async def settle(model: Model, readers: list[Reader]) -> None:
    """Let readers run until the model says none can make progress."""
    with anyio.fail_after(SETTLE_TIMEOUT):
        while True:
            await anyio.sleep(0)
            for reader in readers:
                if reader.value is not None and reader.done.is_set():
                    model.taken += reader.value
                    model.counter -= reader.value
                    reader.value = None
            waiting = [r for r in readers if not r.done.is_set()]
            if model.counter == 0 or not waiting:
                return
            await anyio.sleep(0.001)


def fdloop_backends() -> list[str]:
    chosen = os.environ.get("FDLOOP_BACKEND", "").strip().lower()
    return [chosen] if chosen else ["linux", "kqueue"]


@pytest.mark.parametrize("fdloop_backend", fdloop_backends(), indirect=True)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(semaphore=st.booleans(), program=steps)
async def test_eventfd_matches_the_model(
    fdloop_backend: str, semaphore: bool, program: list[tuple[str, int]]
) -> None:
    model = Model(semaphore)
    readers: list[Reader] = []
    efd = fdloop.EventFD(semaphore=semaphore)
    async with anyio.create_task_group() as tg:
        for op, arg in program:
            if op == WRITE:
                efd.write(arg)
                model.write(arg)
            elif op == READ_NOWAIT:
                await settle(model, readers)
                if model.counter == 0:
                    with pytest.raises(BlockingIOError):
                        efd.read_nowait()
                else:
                    assert efd.read_nowait() == model.take()
            elif op == START_READER:
                reader = Reader()
                readers.append(reader)
                tg.start_soon(run_reader, efd, reader)
            elif op == CANCEL_READER and readers:
                readers[arg % len(readers)].scope.cancel()
            elif op == OVERFLOW:
                await settle(model, readers)
                if model.counter:  # else the write would fit: n <= 2**64 - 2 is allowed
                    with pytest.raises(fdloop.CounterOverflowError):
                        efd.write(MAX_COUNTER - model.counter + min(arg, model.counter))
            await settle(model, readers)
            assert model.counter >= 0
            if model.counter:
                assert all(r.done.is_set() for r in readers), "lost wake-up: data left unread"
        await settle(model, readers)
        left = 0
        while True:
            try:
                left += efd.read_nowait()
            except BlockingIOError:
                break
        assert left == model.counter, "the kernel counter differs from the model"
        assert model.written == model.taken + left
        waiting = [r for r in readers if not r.done.is_set()]
        efd.close()
        with anyio.fail_after(SETTLE_TIMEOUT):
            for reader in waiting:
                await reader.done.wait()
        assert all(r.closed_error for r in waiting)
