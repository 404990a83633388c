"""What a child gets of our fd table when many fds are open (Linux spawn paths).

The compiled path starts the child sharing our table and keeps a private copy of only the
low fds it needs; high sources pass through reserved low slots
(:mod:`fdloop.backends.linux.lowfds`). Whatever the path, a child must get exactly its
stdio and ``pass_fds``, a pipe must reach EOF once the child is gone (no slot may keep
its write end), and our own table must come out of a spawn as it went in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import anyio
import pytest

from fdloop import PIPE, spawn

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux spawn")

EXTRA_FDS = 600  # above lowfds.WORTH_IT, so the newest fds are "high"

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
    """EXTRA_FDS more fds open, after a first spawn (where fdloop reserves its slots, as
    in a program that spawns before its table grows)."""
    from fdloop.backends.linux import spawn as linux_spawn
    from fdloop.backends.request import SpawnRequest

    pid, pidfd, _ends = linux_spawn.spawn_child(
        SpawnRequest(program="/bin/true", argv=(b"/bin/true",)))
    if pidfd is None:
        os.waitpid(pid, 0)
    else:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        os.close(pidfd)
    fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(EXTRA_FDS)]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _table() -> dict[int, tuple[int, int]]:
    from fdloop.backends.linux.lowfds import LOW_SLOTS

    reserved = set(LOW_SLOTS.numbers())
    table = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in reserved:
            continue
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
    _check_slots_served(spawn_path)


def _check_slots_served(spawn_path: str) -> None:
    """On the clone path the high sources went through low slots (not a full copy)."""
    from fdloop.backends.linux.lowfds import LOW_SLOTS, WORTH_IT

    if spawn_path == "clone":
        assert LOW_SLOTS.numbers() and max(LOW_SLOTS.numbers()) < WORTH_IT
        assert not LOW_SLOTS._broken


async def _echo() -> bytes:
    async with spawn(["/bin/echo", "hello"], stdout=PIPE, stdin=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(10):  # a slot holding the write end: no EOF, ever
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
    _check_slots_served(spawn_path)


def test_slots_taken_over_by_the_program_are_left_alone() -> None:
    # In a fresh interpreter: the slots stop being used for the rest of its life.
    script = textwrap.dedent(
        """
        import os, subprocess, sys
        from fdloop.backends.linux import spawn as linux_spawn
        from fdloop.backends.linux.lowfds import LOW_SLOTS
        from fdloop.backends.request import SpawnRequest

        if linux_spawn._clone_spawn is None:
            print("no extension"); sys.exit(0)
        request = SpawnRequest(program="/bin/true", argv=(b"/bin/true",),
                               stdio=(None, subprocess.DEVNULL, None))

        def run():
            pid, pidfd, _ends = linux_spawn.spawn_child(request)
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
            os.close(pidfd)
            assert info.si_status == 0, info

        run()  # reserves the slots
        extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(600)]
        run()  # uses them
        slots = LOW_SLOTS.numbers()
        assert len(slots) > 1, slots
        # The program closes a slot it does not own and puts its own file there.
        mine = os.open("/dev/zero", os.O_RDONLY)
        os.dup2(mine, slots[1])
        expected = os.fstat(mine).st_ino
        run()
        run()
        assert os.fstat(slots[1]).st_ino == expected
        assert LOW_SLOTS._broken  # seen, and given up
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                            text=True,
                            timeout=60, cwd=os.path.dirname(os.path.dirname(
                                os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() == "no extension":
        pytest.skip("the _clone_spawn extension is not built")
    assert result.stdout.strip() == "ok"
