"""Channel within one process: messages, views, ends, cancellation, bad fds, bad peers.

Both ends live in this process here (the processes are in
tests/reliability/test_channel_processes.py); the ring, its doorbells and its sockets
are the real kernel objects all the same. On the kqueue backend (the emulator on
Linux) a Channel cannot be built — its EventFD does not cross processes — and the test
there checks that it says so.
"""

from __future__ import annotations

import array
import gc
import mmap
import os
import random
import socket

import anyio
import pytest

import fdloop
from fdloop import backends
from fdloop.primitives import channel_ring as ring

WORDS = {"write": ring.W_WRITE_INDEX * 8, "read": ring.W_READ_INDEX * 8}


@pytest.fixture(autouse=True)
def _channel_backend(request: pytest.FixtureRequest) -> None:
    if "fdloop_backend" in request.fixturenames:
        request.getfixturevalue("fdloop_backend")
    if request.node.name.startswith("test_refused_where_unsupported"):
        return
    if backends.selected_name() != "linux":
        pytest.skip("no Channel on this backend: test_refused_where_unsupported checks that")


def row() -> fdloop.Capability:
    return next(c for c in fdloop.capabilities() if c.primitive == "Channel")


def test_refused_where_unsupported() -> None:
    if backends.selected_name() == "linux":
        assert row().native and row().missing == ()
        return
    assert not row().native
    assert "EventFD" in row().missing[0] or "eventfd" in row().missing[0]
    with pytest.raises(fdloop.UnsupportedOperation, match="eventfd"):
        fdloop.channel()


async def test_messages_arrive_in_order_as_bytes() -> None:
    sender, receiver = fdloop.channel(capacity=4096)
    with sender, receiver:
        assert sender.capacity == 4096 and receiver.max_message_size == 4088
        items = [b"", b"a", bytearray(b"bc"), memoryview(b"xdefx")[1:4],
                 array.array("i", [1, 2])]
        for item in items:
            await sender.send(item)
        for item in items:
            got = await receiver.receive()
            assert type(got) is bytes and got == bytes(item)
        # The largest fills the whole ring: the sender skips to the start, then waits
        # for the receiver to pass the skip.
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender.send, b"z" * 4088)
            with anyio.fail_after(5):
                assert await receiver.receive() == b"z" * 4088
        with pytest.raises(anyio.WouldBlock):
            receiver.receive_nowait()


async def test_wraps_around_many_times_with_random_sizes() -> None:
    sender, receiver = fdloop.channel(capacity=256)
    rng = random.Random(7)
    messages = [rng.randbytes(rng.randint(0, 248)) for _ in range(2000)]

    async def produce() -> None:
        for message in messages:
            await sender.send(message)
        await sender.aclose()

    with receiver, anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            assert [m async for m in receiver] == messages


async def test_bad_arguments_are_refused() -> None:
    for bad, error in ((100, ValueError), (32, ValueError), ("1", TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match="capacity"):
            fdloop.channel(bad)  # type: ignore[arg-type]
    sender, receiver = fdloop.channel(64)
    with sender, receiver:
        with pytest.raises(ValueError, match="at most 56 bytes"):
            await sender.send(b"x" * 57)
        with pytest.raises(TypeError, match="item"):
            await sender.send("text")  # type: ignore[arg-type]


async def test_backpressure_never_queues_more_than_the_ring() -> None:
    sender, receiver = fdloop.channel(capacity=1024)
    sent: list[int] = []

    async def produce() -> None:
        for i in range(300):
            await sender.send(i.to_bytes(4, "little") * 10)
            sent.append(i)
        await sender.aclose()

    with receiver:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            got = 0
            with anyio.fail_after(10):
                async for message in receiver:
                    assert message == got.to_bytes(4, "little") * 10
                    assert len(sent) - got <= 1024 // 48 + 1  # at most a ring's worth
                    got += 1
                    if got % 50 == 0:
                        await anyio.sleep(0.01)  # slow down: the producer must wait
        assert got == 300


async def test_receive_view_lends_the_ring_itself() -> None:
    sender, receiver = fdloop.channel(capacity=1 << 16)
    with sender, receiver:
        await sender.send(b"x" * 1000 + b"tail")
        async with receiver.receive_view() as view:
            assert view.readonly and len(view) == 1004 and bytes(view[-4:]) == b"tail"
            assert isinstance(view.obj, mmap.mmap)  # no copy: a window onto the mapping
            mapped = memoryview(view.obj)
            # The same bytes the sender wrote, at the record's place in the data area.
            assert bytes(mapped[ring.HEADER_SIZE + 8 : ring.HEADER_SIZE + 12]) == b"xxxx"
            mapped.release()
        with pytest.raises(ValueError, match="released"):
            bytes(view)


async def test_a_view_kept_past_its_block_holds_its_space() -> None:
    sender, receiver = fdloop.channel(capacity=128)
    with sender, receiver:
        await sender.send(b"a" * 100)
        with pytest.raises(BufferError, match="outlived"):
            async with receiver.receive_view() as view:
                kept = view[:10]
        assert bytes(kept) == b"a" * 10
        with pytest.raises(anyio.WouldBlock):  # the space is still lent out
            sender.send_nowait(b"b" * 100)
        del kept
        gc.collect()
        with pytest.raises(anyio.WouldBlock):
            receiver.receive_nowait()  # gives the space back now that the slice is gone
        sender.send_nowait(b"b" * 100)
        assert receiver.receive_nowait() == b"b" * 100


async def test_closing_the_sender_ends_the_stream_after_the_queue() -> None:
    sender, receiver = fdloop.channel(capacity=4096)
    with receiver:
        await sender.send(b"1")
        await sender.send(b"2")
        await sender.aclose()
        with pytest.raises(fdloop.ClosedResourceError):
            await sender.send(b"3")
        assert [m async for m in receiver] == [b"1", b"2"]
        for _ in range(2):
            with pytest.raises(anyio.EndOfStream):
                await receiver.receive()


async def test_closing_the_receiver_breaks_sends_for_good() -> None:
    sender, receiver = fdloop.channel(capacity=64)
    with sender:
        await sender.send(b"x" * 40)

        async def close_soon() -> None:
            await anyio.sleep(0.05)
            receiver.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(close_soon)
            with anyio.fail_after(5), pytest.raises(fdloop.BrokenResourceError):
                await sender.send(b"y" * 40)  # waits for room, then the receiver goes
        for _ in range(3):
            with pytest.raises(fdloop.BrokenResourceError, match="receiver is gone"):
                await sender.send(b"z")


async def test_a_send_that_need_not_wait_notices_the_receiver_within_a_second() -> None:
    sender, receiver = fdloop.channel(capacity=1 << 16)
    with sender:
        await sender.send(b"first")
        receiver.close()
        with anyio.fail_after(1):
            while True:
                try:
                    await sender.send(b"more")
                except fdloop.BrokenResourceError:
                    break
                await anyio.sleep(0.005)


async def test_closed_ends_refuse() -> None:
    """(That close() wakes a waiting receive(): tests/primitives/test_contract.py.)"""
    sender, receiver = fdloop.channel(capacity=64)
    with sender:
        receiver.close()
        assert receiver.closed
        with pytest.raises(fdloop.ClosedResourceError):
            await receiver.receive()
        for call in (receiver.receive_nowait, receiver.fds):
            with pytest.raises(fdloop.ClosedResourceError):
                call()
        receiver.close()  # idempotent


async def test_cancelled_sends_and_receives_lose_and_duplicate_nothing() -> None:
    """Random cancellation of both sides at their only await (waiting for room or data):
    the messages received are exactly the sends that returned, in order."""
    sender, receiver = fdloop.channel(capacity=256)
    rng = random.Random(3)
    done: list[int] = []
    got: list[int] = []

    async def produce() -> None:
        i = 0
        while i < 400:
            with anyio.move_on_after(rng.choice((0, 0.0005, 0.002))):
                await sender.send(i.to_bytes(4, "little") * rng.randint(1, 30))
                done.append(i)
                i += 1
        await sender.aclose()

    async def consume() -> None:
        while True:
            with anyio.move_on_after(rng.choice((0, 0.0005, 0.002))):
                try:
                    message = await receiver.receive()
                except anyio.EndOfStream:
                    return
                got.append(int.from_bytes(message[:4], "little"))
            if rng.random() < 0.05:
                await anyio.sleep(0.001)

    with receiver, anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            tg.start_soon(consume)
    assert got == done == list(range(400))


# -- from_fds: what it refuses ------------------------------------------------------------

def _refused(end: type[fdloop.ChannelSender | fdloop.ChannelReceiver], fds: list[int],
             match: str) -> None:
    before = [os.fstat(fd).st_ino for fd in fds]
    with pytest.raises((fdloop.NotThisKindOfFD, ValueError, TypeError), match=match):
        end.from_fds(fds)
    assert [os.fstat(fd).st_ino for fd in fds] == before  # left open, as they were


def test_from_fds_checks_every_fd() -> None:
    sender, receiver = fdloop.channel(capacity=4096)
    good = list(receiver.fds())
    read_end, write_end = os.pipe()
    plain = fdloop.MemFD("plain", ring.HEADER_SIZE + 4096)
    semaphore = fdloop.EventFD(semaphore=True)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="four fds"):
            fdloop.ChannelReceiver.from_fds(good[:3])
        with pytest.raises(TypeError, match="fds"):
            fdloop.ChannelReceiver.from_fds("1234")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="different"):
            fdloop.ChannelReceiver.from_fds([good[0]] * 4)
        _refused(fdloop.ChannelReceiver, [read_end, *good[1:]], "memfd")
        _refused(fdloop.ChannelReceiver, [plain.fileno(), *good[1:]], "SEAL_SHRINK")
        plain.seal(fdloop.SEAL_SHRINK, fdloop.SEAL_GROW)
        _refused(fdloop.ChannelReceiver, [plain.fileno(), *good[1:]], "header")
        _refused(fdloop.ChannelReceiver, [good[0], semaphore.fileno(), *good[2:]],
                 "semaphore")
        _refused(fdloop.ChannelReceiver, [good[0], read_end, *good[2:]], "doorbell")
        _refused(fdloop.ChannelReceiver, [*good[:3], write_end], "not a socket")
        _refused(fdloop.ChannelReceiver, [*good[:3], udp.fileno()], "AF_INET")
    finally:
        for thing in (sender, receiver, plain, semaphore, udp):
            thing.close()
        os.close(read_end)
        os.close(write_end)


def test_from_fds_checks_the_header_sizes() -> None:
    sender, receiver = fdloop.channel(capacity=4096)
    with sender, receiver, mmap.mmap(sender.fds()[0], ring.HEADER_SIZE) as header:
        words = memoryview(header).cast("Q")
        for word, value, match in ((ring.W_CAPACITY, 8192, "holds"),
                                   (ring.W_CAPACITY, 100, "multiple of 8"),
                                   (ring.W_VERSION, 2, "version"),
                                   (ring.W_WRITE_INDEX, 8192, "indices")):
            old = words[word]
            words[word] = value
            copies = [os.dup(fd) for fd in receiver.fds()]
            try:
                _refused(fdloop.ChannelReceiver, copies, match)
            finally:
                for fd in copies:
                    os.close(fd)
                words[word] = old
        words.release()


# -- a hostile peer -----------------------------------------------------------------------

@pytest.mark.parametrize(("where", "value", "match"), [
    ("write", 12, "WRITE_INDEX"),              # not a multiple of 8
    ("write", 4096 + 64, "WRITE_INDEX"),       # more than a ring ahead of the reader
    ("length", 2**40, "runs past"),            # a record longer than the data area
    ("length", 120, "runs past"),              # past WRITE_INDEX
    ("socket", 0, "unknown bytes"),            # garbage instead of markers
])
async def test_receiver_refuses_a_scribbled_ring(where: str, value: int, match: str) -> None:
    sender, receiver = fdloop.channel(capacity=4096)
    with sender, receiver, mmap.mmap(sender.fds()[0], ring.HEADER_SIZE + 4096) as shared:
        await sender.send(b"ok")
        if where == "socket":
            socket.socket(fileno=os.dup(sender.fds()[3])).close()  # a second copy...
            with socket.socket(fileno=os.dup(sender.fds()[3])) as raw:
                raw.send(b"\x00garbage")
            assert await receiver.receive() == b"ok"
        elif where == "write":
            shared[WORDS["write"] : WORDS["write"] + 8] = value.to_bytes(8, "little")
        else:
            shared[ring.HEADER_SIZE : ring.HEADER_SIZE + 8] = value.to_bytes(8, "little")
        for _ in range(2):  # and it keeps saying so
            with anyio.fail_after(5), pytest.raises(fdloop.ChannelCorruptedError, match=match):
                await receiver.receive()


async def test_sender_refuses_a_read_index_ahead_of_it() -> None:
    sender, receiver = fdloop.channel(capacity=4096)
    with sender, receiver, mmap.mmap(receiver.fds()[0], ring.HEADER_SIZE) as header:
        await sender.send(b"ok")
        header[WORDS["read"] : WORDS["read"] + 8] = (2**62).to_bytes(8, "little")
        # The sender reads READ_INDEX when the room it already knows of runs out.
        with pytest.raises(fdloop.ChannelCorruptedError, match="READ_INDEX"):
            for _ in range(100):
                await sender.send(b"n" * 100)
        with pytest.raises(fdloop.ChannelCorruptedError):
            await sender.send(b"n")
        assert isinstance(fdloop.ChannelCorruptedError("x"), anyio.BrokenResourceError)
