"""The other process of the Channel tests: ``python channel_peer.py LOOP ROLE FDS ARGS...``.

LOOP is asyncio, uvloop or trio; FDS is the comma-separated ``end.fds()`` of the end this
process rebuilds. Roles (each prints one JSON line on stdout when it is done):

* ``receive``: receive until the stream ends; report the count, a CRC-32 of every byte
  in order, whether each message carried the sequence number it should, and how it
  ended (``EndOfStream``, or the exception's class name). ``SLOW`` (ms) sleeps after
  each message, to make the sender wait for room.
* ``send N SEED MAX [kill-after K | close]``: send N messages from :func:`messages`, then
  close cleanly; with ``kill-after K`` SIGKILL this process after K messages instead.
* ``echo OUT_FDS``: receive on FDS, send each message back on OUT_FDS, until the end.
* ``scribble OFFSET VALUE``: map the ring's memfd and store the 8-byte VALUE at byte
  OFFSET (a hostile peer), then exit without touching anything else.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import signal
import sys
import time
import zlib
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import anyio

import fdloop


def messages(n: int, seed: int, largest: int) -> Iterator[bytes]:
    """N messages: an 8-byte sequence number, then random bytes; sizes 8..largest."""
    rng = random.Random(seed)
    for i in range(n):
        size = rng.randint(8, max(8, largest))
        yield i.to_bytes(8, "little") + rng.randbytes(size - 8)


def expected(n: int, seed: int, largest: int) -> int:
    crc = 0
    for message in messages(n, seed, largest):
        crc = zlib.crc32(message, crc)
    return crc


async def receive(fds: list[int], slow_ms: float) -> dict[str, object]:
    count, crc, in_order, ended = 0, 0, True, "EndOfStream"
    with fdloop.ChannelReceiver.from_fds(fds) as receiver:
        try:
            async for message in receiver:
                in_order = in_order and message[:8] == count.to_bytes(8, "little")
                crc = zlib.crc32(message, crc)
                count += 1
                if slow_ms:
                    await anyio.sleep(slow_ms / 1000)
        except Exception as exc:
            ended = type(exc).__name__
    return {"count": count, "crc": crc, "in_order": in_order, "ended": ended}


async def send(fds: list[int], n: int, seed: int, largest: int,
               how: list[str]) -> dict[str, object]:
    kill_after = int(how[1]) if how and how[0] == "kill-after" else -1
    sender = fdloop.ChannelSender.from_fds(fds)
    sent = 0
    try:
        for message in messages(n, seed, largest):
            if sent == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            await sender.send(message)
            sent += 1
    except Exception as exc:
        sender.close()
        return {"sent": sent, "ended": type(exc).__name__}
    if kill_after >= 0:
        os.kill(os.getpid(), signal.SIGKILL)
    await sender.aclose()
    return {"sent": sent, "ended": "closed"}


async def echo(fds: list[int], out: list[int]) -> dict[str, object]:
    count = 0
    with fdloop.ChannelReceiver.from_fds(fds) as receiver, \
            fdloop.ChannelSender.from_fds(out) as sender:
        async for message in receiver:
            await sender.send(message)
            count += 1
    return {"count": count}


def scribble(fds: list[int], offset: int, value: int) -> dict[str, object]:
    with mmap.mmap(fds[0], 4096) as header:
        header[offset : offset + 8] = value.to_bytes(8, "little")
    return {"scribbled": offset}


def main() -> None:
    loop, role, fd_text, *args = sys.argv[1:]
    fds = [int(fd) for fd in fd_text.split(",")]
    if role == "scribble":
        result = scribble(fds, int(args[0]), int(args[1]))
    else:
        async def run() -> dict[str, object]:
            if role == "receive":
                return await receive(fds, float(args[0]) if args else 0.0)
            if role == "send":
                return await send(fds, int(args[0]), int(args[1]), int(args[2]), args[3:])
            if role == "echo":
                return await echo(fds, [int(fd) for fd in args[0].split(",")])
            raise SystemExit(f"unknown role {role!r}")

        backend = "trio" if loop == "trio" else "asyncio"
        options = {"use_uvloop": True} if loop == "uvloop" else {}
        started = time.monotonic()
        result = anyio.run(run, backend=backend, backend_options=options)
        result["seconds"] = time.monotonic() - started
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
