"""ProcessFD's subprocess-shaped API and run()'s conveniences, with real children.

communicate (resumable timeout), wait(timeout=), returncode/poll without a wait(),
ExitStatus as an int, ProcessFD as an anyio.abc.Process; run()'s text mode,
check_output/call/check_call, nursery.start (TaskGroup.start) and deliver_cancel. Every
async test runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

import fdloop
from fdloop import PIPE, ExitStatus, spawn

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

# The subprocess-shaped API sits above the backend; the spawn itself is tested on each
# backend in test_processfd_spawn.py (and CI's FDLOOP_BACKEND=kqueue pass runs this too).
pytestmark = pytest.mark.single_backend

BIG = 4 * 1024 * 1024


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


async def until_exited(proc: fdloop.ProcessFD) -> int:
    """Poll ``returncode`` (never wait()) until it is known; hang guard 10 s."""
    with anyio.fail_after(10):
        while (code := proc.returncode) is None:
            await anyio.sleep(0.01)
    return code


# -- communicate -------------------------------------------------------------------------


async def test_communicate_feeds_and_collects_both_streams() -> None:
    argv = python("import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); "
                  "sys.stderr.buffer.write(d[::-1])")
    async with fdloop.spawn(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
        out, err = await proc.communicate(b"abc")
        assert (out, err, proc.returncode) == (b"abc", b"cba", 0)


async def test_communicate_none_for_streams_not_piped_and_closes_stdin() -> None:
    async with fdloop.spawn(["cat"], stdin=PIPE, stderr=fdloop.DEVNULL) as proc:
        assert await proc.communicate() == (None, None)  # cat saw EOF: stdin was closed
        assert proc.status == 0


async def test_communicate_megabytes_both_ways_without_deadlock() -> None:
    data = os.urandom(BIG)
    argv = python("import sys; d = sys.stdin.buffer.read(); sys.stderr.buffer.write(d); "
                  "sys.stdout.buffer.write(d)")
    async with fdloop.spawn(argv, stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
        with anyio.fail_after(60):
            out, err = await proc.communicate(data)
    assert out == data and err == data


async def test_communicate_ignores_a_child_that_does_not_read() -> None:
    async with fdloop.spawn(["true"], stdin=PIPE) as proc:
        assert await proc.communicate(b"x" * BIG) == (None, None)
        assert proc.returncode == 0


async def test_communicate_timeout_loses_nothing_and_leaves_the_child_running() -> None:
    gate_r, gate_w = os.pipe()
    try:
        # The child reads nothing until the gate opens: the input (larger than a pipe)
        # cannot all be delivered before the timeout, and its output is incomplete.
        argv = python(f"""
            import os, sys
            print("first", flush=True)
            os.read({gate_r}, 1)
            data = sys.stdin.buffer.read()
            print(len(data), flush=True)
        """)
        async with fdloop.spawn(argv, stdin=PIPE, stdout=PIPE, pass_fds=[gate_r]) as proc:
            with pytest.raises(fdloop.TimeoutExpired) as caught:
                await proc.communicate(b"y" * BIG, timeout=0.3)
            assert isinstance(caught.value, subprocess.TimeoutExpired)
            assert caught.value.cmd is argv and caught.value.timeout == 0.3
            assert caught.value.stdout in (None, b"first\n") and caught.value.stderr is None
            assert proc.returncode is None  # still running
            with pytest.raises(ValueError, match="after starting communication"):
                await proc.communicate(b"more")
            os.write(gate_w, b"!")
            with anyio.fail_after(30):
                out, err = await proc.communicate()
            assert out == f"first\n{BIG}\n".encode() and err is None
            assert proc.returncode == 0
    finally:
        os.close(gate_r)
        os.close(gate_w)


async def test_a_later_communicate_returns_the_same_output_and_refuses_input() -> None:
    # Popen's: the output of a completed communicate() comes back again, and input
    # given later raises (stdin is closed: it could never reach the child).
    async with fdloop.spawn(["cat"], stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
        assert await proc.communicate(b"once") == (b"once", b"")
        assert await proc.communicate() == (b"once", b"")
        with pytest.raises(ValueError, match="after starting communication"):
            await proc.communicate(b"twice")
        assert await proc.communicate(timeout=0) == (b"once", b"")
    async with fdloop.spawn(["cat"], stdin=PIPE, stdout=PIPE, text=True) as proc:
        assert await proc.communicate("é") == ("é", None)
        assert await proc.communicate() == ("é", None)


async def test_communicate_refuses_bad_input() -> None:
    async with fdloop.spawn(["cat"], stdout=PIPE) as proc:
        with pytest.raises(ValueError, match="stdin=PIPE"):
            await proc.communicate(b"x")
    async with fdloop.spawn(["cat"], stdin=PIPE) as proc:
        with pytest.raises(TypeError, match="input must be bytes-like"):
            await proc.communicate("text")  # type: ignore[arg-type]


# -- wait(timeout=), returncode, poll ---------------------------------------------------


async def test_wait_timeout_raises_and_the_child_keeps_running() -> None:
    async with fdloop.spawn(["sleep", "30"]) as proc:
        with pytest.raises(fdloop.TimeoutExpired) as caught:
            await proc.wait(timeout=0.05)
        assert isinstance(caught.value, subprocess.TimeoutExpired)
        assert caught.value.cmd == ["sleep", "30"] and caught.value.timeout == 0.05
        assert proc.returncode is None and proc.poll() is None
        proc.kill()
        status = await proc.wait(timeout=10)
        assert isinstance(status, ExitStatus) and status == -signal.SIGKILL
    with pytest.raises(ValueError, match="timeout"):
        await proc.wait(timeout=-1)


async def test_wait_timeout_zero_returns_an_exit_that_is_already_there() -> None:
    # Popen's wait(timeout=0) polls: an exited child's status, not TimeoutExpired.
    async with fdloop.spawn(["sh", "-c", "exit 4"]) as proc:
        with anyio.fail_after(10):
            while not proc._handle.has_exited():  # exited, not yet reaped by anyone
                await anyio.sleep(0.01)
        status = await proc.wait(timeout=0)
        assert isinstance(status, ExitStatus) and status == 4
        assert await proc.wait(timeout=0) == 4
    async with fdloop.spawn(["sleep", "30"]) as proc:
        with pytest.raises(fdloop.TimeoutExpired):
            await proc.wait(timeout=0)
        proc.kill()


async def test_args_are_what_spawn_was_given() -> None:
    argv = ["sh", "-c", "exit 0"]
    async with fdloop.spawn(argv) as proc:
        assert proc.args is argv and await proc.wait() == 0
    async with fdloop.spawn("exit 0", shell=True) as proc:  # not the /bin/sh argv
        assert proc.args == "exit 0" and await proc.wait() == 0


async def test_returncode_reflects_an_exit_without_wait() -> None:
    async with fdloop.spawn(["sh", "-c", "exit 6"]) as proc:
        assert await until_exited(proc) == 6
        assert proc.status is not None and proc.status.rusage is not None  # reaped by us
        assert proc.poll() == 6 and await proc.wait() == 6


async def test_poll_reflects_a_signal_death_without_wait() -> None:
    async with fdloop.spawn(["sleep", "30"]) as proc:
        assert proc.poll() is None and proc.returncode is None
        proc.terminate()
        with anyio.fail_after(10):
            while proc.poll() is None:
                await anyio.sleep(0.01)
        assert proc.returncode == -signal.SIGTERM


FORKED_RETURNCODE = """
import os, sys, time, anyio, fdloop

async def main():
    proc = fdloop.spawn(["true"])
    deadline = time.monotonic() + 10
    while open(f"/proc/{proc.pid}/stat").read().split(")")[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child = os.fork()
    if child == 0:
        # A forked copy must neither reap the parent's child nor raise for returncode.
        code = 0 if proc.returncode is None else 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    print("forked", os.waitstatus_to_exitcode(status))
    final = await proc.wait()
    print("parent", final.returncode, final.rusage is not None)
    await proc.aclose()

anyio.run(main)
"""


def test_returncode_in_a_forked_child_does_not_reap_the_parents_child() -> None:
    result = subprocess.run([sys.executable, "-c", FORKED_RETURNCODE], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "forked 0" in result.stdout  # returncode said None there, and did not raise
    assert "parent 0 True" in result.stdout  # and the parent reaped it itself (rusage)


# -- ExitStatus is an int ---------------------------------------------------------------


async def test_exit_status_is_its_returncode_as_an_int() -> None:
    status = await fdloop.run(["sh", "-c", "exit 3"])
    full = status.status
    assert isinstance(full, int) and full == 3 and int(full) == 3 and full != 0
    assert hash(full) == hash(3) and {3: "three"}[full] == "three"
    assert f"{full:d}" == "3" and json.dumps(full) == "3"
    assert "%d" % full == "3"  # noqa: UP031 - printf-style, as old code has it
    assert bool(full) and "exited with code 3" in str(full)
    again = pickle.loads(pickle.dumps(full))
    assert again == full and again.pid == full.pid and again.rusage == full.rusage


def test_unknown_status_is_never_zero_nor_a_real_returncode() -> None:
    unknown = ExitStatus.unknown(123)
    assert unknown.returncode is None and not unknown.known
    assert unknown == ExitStatus.UNKNOWN_INT == 511 and unknown != 0
    assert not -64 <= unknown <= 255
    assert pickle.loads(pickle.dumps(unknown)).known is False
    code = "import sys; from fdloop import ExitStatus; sys.exit(ExitStatus.unknown(1))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 255


# -- anyio.abc.Process ------------------------------------------------------------------


async def count_lines(process: anyio.abc.Process) -> tuple[int, int]:
    """Code written against anyio's types only."""
    assert process.stdout is not None
    lines = 0
    async for text in TextReceiveStream(process.stdout):
        lines += text.count("\n")
    code: int = await process.wait()
    return lines, code


async def test_processfd_is_an_anyio_process() -> None:
    assert issubclass(fdloop.ProcessFD, anyio.abc.Process)
    async with fdloop.spawn(["sh", "-c", "seq 5; exit 2"], stdout=PIPE) as proc:
        assert isinstance(proc, anyio.abc.Process)
        assert await count_lines(proc) == (5, 2)
    async with await anyio.open_process(["true"]) as theirs:  # the same helper takes anyio's
        assert await count_lines(theirs) == (0, 0)


# -- run(): text mode --------------------------------------------------------------------


async def test_run_text_mode_decodes_with_universal_newlines() -> None:
    argv = ["sh", "-c", r"printf 'a\r\nb\rc\n'; cat; printf 'e\r\n' >&2"]
    for mode in ({"text": True}, {"universal_newlines": True}, {"encoding": "utf-8"},
                 {"errors": "strict"}):
        result = await fdloop.run(argv, input="é", capture_output=True, **mode)
        assert (result.stdout, result.stderr) == ("a\nb\nc\né", "e\n"), mode


async def test_run_text_mode_encoding_and_errors() -> None:
    result = await fdloop.run(["cat"], input="é", capture_output=True, encoding="latin-1")
    assert result.stdout == "é"
    assert (await fdloop.run(["printf", r"\377"], stdout=PIPE, text=True, errors="replace")
            ).stdout == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        await fdloop.run(["printf", r"\377"], stdout=PIPE, encoding="utf-8")
    with pytest.raises(subprocess.SubprocessError, match="disambiguate"):
        await fdloop.run(["true"], text=True, universal_newlines=False)
    with pytest.raises(TypeError, match="str in text mode"):
        await fdloop.run(["cat"], input=b"bytes", text=True)


async def test_run_text_mode_errors_carry_text_and_timeouts_bytes() -> None:
    with pytest.raises(fdloop.CalledProcessError) as failed:
        await fdloop.run(["sh", "-c", "echo out; exit 1"], stdout=PIPE, text=True, check=True)
    assert failed.value.stdout == "out\n"
    with pytest.raises(fdloop.TimeoutExpired) as late:
        await fdloop.run(["sh", "-c", "echo early; exec sleep 30"], stdout=PIPE, text=True,
                         timeout=0.5, kill_timeout=1)
    assert late.value.stdout in (b"", b"early\n")  # bytes, as subprocess.run's


# -- check_output, call, check_call -------------------------------------------------------


async def test_check_output_call_check_call() -> None:
    assert await fdloop.check_output(["echo", "hi"]) == b"hi\n"
    assert await fdloop.check_output(["cat"], input="x", text=True) == "x"
    with pytest.raises(subprocess.CalledProcessError) as caught:
        await fdloop.check_output(["sh", "-c", "echo partial; exit 3"])
    assert caught.value.returncode == 3 and caught.value.output == b"partial\n"
    with pytest.raises(ValueError, match="stdout argument not allowed"):
        await fdloop.check_output(["true"], stdout=PIPE)
    code = await fdloop.call(["sh", "-c", "exit 4"])
    assert code == 4 and type(code) is int
    assert await fdloop.call(["sh", "-c", "kill -TERM $$"]) == -signal.SIGTERM
    assert await fdloop.check_call(["true"]) == 0
    with pytest.raises(fdloop.CalledProcessError):
        await fdloop.check_call(["false"])
    with pytest.raises(fdloop.TimeoutExpired):
        await fdloop.call(["sleep", "30"], timeout=0.1, kill_timeout=1)


# -- what subprocess code does, moved unchanged -------------------------------------------


async def test_an_unknown_encoding_is_refused_before_the_child_starts(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = ["sh", "-c", f"touch {marker}"]
    with pytest.raises(LookupError, match="bogus-codec"):
        await fdloop.run(argv, capture_output=True, encoding="bogus-codec")
    with pytest.raises(LookupError, match="bogus-codec"):
        await fdloop.check_output(argv, encoding="bogus-codec")
    with pytest.raises(LookupError, match="bogus-codec"):
        spawn(argv, stdout=PIPE, encoding="bogus-codec")
    await anyio.sleep(0.2)  # (a started child would have touched it by now)
    assert not marker.exists()


async def test_check_output_with_input_none_gives_the_child_an_empty_stdin() -> None:
    # subprocess.check_output's rule: an explicit input=None is empty input, so the
    # child reads a pipe at EOF rather than our own stdin.
    report = ("import os, stat, sys; "
              "print(stat.S_ISFIFO(os.fstat(0).st_mode), repr(sys.stdin.read()))")
    assert await fdloop.check_output(python(report), input=None) == b"True ''\n"
    assert await fdloop.check_output(python(report), input=None, text=True) == "True ''\n"


async def test_the_command_may_be_given_as_args() -> None:
    assert (await fdloop.run(args=["echo", "a"], capture_output=True)).stdout == b"a\n"
    assert await fdloop.check_output(args=["echo", "b"]) == b"b\n"
    assert await fdloop.call(args=["sh", "-c", "exit 3"]) == 3
    assert await fdloop.check_call(args=["true"]) == 0
    with spawn(args=["sh", "-c", "exit 4"]) as proc:
        assert await proc.wait() == 4
    for function in (fdloop.run, fdloop.check_output, fdloop.call, fdloop.check_call):
        with pytest.raises(TypeError, match="twice"):
            await function(["true"], args=["true"])
        with pytest.raises(TypeError, match="argv"):
            await function()


async def test_communicate_refuses_input_for_a_stdin_already_closed() -> None:
    # Popen raises ValueError there ("flush of closed file"): the input cannot be sent,
    # and dropping it without a word would lose it.
    async with spawn(["cat"], stdin=PIPE, stdout=PIPE) as proc:
        assert proc.stdin is not None
        proc.stdin.close()
        with pytest.raises(ValueError, match="stdin is already closed"):
            await proc.communicate(b"data")
        assert await proc.communicate() == (b"", None)  # nothing was half-done


async def test_communicate_while_another_task_reads_refuses_before_it_starts() -> None:
    # Popen/asyncio raise at once (asyncio: RuntimeError); so do we, plainly (not in an
    # exception group), before any input is queued: a later communicate() sends it all.
    argv = python("import sys; print(sys.stdin.read(), flush=True)")
    async with spawn(argv, stdin=PIPE, stdout=PIPE) as proc, anyio.create_task_group() as tg:
        assert proc.stdout is not None
        reading = anyio.Event()

        async def read_line() -> None:
            reading.set()
            assert proc.stdout is not None
            assert await proc.stdout.readline() == b"whole\n"

        tg.start_soon(read_line)
        await reading.wait()
        await anyio.sleep(0.05)  # (only to let the reader block; the check does not race it)
        with pytest.raises(fdloop.BusyResourceError, match="another task is reading stdout"):
            await proc.communicate(b"lost?")
        assert isinstance(fdloop.BusyResourceError("x"), RuntimeError)
        assert proc.stdin is not None and not proc.stdin.closed
        await proc.stdin.send(b"whole")
        proc.stdin.close()
        assert (await proc.wait()).returncode == 0


async def test_called_process_error_args_are_its_code_and_command() -> None:
    # As subprocess's: the output stays off args (and so off repr() and log lines).
    with pytest.raises(fdloop.CalledProcessError) as caught:
        await fdloop.run(["sh", "-c", "echo out; exit 3"], capture_output=True, check=True)
    error = caught.value
    cmd = ["sh", "-c", "echo out; exit 3"]
    assert error.args == (3, cmd)
    assert repr(error) == f"CalledProcessError(3, {cmd!r})"
    assert (error.stdout, error.stderr, error.status.returncode) == (b"out\n", b"", 3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.args, copy.stdout, copy.status) == (error.args, b"out\n", error.status)


async def test_completed_process_is_a_subprocess_completed_process() -> None:
    done = await fdloop.run(["echo", "x"], stdout=PIPE)
    assert isinstance(done, subprocess.CompletedProcess)
    assert fdloop.CompletedProcess[bytes] is not None  # (annotations evaluated at runtime)
    assert repr(done) == "CompletedProcess(args=['echo', 'x'], returncode=0, stdout=b'x\\n')"
    assert done.status.returncode == 0


async def test_an_infinite_timeout_is_no_timeout() -> None:
    # As subprocess (and trio's deadlines): math.inf waits as long as it takes.
    inf = math.inf
    assert (await fdloop.run(["echo", "a"], stdout=PIPE, timeout=inf)).stdout == b"a\n"
    assert await fdloop.check_output(["echo", "b"], timeout=inf) == b"b\n"
    async with spawn(["cat"], stdin=PIPE, stdout=PIPE) as proc:
        assert await proc.communicate(b"c", timeout=inf) == (b"c", None)
        assert await proc.wait(timeout=inf) == 0
    with pytest.raises(ValueError, match="timeout"):
        await fdloop.run(["true"], timeout=-inf)


# -- started as a task; deliver_cancel ----------------------------------------------------


async def test_a_cancelled_caller_starts_no_child(tmp_path: Path, anyio_backend_name: str
                                                  ) -> None:
    # trio's and anyio's rule: a cancelled run_process/open_process raises at once and
    # the program never runs (a spawn and then a cancelled checkpoint would lose it).
    import fdloop.compat.anyio as compat_anyio

    starts: list[Any] = [fdloop.run, compat_anyio.run_process, compat_anyio.open_process]
    if anyio_backend_name == "trio":
        import fdloop.compat.trio as compat_trio

        starts += [compat_trio.run_process, compat_trio.open_process]
    marker = tmp_path / "ran"
    argv = ["sh", "-c", f"touch '{marker}'"]
    for start in starts:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await start(argv)
        assert scope.cancelled_caught, start
    await anyio.sleep(0.2)  # (a child that did start would have touched it by now)
    assert not marker.exists()


async def test_task_group_start_hands_back_the_processfd() -> None:
    async with anyio.create_task_group() as tasks:
        proc = await tasks.start(partial(
            fdloop.run, ["sh", "-c", "read line; echo got $line"], stdin=PIPE, stdout=PIPE,
        ))
        assert isinstance(proc, fdloop.ProcessFD) and proc.args[0] == "sh"
        assert proc.stdin is not None and proc.stdout is not None  # stdin=PIPE: ours
        await proc.stdin.send(b"ping\n")
        assert await proc.stdout.readline() == b"got ping\n"
    assert proc.returncode == 0
    proc.stdin.close()  # the streams asked for are ours: run() leaves them open
    proc.stdout.close()


async def test_task_group_start_leaves_the_callers_pipes_open_after_the_exit() -> None:
    # trio's run_process leaves the streams it handed over alone: what the child wrote
    # before it exited is still there to read, and a reading loop ends at EOF.
    async with anyio.create_task_group() as tasks:
        proc = await tasks.start(partial(
            fdloop.run, ["sh", "-c", "echo hello; echo err >&2"], stdout=PIPE, stderr=PIPE,
        ))
        assert proc.stdout is not None and proc.stderr is not None
        with anyio.fail_after(30):
            while proc.returncode is None or not proc.closed:  # run() has ended
                await anyio.sleep(0.01)
        assert await proc.stdout.read() == b"hello\n"
        assert [chunk async for chunk in proc.stderr] == [b"err\n"]
        proc.stdout.close()
        proc.stderr.close()


async def test_task_group_start_hides_the_streams_run_feeds_and_captures() -> None:
    with pytest.raises(ExceptionGroup) as caught:
        async with anyio.create_task_group() as tasks:
            proc = await tasks.start(partial(
                fdloop.run, ["sh", "-c", "cat; echo oops >&2; exit 5"], input=b"in",
                capture_output=True, check=True,
            ))
            assert (proc.stdin, proc.stdout, proc.stderr) == (None, None, None)
    error = caught.value.exceptions[0]
    assert isinstance(error, fdloop.CalledProcessError)
    assert (error.returncode, error.stdout, error.stderr) == (5, b"in", b"oops\n")


async def test_deliver_cancel_runs_until_the_child_exits() -> None:
    delivered: list[int] = []

    async def deliver(proc: fdloop.ProcessFD) -> None:
        delivered.append(proc.pid)
        proc.send_signal(signal.SIGUSR1)
        try:
            await anyio.sleep_forever()
        finally:
            assert proc.returncode == -signal.SIGUSR1  # cancelled once it exited

    async with anyio.create_task_group() as tasks:
        proc = await tasks.start(partial(fdloop.run, ["sleep", "30"], deliver_cancel=deliver))
        tasks.cancel_scope.cancel()
    assert delivered == [proc.pid] and proc.returncode == -signal.SIGUSR1

    with pytest.raises(fdloop.TimeoutExpired):
        await fdloop.run(["sleep", "30"], timeout=0.1, deliver_cancel=deliver)
    assert len(delivered) == 2


async def test_deliver_cancel_that_fails_still_ends_the_child() -> None:
    async def broken(proc: fdloop.ProcessFD) -> None:
        raise RuntimeError("deliver_cancel broke")

    with pytest.raises(ExceptionGroup) as caught:
        async with anyio.create_task_group() as tasks:
            proc = await tasks.start(partial(
                fdloop.run, ["sleep", "30"], deliver_cancel=broken, kill_timeout=1,
            ))
            tasks.cancel_scope.cancel()
    assert caught.group_contains(RuntimeError, match="deliver_cancel broke", depth=None)
    assert proc.returncode == -signal.SIGTERM  # the default way: kill_signal


async def test_deliver_cancel_must_be_callable() -> None:
    with pytest.raises(TypeError, match="deliver_cancel"):
        await fdloop.run(["true"], deliver_cancel="SIGTERM")  # type: ignore[arg-type]


async def test_spawn_text_mode_makes_communicate_speak_str() -> None:
    code = "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper() + '\\r\\n')"
    proc = fdloop.spawn([sys.executable, "-c", code], stdin=fdloop.PIPE,
                        stdout=fdloop.PIPE, text=True)
    async with proc:
        with anyio.fail_after(30):
            out, err = await proc.communicate("héllo")
    assert (out, err) == ("HÉLLO\n", None)
    with pytest.raises(TypeError, match="encoding"):
        fdloop.spawn(["true"], encoding=1)  # type: ignore[arg-type]
