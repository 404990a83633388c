"""Channel between real processes: delivery, backpressure, ends, kills, a hostile peer.

The other process is tests/primitives/channel_peer.py, started with ``fdloop.spawn`` and
the end's fds in ``pass_fds``; it runs on a *different* loop from this test's (asyncio
against trio, uvloop against asyncio, trio against uvloop), so every mix is crossed.
Sizes scale with FDLOOP_STRESS_SCALE (CI: 0.1). The autouse fixture checks that no fd
and no child is left.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import zlib
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name
from fdloop.primitives import channel_ring as ring

from ..helpers import scaled
from ..primitives.channel_peer import expected, messages

PEER = str(Path(__file__).parent.parent / "primitives" / "channel_peer.py")
LIVENESS = 120.0  # bound on any single wait: catches hangs, never judges speed
OTHER_LOOP = {"asyncio": "trio", "uvloop": "asyncio", "trio": "uvloop"}

pytestmark = pytest.mark.skipif(
    selected_name() != "linux",
    reason="no Channel on the kqueue backend here (its EventFD does not cross processes)")


def this_loop(anyio_backend: tuple[str, dict[str, object]]) -> str:
    name, options = anyio_backend
    return "uvloop" if options.get("use_uvloop") else name


def peer(loop: str, role: str, end: fdloop.ChannelSender | fdloop.ChannelReceiver,
         *args: object, extra_fds: tuple[int, ...] = ()) -> fdloop.ProcessFD:
    """Start the peer on ``end``'s fds; the caller closes its own copy after."""
    fds = end.fds()
    argv = [sys.executable, PEER, OTHER_LOOP[loop], role, ",".join(map(str, fds)),
            *map(str, args)]
    return fdloop.spawn(argv, pass_fds=fds + extra_fds, stdout=fdloop.PIPE)


async def report(proc: fdloop.ProcessFD) -> tuple[dict[str, object], int]:
    """The peer's JSON line (empty if it died first) and its return code."""
    assert proc.stdout is not None
    with anyio.fail_after(LIVENESS):
        out = await proc.stdout.read()
        status = await proc.wait()
    await proc.aclose()
    return (json.loads(out) if out.strip() else {}), status.returncode


@pytest.mark.stress
@pytest.mark.one_python  # a flood; the same channel code is checked on every Python below
async def test_a_million_small_messages_arrive_in_order(
        anyio_backend: tuple[str, dict[str, object]]) -> None:
    n = scaled(1_000_000)
    sender, receiver = fdloop.channel(capacity=1 << 16)
    with receiver:
        proc = peer(this_loop(anyio_backend), "receive", receiver)
    with sender, anyio.fail_after(LIVENESS):
        for message in messages(n, 11, 32):
            await sender.send(message)
    result, code = await report(proc)
    assert code == 0 and result == {**result, "count": n, "in_order": True,
                                    "ended": "EndOfStream", "crc": expected(n, 11, 32)}


async def test_random_sizes_up_to_the_ring_from_a_child(
        anyio_backend: tuple[str, dict[str, object]]) -> None:
    n, capacity = scaled(3000, 300), 1 << 14
    sender, receiver = fdloop.channel(capacity=capacity)
    with sender:
        proc = peer(this_loop(anyio_backend), "send", sender, n, 5, capacity - 8)
    crc, count = 0, 0
    with receiver, anyio.fail_after(LIVENESS):
        async for message in receiver:
            assert message[:8] == count.to_bytes(8, "little")
            crc = zlib.crc32(message, crc)
            count += 1
    result, code = await report(proc)
    assert (code, count, crc) == (0, n, expected(n, 5, capacity - 8))
    assert result["ended"] == "closed"


async def test_a_slow_reader_makes_the_sender_wait_and_loses_nothing(
        anyio_backend: tuple[str, dict[str, object]]) -> None:
    n, capacity = 200, 4096
    sender, receiver = fdloop.channel(capacity=capacity)
    with receiver:
        proc = peer(this_loop(anyio_backend), "receive", receiver, 2)  # 2 ms per message
    waits = 0
    with sender, anyio.fail_after(LIVENESS):
        for message in messages(n, 3, 200):
            try:
                sender.send_nowait(message)
            except anyio.WouldBlock:
                waits += 1
                await sender.send(message)
            # Bounded: never more than a ring's worth ahead of the reader.
            assert 0 <= sender._write - sender._words[ring.W_READ_INDEX] <= capacity
    result, code = await report(proc)
    assert code == 0 and result["count"] == n and result["crc"] == expected(n, 3, 200)
    assert waits > n // 2


@pytest.mark.parametrize("how", ["close", "kill"])
async def test_the_sender_ending_mid_stream(
        anyio_backend: tuple[str, dict[str, object]], how: str) -> None:
    """A clean close: EndOfStream after the queued messages; a SIGKILL of the sender's
    process: the same messages, then BrokenResourceError — never a clean end."""
    k = 500
    sender, receiver = fdloop.channel(capacity=1 << 16)
    with sender:
        args = (k, 9, 64) if how == "close" else (10 * k, 9, 64, "kill-after", k)
        proc = peer(this_loop(anyio_backend), "send", sender, *args)
    got: list[bytes] = []
    with receiver, anyio.fail_after(LIVENESS):
        if how == "close":
            got = [m async for m in receiver]
        else:
            with pytest.raises(fdloop.BrokenResourceError, match="without closing"):
                async for message in receiver:
                    got.append(message)
    _result, code = await report(proc)
    assert code == (0 if how == "close" else -signal.SIGKILL)
    assert got == list(messages(k, 9, 64))


async def test_a_killed_receiver_breaks_the_sender_within_a_second(
        anyio_backend: tuple[str, dict[str, object]]) -> None:
    sender, receiver = fdloop.channel(capacity=1 << 12)
    with receiver:
        proc = peer(this_loop(anyio_backend), "receive", receiver, 1000)  # stays put
    with sender:
        await sender.send(b"hello")
        await anyio.sleep(0.2)
        proc.kill()
        started = time.monotonic()
        with anyio.fail_after(5):
            with pytest.raises(fdloop.BrokenResourceError):
                while True:  # a pending send (the ring fills) or a later one raises
                    await sender.send(b"x" * 100)
        assert time.monotonic() - started < 1.0
        for _ in range(3):
            with pytest.raises(fdloop.BrokenResourceError):
                await sender.send(b"again")
    _result, code = await report(proc)
    assert code == -signal.SIGKILL


async def test_closing_the_creators_spare_copies_breaks_nothing(
        anyio_backend: tuple[str, dict[str, object]]) -> None:
    """Both ends of one channel in two children (a sender and an echoing receiver):
    the creator's copies are closed at once, and the stream still ends cleanly."""
    loop = this_loop(anyio_backend)
    there, back = fdloop.channel(capacity=1 << 12), fdloop.channel(capacity=1 << 12)
    sender, receiver = there
    back_sender, back_receiver = back
    with sender, receiver, back_sender:
        echo = peer(loop, "echo", receiver, ",".join(map(str, back_sender.fds())),
                    extra_fds=back_sender.fds())
        source = peer(loop, "send", sender, 300, 4, 100)
    with back_receiver, anyio.fail_after(LIVENESS):
        got = [m async for m in back_receiver]
    assert got == list(messages(300, 4, 100))
    for proc in (source, echo):
        _result, code = await report(proc)
        assert code == 0


async def test_a_hostile_peer_scribbling_the_header_is_refused(
        anyio_backend: tuple[str, dict[str, object]]) -> None:
    sender, receiver = fdloop.channel(capacity=1 << 12)
    with sender, receiver:
        await sender.send(b"fine")
        bad = peer(this_loop(anyio_backend), "scribble", sender,
                   ring.W_WRITE_INDEX * 8, 2**63 + 8)
        result, code = await report(bad)
        assert code == 0 and result["scribbled"] == ring.W_WRITE_INDEX * 8
        with pytest.raises(fdloop.ChannelCorruptedError, match="WRITE_INDEX"):
            await receiver.receive()
        with pytest.raises(fdloop.ChannelCorruptedError):
            await receiver.receive()

