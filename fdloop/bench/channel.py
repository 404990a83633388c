"""channel: messages to a child process and back — fdloop.Channel against pipes, queues, sockets.

Every contender runs the same script with a child process (``python -m fdloop.bench.channel
KIND ...``, or a forked ``multiprocessing.Process`` for the Queue): the parent sends
``n64`` messages of 64 B, ``n4k`` of 4 KiB and ``n1m`` of 1 MiB; after each batch the
child, having received every message, answers with a one-byte ack, and the batch's time
is first send → ack. Then ``rtt`` round trips of a 64 B message the child echoes give
the latency. Throughput is messages/s and MB/s (10**6 bytes) per size.

Stream contenders frame each message with a 4-byte length. ``Channel receive_view``
receives with ``receive_view()`` (zero-copy: the child only checks the length of a
memoryview into the ring); the other Channel contenders receive bytes (one copy).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .probe import Probe, percentile
from .registry import Column, Workload, contender, workload

ROOT = Path(__file__).resolve().parents[2]
"""The directory that holds the fdloop package: the children import it from there."""
SIZES = (("64", 64, "n64"), ("4k", 4096, "n4k"), ("1m", 1 << 20, "n1m"))


def _summarize(raw: dict[str, Any], params: Any) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, size, key in SIZES:
        rate = params[key] / raw["seconds"][label]
        figures[f"msgs_{label}"] = rate
        figures[f"mb_{label}"] = rate * size / 1e6
    latencies = raw["latencies"]
    if len(latencies) != params["rtt"]:
        raise RuntimeError(f"expected {params['rtt']} round trips, saw {len(latencies)}")
    figures["p50_us"] = percentile(latencies, 0.50) * 1e6
    figures["p99_us"] = percentile(latencies, 0.99) * 1e6
    return figures


CHANNEL = workload(
    Workload(
        name="channel",
        title="messages to a child process and back (64 B, 4 KiB, 1 MiB; 64 B round trips)",
        defaults={"n64": 100_000, "n4k": 20_000, "n1m": 200, "rtt": 3000, "repeats": 3},
        quick={"n64": 20_000, "n4k": 5000, "n1m": 50, "rtt": 1000, "repeats": 1},
        columns=(
            Column("msgs_64", "64 B msg/s"),
            Column("mb_64", "64 B MB/s", digits=1),
            Column("msgs_4k", "4 KiB msg/s"),
            Column("mb_4k", "4 KiB MB/s"),
            Column("msgs_1m", "1 MiB msg/s", digits=1),
            Column("mb_1m", "1 MiB MB/s"),
            Column("p50_us", "RTT p50 µs", "lower", digits=1),
            Column("p99_us", "RTT p99 µs", "lower", digits=1),
        ),
        summarize=_summarize,
        plot=("mb_1m", "msgs_64"),
    )
)

# -- the parent's side, the same for everyone ---------------------------------------------


async def _drive(probe: Probe, send: Callable[[bytes], Awaitable[Any]],
                 receive: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    params, seconds = probe.params, {}
    await receive()  # the child is up (its start-up is not measured)
    probe.start()
    for label, size, key in SIZES:
        payload = os.urandom(size)
        started = time.perf_counter()
        for _ in range(params[key]):
            await send(payload)
        await receive()  # the child's ack: it has every message
        seconds[label] = time.perf_counter() - started
    latencies, ping = [], os.urandom(64)
    for _ in range(params["rtt"]):
        started = time.perf_counter()
        await send(ping)
        await receive()
        latencies.append(time.perf_counter() - started)
    probe.stop()
    return {"seconds": seconds, "latencies": latencies}


def _drive_sync(probe: Probe, send: Callable[[bytes], Any],
                receive: Callable[[], Any]) -> dict[str, Any]:
    async def asend(data: bytes) -> None:
        send(data)

    async def areceive() -> Any:
        return receive()

    coroutine = _drive(probe, asend, areceive)
    try:
        coroutine.send(None)  # nothing in it ever suspends
    except StopIteration as done:
        result: dict[str, Any] = done.value
        return result
    raise RuntimeError("the synchronous driver suspended")


def _spawn(kind: str, loop: str | None, probe: Probe, *fds: int,
           extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", f"{__package__}.channel", kind, loop or "-",
            json.dumps(dict(probe.params)), ",".join(map(str, fds)), *extra]
    return subprocess.Popen(argv, cwd=ROOT, pass_fds=fds)


def _finish(child: subprocess.Popen[bytes]) -> None:
    if child.wait(timeout=60) != 0:
        raise RuntimeError(f"the child exited with {child.returncode}")


# -- contenders --------------------------------------------------------------------------


async def _channel(probe: Probe, loop: str, view: bool) -> dict[str, Any]:
    import fdloop

    there_tx, there_rx = fdloop.channel(capacity=4 << 20)
    back_tx, back_rx = fdloop.channel(capacity=1 << 16)
    child = _spawn("channel", loop, probe, *there_rx.fds(), *back_tx.fds(),
                   extra=("view",) if view else ())
    there_rx.close()
    back_tx.close()
    with there_tx, back_rx:
        result = await _drive(probe, there_tx.send, back_rx.receive)
    _finish(child)
    return result


def _kqueue_has_none() -> str | None:
    from fdloop.backends import selected_name

    if selected_name() == "kqueue":
        return "the kqueue backend has no Channel (its EventFD cannot cross processes)"
    return None


@contender("channel", "fdloop Channel", loops=("asyncio", "uvloop", "trio"),
           needs=("fdloop:channel",), only_if=_kqueue_has_none)
async def fdloop_channel(probe: Probe) -> dict[str, Any]:
    import sniffio

    name = sniffio.current_async_library()
    if name == "asyncio" and "uvloop" in type(asyncio.get_running_loop()).__module__:
        name = "uvloop"
    return await _channel(probe, name, view=False)


@contender("channel", "Channel receive_view (zero-copy)", needs=("fdloop:channel",),
           only_if=_kqueue_has_none)
async def fdloop_channel_view(probe: Probe) -> dict[str, Any]:
    return await _channel(probe, "asyncio", view=True)


@contender("channel", "multiprocessing.Pipe", loops=(None,))
def mp_pipe(probe: Probe) -> dict[str, Any]:
    import multiprocessing

    mine, theirs = multiprocessing.Pipe()
    child = _spawn("pipe", None, probe, theirs.fileno())
    theirs.close()
    result = _drive_sync(probe, mine.send_bytes, mine.recv_bytes)
    mine.close()
    _finish(child)
    return result


@contender("channel", "multiprocessing.Queue", loops=(None,))
def mp_queue(probe: Probe) -> dict[str, Any]:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    there, back = context.Queue(), context.Queue()
    child = context.Process(target=_queue_child, args=(there, back, dict(probe.params)))
    child.start()
    result = _drive_sync(probe, there.put, back.get)
    child.join(60)
    return result


@contender("channel", "asyncio streams", loops=("asyncio", "uvloop"))
async def asyncio_streams(probe: Probe) -> dict[str, Any]:
    mine, theirs = socket.socketpair()
    loop = "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
    child = _spawn("stream", loop, probe, theirs.fileno())
    theirs.close()
    reader, writer = await asyncio.open_connection(sock=mine)

    async def send(data: bytes) -> None:
        writer.write(len(data).to_bytes(4, "little"))
        writer.write(data)
        await writer.drain()

    async def receive() -> bytes:
        return await reader.readexactly(int.from_bytes(await reader.readexactly(4), "little"))

    result = await _drive(probe, send, receive)
    writer.close()
    await writer.wait_closed()
    _finish(child)
    return result


@contender("channel", "trio SocketStream", loops=("trio",))
async def trio_streams(probe: Probe) -> dict[str, Any]:
    import trio

    mine, theirs = socket.socketpair()
    child = _spawn("stream", "trio", probe, theirs.fileno())
    theirs.close()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(mine))
    reader = _TrioReader(stream)

    async def send(data: bytes) -> None:
        header = len(data).to_bytes(4, "little")
        if len(data) <= 1 << 16:  # one send_all (one scheduler pass) per message
            await stream.send_all(header + data)
        else:
            await stream.send_all(header)
            await stream.send_all(data)

    result = await _drive(probe, send, reader.message)
    await stream.aclose()
    _finish(child)
    return result


@contender("channel", "pyzmq PAIR ipc://", loops=(None,), needs=("zmq",))
def zmq_pair(probe: Probe) -> dict[str, Any]:  # pragma: no cover - optional contender
    import tempfile

    import zmq

    with tempfile.TemporaryDirectory() as where:
        address = f"ipc://{where}/channel"
        context = zmq.Context()
        sock = context.socket(zmq.PAIR)
        sock.bind(address)
        child = _spawn("zmq", None, probe, extra=(address,))
        result = _drive_sync(probe, sock.send, sock.recv)
        sock.close()
        context.term()
        _finish(child)
    return result


# -- the child's side --------------------------------------------------------------------


class _TrioReader:
    """Length-framed messages from a trio stream."""

    def __init__(self, stream: Any) -> None:
        self._stream, self._buffer, self._at = stream, bytearray(), 0

    async def _exactly(self, n: int) -> bytes:
        while len(self._buffer) - self._at < n:
            del self._buffer[: self._at]  # compact only when more must be read
            self._at = 0
            chunk = await self._stream.receive_some(1 << 20)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        with memoryview(self._buffer) as view:
            data = bytes(view[self._at : self._at + n])
        self._at += n
        return data

    async def message(self) -> bytes:
        return await self._exactly(int.from_bytes(await self._exactly(4), "little"))


async def _serve(params: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                 send: Callable[[bytes], Awaitable[Any]],
                 length: Callable[[], Awaitable[int]] | None = None) -> None:
    """The child's script: take each batch (``length()`` receives one message and
    returns its size), ack it; then echo the round trips."""
    async def size_of_next() -> int:
        return len(await receive())

    length = length or size_of_next
    await send(b"r")  # ready
    for _label, size, key in SIZES:
        for _ in range(params[key]):
            if await length() != size:
                raise RuntimeError(f"a message of the wrong size in the {size} batch")
        await send(b"k")
    for _ in range(params["rtt"]):
        await send(await receive())


def _serve_sync(params: dict[str, Any], receive: Callable[[], Any],
                send: Callable[[bytes], Any]) -> None:
    async def areceive() -> Any:
        return receive()

    async def asend(data: bytes) -> None:
        send(data)

    coroutine = _serve(params, areceive, asend)
    try:
        coroutine.send(None)
    except StopIteration:
        return


async def _channel_child(params: dict[str, Any], fds: list[int], view: bool) -> None:
    import fdloop

    with fdloop.ChannelReceiver.from_fds(fds[:4]) as rx, \
            fdloop.ChannelSender.from_fds(fds[4:]) as tx:
        async def viewed() -> int:
            async with rx.receive_view() as message:
                return len(message)  # zero-copy: the bytes stay in the ring
        await _serve(params, rx.receive, tx.send, viewed if view else None)


async def _stream_child(params: dict[str, Any], fd: int, loop: str) -> None:
    sock = socket.socket(fileno=fd)
    if loop == "trio":
        import trio

        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        reader = _TrioReader(stream)

        async def tsend(data: bytes) -> None:
            await stream.send_all(len(data).to_bytes(4, "little") + data)

        await _serve(params, reader.message, tsend)
        await stream.aclose()
        return
    reader_, writer = await asyncio.open_connection(sock=sock)

    async def receive() -> bytes:
        header = await reader_.readexactly(4)
        return await reader_.readexactly(int.from_bytes(header, "little"))

    async def send(data: bytes) -> None:
        writer.write(len(data).to_bytes(4, "little") + data)
        await writer.drain()

    await _serve(params, receive, send)
    writer.close()


def _queue_child(there: Any, back: Any, params: dict[str, Any]) -> None:
    _serve_sync(params, there.get, back.put)
    back.close()
    back.join_thread()


def child_main(argv: list[str]) -> None:
    kind, loop, params_json, fd_text, *extra = argv
    params = json.loads(params_json)
    fds = [int(fd) for fd in fd_text.split(",") if fd]
    if kind == "pipe":
        from multiprocessing.connection import Connection

        conn = Connection(fds[0])
        _serve_sync(params, conn.recv_bytes, conn.send_bytes)
        conn.close()
        return
    if kind == "zmq":  # pragma: no cover - optional contender
        import zmq

        sock = zmq.Context().socket(zmq.PAIR)
        sock.connect(extra[0])
        _serve_sync(params, sock.recv, sock.send)
        sock.close()
        return
    from .tasks import run_on

    async def main(_probe: Any) -> None:
        if kind == "channel":
            await _channel_child(params, fds, view=extra == ["view"])
        else:
            await _stream_child(params, fds[0], loop)

    run_on(loop, main, None)


if __name__ == "__main__":
    child_main(sys.argv[1:])
