"""Running ``fdloop supervise`` as a real process, for the tests that drive it as one.

:class:`Supervise` starts it with stdout and stderr in files the test polls as they
grow; every wait is bounded by a generous timeout (HANG) only to turn a hang into a
failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

HANG = 60.0
PY = sys.executable
LOOPS = ["asyncio", "uvloop", "trio"]
LOOP_PARAMS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("uvloop", id="uvloop", marks=pytest.mark.one_python),
    pytest.param("trio", id="trio", marks=pytest.mark.one_python),
]
"""LOOPS for a test that runs a whole supervisor process per loop: .ci/run runs the
uvloop and trio ones on Python 3.11 only. What changes from one Python to the next is the
interpreter and its stdlib asyncio, which the asyncio case checks on every Python; uvloop
and trio are the same third-party code on each (and every in-process test still runs on
all three loops, on every Python)."""


def supervise_command(*args: str) -> list[str]:
    return [PY, "-m", "fdloop.cli", "supervise", *args]


class Supervise:
    """A running ``fdloop supervise`` whose output lands in files we can poll."""

    def __init__(
        self, tmp_path: Path, *args: str, cwd: Path | None = None, stderr: int | None = None,
        stdout: int | None = None,
    ) -> None:
        """``stdout``/``stderr``: a fd (or subprocess.DEVNULL) to give the supervisor
        instead of the file."""
        self.out_path = tmp_path / "stdout.txt"
        self.err_path = tmp_path / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                supervise_command(*args), stdout=out if stdout is None else stdout,
                stderr=err if stderr is None else stderr, stdin=subprocess.DEVNULL, cwd=cwd,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for(self, pattern: str, *, count: int = 1, stream: str = "stderr") -> list[str]:
        """Wait until ``pattern`` matches ``count`` times; return every match."""
        deadline = time.monotonic() + HANG
        while True:
            text = self.stderr if stream == "stderr" else self.stdout
            found = re.findall(pattern, text, re.MULTILINE)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} x{count} never showed up (exit {self.proc.returncode})\n"
                    f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
                )
            time.sleep(0.02)

    def started_pid(self, name: str, index: int = 0) -> int:
        return int(self.wait_for(rf"{name}: started \(pid (\d+)\)", count=index + 1)[index])

    def signal(self, signo: int) -> None:
        self.proc.send_signal(signo)

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"fdloop supervise did not exit\n--- stdout\n{self.stdout}\n"
                f"--- stderr\n{self.stderr}"
            ) from None


def write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "supervise.toml"
    config.write_text(text)
    return config


def run_to_end(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        supervise_command(*args), capture_output=True, text=True, timeout=HANG,
        stdin=subprocess.DEVNULL, cwd=tmp_path, check=False,
    )
    return result.returncode, result.stdout, result.stderr
