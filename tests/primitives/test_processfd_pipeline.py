"""``p1 | p2``: one child's piped stream given to another child, on both backends.

The parent's pipe ends are non-blocking, and O_NONBLOCK lives on the open file
description; a child handed that description as it is reads EAGAIN (cat fails) or takes
it for EOF (Python exits 0 with nothing read). Each child must get a blocking fd while
the parent's own stream keeps working non-blocking.
"""

from __future__ import annotations

import fcntl
import os
import sys

import anyio

from fdloop import PIPE, spawn

PAYLOAD_LINES = 20_000  # several pipe buffers: the reader must wait for the writer
SLOW_WRITER = (
    "import sys, time\n"
    f"for i in range({PAYLOAD_LINES}):\n"
    "    sys.stdout.write(f'line {i}\\n')\n"
    "    if i % 5000 == 0: sys.stdout.flush(); time.sleep(0.05)\n"
)


async def _pipeline(consumer: list[str]) -> tuple[bytes, int, int]:
    async with spawn([sys.executable, "-c", SLOW_WRITER], stdout=PIPE) as producer:
        assert producer.stdout is not None
        async with spawn(consumer, stdin=producer.stdout, stdout=PIPE) as reader:
            assert reader.stdout is not None
            await producer.stdout.aclose()  # the consumer holds the only read end now
            chunks = []
            with anyio.fail_after(30):
                async for chunk in reader.stdout:
                    chunks.append(chunk)
                status = await reader.wait()
                produced = await producer.wait()
    return b"".join(chunks), status.returncode, produced.returncode


def _expected() -> bytes:
    return "".join(f"line {i}\n" for i in range(PAYLOAD_LINES)).encode()


async def test_cat_reads_another_childs_stdout(spawn_path: str) -> None:
    output, code, produced = await _pipeline(["cat"])
    assert (code, produced) == (0, 0)
    assert output == _expected()


async def test_python_child_reads_another_childs_stdout_to_the_end(spawn_path: str) -> None:
    count = "import sys; sys.stdout.write(str(sum(1 for _ in sys.stdin)))"
    output, code, produced = await _pipeline([sys.executable, "-c", count])
    assert (code, produced) == (0, 0)
    assert output == str(PAYLOAD_LINES).encode()


async def test_pipe_end_in_pass_fds_reaches_the_child_blocking(spawn_path: str) -> None:
    async with spawn(["sleep", "30"], stdout=PIPE) as holder:
        assert holder.stdout is not None
        fd = holder.stdout.fileno()
        assert os.get_blocking(fd) is False  # the parent's stream is non-blocking
        probe = f"import os; print(os.get_blocking({fd}))"
        async with spawn([sys.executable, "-c", probe], stdout=PIPE, pass_fds=[fd]) as proc:
            assert proc.stdout is not None
            with anyio.fail_after(30):
                answer = b"".join([chunk async for chunk in proc.stdout])
        assert answer.strip() == b"True"
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK  # and ours stays so
