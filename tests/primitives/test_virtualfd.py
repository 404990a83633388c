"""VirtualFD against real pollers: select, poll, epoll (level and edge), the loops' own
readiness waits, wait_events, and a child process, for every event bit; transitions,
one-way events and their companions, consumer I/O, threads. Runs on both backends (the
kqueue backend builds the same loopback TCP construction)."""

from __future__ import annotations

import contextlib
import random
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop import UnsupportedOperation
from fdloop.primitives.events import event_names

IN, PRI, OUT, ERR, HUP = (select.POLLIN, select.POLLPRI, select.POLLOUT, select.POLLERR,
                          select.POLLHUP)
RDHUP = fdloop.POLLRDHUP
SETTABLE = [IN, PRI, OUT]
ONE_WAY = [RDHUP, HUP, ERR]
SIX = IN | PRI | OUT | ERR | HUP | RDHUP


def _poll(fd: int) -> int:
    poller = select.poll()
    poller.register(fd, SIX)
    ready = poller.poll(0)
    return ready[0][1] & SIX if ready else 0


def _select(fd: int) -> int:
    # select(2) folds the mask into three lists: read (IN, HUP, ERR), write (OUT, ERR),
    # except (PRI).
    r, w, x = select.select([fd], [fd], [fd], 0)
    return (IN if r else 0) | (OUT if w else 0) | (PRI if x else 0)


def _epoll(fd: int) -> int:
    with select.epoll() as ep:
        ep.register(fd, SIX)
        ready = ep.poll(0)
    return ready[0][1] & SIX if ready else 0


CONSUMERS: dict[str, Callable[[int], int]] = {"select": _select, "poll": _poll, "epoll": _epoll}


def _seen_by(consumer: str, mask: int) -> int:
    """What ``consumer`` can show of ``mask``."""
    if consumer != "select":
        return mask
    return (IN if mask & (IN | HUP | ERR | RDHUP) else 0) | (OUT if mask & (OUT | ERR) else 0) \
        | (PRI if mask & PRI else 0)


@pytest.mark.parametrize("event", SETTABLE, ids=event_names)
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_set_clear_set_is_seen_by_every_poller(consumer: str, event: int) -> None:
    look = CONSUMERS[consumer]
    with fdloop.VirtualFD() as vfd:
        assert look(vfd.fileno()) == 0
        for _round in range(2):
            assert vfd.set(event) == event
            assert look(vfd.fileno()) == _seen_by(consumer, event)
            assert vfd.events == event
            assert vfd.set(0) == 0
            assert look(vfd.fileno()) == 0


@pytest.mark.parametrize("event", ONE_WAY, ids=event_names)
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_one_way_events_bring_their_companions(consumer: str, event: int) -> None:
    with fdloop.VirtualFD(PRI if event != ERR else 0) as vfd:
        shown = vfd.set(event | (PRI if event != ERR else 0))
        assert shown & event
        assert CONSUMERS[consumer](vfd.fileno()) == _seen_by(consumer, shown)
        if event == HUP:
            assert shown & (IN | RDHUP | OUT) == IN | RDHUP | OUT
        with pytest.raises(UnsupportedOperation, match="cannot be cleared"):
            vfd.set(0)
        assert vfd.events == shown  # a failed call changes nothing


def test_random_transitions_match_the_kernel() -> None:
    rng = random.Random(17)
    with fdloop.VirtualFD() as vfd:
        for _step in range(300):
            want = sum(bit for bit in SETTABLE if rng.random() < 0.5)
            assert vfd.set(want) == want
            assert _poll(vfd.fileno()) == want


@pytest.mark.parametrize("event", SETTABLE, ids=event_names)
def test_edge_triggered_epoll_sees_each_transition_to_set(event: int) -> None:
    with fdloop.VirtualFD() as vfd, select.epoll() as ep:
        ep.register(vfd.fileno(), SIX | select.EPOLLET)
        for _round in range(3):
            vfd.set(event)
            ready = ep.poll(1)
            assert ready and ready[0][1] & event
            assert not [e for _fd, e in ep.poll(0) if e & event]  # the edge is consumed
            vfd.set(0)


def test_add_remove_and_validation() -> None:
    with fdloop.VirtualFD(IN) as vfd:
        assert vfd.add(PRI) == IN | PRI
        assert vfd.remove(IN) == PRI
        with pytest.raises(ValueError, match="events"):
            vfd.set(0x4000_0000)
        with pytest.raises(TypeError, match="events"):
            vfd.set("POLLIN")  # type: ignore[arg-type]
        assert vfd.events == PRI
        assert "POLLPRI" in repr(vfd)
    assert "closed" in repr(vfd)
    with pytest.raises(fdloop.ClosedResourceError):
        vfd.set(IN)
    with pytest.raises(UnsupportedOperation):
        fdloop.VirtualFD.from_fd(0)


def test_consumer_read_and_write_are_harmless() -> None:
    with fdloop.VirtualFD(IN) as vfd:
        consumer = socket.socket(fileno=vfd.fileno())
        try:
            assert consumer.recv(16, socket.MSG_DONTWAIT) == b"\0"  # the marker
            assert vfd.events == 0  # the read took POLLIN; the owner sees it
            assert vfd.set(IN | OUT) == IN | OUT
            consumer.send(b"x" * 1000, socket.MSG_DONTWAIT)  # into the backlog
            assert vfd.set(IN | OUT) == IN | OUT
            vfd.set(0)
            # A small write may still go into the free room of the last queued buffer
            # (tcp_sendmsg only checks memory for a new one); POLLOUT stays clear.
            with contextlib.suppress(BlockingIOError):
                consumer.send(b"x", socket.MSG_DONTWAIT)
            assert _poll(vfd.fileno()) == 0
        finally:
            consumer.detach()


def test_detach_hands_over_the_consumer_end() -> None:
    vfd = fdloop.VirtualFD(PRI)
    fd = vfd.detach()
    try:
        assert _poll(fd) & (IN | RDHUP)  # the peer is gone: end of file
    finally:
        import os

        os.close(fd)


def test_scm_rights_copy_sees_the_same_events() -> None:
    with fdloop.VirtualFD() as vfd:
        left, right = socket.socketpair()
        with left, right:
            socket.send_fds(left, [b"x"], [vfd.fileno()])
            _msg, fds, _flags, _addr = socket.recv_fds(right, 1, 1)
        try:
            vfd.set(PRI)
            assert _poll(fds[0]) == PRI
            vfd.set(OUT)
            assert _poll(fds[0]) == OUT
        finally:
            import os

            os.close(fds[0])


CHILD = """
import select, sys
fd, want = int(sys.argv[1]), int(sys.argv[2])
poller = select.poll()
poller.register(fd, want)
print("ready", flush=True)
for _ in range(2):
    got = poller.poll(10000)
    print(got[0][1] & want if got else 0, flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("event", SETTABLE, ids=event_names)
def test_a_child_process_polls_the_passed_fd(event: int) -> None:
    with fdloop.VirtualFD() as vfd:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(vfd.fileno()), str(event)],
            pass_fds=[vfd.fileno()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdin is not None
        try:
            assert child.stdout.readline() == "ready\n"
            for _round in range(2):
                vfd.set(event)
                assert child.stdout.readline() == f"{event}\n"
                vfd.set(0)
                child.stdin.write("\n")
                child.stdin.flush()
        finally:
            child.kill()
            child.communicate()


def test_set_from_eight_threads() -> None:
    with fdloop.VirtualFD() as vfd:
        barrier, finished = threading.Barrier(8), threading.Barrier(8)
        errors: list[BaseException] = []

        def toggle(bit: int, end_set: bool) -> None:
            try:
                barrier.wait()
                for _ in range(60):
                    vfd.add(bit)
                    vfd.remove(bit)
                finished.wait()  # every toggle done: now only the last adds count
                if end_set:
                    vfd.add(bit)
            except BaseException as exc:  # reported below
                errors.append(exc)

        # Three bits, eight threads: each add/remove is a read-modify-write under one
        # lock, so no update may be lost; then the first three threads add their bit.
        plan = [(SETTABLE[i % 3], i < 3) for i in range(8)]
        threads = [threading.Thread(target=toggle, args=p) for p in plan]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        expected = sum({bit for bit, end in plan if end})
        assert vfd.events == expected == _poll(vfd.fileno())


# -- the loops' own readiness waits and wait_events -------------------------------------


async def test_loop_readiness_waits(anyio_backend: tuple[str, dict[str, object]]) -> None:
    with fdloop.VirtualFD() as vfd, anyio.fail_after(5):
        for event, wait in ((IN, anyio.wait_readable), (OUT, anyio.wait_writable)):
            async with anyio.create_task_group() as tg:
                done = anyio.Event()

                async def waiter(wait: Callable[..., object] = wait,
                                 done: anyio.Event = done) -> None:
                    await wait(vfd.fileno())  # type: ignore[misc]
                    done.set()

                tg.start_soon(waiter)
                await anyio.sleep(0.02)
                assert not done.is_set()
                vfd.set(event)
                await done.wait()
            vfd.set(0)


async def test_asyncio_add_reader_and_add_writer(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("add_reader/add_writer are asyncio's")
    import asyncio

    loop = asyncio.get_running_loop()
    with fdloop.VirtualFD() as vfd:
        for event, add, remove in ((IN, loop.add_reader, loop.remove_reader),
                                   (OUT, loop.add_writer, loop.remove_writer)):
            fired = asyncio.Event()
            add(vfd.fileno(), fired.set)
            try:
                await asyncio.sleep(0.02)
                assert not fired.is_set()
                vfd.set(event)
                await asyncio.wait_for(fired.wait(), 5)
            finally:
                remove(vfd.fileno())
                vfd.set(0)


@pytest.mark.parametrize("event", SETTABLE + ONE_WAY, ids=event_names)
async def test_wait_events_sees_every_event(event: int, fdloop_backend: str) -> None:
    if event == PRI and fdloop_backend == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    with fdloop.VirtualFD() as vfd, anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            got: list[int] = []

            async def waiter() -> None:
                got.append(await fdloop.wait_events(vfd, event))

            tg.start_soon(waiter)
            await anyio.sleep(0.02)
            assert not got
            vfd.set(event)
        assert got[0] & event


async def test_data_does_not_pass_for_urgent(fdloop_backend: str) -> None:
    # A socket wakes its readers with IN|PRI|RDNORM|RDBAND for any data, and the kernel's
    # poll requests answer with that key: unchecked, ordinary data would pass for POLLPRI.
    if fdloop_backend == "kqueue":
        pytest.skip("kqueue backend: POLLPRI needs EVFILT_EXCEPT, not in the emulator")
    with fdloop.VirtualFD() as vfd, anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            got: list[int] = []

            async def waiter() -> None:
                got.append(await fdloop.wait_events(vfd, PRI))

            tg.start_soon(waiter)
            await anyio.sleep(0.02)
            vfd.set(IN)
            await anyio.sleep(0.05)
            assert not got
            vfd.set(IN | PRI)
        assert got == [PRI]


def test_virtual_device_example() -> None:
    example = Path(__file__).parents[2] / "examples" / "virtual_device.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.splitlines() == [
        "child got urgent job 2: page the on-call",
        "child got job 1: resize thumbnails",
        "child got job 3: send the newsletter",
        "child saw POLLHUP: queue closed, 3 jobs done",
    ]


def test_hangup_never_shows_end_of_file_without_pollhup() -> None:
    # Raising POLLHUP shuts both directions; in the other order a poller saw
    # POLLIN|POLLRDHUP alone between the two (the virtual_device example's child did).
    # (What remains is the kernel's own instant between counting the peer's FIN as a
    # readable byte and setting RCV_SHUTDOWN: POLLIN alone, seen once in ~40 rounds.)
    for _round in range(20):
        with fdloop.VirtualFD() as vfd:
            seen: list[int] = []
            stop = threading.Event()

            def watch(fd: int = vfd.fileno(), stop: threading.Event = stop,
                      seen: list[int] = seen) -> None:
                while not stop.is_set():
                    mask = _poll(fd)
                    if mask & RDHUP:
                        seen.append(mask)
                        return

            watcher = threading.Thread(target=watch)
            watcher.start()
            vfd.set(HUP)
            stop.set()
            watcher.join(10)
            assert all(mask & HUP for mask in seen), [event_names(m) for m in seen]
