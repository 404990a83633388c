"""fdloop.compat.trio against trio's own subprocess tests, adapted.

Cases follow trio's src/trio/_tests/test_subprocess.py: each background test runs both
through ``open_process`` and through ``nursery.start(run_process, ...)``; only the import
changes (and the few private-attribute checks trio makes of its own internals are left
out). They run under trio; on asyncio loops they are skipped.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import pytest

trio = pytest.importorskip("trio")
from trio.testing import wait_all_tasks_blocked  # noqa: E402

from fdloop.compat.trio import Process, open_process, run_process  # noqa: E402

from ..primitives.process_helpers import alive  # noqa: E402

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", "import sys; " + code]


EXIT_TRUE = python("sys.exit(0)")
EXIT_FALSE = python("sys.exit(1)")
CAT = python("sys.stdout.buffer.write(sys.stdin.buffer.read())")
COPY_BOTH_WAYS = python("data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data); "
                        "sys.stderr.buffer.write(data[::-1])")


def SLEEP(seconds: int) -> list[str]:  # (trio's name)
    return ["sleep", str(seconds)]


@pytest.fixture(autouse=True)
def trio_only(anyio_backend: tuple[str, dict[str, object]]) -> None:
    if anyio_backend[0] != "trio":
        pytest.skip("fdloop.compat.trio is for trio (asyncio: fdloop.compat.asyncio)")


@asynccontextmanager
async def open_process_then_kill(*args: Any, **kwargs: Any) -> AsyncIterator[Process]:
    proc = await open_process(*args, **kwargs)
    try:
        yield proc
    finally:
        proc.kill()
        await proc.wait()


@asynccontextmanager
async def run_process_in_nursery(*args: Any, **kwargs: Any) -> AsyncIterator[Process]:
    async with trio.open_nursery() as nursery:
        kwargs.setdefault("check", False)
        proc = await nursery.start(partial(run_process, *args, **kwargs))
        assert isinstance(proc, Process)
        yield proc
        nursery.cancel_scope.cancel()


Background = Callable[..., AbstractAsyncContextManager[Process]]
background = pytest.mark.parametrize(
    "background_process", [open_process_then_kill, run_process_in_nursery],
    ids=["open_process", "run_process in nursery"],
)


@background
async def test_basic(background_process: Background) -> None:
    async with background_process(EXIT_TRUE) as proc:
        code = await proc.wait()
    assert proc.returncode == 0 and type(code) is int  # a plain int, as trio's
    assert repr(proc) == f"<fdloop.compat.trio.Process {EXIT_TRUE}: exited with status 0>"
    async with background_process(EXIT_FALSE) as proc:
        await proc.wait()
    assert proc.returncode == 1


@background
async def test_auto_update_returncode(background_process: Background) -> None:
    async with background_process(SLEEP(9999)) as p:
        assert p.returncode is None and "running" in repr(p)
        p.kill()
        with trio.fail_after(10):
            while p.returncode is None:  # no wait(): returncode polls
                await trio.sleep(0.01)
        assert "exited" in repr(p) and p.poll() == -signal.SIGKILL


@background
async def test_multi_wait(background_process: Background) -> None:
    async with background_process(SLEEP(10)) as proc:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(proc.wait)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(proc.wait)
            await wait_all_tasks_blocked()
            proc.kill()


@background
async def test_pipes(background_process: Background) -> None:
    async with background_process(COPY_BOTH_WAYS, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        msg = b"the quick brown fox jumps over the lazy dog"

        async def feed_input() -> None:
            await proc.stdin.send_all(msg)  # type: ignore[union-attr]
            await proc.stdin.aclose()  # type: ignore[union-attr]

        async def check_output(stream: trio.abc.ReceiveStream, expected: bytes) -> None:
            seen = bytearray()
            async for chunk in stream:
                seen += chunk
            assert seen == expected

        assert isinstance(proc.stdin, trio.abc.SendStream)
        assert isinstance(proc.stdout, trio.abc.ReceiveStream)
        async with trio.open_nursery() as nursery:
            nursery.cancel_scope.deadline = trio.current_time() + 30.0
            nursery.start_soon(feed_input)
            nursery.start_soon(check_output, proc.stdout, msg)
            nursery.start_soon(check_output, proc.stderr, msg[::-1])
        assert not nursery.cancel_scope.cancelled_caught
        assert await proc.wait() == 0


@background
async def test_interactive(background_process: Background) -> None:
    code = ("idx = 0\nwhile True:\n    line = sys.stdin.readline()\n    if line == '': break\n"
            "    request = int(line.strip())\n    print(str(idx * 2) * request)\n"
            "    print(str(idx * 2 + 1) * request * 2, file=sys.stderr)\n    idx += 1\n")
    async with background_process(python(code), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:

        async def expect(idx: int, request: int) -> None:
            async def drain_one(stream: trio.abc.ReceiveStream, count: int, digit: int
                                ) -> None:
                while count > 0:
                    result = await stream.receive_some(count)
                    assert result == f"{digit}".encode() * len(result)
                    count -= len(result)
                assert await stream.receive_some(1) == b"\n"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_one, proc.stdout, request, idx * 2)
                nursery.start_soon(drain_one, proc.stderr, request * 2, idx * 2 + 1)

        assert proc.stdin is not None and proc.stdout is not None
        with trio.fail_after(10):
            await proc.stdin.send_all(b"12")
            await trio.sleep(0.1)
            await proc.stdin.send_all(b"345\n")
            await expect(0, 12345)
            await proc.stdin.send_all(b"100\n200\n")
            await expect(1, 100)
            await expect(2, 200)
            await proc.stdin.send_all(b"999")
            with trio.move_on_after(0.1) as scope:
                await expect(3, 0)
            assert scope.cancelled_caught
            await proc.stdin.send_all(b"\n")
            await expect(3, 999)
            await proc.stdin.aclose()
            assert await proc.stdout.receive_some(1) == b""
            await proc.wait()
    assert proc.returncode == 0


async def test_run() -> None:
    data = bytes(random.randint(0, 255) for _ in range(2**18))
    result = await run_process(CAT, stdin=data, capture_stdout=True, capture_stderr=True)
    assert isinstance(result, subprocess.CompletedProcess)
    assert (result.args, result.returncode, result.stdout, result.stderr) == (CAT, 0, data, b"")
    result = await run_process(CAT, capture_stdout=True)
    assert (result.stdout, result.stderr) == (b"", None)  # stdin=b"" by default
    result = await run_process(COPY_BOTH_WAYS, stdin=data, capture_stdout=True,
                               capture_stderr=True)
    assert (result.stdout, result.stderr) == (data, data[::-1])

    with pytest.raises(UnicodeError):
        await run_process(CAT, stdin="oh no, it's text")
    with pytest.raises(ValueError, match=r"^stdin=subprocess\.PIPE is only valid with"):
        await run_process(CAT, stdin=subprocess.PIPE)
    for name in ("stdout", "stderr"):
        with pytest.raises(ValueError, match=rf"^{name}=subprocess\.PIPE is only valid"):
            await run_process(CAT, **{name: subprocess.PIPE})
    with pytest.raises(ValueError, match=r"^can't specify both stdout and capture_stdout$"):
        await run_process(CAT, capture_stdout=True, stdout=subprocess.DEVNULL)
    with pytest.raises(ValueError, match=r"^can't specify both stderr and capture_stderr$"):
        await run_process(CAT, capture_stderr=True, stderr=None)


async def test_run_check() -> None:
    cmd = python("sys.stderr.buffer.write(b'test\\n'); sys.exit(1)")
    with pytest.raises(subprocess.CalledProcessError) as caught:
        await run_process(cmd, stdin=subprocess.DEVNULL, capture_stderr=True)
    assert (caught.value.cmd, caught.value.returncode) == (cmd, 1)
    assert (caught.value.stderr, caught.value.stdout) == (b"test\n", None)
    result = await run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    assert (result.stdout, result.stderr, result.returncode) == (b"", b"test\n", 1)


async def test_run_with_broken_pipe() -> None:
    result = await run_process([sys.executable, "-c", "import sys; sys.stdin.close()"],
                               stdin=b"x" * 131072)
    assert result.returncode == 0 and result.stdout is result.stderr is None


@background
async def test_stderr_stdout(background_process: Background) -> None:
    async with background_process(COPY_BOTH_WAYS, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdio is not None and proc.stderr is None
        await proc.stdio.send_all(b"1234")
        await proc.stdio.send_eof()
        output = []
        while chunk := await proc.stdio.receive_some(16):
            output.append(chunk)
        assert b"".join(output) == b"12344321"
    assert proc.returncode == 0

    result = await run_process(COPY_BOTH_WAYS, stdin=b"1234", capture_stdout=True,
                               stderr=subprocess.STDOUT)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"12344321", None)

    r, w = os.pipe()
    try:
        async with background_process(COPY_BOTH_WAYS, stdin=subprocess.PIPE, stdout=w,
                                      stderr=subprocess.STDOUT) as proc:
            os.close(w)
            w = -1
            assert proc.stdio is None and proc.stdout is None and proc.stderr is None
            await proc.stdin.send_all(b"1234")  # type: ignore[union-attr]
            await proc.stdin.aclose()  # type: ignore[union-attr]
            assert await proc.wait() == 0
            assert os.read(r, 4096) == b"12344321"
            assert os.read(r, 4096) == b""
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


async def test_errors() -> None:
    with pytest.raises(TypeError, match="the 'encoding' option is not supported"):
        await open_process(["ls"], encoding="utf-8")
    with pytest.raises(TypeError):
        await open_process(["ls"], shell=True)
    with pytest.raises(TypeError):
        await open_process("ls", shell=False)
    proc = await open_process("exit 3", shell=True)
    assert await proc.wait() == 3


@background
async def test_signals(background_process: Background) -> None:
    async def one(send_it: Callable[[Process], None], signum: int) -> None:
        with trio.move_on_after(5) as scope:
            async with background_process(SLEEP(3600)) as proc:
                send_it(proc)
                await proc.wait()
        assert not scope.cancelled_caught
        assert proc.returncode == -signum

    await one(Process.kill, signal.SIGKILL)
    await one(Process.terminate, signal.SIGTERM)
    await one(lambda proc: proc.send_signal(signal.SIGUSR1), signal.SIGUSR1)


async def test_custom_deliver_cancel() -> None:
    called = False

    async def custom_deliver_cancel(proc: Process) -> None:
        nonlocal called
        called = True
        proc.terminate()
        try:
            await trio.sleep_forever()
        finally:
            assert proc.returncode is not None  # cancelled once the child exited

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_process, SLEEP(9999),
                                   deliver_cancel=custom_deliver_cancel))
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert called


async def test_bad_deliver_cancel() -> None:
    async def custom_deliver_cancel(proc: Process) -> None:
        proc.terminate()
        raise ValueError("foo")

    with pytest.raises(ExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_process, SLEEP(9999),
                                       deliver_cancel=custom_deliver_cancel))
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert caught.group_contains(ValueError, match="^foo$", depth=None)


async def test_run_process_background_fail() -> None:
    with pytest.raises(ExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(run_process, EXIT_FALSE)
            assert isinstance(proc, Process)
    assert caught.group_contains(subprocess.CalledProcessError)
    assert proc.returncode == 1


async def test_for_leaking_fds() -> None:
    await run_process(EXIT_TRUE)  # the loop's first child makes its ready set (one epoll)
    before = set(os.listdir("/proc/self/fd"))
    await run_process(EXIT_TRUE)
    assert set(os.listdir("/proc/self/fd")) == before


async def test_dropping_an_open_process_kills_a_running_child() -> None:
    proc = await open_process(SLEEP(3600))
    pid = proc.pid
    with pytest.warns(ResourceWarning):
        del proc
        gc.collect()
    with trio.fail_after(10):
        while alive(pid):
            await trio.sleep(0.01)
    # (an exited child's Process is released quietly: test_basic leaves them to GC)


async def test_async_with_ends_a_running_child() -> None:
    async with await open_process(SLEEP(3600), kill_timeout=2) as proc:
        pass
    assert proc.returncode == -signal.SIGTERM


async def test_wait_send_all_might_not_block_waits_for_room(tmp_path: Any) -> None:
    # trio's waits until the pipe can take bytes; a loop built on it must not spin.
    gate = tmp_path / "gate"  # the child reads nothing until it exists
    script = f"while [ ! -e '{gate}' ]; do sleep 0.01; done; cat > /dev/null"
    proc = await open_process(["sh", "-c", script], stdin=subprocess.PIPE)
    async with proc:
        assert proc.stdin is not None
        await proc.stdin.send_all(b"x" * 65536)  # a default pipe, full
        with trio.move_on_after(0.3) as scope:
            await proc.stdin.wait_send_all_might_not_block()
        assert scope.cancelled_caught  # no room: it waited
        gate.touch()
        with trio.fail_after(30):
            await proc.stdin.wait_send_all_might_not_block()  # the child drains the pipe
        await proc.stdin.aclose()
        assert await proc.wait() == 0
