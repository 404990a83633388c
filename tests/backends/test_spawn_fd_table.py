"""What a child gets of our fd table when many fds are open (Linux spawn paths).

The compiled path starts the child sharing our table (CLONE_FILES), and the child's first
step keeps a private copy of only the fds below the highest one it needs. Whatever the
path, a child must get exactly its stdio and ``pass_fds`` (a high one kept at its number),
a pipe must reach EOF once the child is gone, and our own table must come out of a spawn
as it went in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

from fdloop import PIPE, spawn

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux spawn")

EXTRA_FDS = 600  # so the newest fds, the pipes made for the child, are high

# The child lists its own open fds without opening one to do it.
LIST_FDS = (
    "import os, sys\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "    except OSError:\n"
    "        return False\n"
    "    return True\n"
    "print(' '.join(str(fd) for fd in range(4096) if is_open(fd)))\n"
)


@pytest.fixture
def many_fds(spawn_path: str) -> Iterator[list[int]]:
    """EXTRA_FDS more fds open (on the spawn path the test runs on)."""
    fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(EXTRA_FDS)]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _table() -> dict[int, tuple[int, int]]:
    table = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st = os.fstat(fd)
        except OSError:
            continue  # listdir's own fd
        table[fd] = (st.st_dev, st.st_ino)
    return table


async def test_child_gets_its_stdio_and_pass_fds_and_nothing_else(
    spawn_path: str, many_fds: list[int]
) -> None:
    passed = many_fds[-1]  # a high fd, kept at its number
    async with spawn([sys.executable, "-I", "-S", "-c", LIST_FDS], stdout=PIPE,
                     stderr=subprocess.DEVNULL, pass_fds=[passed]) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            output = b"".join([chunk async for chunk in proc.stdout])
            status = await proc.wait()
    assert status.returncode == 0
    assert {int(fd) for fd in output.split()} == {0, 1, 2, passed}


async def _echo() -> bytes:
    async with spawn(["/bin/echo", "hello"], stdout=PIPE, stdin=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(10):  # a copy of the write end left anywhere: no EOF, ever
            output = b"".join([chunk async for chunk in proc.stdout])
            await proc.wait()
    return output


async def test_pipe_reaches_eof_and_our_table_is_unchanged(
    spawn_path: str, many_fds: list[int]
) -> None:
    assert await _echo() == b"hello\n"  # the loop's and fdloop's own fds made on first use
    before = _table()
    for _ in range(3):
        assert await _echo() == b"hello\n"
    assert _table() == before
