"""What CPython's own Lib/test/test_subprocess.py found when run against fdloop.

The stdlib suite was run with ``subprocess.run``/``call``/``check_call``/``check_output``
driven through fdloop's awaitable ones and ``Popen`` through ``fdloop.spawn`` (a scratch
bridge; the per-test results are in RELIABILITY.md's "peers" section). Each test here is
our own, on real processes, for one difference that was a real one:

* Popen's Windows-only keywords at their POSIX values (``startupinfo=None``,
  ``creationflags=0``) and ``bufsize`` are accepted, other values refused as Popen does;
* ``communicate()`` releases the pipes it drained, as Popen's does (its fds were held
  until the ProcessFD was closed);
* ``check_output(check=...)`` says what subprocess says;
* ``fdloop.spawn`` takes those keywords too, and ``pass_fds`` with ``close_fds=False``
  passes only ``pass_fds``, with Popen's RuntimeWarning.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import warnings

import pytest

import fdloop

QUICK = [sys.executable, "-c", "pass"]
ECHO_BOTH = [sys.executable, "-c",
             "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); "
             "sys.stderr.buffer.write(d[::-1])"]


def _pipe_of(fd: int) -> str:
    """What /proc names the pipe behind ``fd`` ("pipe:[inode]"): unlike the fd number,
    which the next fd opened may take again, it names that pipe alone."""
    return os.readlink(f"/proc/self/fd/{fd}")


def _pipes_open() -> set[str]:
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd, closed by now
            names.add(os.readlink(f"/proc/self/fd/{fd}"))
    return names


async def test_run_takes_popen_windows_keywords_at_their_posix_values() -> None:
    result = await fdloop.run(QUICK, bufsize=0, startupinfo=None, creationflags=0)
    assert result.returncode == 0
    assert await fdloop.call(QUICK, bufsize=-1, creationflags=0) == 0
    assert await fdloop.check_call(QUICK, bufsize=None, startupinfo=None) == 0
    out = await fdloop.check_output([sys.executable, "-c", "print(1)"], bufsize=1,
                                    creationflags=0)
    assert out == b"1\n"


@pytest.mark.parametrize(("keyword", "value", "error", "words"), [
    ("creationflags", 4, ValueError, "creationflags is only supported on Windows"),
    ("startupinfo", 47, ValueError, "startupinfo is only supported on Windows"),
    ("bufsize", "big", TypeError, "bufsize must be an integer"),
])
async def test_run_refuses_what_popen_refuses_before_starting(
    keyword: str, value: object, error: type[Exception], words: str
) -> None:
    # Nothing may start: the autouse leak check fails the test on a stray child or fd.
    with pytest.raises(error, match=words):
        await fdloop.run(QUICK, **{keyword: value})


async def test_check_output_names_check_as_subprocess_does() -> None:
    with pytest.raises(ValueError, match="check argument not allowed, it will be overridden"):
        await fdloop.check_output(QUICK, check=False)


async def test_communicate_releases_the_pipes_it_drained() -> None:
    async with fdloop.spawn(ECHO_BOTH, stdin=fdloop.PIPE, stdout=fdloop.PIPE,
                            stderr=fdloop.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stderr is not None
        streams = (proc.stdin, proc.stdout, proc.stderr)
        pipes = {_pipe_of(stream.fileno()) for stream in streams}
        assert await proc.communicate(b"abc") == (b"abc", b"cba")
        # Still inside the block: the handle is kept, its pipes must not be.
        assert [stream.closed for stream in streams] == [True, True, True]
        assert not pipes & _pipes_open()
        assert proc.returncode == 0


async def test_communicate_in_text_mode_releases_the_pipes_too() -> None:
    async with fdloop.spawn([sys.executable, "-c", "print('x')"], stdout=fdloop.PIPE,
                            text=True) as proc:
        assert proc.stdout is not None
        pipe = _pipe_of(proc.stdout.fileno())
        assert await proc.communicate() == ("x\n", None)
        assert proc.stdout.closed and pipe not in _pipes_open()


async def test_communicate_after_a_timeout_still_has_open_pipes() -> None:
    # The release comes only with completion: a timed-out communicate() keeps the pipes
    # (and what was read), so the retry loses nothing.
    async with fdloop.spawn([sys.executable, "-c",
                             "import time; print('early', flush=True); time.sleep(60)"],
                            stdout=fdloop.PIPE) as proc:
        assert proc.stdout is not None
        seen = b""
        for _ in range(100):  # until 'early' has been read (a hang guard, not a timing check)
            with pytest.raises(fdloop.TimeoutExpired) as caught:
                await proc.communicate(timeout=0.1)
            seen = caught.value.stdout or b""
            if seen:
                break
        assert seen == b"early\n"
        assert not proc.stdout.closed
        proc.kill()
        assert await proc.communicate() == (b"early\n", None)
        assert proc.stdout.closed


def test_spawn_takes_popen_windows_keywords_at_their_posix_values() -> None:
    proc = fdloop.spawn(QUICK, bufsize=0, startupinfo=None, creationflags=0)
    proc.close()


async def test_pass_fds_overrides_close_fds_false_as_popen_does() -> None:
    kept, other = os.pipe()
    try:
        os.set_inheritable(kept, True)
        os.set_inheritable(other, True)
        code = f"import os; os.fstat({other})"  # fails (EBADF) unless `other` was passed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            proc = fdloop.spawn([sys.executable, "-c", code], close_fds=False,
                                pass_fds=(kept,), stderr=fdloop.DEVNULL)
        async with proc:
            returncode = await proc.wait()
    finally:
        os.close(kept)
        os.close(other)
    assert [str(w.message) for w in caught] == ["pass_fds overriding close_fds."]
    assert returncode != 0


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_missing_program_in_a_bad_cwd_names_the_cwd_as_popen_does(
    tmp_path: pathlib.Path, kind: str
) -> None:
    # Popen's child fails its chdir before it looks for the program.
    cwd = tmp_path / "nowhere"
    if kind == "a file":
        cwd.write_bytes(b"")
    expected = FileNotFoundError if kind == "missing" else NotADirectoryError
    with pytest.raises(expected) as caught:
        fdloop.spawn(["no-such-program-fdloop"], cwd=cwd)
    assert caught.value.filename == str(cwd)
