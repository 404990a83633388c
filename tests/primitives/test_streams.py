"""Pipe streams against real pipes and real child processes, on asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fdloop
from fdloop import PipeReceiveStream, PipeSendStream

# Pipe streams do not go through a backend: one run of them is enough.
pytestmark = pytest.mark.single_backend


@asynccontextmanager
async def pipe() -> AsyncIterator[tuple[PipeReceiveStream, PipeSendStream]]:
    read_fd, write_fd = os.pipe()
    async with PipeReceiveStream(read_fd) as reader, PipeSendStream(write_fd) as writer:
        yield reader, writer


def child(code: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], **popen)  # type: ignore[call-overload, no-any-return]


# -- construction ----------------------------------------------------------------------


def test_takes_ownership_and_sets_nonblocking() -> None:
    read_fd, write_fd = os.pipe()
    assert os.get_blocking(read_fd) and os.get_blocking(write_fd)
    reader, writer = PipeReceiveStream(read_fd), PipeSendStream(write_fd)
    assert (reader.fileno(), writer.fileno()) == (read_fd, write_fd)
    assert not os.get_blocking(read_fd) and not os.get_blocking(write_fd)
    assert "fd=" in repr(reader)
    reader.close()
    writer.close()
    assert reader.closed and writer.closed and "closed" in repr(reader)
    with pytest.raises(OSError):
        os.fstat(read_fd)
    with pytest.raises(OSError):
        os.fstat(write_fd)


@pytest.mark.parametrize("cls", [PipeReceiveStream, PipeSendStream])
def test_bad_fd_is_refused_before_anything_changes(cls: type[PipeReceiveStream]) -> None:
    with pytest.raises(TypeError, match="fd"):
        cls("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fd"):
        cls(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fd"):
        cls(-1)
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    os.close(read_fd)
    with pytest.raises(OSError):
        cls(read_fd)
    with tempfile.TemporaryFile() as regular:
        with pytest.raises(fdloop.NotThisKindOfFD):
            cls(regular.fileno())
        assert os.get_blocking(regular.fileno())  # untouched, still open
        os.fstat(regular.fileno())


# -- reading ---------------------------------------------------------------------------


async def test_receive_then_end_of_stream() -> None:
    async with pipe() as (reader, writer):
        await writer.send(b"hello")
        assert await reader.receive() == b"hello"
        await writer.send(b"abcdef")
        assert await reader.receive(4) == b"abcd"
        assert await reader.receive() == b"ef"
        await writer.aclose()
        with pytest.raises(anyio.EndOfStream):
            await reader.receive()
        with pytest.raises(anyio.EndOfStream):
            await reader.receive()
        assert await reader.read() == b""
        assert await reader.read(10) == b""
        assert reader.at_eof()
        with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
            await reader.receive(0)  # (anyio's words: its own suite matches them)


async def test_at_eof_knows_the_end_without_a_read_returning_nothing() -> None:
    # asyncio's StreamReader learns of EOF from its transport: at_eof() is True once the
    # writer has gone and the last byte is read, so `while not at_eof(): readline()`
    # ends without an empty line.
    async with pipe() as (reader, writer):
        assert not reader.at_eof()  # nothing yet, the writer is open
        await writer.send(b"a\nb\n")
        assert not reader.at_eof()  # (and what that look found stays for the reads)
        await writer.aclose()
        lines = []
        while not reader.at_eof():
            lines.append(await reader.readline())
        assert lines == [b"a\n", b"b\n"]
    async with pipe() as (reader, writer):
        await writer.send(b"xyz")
        await writer.aclose()
        assert await reader.read(100) == b"xyz"
        assert reader.at_eof()


async def test_at_eof_takes_nothing_from_a_reader_that_waits() -> None:
    async with pipe() as (reader, writer), anyio.create_task_group() as tasks:
        lines: list[bytes] = []

        async def read_one() -> None:
            lines.append(await reader.readline())

        tasks.start_soon(read_one)
        await anyio.sleep(0.05)  # it waits for the fd now
        await writer.send(b"line\n")
        assert not reader.at_eof()  # (must not read the line behind its back)
        with anyio.fail_after(10):
            while not lines:
                await anyio.sleep(0.01)
        assert lines == [b"line\n"]


async def test_read_ahead_fills_the_buffer_up_to_its_mark_and_ends_at_close(
    anyio_backend_name: str,
) -> None:
    async with pipe() as (reader, writer):
        if anyio_backend_name == "trio":
            with pytest.raises(RuntimeError, match="asyncio loop"):
                reader.read_ahead(100)
            return
        with pytest.raises(ValueError, match="high_water"):
            reader.read_ahead(0)
        reader.read_ahead(10)
        reader.read_ahead(10)  # (idempotent: still one task)
        tasks = len(asyncio.all_tasks())
        writer.write(b"a" * 4)
        with anyio.fail_after(10):
            while "4 bytes buffered" not in repr(reader):  # read without a reader
                await anyio.sleep(0.01)
        writer.write(b"b" * 20)
        with anyio.fail_after(10):
            while "24 bytes buffered" not in repr(reader):  # one read past the mark ...
                await anyio.sleep(0.01)
        writer.write(b"c" * 5)
        await anyio.sleep(0.05)
        assert "24 bytes buffered" in repr(reader)  # ... then no more until we read
        assert await reader.read(30) == b"a" * 4 + b"b" * 20
        assert await reader.read(30) == b"c" * 5
        reader.close()  # ends the read-ahead, wherever it waits
        with anyio.fail_after(10):
            while len(asyncio.all_tasks()) >= tasks:
                await anyio.sleep(0.01)


async def test_read_n_returns_what_is_there_and_read_all_waits_for_eof() -> None:
    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        await writer.send(b"0123456789")
        assert await reader.read(4) == b"0123"
        assert await reader.read(100) == b"456789"
        assert await reader.read(0) == b""

        async def write_later() -> None:
            for part in (b"a", b"b", b"c"):
                await anyio.sleep(0.01)
                await writer.send(part)
            await writer.aclose()

        tg.start_soon(write_later)
        assert await reader.read() == b"abc"
        assert reader.at_eof()


async def test_readline_iteration_and_unterminated_last_line() -> None:
    async with pipe() as (reader, writer):
        await writer.send(b"one\ntw")
        assert await reader.readline() == b"one\n"
        await writer.send(b"o\n\nthree")
        await writer.aclose()
        lines = [line async for line in reader]
    assert lines == [b"two\n", b"\n", b"three"]


async def test_readuntil_finds_a_separator_split_across_writes() -> None:
    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        async def write_in_pieces() -> None:
            for part in (b"head--", b"-", b"-tail", b"--"):
                await writer.send(part)
                await anyio.sleep(0.01)
            await writer.aclose()

        tg.start_soon(write_in_pieces)
        assert await reader.readuntil(b"---") == b"head---"
        with pytest.raises(fdloop.IncompleteReadError) as caught:
            await reader.readuntil(b"---")
        assert caught.value.partial == b"-tail--"
        assert isinstance(caught.value, asyncio.IncompleteReadError)
        with pytest.raises(ValueError, match="separator"):
            await reader.readuntil(b"")


async def test_readexactly_and_incomplete_read() -> None:
    async with pipe() as (reader, writer):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.send, b"x" * 100_000 + b"y" * 100_000)
            assert await reader.readexactly(150_000) == b"x" * 100_000 + b"y" * 50_000
        await writer.aclose()
        with pytest.raises(fdloop.IncompleteReadError) as caught:
            await reader.readexactly(60_000)
        assert caught.value.partial == b"y" * 50_000
        assert caught.value.expected == 60_000
        assert isinstance(caught.value, (EOFError, anyio.IncompleteRead))
        assert await reader.readexactly(0) == b""


async def test_lines_from_a_real_child() -> None:
    read_fd, write_fd = os.pipe()
    proc = child("import sys\nfor i in range(5000): print(i)", stdout=write_fd)
    os.close(write_fd)
    try:
        async with PipeReceiveStream(read_fd) as reader:
            numbers = [int(line) async for line in reader]
    finally:
        proc.wait()
    assert numbers == list(range(5000))


async def test_anyio_text_wrapper_accepts_the_stream() -> None:
    async with pipe() as (reader, writer):
        await writer.send("héllo".encode())
        await writer.aclose()
        text = TextReceiveStream(reader)
        assert "".join([chunk async for chunk in text]) == "héllo"


# -- cancellation loses nothing --------------------------------------------------------


async def test_cancelled_readline_keeps_the_bytes_it_read() -> None:
    async with pipe() as (reader, writer):
        await writer.send(b"abc")
        with anyio.move_on_after(0.05) as scope:
            await reader.readline()  # reads b"abc" from the fd, then waits for "\n"
        assert scope.cancelled_caught
        assert "3 bytes buffered" in repr(reader)
        await writer.send(b"def\n")
        assert await reader.readline() == b"abcdef\n"


async def test_cancelled_readexactly_and_read_all_keep_the_bytes() -> None:
    async with pipe() as (reader, writer):
        await writer.send(b"12345")
        with anyio.move_on_after(0.05):
            await reader.readexactly(10)
        with anyio.move_on_after(0.05):
            await reader.read()
        await writer.send(b"67890")
        assert await reader.readexactly(10) == b"1234567890"


async def test_cancelled_receive_consumes_nothing() -> None:
    async with pipe() as (reader, writer):
        scope = anyio.CancelScope()

        async def receiver() -> None:
            with scope:
                await reader.receive()

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.sleep(0.02)
            # Readable now (no await in between), but the receiver is cancelled first.
            os.write(writer.fileno(), b"data")
            scope.cancel()
        assert scope.cancelled_caught
        assert await reader.receive() == b"data"


async def test_reading_a_full_pipe_still_lets_other_tasks_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every read below succeeds without waiting; the loop must still get a turn."""
    monkeypatch.setattr(fdloop.primitives.pipe_receive, "YIELD_EVERY", 16384)  # a pipe holds 64 KiB
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        os.set_blocking(writer.fileno(), False)
        filled = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                filled += os.write(writer.fileno(), b"z" * 4096)
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        ticks = 0
        for _ in range(filled // 4096):
            assert await reader.receive(4096) == b"z" * 4096
        assert ticks > 0
        tg.cancel_scope.cancel()


async def test_writing_without_waiting_still_lets_other_tasks_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fdloop.primitives.pipe_flush, "YIELD_EVERY", 16384)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        ticks = 0
        for _ in range(15):  # 60 KiB: fits in the pipe, so no write ever waits
            await writer.send(b"w" * 4096)
        assert ticks > 0
        tg.cancel_scope.cancel()
    assert reader.closed


# -- writing ---------------------------------------------------------------------------


async def test_big_write_is_split_into_partial_writes_and_arrives_whole() -> None:
    data = os.urandom(1 << 20) * 10  # 10 MiB, far more than a pipe holds
    async with pipe() as (reader, writer):
        received: list[bytes] = []

        async def write_then_close() -> None:
            await writer.send(data)
            await writer.drain()
            await writer.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(write_then_close)
            received.append(await reader.read())
    assert hashlib.sha256(received[0]).digest() == hashlib.sha256(data).digest()


async def test_cat_echoes_ten_megabytes() -> None:
    data = os.urandom(1 << 20) * 10
    to_child, child_stdin = os.pipe()
    child_stdout, from_child = os.pipe()
    proc = subprocess.Popen(["cat"], stdin=to_child, stdout=from_child)
    os.close(to_child)
    os.close(from_child)
    try:
        async with PipeSendStream(child_stdin) as stdin, PipeReceiveStream(
            child_stdout
        ) as stdout, anyio.create_task_group() as tg:
            async def feed() -> None:
                await stdin.send(memoryview(data))
                await stdin.aclose()

            tg.start_soon(feed)
            echoed = await stdout.read()
    finally:
        proc.wait()
    assert echoed == data


async def test_write_accepts_bytes_like_and_refuses_str() -> None:
    async with pipe() as (reader, writer):
        await writer.send(bytearray(b"ab"))
        await writer.send(memoryview(b"cd"))
        await writer.send(b"")
        with pytest.raises(TypeError, match="data must be bytes-like"):
            await writer.send("text")  # type: ignore[arg-type]
        assert await reader.receive() == b"abcd"


async def test_write_after_reader_closed_raises_broken_pipe() -> None:
    async with pipe() as (reader, writer):
        await reader.aclose()
        with pytest.raises(BrokenPipeError) as caught:
            await writer.send(b"x")
        assert isinstance(caught.value, fdloop.BrokenResourceError)
        assert isinstance(caught.value, anyio.BrokenResourceError)


async def test_writer_waiting_on_a_full_pipe_learns_when_the_child_exits() -> None:
    read_fd, write_fd = os.pipe()
    # The child holds the read end, reads nothing, and exits once the pipe is full.
    proc = subprocess.Popen(["sleep", "0.3"], stdin=read_fd)
    os.close(read_fd)
    try:
        async with PipeSendStream(write_fd) as writer:
            with pytest.raises(BrokenPipeError):
                with anyio.fail_after(30):
                    await writer.send(b"z" * (4 << 20))
    finally:
        proc.wait()


# -- closing and busy --------------------------------------------------------------------


async def test_closed_streams_refuse_reads_and_writes() -> None:
    """(That close() wakes a waiting reader or writer: tests/primitives/test_contract.py.)"""
    async with pipe() as (reader, writer):
        reader.close()
        for read in (reader.receive, reader.readline, reader.read):
            with pytest.raises(fdloop.ClosedResourceError):
                await read()
        await writer.aclose()
        with pytest.raises(fdloop.ClosedResourceError):
            await writer.send(b"x")
        with pytest.raises(fdloop.ClosedResourceError):
            await writer.drain()


async def test_second_reader_or_writer_is_refused_while_one_waits() -> None:
    async with pipe() as (reader, writer), anyio.create_task_group() as tg:
        tg.start_soon(reader.readline)
        await anyio.sleep(0.02)
        with pytest.raises(fdloop.BusyResourceError) as refused:
            await reader.receive()
        assert str(refused.value) == "another task is already reading from this stream"
        with pytest.raises(anyio.BusyResourceError):
            await reader.read()
        with pytest.raises(RuntimeError):  # (what asyncio's StreamReader raises)
            await reader.readline()
        assert reader.exception() is None  # (asyncio's: nothing was set on the stream)

        async def fill() -> None:
            await writer.send(b"q" * (4 << 20))

        await writer.send(b"line\n")
        tg.start_soon(fill)
        await anyio.sleep(0.05)
        with pytest.raises(fdloop.BusyResourceError) as refused:
            await writer.send(b"x")
        assert str(refused.value) == "another task is already writing to this stream"
        tg.cancel_scope.cancel()


def test_reader_in_a_thread_sees_every_byte() -> None:
    """Sync sanity check that the fd is a plain pipe others can read (no hidden buffering)."""
    read_fd, write_fd = os.pipe()
    got = bytearray()

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as file:
            got.extend(file.read())

    thread = threading.Thread(target=drain)
    thread.start()

    async def main() -> None:
        async with PipeSendStream(write_fd) as writer:
            await writer.send(b"t" * 300_000)

    anyio.run(main)
    thread.join()
    assert got == b"t" * 300_000


# -- model: nothing lost, nothing invented -----------------------------------------------

chunks = st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\x00", b"\n"))
program = st.lists(
    st.one_of(
        st.tuples(st.just("write"), chunks),
        st.tuples(st.just("receive"), st.integers(1, 300)),
        st.tuples(st.just("read"), st.integers(0, 300)),
        st.tuples(st.just("readline"), st.just(0)),
        st.tuples(st.just("readexactly"), st.integers(0, 300)),
        st.tuples(st.just("readuntil"), st.just(0)),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=program)
async def test_any_mix_of_reads_and_cancellations_loses_nothing(
    steps: list[tuple[str, object]],
) -> None:
    """Random writes and reads; a read with no data to finish it is cancelled after 10 ms.

    Every byte written comes back exactly once, in order, through completed reads,
    IncompleteReadError.partial, or the final read-to-EOF — and each completed read
    keeps its own contract (sizes, line ends, separators).
    """
    written = bytearray()
    got = bytearray()
    async with pipe() as (reader, writer):
        for op, arg in steps:
            if op == "write":
                assert isinstance(arg, bytes)
                await writer.send(arg)
                written += arg
                continue
            assert isinstance(arg, int)
            with anyio.move_on_after(0.01):
                if op == "receive":
                    data = await reader.receive(arg)
                    assert 1 <= len(data) <= arg
                elif op == "read":
                    data = await reader.read(arg)
                    assert len(data) <= arg and (data or arg == 0)
                elif op == "readline":
                    data = await reader.readline()
                    assert data.endswith(b"\n") and data.count(b"\n") == 1
                elif op == "readexactly":
                    data = await reader.readexactly(arg)
                    assert len(data) == arg
                else:
                    data = await reader.readuntil(b"\n\n")
                    assert data.endswith(b"\n\n") and data.find(b"\n\n") == len(data) - 2
                got += data
        await writer.aclose()
        try:
            got += await reader.readexactly(len(written) - len(got) + 1)
        except fdloop.IncompleteReadError as incomplete:
            got += incomplete.partial
        assert reader.at_eof()
    assert got == written
