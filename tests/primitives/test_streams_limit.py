"""The reading side's ``limit=``: bounded line searches, with asyncio's StreamReader as the
oracle, against real pipes and real child processes, on asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fdloop
from fdloop import PipeReceiveStream, PipeSendStream
from fdloop.primitives.pipe_receive import MAX_READ, RECEIVE_SIZE

# Pipe streams do not go through a backend: one run of them is enough.
pytestmark = pytest.mark.single_backend


@asynccontextmanager
async def pipe(limit: int = fdloop.primitives.streams.DEFAULT_LIMIT) -> AsyncIterator[
    tuple[PipeReceiveStream, PipeSendStream]
]:
    read_fd, write_fd = os.pipe()
    async with PipeReceiveStream(read_fd, limit=limit) as reader, PipeSendStream(
        write_fd
    ) as writer:
        yield reader, writer


def buffered(stream: PipeReceiveStream) -> int:
    """How many bytes the stream holds, as its repr says."""
    text = repr(stream)
    if "bytes buffered" not in text:
        return 0
    return int(text.split(" bytes buffered")[0].rsplit(" ", 1)[1])


@asynccontextmanager
async def python_child(code: str, limit: int) -> AsyncIterator[PipeReceiveStream]:
    """A child Python whose stdout is the stream; killed and reaped on the way out."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=write_fd)
    os.close(write_fd)
    try:
        async with PipeReceiveStream(read_fd, limit=limit) as stream:
            yield stream
    finally:
        proc.kill()
        proc.wait()


# -- the contract ---------------------------------------------------------------------------


def test_default_limit_is_asyncios_and_limit_is_checked() -> None:
    assert fdloop.primitives.streams.DEFAULT_LIMIT == asyncio.streams._DEFAULT_LIMIT == 2**16
    read_fd, write_fd = os.pipe()
    try:
        for bad, error in ((0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)):
            with pytest.raises(error, match="limit"):
                PipeReceiveStream(read_fd, limit=bad)  # type: ignore[arg-type]
            assert os.get_blocking(read_fd)  # refused before the fd was touched
        with PipeReceiveStream(read_fd, limit=7) as stream:
            assert stream.limit == 7
        with pytest.raises(ValueError, match="limit"):
            fdloop.primitives.streams.check_limit(0)
    finally:
        os.close(write_fd)
    assert issubclass(fdloop.LimitOverrunError, asyncio.LimitOverrunError)
    assert issubclass(fdloop.LineTooLongError, ValueError)
    assert issubclass(fdloop.LineTooLongError, fdloop.FdloopError)


async def test_a_line_of_exactly_limit_bytes_passes_one_more_raises() -> None:
    async with pipe(limit=10) as (reader, writer):
        await writer.send(b"0123456789\n" + b"0123456789a\n" + b"next\n")
        assert await reader.readline() == b"0123456789\n"
        with pytest.raises(ValueError, match="limit of 10 bytes") as caught:
            await reader.readline()
        assert isinstance(caught.value, fdloop.LineTooLongError)
        # The newline had arrived: the long line went up to and including it.
        assert await reader.readline() == b"next\n"
        await writer.send(b"0123456789")  # exactly the limit, then EOF: still a line
        await writer.aclose()
        assert await reader.readline() == b"0123456789"


async def test_readuntil_overrun_consumes_nothing_and_says_how_much_is_safe() -> None:
    async with pipe(limit=8) as (reader, writer):
        await writer.send(b"abcdefghijkl--rest")
        with pytest.raises(asyncio.LimitOverrunError) as caught:
            await reader.readuntil(b"--")
        assert isinstance(caught.value, fdloop.LimitOverrunError)
        assert caught.value.consumed == 12  # the separator starts past the limit
        assert await reader.read(caught.value.consumed) == b"abcdefghijkl"
        assert await reader.readuntil(b"--") == b"--"
        await writer.aclose()
        assert await reader.read() == b"rest"


async def test_iteration_raises_on_a_long_line_and_can_go_on() -> None:
    async with pipe(limit=4) as (reader, writer):
        await writer.send(b"ok\ntoolong\nok2\n")
        await writer.aclose()
        lines: list[bytes] = []
        errors = 0
        while True:
            try:
                async for line in reader:
                    lines.append(line)
                break
            except fdloop.LineTooLongError:
                errors += 1
    assert (lines, errors) == ([b"ok\n", b"ok2\n"], 1)


async def test_a_cancelled_search_keeps_its_bytes_and_the_limit_still_counts_them() -> None:
    async with pipe(limit=10) as (reader, writer):
        await writer.send(b"012345")
        with anyio.move_on_after(0.02) as scope:
            await reader.readuntil(b"|")  # buffers 6 bytes, then waits
        assert scope.cancelled_caught and buffered(reader) == 6
        await writer.send(b"6789ab|")  # 12 bytes before the separator: over the limit
        with pytest.raises(fdloop.LimitOverrunError) as caught:
            await reader.readuntil(b"|")
        assert caught.value.consumed == 12 and buffered(reader) == 13
        assert await reader.readexactly(13) == b"0123456789ab|"


async def test_close_wakes_a_waiting_line_search() -> None:
    async with pipe(limit=10) as (reader, writer), anyio.create_task_group() as tg:
        await writer.send(b"part")
        errors: list[BaseException] = []

        async def search() -> None:
            try:
                await reader.readline()
            except fdloop.ClosedResourceError as exc:
                errors.append(exc)

        tg.start_soon(search)
        await anyio.sleep(0.02)
        reader.close()
    assert len(errors) == 1


# -- a child that never prints a newline ---------------------------------------------------

NO_NEWLINE = (
    "import sys, time\n"
    "for _ in range(80): sys.stdout.buffer.write(b'x' * 65536)\n"  # 5 MiB, no separator
    "sys.stdout.flush(); time.sleep(60)\n"
)


async def test_readuntil_with_a_tuple_ends_at_the_first() -> None:
    """A tuple of separators: the shortest chunk ending in any of them (asyncio's since
    Python 3.13), the limit counted to where that one starts."""
    async with pipe(limit=6) as (reader, writer):
        await writer.send(b"ab--c\nxyz\r\n12345678|tail")
        await writer.aclose()
        assert await reader.readuntil((b"\n", b"--")) == b"ab--"
        assert await reader.readuntil((b"--", b"\n")) == b"c\n"
        assert await reader.readuntil((b"\r\n", b"\n")) == b"xyz\r\n"  # ends first
        with pytest.raises(fdloop.LimitOverrunError) as overrun:
            await reader.readuntil((b"|", b"!"))  # starts at 8, past the limit of 6
        assert overrun.value.consumed == 8
        assert await reader.read(8) == b"12345678"
        assert await reader.readuntil((b"|",)) == b"|"
        with pytest.raises(fdloop.IncompleteReadError) as short:
            await reader.readuntil((b"|", b"\n"))
        assert short.value.partial == b"tail"
    async with pipe() as (reader, _writer):
        with pytest.raises(ValueError, match="empty tuple"):
            await reader.readuntil(())
        with pytest.raises(ValueError, match="empty"):
            await reader.readuntil((b"\n", b""))
        with pytest.raises(TypeError, match="str"):
            await reader.readuntil((b"\n", "x"))  # type: ignore[arg-type]


async def test_readuntil_on_endless_output_raises_with_a_bounded_buffer() -> None:
    """Before the limit, this buffered all 5 MiB and then waited for the separator forever."""
    async with python_child(NO_NEWLINE, limit=100_000) as stream:
        with anyio.fail_after(20), pytest.raises(fdloop.LimitOverrunError) as caught:
            await stream.readuntil(b"\n")
        assert buffered(stream) <= 100_000 + RECEIVE_SIZE
        assert caught.value.consumed <= buffered(stream)


async def test_readline_on_endless_output_keeps_dropping_and_stays_bounded() -> None:
    async with python_child(NO_NEWLINE, limit=1000) as stream:
        with anyio.fail_after(20):
            for _ in range(50):  # each call drops what it buffered and raises again
                with pytest.raises(ValueError):
                    await stream.readline()
                assert buffered(stream) == 0


async def test_long_lines_can_be_read_in_bounded_pieces() -> None:
    """The recipe for a consumer that must keep every byte (e.g. a log copier): readuntil,
    and on an overrun take ``consumed`` bytes as one piece of the long line."""
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(b'a' * 300000 + b'\\nshort\\n' + b'b' * 70000)\n"
    )
    pieces: list[bytes] = []
    async with python_child(code, limit=65536) as stream:
        with anyio.fail_after(20):
            while True:
                try:
                    pieces.append(await stream.readuntil(b"\n"))
                except fdloop.LimitOverrunError as overrun:
                    pieces.append(await stream.read(overrun.consumed))
                except fdloop.IncompleteReadError as eof:
                    if eof.partial:
                        pieces.append(eof.partial)
                    break
                assert buffered(stream) <= 65536 + RECEIVE_SIZE
    assert b"".join(pieces) == b"a" * 300000 + b"\nshort\n" + b"b" * 70000
    assert max(map(len, pieces)) <= 65536 + RECEIVE_SIZE
    assert b"short\n" in pieces


# -- no read asks the kernel for more than it must -------------------------------------------


@pytest.mark.parametrize("call", ["receive", "read", "readexactly"])
async def test_a_huge_n_does_not_allocate_a_huge_buffer(call: str) -> None:
    """os.read(fd, n) allocates n bytes before it reads; a caller's n must not reach it."""
    async with pipe() as (reader, writer):
        await writer.send(b"12345")
        if call == "readexactly":
            await writer.aclose()
        tracemalloc.start()
        try:
            if call == "receive":
                assert await reader.receive(100_000_000) == b"12345"
            elif call == "read":
                assert await reader.read(100_000_000) == b"12345"
            else:
                with pytest.raises(fdloop.IncompleteReadError):
                    await reader.readexactly(100_000_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * MAX_READ


# -- the same answers as asyncio's StreamReader ---------------------------------------------


def run_now(coro: Coroutine[Any, Any, bytes]) -> tuple[Any, ...]:
    """Run an asyncio.StreamReader coroutine that has all its data (it never waits)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return ("ok", done.value)
    except Exception as exc:  # the outcome is what is compared
        return outcome(exc)
    coro.close()
    raise AssertionError("asyncio's StreamReader waited although it had EOF")


def outcome(exc: BaseException) -> tuple[Any, ...]:
    if isinstance(exc, asyncio.LimitOverrunError):
        return ("overrun", exc.consumed)
    if isinstance(exc, asyncio.IncompleteReadError):
        return ("incomplete", exc.partial, exc.expected)
    if isinstance(exc, ValueError):
        return ("too long",)
    raise exc


# asyncio's readuntil takes a tuple of separators since Python 3.13; fdloop's on every
# Python (tested without the oracle in test_readuntil_with_a_tuple_ends_at_the_first).
SEPARATORS: list[bytes | tuple[bytes, ...]] = [b"\n", b"--", b"a-b"]
if sys.version_info >= (3, 13):
    SEPARATORS += [(b"--", b"\n"), (b"a-b", b"-"), (b"bb", b"aaaa", b"\n"), (b"\n",)]

# Few newlines and small limits, so that long lines (and separators past the limit) are
# common.
data_bytes = st.lists(
    st.sampled_from([b"a", b"bb", b"aaaa", b"\n", b"-", b"--", b"a-b"]), max_size=100
).map(b"".join)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("readline"), st.just(0)),
        st.tuples(st.just("readuntil"), st.sampled_from(SEPARATORS)),
        st.tuples(st.just("read"), st.integers(-1, 30)),
        st.tuples(st.just("readexactly"), st.integers(0, 30)),
    ),
    max_size=12,
)


@settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=data_bytes, limit=st.integers(1, 12), ops=operations)
async def test_same_results_and_buffer_handling_as_asyncio(
    data: bytes, limit: int, ops: list[tuple[str, Any]]
) -> None:
    """All the data and EOF are there before the first read, so chunking cannot differ:
    every result, every exception (and its consumed/partial) must be asyncio's."""
    loop = asyncio.new_event_loop()
    try:
        oracle = asyncio.StreamReader(limit=limit, loop=loop)
        oracle.feed_data(data)
        oracle.feed_eof()
        expected = [run_now(getattr(oracle, op)(arg) if op != "readline" else oracle.readline())
                    for op, arg in ops]
        expected.append(run_now(oracle.read()))
    finally:
        loop.close()
    got: list[tuple[Any, ...]] = []
    async with pipe(limit=limit) as (reader, writer):
        await writer.send(data)
        await writer.aclose()
        for op, arg in ops:
            try:
                result = await (getattr(reader, op)(arg) if op != "readline" else reader.readline())
                got.append(("ok", result))
            except Exception as exc:
                got.append(outcome(exc))
        got.append(("ok", await reader.read()))
    assert got == expected
