"""fdloop.run with real children, on asyncio, uvloop and trio.

The autouse leak check (tests/conftest.py) also proves, after every test here, that the
child was reaped (no zombie) and that no pipe fd was left open.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop import PIPE, STDOUT

from .primitives.process_helpers import alive

BIG = 100 * 1000 * 1000
SH_STARTS = 1.5
"""A timeout that a child shell (or Python) must beat to its first line: the tests that
need output from before their timeout give it this much, a slow machine's worst case."""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


async def gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` is dead (a zombie of its new parent counts as dead)."""
    with anyio.move_on_after(timeout):
        while alive(pid):
            await anyio.sleep(0.01)
    return not alive(pid)


# -- results ---------------------------------------------------------------------------


async def test_capture_output_exit_code_and_status() -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    result = await fdloop.run(argv, capture_output=True)
    assert isinstance(result, fdloop.CompletedProcess)
    assert result.args is argv
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert result.status.exit_code == 3 and result.status.signal is None
    with pytest.raises(fdloop.CalledProcessError):
        result.check_returncode()


async def test_nothing_captured_unless_asked() -> None:
    result = await fdloop.run(["sh", "-c", "echo hidden"], stdout=fdloop.DEVNULL)
    assert (result.returncode, result.stdout, result.stderr) == (0, None, None)
    result.check_returncode()


async def test_stdout_pipe_with_stderr_merged() -> None:
    result = await fdloop.run(
        ["sh", "-c", "echo one; echo two >&2; echo three"], stdout=PIPE, stderr=STDOUT
    )
    assert result.stdout == b"one\ntwo\nthree\n"
    assert result.stderr is None


async def test_killed_child_has_negative_returncode() -> None:
    result = await fdloop.run(["sh", "-c", "kill -KILL $$"])
    assert result.returncode == -signal.SIGKILL
    assert result.status.signal == signal.SIGKILL


async def test_check_raises_called_process_error_with_everything() -> None:
    argv = ["sh", "-c", "echo so far; echo oops >&2; exit 4"]
    with pytest.raises(subprocess.CalledProcessError) as caught:
        await fdloop.run(argv, capture_output=True, check=True)
    error = caught.value
    assert isinstance(error, fdloop.CalledProcessError)
    assert isinstance(error, fdloop.FdloopError)
    assert (error.returncode, error.cmd) == (4, argv)
    assert (error.stdout, error.output, error.stderr) == (b"so far\n", b"so far\n", b"oops\n")
    assert error.status.exit_code == 4
    assert "exit status 4" in str(error)
    ok = await fdloop.run(["true"], check=True)
    assert ok.returncode == 0


async def test_spawn_errors_pass_through() -> None:
    with pytest.raises(FileNotFoundError):
        await fdloop.run(["/nonexistent/program"], capture_output=True)


# -- input ------------------------------------------------------------------------------


async def test_input_is_fed_then_stdin_closed() -> None:
    result = await fdloop.run(["cat"], input=b"hello\n", capture_output=True)
    assert result.stdout == b"hello\n"
    result = await fdloop.run(["cat"], input=bytearray(b"abc"), stdout=PIPE)
    assert result.stdout == b"abc"
    # stdin=PIPE without input: closed at once, as subprocess.run does
    result = await fdloop.run(["cat"], stdin=PIPE, stdout=PIPE)
    assert result.stdout == b""


async def test_child_that_ignores_its_input_is_not_an_error() -> None:
    result = await fdloop.run(["true"], input=b"x" * (4 << 20), check=True)
    assert result.returncode == 0


async def test_cat_echoes_ten_megabytes_of_input() -> None:
    data = os.urandom(1 << 20) * 10
    result = await fdloop.run(["cat"], input=data, capture_output=True)
    assert hashlib.sha256(result.stdout or b"").digest() == hashlib.sha256(data).digest()


async def test_no_deadlock_when_the_child_writes_stderr_before_reading_stdin() -> None:
    # The child fills stderr (far past the pipe's 64 KiB) before it reads a byte: feeding
    # stdin first, or draining one stream at a time, would hang forever.
    code = """
        import sys
        sys.stderr.buffer.write(b"e" * 5_000_000)
        sys.stderr.flush()
        data = sys.stdin.buffer.read()
        sys.stdout.buffer.write(data[::-1])
    """
    data = os.urandom(5_000_000)
    with anyio.fail_after(60):
        result = await fdloop.run(python(code), input=data, capture_output=True)
    assert result.stderr == b"e" * 5_000_000
    assert result.stdout == data[::-1]


async def test_100_mb_on_stdout_and_stderr_at_once() -> None:
    script = f"head -c {BIG} /dev/zero & head -c {BIG} /dev/zero >&2; wait"
    with anyio.fail_after(120):
        result = await fdloop.run(["sh", "-c", script], capture_output=True, check=True)
    assert result.stdout is not None and result.stderr is not None
    assert (len(result.stdout), len(result.stderr)) == (BIG, BIG)
    assert result.stdout.count(0) == BIG


# -- bad arguments ----------------------------------------------------------------------


async def test_flags_take_any_value_for_its_truth_as_subprocess_run_does() -> None:
    result = await fdloop.run(["echo", "hi"], capture_output=1)  # type: ignore[arg-type]
    assert result.stdout == b"hi\n" and result.stderr == b""
    with pytest.raises(fdloop.CalledProcessError):
        await fdloop.run(["false"], check="yes")  # type: ignore[arg-type]
    assert (await fdloop.run(["false"], check=0)).returncode == 1  # type: ignore[arg-type]


async def test_bad_arguments_are_refused_before_a_child_starts() -> None:
    with pytest.raises(ValueError, match="stdin"):
        await fdloop.run(["cat"], input=b"x", stdin=fdloop.DEVNULL)
    with pytest.raises(ValueError, match="capture_output"):
        await fdloop.run(["true"], capture_output=True, stdout=fdloop.DEVNULL)
    with pytest.raises(ValueError, match="capture_output"):
        await fdloop.run(["true"], capture_output=True, stderr=STDOUT)
    with pytest.raises(TypeError, match="input"):
        await fdloop.run(["cat"], input="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        await fdloop.run(["true"], timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        await fdloop.run(["true"], timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no_such_option"):
        await fdloop.run(["true"], no_such_option=1)


# -- timeout ----------------------------------------------------------------------------


async def test_timeout_kills_reaps_and_keeps_the_partial_output() -> None:
    argv = ["sh", "-c", "echo partial; echo half >&2; exec sleep 100"]
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        await fdloop.run(argv, capture_output=True, timeout=SH_STARTS)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, subprocess.TimeoutExpired)
    assert isinstance(error, fdloop.FdloopError)
    assert (error.cmd, error.timeout) == (argv, SH_STARTS)
    assert (error.stdout, error.output, error.stderr) == (b"partial\n", b"partial\n", b"half\n")
    assert f"timed out after {SH_STARTS} seconds" in str(error)


async def test_timeout_without_capture_has_no_output() -> None:
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        await fdloop.run(["sleep", "100"], timeout=0.2)
    assert caught.value.stdout is None and caught.value.stderr is None


async def test_timeout_gives_none_for_a_captured_stream_that_stayed_silent() -> None:
    # subprocess: "b''.join(chunks) if chunks else None" -- a pipe that carried nothing
    # before the timeout is None, as one that was never captured.
    argv = ["sh", "-c", "echo partial; exec sleep 100"]
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        await fdloop.run(argv, capture_output=True, timeout=SH_STARTS)
    assert (caught.value.stdout, caught.value.stderr) == (b"partial\n", None)
    async with fdloop.spawn(["sleep", "100"], stdout=fdloop.PIPE, stderr=fdloop.PIPE) as proc:
        with pytest.raises(fdloop.TimeoutExpired) as caught:
            await proc.communicate(timeout=0.2)
        assert (caught.value.stdout, caught.value.stderr) == (None, None)


async def test_timeout_sends_kill_signal_first_then_sigkill() -> None:
    # A new session keeps collecting output during the grace period, so the handler's
    # words prove SIGTERM came first; the child ignores it, so only SIGKILL ends it.
    code = """
        import signal, sys, time
        def on_term(signo, frame):
            sys.stderr.write("got TERM\\n")
            sys.stderr.flush()
        signal.signal(signal.SIGTERM, on_term)
        print(flush=True)
        time.sleep(100)
    """
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        await fdloop.run(
            python(code), capture_output=True, timeout=2 * SH_STARTS, kill_timeout=1.0,
            start_new_session=True,
        )
    assert caught.value.stdout == b"\n"
    assert caught.value.stderr == b"got TERM\n"


async def test_tree_holding_the_pipe_does_not_hang_and_new_session_kills_it() -> None:
    # Pitfall 8: sh exits at once, its background sleep keeps stdout open, so EOF never
    # comes. The timeout must end run(), and with a new session the sleep must die too.
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        with anyio.fail_after(30):
            await fdloop.run(
                ["sh", "-c", "sleep 100 & echo $!"], capture_output=True, timeout=SH_STARTS,
                start_new_session=True,
            )
    straggler = int(caught.value.stdout or b"")
    assert await gone(straggler)


async def test_new_session_straggler_that_ignores_term_gets_sigkill() -> None:
    script = "(trap '' TERM; exec sleep 100) & echo $!"
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        with anyio.fail_after(30):
            await fdloop.run(
                ["sh", "-c", script], stdout=PIPE, timeout=SH_STARTS, kill_timeout=0.3,
                start_new_session=True,
            )
    assert await gone(int(caught.value.stdout or b""))


async def test_tree_holding_the_pipe_without_new_session_still_times_out() -> None:
    # Without a session of its own the straggler is not ours to find: run() returns,
    # the straggler lives on (and is cleaned up here by hand).
    with pytest.raises(fdloop.TimeoutExpired) as caught:
        with anyio.fail_after(30):
            await fdloop.run(["sh", "-c", "sleep 100 & echo $!"], stdout=PIPE,
                             timeout=SH_STARTS)
    straggler = int(caught.value.stdout or b"")
    try:
        assert alive(straggler)
    finally:
        os.kill(straggler, signal.SIGKILL)
    assert await gone(straggler)


# -- cancellation -----------------------------------------------------------------------


async def test_cancelled_run_kills_and_reaps_the_child() -> None:
    with anyio.move_on_after(0.3) as scope:
        await fdloop.run(["sleep", "100"], capture_output=True)
    assert scope.cancelled_caught
    # no zombie: the leak check after this test fails if the child was not reaped


async def test_cancelled_run_of_a_new_session_tree_kills_the_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "straggler"
    with anyio.move_on_after(SH_STARTS) as scope:
        await fdloop.run(
            ["sh", "-c", f"sleep 100 & echo $! > {pid_file}; wait"], stdout=PIPE,
            start_new_session=True, kill_timeout=0.5,
        )
    assert scope.cancelled_caught
    assert await gone(int(pid_file.read_text()))


async def test_bare_asyncio_task_cancel_still_reaps(anyio_backend_name: str) -> None:
    # Task.cancel() is not an anyio scope: it gets through shields, so run() must still
    # end the child without blocking (SIGKILL, then the reaper) — no zombie, no fd.
    if anyio_backend_name != "asyncio":
        pytest.skip("Task.cancel() is asyncio's own")
    task = asyncio.ensure_future(fdloop.run(["sleep", "100"], capture_output=True))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# A child that commits its work at EOF, unless it was told to stop first: SIGTERM is
# blocked and looked for in the pending set once the input has ended, so the order in
# which the parent signals and closes stdin decides what the child does.
COMMIT_AT_EOF = textwrap.dedent("""
    import signal, sys, time
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
    data = sys.stdin.buffer.read()
    if signal.SIGTERM in signal.sigpending():
        sys.exit(3)  # aborted: the input may be cut short
    open(sys.argv[1], "w").write(str(len(data)))
""")


async def test_timeout_never_passes_truncated_input_off_as_complete(tmp_path: Path) -> None:
    marker = tmp_path / "committed"
    with pytest.raises(fdloop.TimeoutExpired):
        await fdloop.run(
            [sys.executable, "-c", COMMIT_AT_EOF, str(marker), "0.5"],
            input=b"x" * (4 << 20), timeout=0.3, kill_timeout=10, stdout=subprocess.DEVNULL,
        )
    assert not marker.exists(), f"the child took {marker.read_text()} bytes as all its input"


async def test_aclose_signals_before_the_child_sees_eof(tmp_path: Path) -> None:
    # Closing stdin first lets the child see EOF before the signal about half the time
    # (measured: 9 of 20): five rounds make the old order fail all but surely.
    for round_number in range(5):
        marker = tmp_path / f"committed-{round_number}"
        proc = fdloop.spawn([sys.executable, "-c", COMMIT_AT_EOF, str(marker), "0"],
                            stdin=PIPE, stdout=PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        with anyio.fail_after(30):
            assert await proc.stdout.readline() == b"ready\n"  # SIGTERM is blocked now
        await proc.stdin.send(b"partial input")
        await proc.aclose()
        assert proc.returncode == 3
        assert not marker.exists()
