"""fdloop.compat.anyio: anyio's run_process/open_process, by changing one import.

anyio's own tests/test_subprocesses.py, run with this import (RELIABILITY.md, "peers"),
needed argument changes before this module existed (the README's anyio rows); each test
here is our own, on real processes, for one of anyio's documented rules.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings

import anyio.abc
import pytest

import fdloop
from fdloop.compat.anyio import open_process, run_process

from ..helpers import eventually
from ..primitives.process_helpers import alive

REVERSE = [sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"]


async def test_run_process_captures_and_a_str_command_uses_the_shell() -> None:
    result = await run_process(REVERSE, input=b"abc")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"cba\n", b"")
    assert type(result) is subprocess.CompletedProcess
    shell = await run_process("echo $((6 * 7)); echo err >&2")
    assert (shell.stdout, shell.stderr) == (b"42\n", b"err\n")


async def test_run_process_checks_by_default_with_the_output() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    with pytest.raises(subprocess.CalledProcessError) as caught:
        await run_process([sys.executable, "-c", code])
    assert (caught.value.returncode, caught.value.stdout, caught.value.stderr) == (
        3, b"out\n", b"err\n")
    unchecked = await run_process([sys.executable, "-c", code], check=False)
    assert unchecked.returncode == 3


async def test_run_process_refuses_input_with_stdin_before_starting() -> None:
    with pytest.raises(ValueError, match="only one of stdin and input is allowed"):
        await run_process(REVERSE, input=b"x", stdin=subprocess.DEVNULL)


async def test_open_process_pipes_all_three_and_is_anyio_process() -> None:
    async with await open_process(REVERSE, startupinfo=None, creationflags=0) as proc:
        assert isinstance(proc, anyio.abc.Process)
        assert isinstance(proc, fdloop.ProcessFD)
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stderr is not None
        await proc.stdin.send(b"xyz")
        await proc.stdin.aclose()
        assert b"".join([chunk async for chunk in proc.stdout]) == b"zyx\n"
        assert await proc.wait() == 0


async def test_an_exited_process_left_unclosed_goes_quietly() -> None:
    """anyio's test_wait_returns_on_process_exit_with_open_stdout in small: no
    ``async with``, wait, read both streams to the end, drop the process. anyio's says
    nothing (and its suite turns warnings into errors); ours warned for the ProcessFD
    and each stream. A child still running is ended, and that still warns."""
    proc = await open_process([sys.executable, "-c", "print('hi')"])
    async with proc.stdin:  # type: ignore[union-attr]
        assert await proc.wait() == 0
    assert [chunk async for chunk in proc.stdout] == [b"hi\n"]  # type: ignore[union-attr]
    assert [chunk async for chunk in proc.stderr] == []  # type: ignore[union-attr]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del proc
        gc.collect()
    assert [str(w.message) for w in caught] == []

    running = await open_process(["sleep", "30"])
    pid = running.pid
    with pytest.warns(ResourceWarning, match="unclosed"):
        del running
        gc.collect()
    assert await eventually(lambda: not alive(pid))
