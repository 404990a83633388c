"""``fdloop supervise`` against hostile surroundings: closed or failing stdio, a program
that prints without newlines, a SIGKILL of the supervisor, too many programs.

Each runs the real command in a subprocess, on every loop where the loop matters. Every
wait is bounded by HANG only to turn a hang into a failure; nothing measures speed.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fdloop.supervisor.output import LINE_LIMIT, LineSplitter

from ..leaks import stat_fields
from ..supervisor.supervise_harness import HANG, LOOPS, Supervise, supervise_command, write

# -- closed and failing standard streams --------------------------------------------------

STDIO_CASES = {
    # shell redirection: (exit status, stream with the one-line message, its words)
    ">&-": (3, "stderr", "stdout (fd 1) is closed"),
    "2>&-": (3, "stdout", "stderr (fd 2) is closed"),
    ">/dev/full": (3, "stderr", "cannot write to stdout (No space left on device)"),
    "2>/dev/full": (3, "stdout", "cannot write to stderr (No space left on device)"),
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("redirect", list(STDIO_CASES))
def test_closed_or_full_stdout_and_stderr_are_said_once_and_exit_3(
    tmp_path: Path, loop: str, redirect: str
) -> None:
    code, where, words = STDIO_CASES[redirect]
    ran = tmp_path / "ran"
    command = shlex.join(
        supervise_command("--loop", loop, "--restart", "never", "--name", "p", "--",
                          "sh", "-c", f"touch {ran}; echo hi")
    )
    # The other stream goes to a file we read; the shell applies the hostile one.
    other = "2>" if where == "stderr" else ">"
    result = subprocess.run(
        ["sh", "-c", f"exec {command} {redirect} {other}{tmp_path / 'said'}"],
        capture_output=True, timeout=HANG, check=False, stdin=subprocess.DEVNULL,
    )
    said = (tmp_path / "said").read_text()
    assert result.returncode == code, said
    assert said.count(words) == 1, said
    assert "Traceback" not in said
    if "&-" in redirect:
        assert said.count("\n") == 1, said  # one line, and nothing was started
        assert not ran.exists()
    else:
        assert ran.exists()  # supervising went on; only the output was lost
        if where == "stdout":
            assert "p | hi" in said


# -- a program printing without newlines ----------------------------------------------------


def test_line_splitter_cuts_at_newlines_and_at_the_limit() -> None:
    lines = LineSplitter(limit=4)
    assert lines.feed(b"ab\ncdefgh") == [b"ab\n", b"cdef"]
    assert lines.feed(b"i\n\n123") == [b"ghi\n", b"\n"]
    assert lines.feed(b"4") == [b"1234"]
    assert lines.feed(b"56") == []
    assert lines.finish() == b"56"
    assert lines.finish() == b""
    exact = LineSplitter(limit=4)
    assert exact.feed(b"abc\n" + b"x" * 9) == [b"abc\n", b"xxxx", b"xxxx"]
    assert LineSplitter().feed(b"y" * (LINE_LIMIT + 1)) == [b"y" * LINE_LIMIT]


BIG = 40 * 1024 * 1024
"""Printed without a newline: more than the bound below, held whole."""
MEMORY_BOUND_KIB = 60 * 1024
"""The supervisor's peak RSS must stay below this (about 30-35 MiB here at rest)."""


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("loop", LOOPS)
def test_output_without_newlines_keeps_memory_bounded_and_sigterm_works(
    tmp_path: Path, loop: str, started: list[Supervise]
) -> None:
    flag = tmp_path / "printed"
    sup = Supervise(
        tmp_path, "--loop", loop, "--restart", "never", "--name", "flood", "--",
        "sh", "-c", f"head -c {BIG} /dev/zero; touch {flag}; exec sleep 1000",
        stdout=subprocess.DEVNULL,
    )
    started.append(sup)
    deadline = time.monotonic() + HANG
    # Once the flag exists, all but the last pipeful has gone through the supervisor.
    while not flag.exists():
        assert sup.proc.poll() is None and time.monotonic() < deadline, sup.stderr
        time.sleep(0.02)
    peak = _vm_hwm_kib(sup.proc.pid)
    assert peak < MEMORY_BOUND_KIB, f"peak RSS {peak} KiB after {BIG} bytes without newline"
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr


# -- SIGKILL of the supervisor --------------------------------------------------------------

KILL_CONFIG = """
[program.plain]
command = "sleep 1000"

[program.forker]
# A grandchild in a session of its own: no process group signal reaches it.
command = ["sh", "-c", "setsid sleep 1000 & echo grandchild=$!; wait"]

[program.keeper]
command = "sleep 1000"
die_with_supervisor = false
"""


def _dead(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")  # a zombie of init's is dead too


def _until_dead(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + 10.0  # a liveness bound, not a speed check
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not _dead(pid)]
        if not alive:
            return []
        time.sleep(0.02)
    return [pid for pid in pids if not _dead(pid)]


def _grandchild(sup: Supervise) -> int:
    return int(sup.wait_for(r"grandchild=(\d+)", stream="stdout")[0])


@pytest.mark.parametrize("loop", LOOPS)
def test_programs_do_not_outlive_a_sigkilled_supervisor(
    tmp_path: Path, loop: str, started: list[Supervise]
) -> None:
    sup = Supervise(tmp_path, "--loop", loop, str(write(tmp_path, KILL_CONFIG)))
    started.append(sup)
    plain, forker, keeper = (sup.started_pid(name) for name in ("plain", "forker", "keeper"))
    grandchild = _grandchild(sup)
    note = sup.wait_for(r"programs die with the supervisor through (.*)$")[0]
    cgroup = re.search(r"cgroup\.kill of (\S+)", note)
    try:
        if "no PR_SET_PDEATHSIG" in note and not cgroup:
            # (the kqueue backend: neither exists on the BSDs, and the note says so)
            pytest.skip(f"nothing here can end a SIGKILLed supervisor's programs: {note}")
        sup.proc.kill()
        sup.proc.wait()
        # PR_SET_PDEATHSIG ends the direct children; the guardian's cgroup.kill ends the
        # setsid grandchild too, where a cgroup could be made (as root here).
        doomed = [plain, forker] + ([grandchild] if cgroup else [])
        assert _until_dead(doomed) == [], (note, sup.stderr)
        assert not _dead(keeper), "die_with_supervisor = false must keep it running"
        if cgroup:
            deadline = time.monotonic() + 10.0
            while os.path.exists(cgroup.group(1)) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not os.path.exists(cgroup.group(1)), "the guardian left the cgroup behind"
    finally:
        for pid in (keeper, grandchild, plain, forker):
            if not _dead(pid):
                os.kill(pid, signal.SIGKILL)


def test_without_the_cgroup_only_direct_children_die(
    tmp_path: Path, started: list[Supervise]
) -> None:
    # The honest limit of PR_SET_PDEATHSIG: a grandchild is not its target.
    sup = Supervise(tmp_path, "--no-cgroup", str(write(tmp_path, KILL_CONFIG)))
    started.append(sup)
    plain, forker, keeper = (sup.started_pid(name) for name in ("plain", "forker", "keeper"))
    grandchild = _grandchild(sup)
    note = sup.wait_for(r"programs die with the supervisor.*$")[0]
    assert "no cgroup (--no-cgroup" in note
    try:
        if "no PR_SET_PDEATHSIG" in note:
            pytest.skip(f"PR_SET_PDEATHSIG is not available here: {note}")
        sup.proc.kill()
        sup.proc.wait()
        assert _until_dead([plain, forker]) == []
        assert not _dead(grandchild) and not _dead(keeper)
    finally:
        for pid in (keeper, grandchild, plain, forker):
            if not _dead(pid):
                os.kill(pid, signal.SIGKILL)


# -- too many programs for RLIMIT_NOFILE ------------------------------------------------------


def _many(tmp_path: Path, count: int) -> Path:
    tables = "".join(
        f"[program.p{index}]\ncommand = \"/bin/true\"\nrestart = \"never\"\n"
        for index in range(count)
    )
    return write(tmp_path, tables)


def test_ten_thousand_programs_beyond_the_hard_limit_are_refused_in_one_line(
    tmp_path: Path,
) -> None:
    config = _many(tmp_path, 10_000)
    result = subprocess.run(
        ["prlimit", "--nofile=1024:20000", "--", *supervise_command(str(config))],
        capture_output=True, text=True, timeout=HANG, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert "10000 programs" in message and "RLIMIT_NOFILE" in message, message
    assert "20000" in message, message


def test_a_low_soft_limit_is_raised_to_what_the_programs_need(tmp_path: Path) -> None:
    config = _many(tmp_path, 60)  # about 300 fds: more than the soft 128, under the hard
    result = subprocess.run(
        ["prlimit", "--nofile=128:4096", "--", *supervise_command(str(config))],
        capture_output=True, text=True, timeout=HANG, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(": exited (exit code 0)") == 60

