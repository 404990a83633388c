"""Load: many children through the one poll loop, no thread, no fd or zombie left.

Sizes scale with FDLOOP_STRESS_SCALE (CI: 0.1). The autouse leak check in conftest.py
fails the test if any fd or child (zombie included) is left behind.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator

import anyio
import pytest

import fdloop
from fdloop import spawn

from ..helpers import scaled
from .process_helpers import (  # noqa: F401  (process_backend_only is autouse)
    needs_backend_in_child_interpreters,
    process_backend_only,
)


@pytest.fixture
def fd_room() -> Iterator[None]:
    """Make room for at least 1,000 extra fds (soft RLIMIT_NOFILE), restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(os.listdir("/proc/self/fd")) + 1100
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"hard RLIMIT_NOFILE {hard} is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _threads() -> int:
    """Threads alive, minus trio's own I/O thread: anyio's pytest runner runs trio in
    guest mode, where trio waits for I/O in a thread of its thread cache. (The real
    trio.run has none: see test_no_thread_at_all_outside_the_test_runner.)"""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("Trio thread"))


@pytest.mark.stress
async def test_a_thousand_children_a_few_in_flight() -> None:
    total = scaled(1000, minimum=30)
    threads_before = _threads()
    most_threads = threads_before
    limiter = anyio.Semaphore(8)
    results: dict[int, int | None] = {}

    async def one(index: int) -> None:
        nonlocal most_threads
        async with limiter:
            program = "true" if index % 2 == 0 else "false"
            async with spawn([program]) as proc:
                status = await proc.wait()
            results[index] = status.returncode
            most_threads = max(most_threads, _threads())

    async with anyio.create_task_group() as tg:
        for index in range(total):
            tg.start_soon(one, index)
    assert len(results) == total
    assert all(code == index % 2 for index, code in results.items())
    # No helper thread per child, not even briefly, and none left behind.
    assert most_threads == threads_before
    assert _threads() == threads_before


@pytest.mark.stress
async def test_five_hundred_children_alive_at_once(fd_room: None) -> None:
    count = scaled(500, minimum=20)
    threads_before = _threads()
    gate_read, gate_write = os.pipe()
    procs: list[fdloop.ProcessFD] = []
    try:
        for _ in range(count):
            # Every child blocks reading the same pipe: all stay alive until it closes.
            procs.append(spawn(["cat"], stdin=gate_read, stdout=fdloop.DEVNULL))
        os.close(gate_read)
        gate_read = -1
        assert all(proc.poll() is None for proc in procs)
        statuses: list[int | None] = []

        async def waiter(proc: fdloop.ProcessFD) -> None:
            statuses.append((await proc.wait()).returncode)

        async with anyio.create_task_group() as tg:
            for proc in procs:
                tg.start_soon(waiter, proc)
            await anyio.sleep(0.05)
            assert not statuses  # all still waiting, all registered with the loop
            os.close(gate_write)  # EOF for every cat at once
            gate_write = -1
        assert statuses == [0] * count
        assert _threads() == threads_before
    finally:
        for fd in (gate_read, gate_write):
            if fd >= 0:
                os.close(fd)
        for proc in procs:
            await proc.aclose()


WORKLOAD = """
import sys, threading
import anyio, fdloop

async def main():
    most = threading.active_count()
    limiter = anyio.Semaphore(8)

    async def one(i):
        nonlocal most
        async with limiter:
            async with fdloop.spawn(["true"]) as proc:
                assert (await proc.wait()).returncode == 0
            most = max(most, threading.active_count())

    async with anyio.create_task_group() as tg:
        for i in range(int(sys.argv[2])):
            tg.start_soon(one, i)
    print(most, threading.active_count())

anyio.run(main, backend=sys.argv[1], backend_options={"use_uvloop": True}
          if sys.argv[1] == "uvloop" else {})
"""


@pytest.mark.stress
@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_no_thread_at_all_outside_the_test_runner(loop: str) -> None:
    needs_backend_in_child_interpreters()
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", WORKLOAD, loop, str(scaled(300, minimum=30))],
        capture_output=True, text=True, timeout=300, check=True,
    )
    assert result.stdout.split() == ["1", "1"]
