"""PipeSendStream's asyncio dialect: ``write()`` buffers (a plain method, as on
asyncio.StreamWriter), ``drain()`` waits and reports a broken pipe, ``close()`` flushes.

Real pipes and real children (``cat``, ``python -c``), on asyncio, uvloop and trio.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

import fdloop
from fdloop import PIPE, PipeReceiveStream, PipeSendStream, spawn

# Pipe streams do not go through a backend: one run of them is enough.
pytestmark = pytest.mark.single_backend

BIG = 4 << 20  # far more than a pipe holds (64 KiB by default)


@asynccontextmanager
async def pipe() -> AsyncIterator[tuple[PipeReceiveStream, PipeSendStream]]:
    read_fd, write_fd = os.pipe()
    async with PipeReceiveStream(read_fd) as reader, PipeSendStream(write_fd) as writer:
        yield reader, writer


def data(size: int) -> bytes:
    return os.urandom(1 << 16) * (size >> 16)


async def test_write_is_a_plain_method_and_send_a_coroutine() -> None:
    assert not inspect.iscoroutinefunction(PipeSendStream.write)
    assert not inspect.iscoroutinefunction(PipeSendStream.writelines)
    assert inspect.iscoroutinefunction(PipeSendStream.send)
    assert inspect.iscoroutinefunction(PipeSendStream.drain)
    async with pipe() as (reader, writer):
        assert writer.write(b"x") is None
        assert await reader.receive() == b"x"


async def test_literal_asyncio_code_reaches_cat_without_warnings() -> None:
    """``proc.stdin.write(data); await proc.stdin.drain()``, as in asyncio's documentation.

    Before, write() was a coroutine: nothing was sent and Python only warned that it was
    never awaited.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with spawn(["cat"], stdin=PIPE, stdout=PIPE) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"hello ")
            proc.stdin.writelines([b"wor", bytearray(b"ld"), memoryview(b"\n")])
            await proc.stdin.drain()
            with anyio.fail_after(10):
                assert await proc.stdout.readline() == b"hello world\n"
            proc.stdin.close()
            await proc.stdin.wait_closed()
            assert await proc.stdout.read() == b""
            assert (await proc.wait()).returncode == 0
        gc.collect()  # a never-awaited coroutine would warn here


async def test_write_big_then_close_delivers_everything() -> None:
    """asyncio's ``write(data); close()`` idiom: close() flushes, then the reader sees EOF."""
    payload = data(BIG)
    async with spawn(["cat"], stdin=PIPE, stdout=PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(payload)
        assert "bytes buffered" in repr(proc.stdin)  # the pipe took only part of it
        proc.stdin.close()
        assert proc.stdin.is_closing() and proc.stdin.closed
        with pytest.raises(fdloop.ClosedResourceError):
            proc.stdin.write(b"late")
        with anyio.fail_after(30):
            echoed = await proc.stdout.read()
            await proc.stdin.wait_closed()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


async def test_another_thread_is_refused_while_the_loop_flushes() -> None:
    """While this loop's background flush owns the buffer, a call from another thread
    raises RuntimeError and changes nothing: the reader gets exactly this thread's bytes.
    Once the flush is over, a plain write from another thread goes to the kernel. Only
    close()/aclose() work from any thread (README: Threads)."""
    payload = data(BIG)
    refused: list[str] = []

    def from_another_thread(writer: PipeSendStream) -> None:
        for name, call in (
            ("write", lambda: writer.write(b"stray")),
            ("writelines", lambda: writer.writelines([b"stray"])),
            ("send", lambda: writer.send(b"stray").send(None)),
            ("drain", lambda: writer.drain().send(None)),
            ("wait_closed", lambda: writer.wait_closed().send(None)),
        ):
            try:
                call()
            except RuntimeError as exc:
                refused.append(name if "thread" in str(exc) else f"{name}: {exc}")

    with anyio.fail_after(60):  # (without the refusal, the stray calls wedged the stream)
        async with pipe() as (reader, writer):
            writer.write(payload)
            assert "bytes buffered" in repr(writer)  # the background flush is running
            thread = threading.Thread(target=from_another_thread, args=(writer,), daemon=True)
            thread.start()
            await anyio.to_thread.run_sync(thread.join, 10.0)
            assert not thread.is_alive(), "a call from another thread got stuck"
            assert refused == ["write", "writelines", "send", "drain", "wait_closed"]
            got = bytearray()
            while len(got) < len(payload):
                got.extend(await reader.receive())
            await writer.drain()
            assert got == payload  # nothing of the refused calls arrived
            await anyio.to_thread.run_sync(writer.write, b"after")  # flush over: allowed
            assert await reader.receive() == b"after"
        # aclose() is for any thread: there it hands the close over and returns, and
        # the flush goes on here until every byte is through, then the reader sees EOF.
        async with pipe() as (reader, writer):
            writer.write(payload)
            await anyio.to_thread.run_sync(asyncio.run, writer.aclose())
            assert writer.closed
            got = bytearray()
            with pytest.raises(anyio.EndOfStream):
                while True:
                    got.extend(await reader.receive())
            assert got == payload


async def test_buffered_bytes_flow_without_drain() -> None:
    """As asyncio's transports do: a child that answers only after reading everything
    gets it although nobody awaits drain()."""
    code = "import sys; print(len(sys.stdin.buffer.read(300000)), flush=True)"
    async with spawn([sys.executable, "-c", code], stdin=PIPE, stdout=PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"z" * 300000)
        with anyio.fail_after(10):
            assert await proc.stdout.readline() == b"300000\n"


async def test_drain_waits_until_the_kernel_has_the_bytes() -> None:
    payload = data(1 << 20)
    got = bytearray()
    with anyio.fail_after(20):
        async with pipe() as (reader, writer), anyio.create_task_group() as tg:
            writer.write(payload)

            async def read_all() -> None:
                while len(got) < len(payload):
                    got.extend(await reader.receive())

            tg.start_soon(read_all)
            await writer.drain()
            assert "bytes buffered" not in repr(writer)
    assert got == payload


async def test_write_and_send_keep_call_order() -> None:
    parts = [b"A" * 300_000, b"B" * 200_000, b"C" * 100_000, b"D" * 5]
    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        received = bytearray()

        async def slow_reader() -> None:
            while chunk := await reader.read(7000):
                received.extend(chunk)
                await anyio.sleep(0)

        tg.start_soon(slow_reader)
        writer.write(parts[0])  # mostly buffered
        await writer.send(parts[1])  # queued behind it
        writer.write(parts[2])
        await writer.send(parts[3])
        with anyio.fail_after(20):
            await writer.aclose()
    assert bytes(received) == b"".join(parts)


async def test_buffered_bytes_are_a_snapshot_of_mutable_data() -> None:
    """bytes are kept without a copy (immutable); a bytearray is copied, small writes too."""
    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        blocker = b"0" * BIG  # fills the pipe; the rest is buffered
        mutable = bytearray(b"m" * 100_000)
        writer.write(blocker)
        writer.write(mutable)
        for i in range(2000):  # small writes, gathered into shared chunks
            writer.write(b"%d," % i)
        mutable[:] = b"X" * len(mutable)
        small = bytearray(b"tail")
        writer.write(small)
        small[:] = b"XXXX"
        writer.close()
        received = bytearray()

        async def read_all() -> None:
            received.extend(await reader.read())

        tg.start_soon(read_all)
    expected = blocker + b"m" * 100_000 + b"".join(b"%d," % i for i in range(2000)) + b"tail"
    assert bytes(received) == expected


# -- a broken pipe ---------------------------------------------------------------------------


async def test_drain_raises_broken_pipe_once_the_child_has_gone() -> None:
    async with spawn(["true"], stdin=PIPE) as proc:
        assert proc.stdin is not None
        await proc.wait()
        proc.stdin.write(b"x")  # never raises: asyncio drops bytes for a gone reader
        with pytest.raises(BrokenPipeError) as caught:
            await proc.stdin.drain()
        assert isinstance(caught.value, fdloop.BrokenResourceError)
        assert isinstance(caught.value, anyio.BrokenResourceError)
        proc.stdin.write(b"more")
        with pytest.raises(BrokenPipeError):
            await proc.stdin.drain()  # and again, as asyncio's drain keeps raising
        with pytest.raises(fdloop.BrokenResourceError):
            await proc.stdin.send(b"y")
        proc.stdin.close()
        with pytest.raises(BrokenPipeError):
            await proc.stdin.wait_closed()  # written bytes never arrived


async def test_a_child_that_stops_reading_breaks_a_pending_drain() -> None:
    code = "import os; os.read(0, 10)"  # reads 10 bytes and exits
    async with spawn([sys.executable, "-c", code], stdin=PIPE) as proc:
        assert proc.stdin is not None
        proc.stdin.write(b"q" * BIG)
        with anyio.fail_after(20), pytest.raises((BrokenPipeError, ConnectionResetError)):
            await proc.stdin.drain()
        assert "reader gone" in repr(proc.stdin)


# -- closing ---------------------------------------------------------------------------------


async def close_in_the_loop(writer: PipeSendStream) -> None:
    writer.close()


async def close_from_a_thread(writer: PipeSendStream) -> None:
    await anyio.to_thread.run_sync(writer.close)


@pytest.mark.parametrize("close", [close_in_the_loop, close_from_a_thread])
async def test_close_while_drain_waits_wakes_it_and_still_flushes(
    close: Callable[[PipeSendStream], Awaitable[None]],
) -> None:
    """close(), in the loop or from another thread (which hands it to the loop), wakes
    the pending drain with ClosedResourceError and still flushes every byte, then EOF."""
    async with pipe() as (reader, writer):
        payload = data(1 << 20)
        writer.write(payload)
        errors: list[BaseException] = []

        async def drain() -> None:
            try:
                await writer.drain()
            except fdloop.ClosedResourceError as exc:
                errors.append(exc)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                await anyio.sleep(0.02)
                await close(writer)
            assert len(errors) == 1 and writer.closed
            with pytest.raises(fdloop.ClosedResourceError):
                await writer.drain()
            assert await reader.read() == payload


async def test_cancelled_drain_does_not_stop_the_flush() -> None:
    async with pipe() as (reader, writer):
        payload = data(1 << 20)
        writer.write(payload)
        with anyio.move_on_after(0.02):
            await writer.drain()
        writer.close()
        with anyio.fail_after(20):
            assert await reader.read() == payload


async def test_cancelled_aclose_drops_the_rest_and_closes_at_once() -> None:
    async with pipe() as (reader, writer):
        writer.write(data(1 << 20))
        with anyio.move_on_after(0.02) as scope:
            await writer.aclose()  # nobody reads: it would wait forever
        assert scope.cancelled_caught
        assert writer.closed and "closed" in repr(writer)
        with anyio.fail_after(20):
            got = await reader.read()
        assert 0 < len(got) < 1 << 20  # what the pipe held, then EOF


async def test_write_eof_and_friends() -> None:
    async with spawn(["cat"], stdin=PIPE, stdout=PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdin.can_write_eof() and not proc.stdin.is_closing()
        proc.stdin.write(b"end")
        proc.stdin.write_eof()
        assert proc.stdin.is_closing()
        with anyio.fail_after(10):
            assert await proc.stdout.read() == b"end"
        with pytest.raises(fdloop.ClosedResourceError):
            await proc.stdin.drain()
        with pytest.raises(fdloop.ClosedResourceError):
            proc.stdin.fileno()


async def test_detach_refuses_while_bytes_are_buffered() -> None:
    async with pipe() as (reader, writer):
        writer.write(b"w" * BIG)
        with pytest.raises(fdloop.BusyResourceError, match="drain"):
            writer.detach()
        assert not writer.closed
        drained = bytearray()
        async with anyio.create_task_group() as tg:
            async def read_it() -> None:
                while len(drained) < BIG:
                    drained.extend(await reader.receive())
            tg.start_soon(read_it)
            await writer.drain()
        os.close(writer.detach())
    assert drained == b"w" * BIG


def test_close_without_a_loop_drops_the_buffer_and_closes_the_fd() -> None:
    read_fd, write_fd = os.pipe()
    with PipeReceiveStream(read_fd) as reader:
        writer = PipeSendStream(write_fd)
        writer.write(b"s" * BIG)  # no loop: the rest waits for a drain that never comes
        writer.close()
        assert writer.closed
        with pytest.raises(OSError):
            os.fstat(write_fd)
        assert reader.fileno() == read_fd


def test_garbage_collected_with_a_buffer_warns_and_closes() -> None:
    read_fd, write_fd = os.pipe()
    writer = PipeSendStream(write_fd)
    writer.write(b"g" * BIG)
    with pytest.warns(ResourceWarning, match="unclosed"):
        del writer
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(write_fd)
    os.close(read_fd)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_flush_still_pending_when_the_run_ends_closes_the_fd(backend: str) -> None:
    """Nobody ever reads: the flush waits until the run ends, which must close the fd."""
    read_fd, write_fd = os.pipe()
    writer = PipeSendStream(write_fd)

    async def main() -> None:
        writer.write(b"r" * BIG)
        writer.close()
        assert "closing" in repr(writer)

    try:
        anyio.run(main, backend=backend)
        with pytest.raises(OSError):
            os.fstat(write_fd)
        assert "closing" not in repr(writer) and "closed" in repr(writer)
    finally:
        os.close(read_fd)


async def test_kill_on_close_ends_a_flush_to_a_child_that_never_reads() -> None:
    async with spawn(["sleep", "100"], stdin=PIPE, kill_timeout=5) as proc:
        assert proc.stdin is not None
        proc.stdin.write(b"k" * BIG)
        stdin = proc.stdin
    assert proc.returncode is not None and proc.returncode < 0
    with anyio.fail_after(10), pytest.raises(BrokenPipeError):
        await stdin.wait_closed()  # the child's death broke the pipe; the flush ended


def test_subprocess_as_the_reader_sees_every_byte() -> None:
    """A blocking reader in another process, a write()-only writer and asyncio.run."""
    import asyncio

    payload = data(BIG)
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, hashlib; "
         "print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"],
        stdin=read_fd, stdout=subprocess.PIPE,
    )
    os.close(read_fd)

    async def main() -> None:
        writer = PipeSendStream(write_fd)
        writer.write(payload)
        writer.close()
        await writer.wait_closed()

    try:
        asyncio.run(main())
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.decode().strip() == hashlib.sha256(payload).hexdigest()
