"""``fdloop supervise`` with a stdout or stderr that nobody reads, and with readers that
keep up: the supervisor must go on restarting and stopping programs, drop (and count)
what does not fit its queue, and lose nothing when the reader keeps up.

The stalled streams are pipes filled to the brim before the supervisor starts, which
the test reads only when it chooses to. Nothing here measures time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fdloop.supervisor.cli import EXIT_CLEAN, EXIT_UNCLEAN

from .supervise_harness import (
    HANG,
    LOOP_PARAMS,
    Supervise,
    run_to_end,
    supervise_command,
    write,
)

# -- a stdout nobody reads --------------------------------------------------------------------

# `big` prints ~5 MB in 100-byte lines, far past the supervisor's 1 MiB queue; `crash` fails
# at once, forever, and must keep being restarted meanwhile.
STALL_CONFIG = """
[program.big]
command = ["sh", "-c", "yes %s | head -c 5000000"]
restart = "never"

[program.crash]
command = ["sh", "-c", "echo run; exit 3"]
backoff = [0.05, 0.2]
""" % ("y" * 99)


def stalled_pipe() -> tuple[int, int]:
    """A pipe already full of dots: the first line written into it blocks (or EAGAINs)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        while True:
            os.write(write_fd, b"." * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_fd, True)
    return read_fd, write_fd


class StalledSupervise(Supervise):
    """``fdloop supervise`` with stdout a full pipe that the test reads only when it wants."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out_path = tmp_path / "stdout.txt"  # unused: stdout is the pipe
        self.err_path = tmp_path / "stderr.txt"
        self.out_fd, self.write_fd = stalled_pipe()
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                supervise_command(*args), stdout=self.write_fd, stderr=err,
                stdin=subprocess.DEVNULL, cwd=tmp_path,
            )
        self.drained = bytearray()
        self._reader: threading.Thread | None = None

    def start_draining(self) -> None:
        """Read the pipe from now on (in a thread: the test goes on meanwhile)."""

        def drain() -> None:
            while data := os.read(self.out_fd, 65536):
                self.drained += data

        self._reader = threading.Thread(target=drain, daemon=True)
        self._reader.start()

    @property
    def stdout(self) -> str:
        return bytes(self.drained).lstrip(b".").decode(errors="replace")

    def wait_after(self, marker: str, text: str) -> None:
        """Wait until stdout shows ``text`` after the first ``marker``."""
        deadline = time.monotonic() + HANG
        while text not in self.stdout.partition(marker)[2]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never came after {marker!r}\n{self.stderr}")
            time.sleep(0.02)

    def close_write_end(self) -> None:
        """Then the supervisor's copy is the only one left: EOF when it exits."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_write_end()
        if self._reader is not None:
            self._reader.join(HANG)
            assert not self._reader.is_alive(), "stdout never reached EOF"
        if self.out_fd >= 0:
            os.close(self.out_fd)
            self.out_fd = -1


@pytest.fixture
def stalled() -> Iterator[list[StalledSupervise]]:
    made: list[StalledSupervise] = []
    yield made
    for sup in made:
        if sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
        sup.close_write_end()
        if sup._reader is None and sup.out_fd >= 0:
            sup.start_draining()
        sup.close()


def _restarts_while_big_output_is_stalled(sup: StalledSupervise) -> list[int]:
    """Wait until `big` has printed everything and `crash` restarts after that; the pids."""
    sup.wait_for(r"big: exited \(exit code 0\)")
    after_big = sup.stderr.count("crash: started")
    sup.wait_for(r"crash: started \(pid \d+\)", count=after_big + 2)
    # The supervisor's fd 1 shares its open file description with our write end: it
    # must have left O_NONBLOCK alone there (it writes through a description of its own).
    assert os.get_blocking(sup.write_fd)
    sup.close_write_end()
    return [int(pid) for pid in re.findall(r": started \(pid (\d+)\)", sup.stderr)]


@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_sigterm_while_stdout_is_stalled_stops_everything(
    tmp_path: Path, stalled: list[StalledSupervise], loop: str
) -> None:
    sup = StalledSupervise(tmp_path, "--loop", loop, str(write(tmp_path, STALL_CONFIG)))
    stalled.append(sup)
    pids = _restarts_while_big_output_is_stalled(sup)
    sup.signal(signal.SIGTERM)  # stdout is still not read
    assert sup.finish() in (EXIT_CLEAN, EXIT_UNCLEAN), sup.stderr
    err = sup.stderr
    assert "received SIGTERM" in err
    assert "every program is down" in err
    assert "Traceback" not in err
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"{pid} outlived the supervisor"
    sup.start_draining()
    sup.close()
    assert sup.stdout == ""  # the pipe stayed full of dots: stdout never moved


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_stalled_stdout_drops_lines_then_says_how_many(
    tmp_path: Path, stalled: list[StalledSupervise], loop: str
) -> None:
    sup = StalledSupervise(tmp_path, "--loop", loop, str(write(tmp_path, STALL_CONFIG)))
    stalled.append(sup)
    _restarts_while_big_output_is_stalled(sup)
    sup.start_draining()
    notice = r"^fdloop supervise: (\d+) output lines dropped \(stdout not read\)$"
    dropped = int(sup.wait_for(notice, stream="stdout")[0])
    # crash keeps running: its lines flow again after the notice.
    sup.wait_after("output lines dropped", "\ncrash | run\n")
    sup.signal(signal.SIGTERM)
    assert sup.finish() in (EXIT_CLEAN, EXIT_UNCLEAN), sup.stderr
    sup.close()
    out = sup.stdout
    big_lines = re.findall(r"^big   \| (y+)$", out, re.MULTILINE)
    assert set(big_lines) == {"y" * 99}  # whole lines only, never a torn one
    crash_runs = sup.stderr.count("crash: started")
    assert len(big_lines) < 5_000_000 // 100 < len(big_lines) + dropped
    assert len(big_lines) + dropped <= 5_000_000 // 100 + crash_runs  # none counted twice
    assert len(re.findall(notice, out, re.MULTILINE)) == 1  # once per catch-up, not per line
    assert "Traceback" not in sup.stderr


@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_stalled_stderr_does_not_stop_restarts_or_sigterm(
    tmp_path: Path, started: list[Supervise], loop: str
) -> None:
    config = write(tmp_path, """
[program.crash]
command = ["sh", "-c", "echo run $$; exit 3"]
backoff = [0.05, 0.2]
""")
    err_read, err_write = stalled_pipe()  # the event lines have nowhere to go
    try:
        sup = Supervise(tmp_path, "--loop", loop, str(config), stderr=err_write)
        started.append(sup)
        found = sup.wait_for(r"^crash \| run (\d+)$", count=3, stream="stdout")
        pids = [int(pid) for pid in found]
        assert os.get_blocking(err_write)  # fd 2's open file description was left alone
        sup.signal(signal.SIGTERM)
        assert sup.finish() in (EXIT_CLEAN, EXIT_UNCLEAN)
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}"), f"{pid} outlived the supervisor"
    finally:
        os.close(err_write)
        os.close(err_read)


def test_output_through_pipes_is_complete_and_ordered_per_program(tmp_path: Path) -> None:
    # Less than the 1 MiB queue in all, so nothing may be dropped however slowly we read;
    # more than a pipe holds, so the supervisor does wait for room.
    config = write(tmp_path, """
[program.one]
command = "seq 1 20000"
[program.two]
command = ["sh", "-c", "seq 1 20000 >&2"]
""")
    code, out, err = run_to_end(tmp_path, str(config))  # stdout and stderr are pipes
    assert code == 0, err
    for name in ("one", "two"):
        numbers = re.findall(rf"^{name} \| (\d+)$", out, re.MULTILINE)
        assert numbers == [str(n) for n in range(1, 20001)]
    assert len(out.splitlines()) == 40000
    assert "dropped" not in out + err
    assert err.splitlines()[-1].endswith("every program is down; all ended cleanly")
