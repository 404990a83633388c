"""fdloop.compat.asyncio against CPython's own asyncio subprocess tests, adapted.

Cases follow Lib/test/test_asyncio/test_subprocess.py (SubprocessMixin): the calls are
asyncio's, only the import changes. They run on asyncio and uvloop; on trio the module
must refuse clearly (last test).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from asyncio import subprocess
from typing import Any

import pytest

import fdloop
from fdloop.compat import asyncio as compat

from ..primitives.process_helpers import alive

PROGRAM_BLOCKED = [sys.executable, "-c", "import time; time.sleep(3600)"]
PROGRAM_CAT = [sys.executable, "-c",
               "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data)"]
LEN_OF_STDIN = [sys.executable, "-c", "import sys; data = sys.stdin.read(); print(len(data))"]
PIPE_MAX_SIZE = 4 * 1024 * 1024 + 1  # test.support's: more than any pipe buffer


@pytest.fixture(autouse=True)
def asyncio_only(anyio_backend: tuple[str, dict[str, object]]) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("fdloop.compat.asyncio is for asyncio loops (trio: fdloop.compat.trio)")


async def test_stdin_stdout() -> None:
    proc = await compat.create_subprocess_exec(*PROGRAM_CAT, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    proc.stdin.write(b"some data")  # type: ignore[union-attr]
    await proc.stdin.drain()  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    data = await proc.stdout.read()  # type: ignore[union-attr]
    exitcode = await asyncio.wait_for(proc.wait(), 60)
    assert (exitcode, data) == (0, b"some data")
    assert type(exitcode) is int  # a plain int, as asyncio's


async def test_communicate() -> None:
    proc = await compat.create_subprocess_exec(*PROGRAM_CAT, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(b"some data"), 60)
    assert (proc.returncode, stdout, stderr) == (0, b"some data", None)


async def test_streams_stay_at_eof_after_communicate() -> None:
    # asyncio's StreamReader, once communicate() read it to EOF, answers EOF for good;
    # the pipes underneath are released all the same (Popen's communicate closes them).
    proc = await compat.create_subprocess_exec(
        sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert await asyncio.wait_for(proc.communicate(), 60) == (b"out\n", b"err\n")
    assert proc.processfd.stdout is not None and proc.processfd.stdout.closed
    assert proc.processfd.stderr is not None and proc.processfd.stderr.closed
    for stream in (proc.stdout, proc.stderr):
        assert stream is not None and stream.at_eof() and stream.exception() is None
        assert await stream.read() == b""
        assert await stream.read(5) == b""
        assert await stream.readline() == b""
        assert await stream.readexactly(0) == b""
        with pytest.raises(asyncio.IncompleteReadError) as short:
            await stream.readexactly(3)
        assert (short.value.partial, short.value.expected) == (b"", 3)
        with pytest.raises(asyncio.IncompleteReadError) as unmatched:
            await stream.readuntil(b"\n")
        assert (unmatched.value.partial, unmatched.value.expected) == (b"", None)
        with pytest.raises(ValueError):
            await stream.readuntil(b"")
        with pytest.raises(ValueError):
            await stream.readexactly(-1)
        assert [line async for line in stream] == []
        assert stream.limit == 2 ** 16  # asyncio's default limit, kept


async def test_stdin_after_communicate_as_asyncio() -> None:
    # asyncio's stdin, once communicate() closed it: write() drops without raising,
    # drain() raises ConnectionResetError (its transport is closed: even with nothing
    # written), close() is idempotent.
    proc = await compat.create_subprocess_exec(*PROGRAM_CAT, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    assert await asyncio.wait_for(proc.communicate(b"in"), 60) == (b"in", None)
    stdin = proc.stdin
    assert stdin is not None and stdin.is_closing() and stdin.can_write_eof()
    with pytest.raises(ConnectionResetError, match="Connection lost"):
        await stdin.drain()
    stdin.write(b"late")
    stdin.writelines([b"later"])
    with pytest.raises(TypeError):
        stdin.write("text")  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError, match="Connection lost"):
        await stdin.drain()
    stdin.close()
    stdin.write_eof()
    await stdin.wait_closed()


async def test_a_child_may_write_more_than_a_pipe_holds_and_exit_before_anyone_reads(
) -> None:
    # asyncio's pipe transports read ahead (until 2 * limit bytes wait unread), so
    # wait() before read() works for such output, with asyncio's as with ours.
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 400)"  # 100 KiB
    for create in (asyncio.create_subprocess_exec, compat.create_subprocess_exec):
        proc = await create(sys.executable, "-c", code, stdout=subprocess.PIPE)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, create
        assert await proc.stdout.read() == bytes(range(256)) * 400  # type: ignore[union-attr]


async def test_the_read_ahead_stops_at_twice_the_limit_and_keeps_the_order() -> None:
    # A child writing 1 MiB, 4 KiB at a time, with limit=4096: we hold at most 8 KiB
    # (plus one read) and the pipe 64 KiB, so it cannot finish until we read.
    code = ("import sys\nfor i in range(256): "
            "sys.stdout.buffer.write(i.to_bytes(1, 'big') * 4096)")
    proc = await compat.create_subprocess_exec(sys.executable, "-c", code,
                                               stdout=subprocess.PIPE, limit=4096)
    await asyncio.sleep(0.5)
    assert proc.returncode is None  # blocked on the full pipe: the read-ahead stopped
    chunks = []
    while chunk := await proc.stdout.read(10_000):  # type: ignore[union-attr]
        chunks.append(chunk)
    assert b"".join(chunks) == b"".join(i.to_bytes(1, "big") * 4096 for i in range(256))
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_lines_read_while_the_read_ahead_runs_come_in_order() -> None:
    code = "import sys\nfor i in range(2000): print(i, flush=i % 7 == 0)"
    proc = await compat.create_subprocess_exec(sys.executable, "-c", code,
                                               stdout=subprocess.PIPE, limit=1024)
    lines = [int(line) async for line in proc.stdout]  # type: ignore[union-attr]
    assert lines == list(range(2000))
    assert await asyncio.wait_for(proc.wait(), 60) == 0


def test_a_loop_closed_while_the_read_ahead_waits_says_nothing(
    anyio_backend: tuple[str, dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio's test_kill_issue43884 in small: the shell is killed, a grandchild keeps
    the stdout pipe open, the Process is dropped while the loop is stopped, then the
    loop is closed. asyncio's own pipes say nothing; ours said "Task was destroyed but
    it is pending!" (the read-ahead task) and "Future exception was never retrieved",
    and the task, with the stream and its buffer, stayed referenced for good. (A loop
    of its own, on the loop kind of this run.)"""
    from fdloop._aio import asyncio_library

    async def killed_with_a_grandchild_holding_stdout() -> Any:
        # (the grandchild ends by itself, long after the test)
        proc = await compat.create_subprocess_shell("sleep 5 & exec sleep 30",
                                                    stdout=subprocess.PIPE)
        children = f"/proc/{proc.pid}/task/{proc.pid}/children"
        for _ in range(1000):  # until the shell has started the grandchild
            with open(children) as listing:
                if listing.read().split():
                    break
            await asyncio.sleep(0.01)
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
        return proc

    if anyio_backend[1].get("use_uvloop"):
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    with caplog.at_level("DEBUG", logger="asyncio"):
        proc = loop.run_until_complete(killed_with_a_grandchild_holding_stdout())
        del proc
        gc.collect()
        loop.close()
        gc.collect()
    assert [record.getMessage() for record in caplog.records] == []
    assert not [task for task in asyncio_library._running_tasks if task.get_loop() is loop]


async def _stdin_story(create: Any, child: str, steps: list[str]) -> list[str]:
    """What each of ``steps`` does to the stdin of a child that ran ``child`` and exited."""
    proc = await create(sys.executable, "-c", child, stdin=subprocess.PIPE)
    await asyncio.wait_for(proc.wait(), 60)
    await asyncio.sleep(0.05)  # asyncio's loop notices the closed end in its own time
    story = []
    for step in steps:
        try:
            if step == "is_closing":
                story.append(f"is_closing {proc.stdin.is_closing()}")
                continue
            result = getattr(proc.stdin, step)(b"x") if step == "write" else (
                getattr(proc.stdin, step)())
            if asyncio.iscoroutine(result):
                await result
            story.append(f"{step} ok")
        except ConnectionResetError:  # fdloop's ConnectionLostError is one
            story.append(f"{step} ConnectionResetError")
    return story


@pytest.mark.parametrize("steps", [
    ["is_closing", "drain"],
    ["write", "is_closing", "drain", "close", "wait_closed", "drain"],
    ["close", "drain", "wait_closed", "drain"],
    ["write", "close", "wait_closed"],
], ids=lambda steps: "-".join(steps))
async def test_stdin_of_a_child_that_closed_it_behaves_as_asyncio_s(
    anyio_backend: tuple[str, dict[str, object]], steps: list[str],
) -> None:
    # Side by side with asyncio's own: once the child's end of the pipe is closed,
    # asyncio's transport closes itself (is_closing() is True, write() drops, drain()
    # raises ConnectionResetError) and wait_closed() returns, nothing being lost.
    if anyio_backend[1].get("use_uvloop") and "write" in steps:
        pytest.skip("uvloop's own transport raises RuntimeError from a write after that")
    child = "import sys; sys.stdin.close()"
    expected = await _stdin_story(asyncio.create_subprocess_exec, child, steps)
    assert await _stdin_story(compat.create_subprocess_exec, child, steps) == expected


async def test_communicate_drops_input_for_a_stdin_already_closed_as_asyncio() -> None:
    # asyncio's closed StreamWriter drops what communicate() gives it (ProcessFD's own
    # communicate refuses instead, as Popen does).
    proc = await compat.create_subprocess_exec(*PROGRAM_CAT, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(b"first")
    proc.stdin.close()
    assert await asyncio.wait_for(proc.communicate(b"dropped"), 60) == (b"first", None)


async def test_drain_right_after_close_delivers_what_was_written() -> None:
    # write(); close(); await drain() works in asyncio when the drain follows the close
    # at once: the bytes still buffered go through before the pipe closes.
    proc = await compat.create_subprocess_exec(*LEN_OF_STDIN, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"x" * PIPE_MAX_SIZE)  # more than the pipe holds: buffered
    proc.stdin.close()
    await asyncio.wait_for(proc.stdin.drain(), 60)
    assert proc.processfd.stdin is not None and proc.processfd.stdin.closed
    assert await asyncio.wait_for(proc.stdout.read(), 60) == b"%d\n" % PIPE_MAX_SIZE
    assert await proc.wait() == 0


async def test_a_later_communicate_finds_every_stream_at_eof() -> None:
    # asyncio's: the streams stay at EOF and the closed stdin drops the input.
    proc = await compat.create_subprocess_exec(*PROGRAM_CAT, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE)
    assert await asyncio.wait_for(proc.communicate(b"once"), 60) == (b"once", b"")
    assert await proc.communicate() == (b"", b"")
    assert await proc.communicate(b"dropped") == (b"", b"")
    proc = await compat.create_subprocess_exec("true", stdout=subprocess.PIPE)
    assert await asyncio.wait_for(proc.communicate(), 60) == (b"", None)
    assert await proc.communicate() == (b"", None)


async def test_shell() -> None:
    proc = await compat.create_subprocess_shell("exit 7")
    assert await proc.wait() == 7


async def test_start_new_session() -> None:
    proc = await compat.create_subprocess_shell("exit 8", start_new_session=True)
    assert await proc.wait() == 8


async def test_kill() -> None:
    proc = await compat.create_subprocess_exec(*PROGRAM_BLOCKED)
    proc.kill()
    assert await proc.wait() == -signal.SIGKILL


async def test_terminate() -> None:
    proc = await compat.create_subprocess_exec(*PROGRAM_BLOCKED)
    proc.terminate()
    assert await proc.wait() == -signal.SIGTERM


async def test_send_signal() -> None:
    code = 'import time; print("sleeping", flush=True); time.sleep(3600)'
    proc = await compat.create_subprocess_exec(sys.executable, "-c", code,
                                               stdout=subprocess.PIPE)
    assert await proc.stdout.readline() == b"sleeping\n"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGHUP)
    assert await proc.wait() == -signal.SIGHUP
    proc.send_signal(signal.SIGHUP)  # exited: a no-op here (asyncio: ProcessLookupError)


async def test_stdin_broken_pipe() -> None:
    proc = await compat.create_subprocess_exec(sys.executable, "-c", "pass",
                                               stdin=subprocess.PIPE)
    await proc.wait()
    proc.stdin.write(b"x" * PIPE_MAX_SIZE)  # type: ignore[union-attr]
    with pytest.raises(ConnectionResetError, match="Connection lost") as lost:
        await proc.stdin.drain()  # type: ignore[union-attr]
    # asyncio code catches ConnectionResetError; fdloop's own, BrokenPipeError.
    assert isinstance(lost.value, (BrokenPipeError, fdloop.BrokenResourceError))
    proc.stdin.write(b"more")  # type: ignore[union-attr]  # dropped, as asyncio's
    with pytest.raises(ConnectionResetError):
        await proc.stdin.drain()  # type: ignore[union-attr]


async def test_communicate_ignore_broken_pipe() -> None:
    proc = await compat.create_subprocess_exec(sys.executable, "-c", "pass",
                                               stdin=subprocess.PIPE)
    await proc.communicate(b"x" * PIPE_MAX_SIZE)
    assert await proc.wait() == 0


async def test_limit_bounds_readline() -> None:
    code = "import sys; sys.stdout.write('x' * 21 + '\\n'); sys.stdout.flush()"
    proc = await compat.create_subprocess_exec(sys.executable, "-c", code,
                                               stdout=subprocess.PIPE, limit=10)
    with pytest.raises(ValueError):  # asyncio's readline says "Separator ... limit"
        await proc.stdout.readline()  # type: ignore[union-attr]
    assert await proc.wait() == 0
    proc = await compat.create_subprocess_exec(sys.executable, "-c", code,
                                               stdout=subprocess.PIPE, limit=10)
    stdout, _ = await proc.communicate()  # communicate() is not bounded by limit
    assert stdout == b"x" * 21 + b"\n"
    with pytest.raises(ValueError, match="limit"):
        await compat.create_subprocess_exec("true", limit=0)


async def test_stdin_not_inheritable() -> None:
    proc = await compat.create_subprocess_exec(
        *LEN_OF_STDIN, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, close_fds=False,
    )
    stdout, _stderr = await proc.communicate(b"abc")
    assert stdout.rstrip() == b"3" and await proc.wait() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(("stdin", "stdout", "stderr", "expected"), [
    (subprocess.PIPE, subprocess.PIPE, subprocess.PIPE, (b"0\n", b"")),  # empty input
    (subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE, (b"0\n", b"")),  # devnull input
    (subprocess.PIPE, subprocess.DEVNULL, subprocess.PIPE, (None, b"")),  # devnull output
    (subprocess.PIPE, subprocess.PIPE, subprocess.DEVNULL, (b"0\n", None)),  # devnull error
])
async def test_devnull_and_empty(stdin: int, stdout: int, stderr: int,
                                 expected: tuple[bytes | None, bytes | None]) -> None:
    proc = await compat.create_subprocess_exec(*LEN_OF_STDIN, stdin=stdin, stdout=stdout,
                                               stderr=stderr)
    assert await proc.communicate(b"") == expected
    assert await proc.wait() == 0


async def test_cancel_process_wait() -> None:
    proc = await compat.create_subprocess_exec(*PROGRAM_BLOCKED)
    task = asyncio.get_running_loop().create_task(proc.wait())
    asyncio.get_running_loop().call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    proc.kill()
    assert await proc.wait() == -signal.SIGKILL


async def test_returncode_and_pid() -> None:
    proc = await compat.create_subprocess_exec("sh", "-c", "exit 3")
    assert proc.pid > 0
    while proc.returncode is None:  # up to date without wait(): it polls
        await asyncio.sleep(0.01)
    assert proc.returncode == 3 and await proc.wait() == 3


async def test_refusals_as_asyncio() -> None:
    for name, value in (("text", True), ("universal_newlines", True), ("bufsize", 1),
                        ("encoding", "utf-8"), ("errors", "strict")):
        with pytest.raises(ValueError, match=f"{name} must be"):
            await compat.create_subprocess_exec("true", **{name: value})
    with pytest.raises(ValueError, match="shell must be False"):
        await compat.create_subprocess_exec("true", shell=True)
    with pytest.raises(ValueError, match="shell must be True"):
        await compat.create_subprocess_shell("true", shell=False)
    with pytest.raises(ValueError, match="cmd must be a string"):
        await compat.create_subprocess_shell(["true"])  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        await compat.create_subprocess_exec("/nonexistent/program")


async def test_dropping_an_exited_process_is_quiet() -> None:
    proc = await compat.create_subprocess_exec("echo", "x", stdout=subprocess.PIPE)
    await proc.wait()
    del proc
    gc.collect()  # no ResourceWarning (an error in this suite), no fd left behind


async def test_dropping_a_running_process_kills_its_child() -> None:
    proc = await compat.create_subprocess_exec(*PROGRAM_BLOCKED)
    pid = proc.pid
    with pytest.warns(ResourceWarning):
        del proc
        gc.collect()
    for _ in range(500):
        if not alive(pid):
            break
        await asyncio.sleep(0.01)
    assert not alive(pid)  # kill-on-close: the deliberate difference from asyncio


async def test_async_with_ends_a_running_child() -> None:
    async with await compat.create_subprocess_exec(*PROGRAM_BLOCKED, kill_timeout=2) as proc:
        pass
    assert proc.returncode == -signal.SIGTERM
    assert isinstance(proc.processfd, fdloop.ProcessFD)


def test_refused_under_trio() -> None:
    import trio

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await compat.create_subprocess_exec("true")

    trio.run(main)
