"""A program flooding its rotated log: no line lost, cut, doubled or reordered; no file
past the limit, each rotated just before the line that would not fit.

20 MB at full size (FDLOOP_STRESS_SCALE scales the line count; CI: 0.1), lines of varying
length (9 to 300 bytes), through the real ``fdloop supervise`` on each loop (on trio
alone below full scale), with a rotation every 256 KiB.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..helpers import scaled, stress_scale
from ..supervisor.supervise_harness import HANG, LOOPS, Supervise, write

LIMIT = 256 * 1024


def _line(number: int) -> bytes:
    return f"{number:08d} ".encode() + b"y" * ((number * 7919) % 292) + b"\n"


# The file writes do not depend on the loop; at CI's reduced scale one loop keeps it short.
@pytest.mark.parametrize("loop", LOOPS if stress_scale() >= 1 else ["trio"])
def test_a_flood_rotates_without_losing_or_reordering_a_line(
    tmp_path: Path, started: list[Supervise], loop: str
) -> None:
    count = scaled(133_000, minimum=2_000)
    expected = b"".join(_line(number) for number in range(count))
    limit = max(LIMIT, len(expected) // 90)  # FDLOOP_STRESS_SCALE > 1: stay under 100 files
    backups = len(expected) // limit + 2  # room for all of it
    script = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        f"for n in range({count}):\n"
        "    out.write(f'{n:08d} '.encode() + b'y' * ((n * 7919) % 292) + b'\\n')\n"
        "out.flush()\n"
        "print('FLOOD-DONE', file=sys.stderr, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    config = write(tmp_path, f"""
[program.flood]
command = [{sys.executable!r}, "-c", {script!r}]
log = "flood.log"
stderr_log = "flood.err"
log_max_bytes = {limit}
log_backups = {backups}
stop_timeout = 5
""")
    sup = Supervise(tmp_path, "--loop", loop, str(config))
    started.append(sup)
    _wait_until(sup, lambda: _logged(tmp_path) == len(expected))
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
    assert (tmp_path / "flood.err").read_text() == "FLOOD-DONE\n"
    names = sorted(
        (path for path in tmp_path.iterdir() if path.name.startswith("flood.log")),
        key=lambda path: -int(path.suffix[1:]) if path.suffix[1:].isdigit() else 0,
    )
    contents = [path.read_bytes() for path in names]
    sizes = [len(content) for content in contents]
    assert all(size <= limit for size in sizes), sizes
    # Rotated before the line that would not fit: whole lines, each file nearly full.
    assert all(limit - size < 300 for size in sizes[:-1]), sizes
    assert all(content.endswith(b"\n") for content in contents)
    assert b"".join(contents) == expected


def _logged(directory: Path) -> int:
    """Bytes in flood.log*, or -1 if a rotation renamed one while we looked."""
    try:
        return sum(
            path.stat().st_size for path in directory.iterdir()
            if path.name.startswith("flood.log")
        )
    except FileNotFoundError:
        return -1


def _wait_until(sup: Supervise, condition: Callable[[], bool]) -> None:
    """A hang guard: poll ``condition`` until it holds, failing after HANG seconds."""
    deadline = time.monotonic() + HANG
    while not condition():
        if sup.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the log never reached its full size\n{sup.stderr}")
        time.sleep(0.02)
