"""``fdloop supervise`` as a real process: restarts, give-up, signals, orphans, bad configs,
and a stdout or stderr that nobody reads.

The supervisor's stdout and stderr go to files that the test reads as they grow (or to
pipes, full from the start, that the test reads only when it chooses to); every
wait is bounded by a generous timeout only to turn a hang into a failure. Nothing here
measures time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fdloop.supervisor.cli import EXIT_CLEAN, EXIT_UNCLEAN

HANG = 60.0
PY = sys.executable
EXAMPLES = Path(__file__).parents[1] / "examples"
LOOPS = ["asyncio", "uvloop", "trio"]


def supervise_command(*args: str) -> list[str]:
    return [PY, "-m", "fdloop.cli", "supervise", *args]


class Supervise:
    """A running ``fdloop supervise`` whose output lands in files we can poll."""

    def __init__(
        self, tmp_path: Path, *args: str, cwd: Path | None = None, stderr: int | None = None
    ) -> None:
        """``stderr``: a fd to give the supervisor instead of the stderr file."""
        self.out_path = tmp_path / "stdout.txt"
        self.err_path = tmp_path / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                supervise_command(*args), stdout=out,
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


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Supervise]]:
    """Collects the supervisors a test starts and kills any left running."""
    running: list[Supervise] = []
    yield running
    for sup in running:
        if sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()


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


# -- restarts -------------------------------------------------------------------------------


def test_crash_is_restarted_with_backoff_then_given_up(tmp_path: Path) -> None:
    config = write(tmp_path, """
[program.crash]
command = "sh -c 'echo boom; exit 3'"
backoff = [0.05, 1]
max_restarts = 2

[program.fine]
command = ["sh", "-c", "echo all good"]
""")
    code, out, err = run_to_end(tmp_path, str(config))
    assert code == 1, err  # crash gave up: not every program ended cleanly
    assert out.count("crash | boom\n") == 3
    assert "fine  | all good\n" in out
    assert re.findall(r"crash: restarting in ([\d.]+) s", err) == ["0.05", "0.1"]
    assert "crash: gave up after 2 restarts" in err
    assert "fine: exited (exit code 0)" in err
    assert len(re.findall(r"crash: exited \(exit code 3\)", err)) == 3


def test_clean_programs_exit_zero_with_padded_prefixed_output(tmp_path: Path) -> None:
    config = write(tmp_path, """
[program.a]
command = ["sh", "-c", "echo one; echo two >&2; printf 'no newline'"]

[program.longer]
command = "python3 -c 'print(\\"from python\\")'"
""")
    code, out, err = run_to_end(tmp_path, str(config))
    assert code == 0, err
    assert set(out.splitlines()) == {
        "a      | one", "a      | two", "a      | no newline", "longer | from python",
    }
    for line in err.splitlines():
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3} fdloop supervise: ", line), line
    assert "all ended cleanly" in err


def test_single_command_mode(tmp_path: Path) -> None:
    code, out, err = run_to_end(
        tmp_path, "--restart", "never", "--name", "greeter", "--", "sh", "-c", "echo hi; exit 4"
    )
    assert code == 1, err
    assert out == "greeter | hi\n"
    assert "greeter: exited (exit code 4)" in err
    code, out, err = run_to_end(tmp_path, "--", "echo", "plain")
    assert (code, out) == (0, "echo | plain\n"), err


# -- signals ---------------------------------------------------------------------------------


STOP_CONFIG = """
[program.sleeper]
command = "sleep 1000"

[program.stubborn]
command = ["python3", "-u", "-c", '''
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready")
time.sleep(1000)
''']
stop_timeout = 1

[program.polite]
command = ["python3", "-u", "-c", '''
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("bye"), sys.exit(0)))
print("ready")
time.sleep(1000)
''']
stop_timeout = 30
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_sigterm_stops_every_program_in_parallel_and_exits_zero(
    tmp_path: Path, started: list[Supervise], loop: str
) -> None:
    config = write(tmp_path, STOP_CONFIG)
    sup = Supervise(tmp_path, "--loop", loop, str(config))
    started.append(sup)
    pids = {name: sup.started_pid(name) for name in ("sleeper", "stubborn", "polite")}
    sup.wait_for(r"^(stubborn|polite) +\| ready$", count=2, stream="stdout")
    # Taken over by a SignalFD: blocked, and no handler (Python's or anyone's) caught.
    masks = _signal_masks(sup.proc.pid)
    for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        bit = 1 << (signo - 1)
        assert masks["SigBlk"] & bit, f"{signo!r} not blocked"
        assert not masks["SigCgt"] & bit, f"{signo!r} has a handler"
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
    err = sup.stderr
    assert "received SIGTERM" in err
    assert "sleeper: stopped (killed by SIGTERM)" in err
    assert "stubborn: stopped (killed by SIGKILL)" in err  # ignored TERM: stop_timeout ran out
    assert "polite: stopped (exit code 0)" in err
    assert "polite   | bye" in sup.stdout
    order = re.findall(r": (stopping|stopped) ", err)
    assert order == ["stopping"] * 3 + ["stopped"] * 3  # all asked before any finished
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}"), f"{pid} outlived the supervisor"


@pytest.mark.parametrize("loop", LOOPS)
def test_sighup_restarts_every_program(
    tmp_path: Path, started: list[Supervise], loop: str
) -> None:
    config = write(tmp_path, """
[program.one]
command = "sleep 1000"
[program.two]
command = "sleep 1000"
""")
    sup = Supervise(tmp_path, "--loop", loop, str(config))
    started.append(sup)
    first = [sup.started_pid("one"), sup.started_pid("two")]
    sup.signal(signal.SIGHUP)
    second = [sup.started_pid("one", 1), sup.started_pid("two", 1)]
    assert not set(first) & set(second)
    assert "received SIGHUP" in sup.stderr
    for pid in first:
        assert not os.path.exists(f"/proc/{pid}") or _ppid(pid) != sup.proc.pid
    sup.signal(signal.SIGINT)
    assert sup.finish() == 0, sup.stderr
    for pid in second:
        assert not os.path.exists(f"/proc/{pid}")


def test_subreaper_adopts_and_reaps_orphans(tmp_path: Path, started: list[Supervise]) -> None:
    config = write(tmp_path, """
[supervisor]
subreaper = true

[program.daemonizer]
command = ["sh", "-c", "sleep 1000 & echo orphan=$!; exit 0"]
restart = "never"

[program.shortlived]
command = ["sh", "-c", "(sleep 0.2; exit 4) & exit 0"]
restart = "never"

[program.keeper]
command = "sleep 1000"
""")
    sup = Supervise(tmp_path, str(config))
    started.append(sup)
    orphan = int(sup.wait_for(r"orphan=(\d+)", stream="stdout")[0])
    sup.wait_for(r"reaped orphan \d+ \(returncode 4\)")
    sup.wait_for(r"daemonizer: exited \(exit code 0\)")
    assert _ppid(orphan) == sup.proc.pid  # adopted by the supervisor, not by init
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
    assert f"reaped orphan {orphan} (returncode -15)" in sup.stderr
    assert not os.path.exists(f"/proc/{orphan}")


def test_without_subreaper_orphans_go_elsewhere(
    tmp_path: Path, started: list[Supervise]
) -> None:
    config = write(tmp_path, """
[program.daemonizer]
command = ["sh", "-c", "sleep 1000 & echo orphan=$!; exit 0"]
restart = "never"
[program.keeper]
command = "sleep 1000"
""")
    sup = Supervise(tmp_path, str(config))
    started.append(sup)
    orphan = int(sup.wait_for(r"orphan=(\d+)", stream="stdout")[0])
    sup.wait_for(r"daemonizer: exited")
    try:
        assert _ppid(orphan) != sup.proc.pid
    finally:
        os.kill(orphan, signal.SIGKILL)
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr


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


@pytest.mark.parametrize("loop", LOOPS)
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


@pytest.mark.parametrize("loop", LOOPS)
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


# -- bad input ---------------------------------------------------------------------------------


GOOD = """
[program.first]
command = ["touch", "STARTED"]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[program.web]\ncomand = "sleep 1"', "program.web.comand: unknown key"),
        ('[program.web]\ncommand = "sleep 1"\nrestart = "sometimes"', "program.web.restart"),
        ("[program.web]\nrestart = 'always'", "program.web.command: missing"),
        ('[program.web]\ncommand = "no-such-program-here"', "program.web.command"),
        ("[program.web]\ncommand = []", "program.web.command"),
        ("[program.web]\ncommand = 'sh -c \"unclosed'", "program.web.command"),
        ('[program.web]\ncommand = "sleep 1"\nbackoff = [5, 1]', "program.web.backoff"),
        ('[program.web]\ncommand = "sleep 1"\nbackoff = "fast"', "program.web.backoff"),
        ('[program.web]\ncommand = "sleep 1"\nmax_restarts = -1', "program.web.max_restarts"),
        ('[program.web]\ncommand = "sleep 1"\nstop_signal = "SIGFOO"', "program.web.stop_signal"),
        ('[program.web]\ncommand = "sleep 1"\nstop_timeout = -2', "program.web.stop_timeout"),
        ('[program.web]\ncommand = "sleep 1"\nenv = { A = 1 }', "program.web.env"),
        ('[program.web]\ncommand = "sleep 1"\ncwd = "nowhere"', "program.web.cwd"),
        ("[program]\nweb = 3", "program.web must be a table"),
        ("[programs.web]\ncommand = 'x'", "unknown top-level key 'programs'"),
        ("[supervisor]\nsubreaper = 'yes'", "supervisor.subreaper"),
        ("[supervisor]\nreap = true", "supervisor.reap: unknown key"),
        ("[program.web\ncommand = 'x'", "invalid TOML"),
    ],
)
def test_bad_config_is_refused_naming_table_and_key_and_starts_nothing(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write(tmp_path, GOOD + text + "\n")
    code, out, err = run_to_end(tmp_path, str(config))
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert out == ""
    assert not (tmp_path / "STARTED").exists()


def test_missing_or_empty_config(tmp_path: Path) -> None:
    code, _, err = run_to_end(tmp_path, str(tmp_path / "absent.toml"))
    assert code == 2 and "cannot read" in err
    code, _, err = run_to_end(tmp_path, str(write(tmp_path, "# nothing\n")))
    assert code == 2 and "no programs" in err
    code, _, err = run_to_end(tmp_path)
    assert code == 2 and "CONFIG.toml" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-restarts", "-1", "--", "true"], "--max-restarts"),
        (["--stop-signal", "SIGNOPE", "--", "true"], "--stop-signal"),
        (["--backoff", "3", "1", "--", "true"], "--backoff"),
        (["--", "no-such-program-here"], "command"),
        (["--restart", "sometimes", "--", "true"], "--restart"),
    ],
)
def test_bad_command_line_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run_to_end(tmp_path, *args)
    assert code == 2, err
    assert message in err
    assert out == ""


# -- the example ------------------------------------------------------------------------------


def test_example_config(tmp_path: Path, started: list[Supervise]) -> None:
    sup = Supervise(tmp_path, str(EXAMPLES / "supervise.toml"))
    started.append(sup)
    sup.wait_for(r"flaky: restarting in", count=2)
    sup.wait_for(r"flaky: exited \(exit code 0\)")
    sup.wait_for(r"migrate: exited \(exit code 0\)")
    sup.wait_for(r"^ticker +\| tick", stream="stdout")
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
    out = sup.stdout
    assert "flaky   | attempt 3: connected; work done" in out
    assert "migrate | done" in out
    assert "ticker  | got SIGTERM, shutting down cleanly" in out


def _signal_masks(pid: int) -> dict[str, int]:
    masks = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("SigBlk", "SigCgt", "SigIgn"):
                masks[key] = int(value, 16)
    return masks


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return -1
    return int(stat[stat.rindex(")") + 2 :].split()[1])
