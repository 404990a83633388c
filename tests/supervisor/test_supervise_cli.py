"""``fdloop supervise`` as a real process: restarts, give-up, signals, orphans, bad configs
(its output under stalled readers: test_supervise_output.py).

The supervisor's stdout and stderr go to files that the test reads as they grow; every
wait is bounded by a generous timeout only to turn a hang into a failure. Nothing here
measures time.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from .supervise_harness import (
    LOOP_PARAMS,
    Supervise,
    run_to_end,
    write,
)

EXAMPLES = Path(__file__).parents[2] / "examples"


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
stop_timeout = 0.3  # long enough to see it ignore SIGTERM; the test waits it out

[program.polite]
command = ["python3", "-u", "-c", '''
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("bye"), sys.exit(0)))
print("ready")
time.sleep(1000)
''']
stop_timeout = 30
"""


@pytest.mark.parametrize("loop", LOOP_PARAMS)
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


@pytest.mark.parametrize("loop", LOOP_PARAMS)
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


@pytest.mark.parametrize("subreaper", [True, False], ids=["subreaper", "no-subreaper"])
def test_orphans_are_adopted_and_reaped_only_by_a_subreaper(
    tmp_path: Path, started: list[Supervise], subreaper: bool
) -> None:
    """With ``subreaper = true`` a daemonizing program's orphans become the supervisor's
    children (reaped, named in a line, ended with it); without it they go elsewhere."""
    config = write(tmp_path, f"""
[supervisor]
subreaper = {str(subreaper).lower()}

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
    sup.wait_for(r"daemonizer: exited \(exit code 0\)")
    if subreaper:
        sup.wait_for(r"reaped orphan \d+ \(returncode 4\)")
        assert _ppid(orphan) == sup.proc.pid  # adopted by the supervisor, not by init
    else:
        try:
            assert _ppid(orphan) != sup.proc.pid
        finally:
            os.kill(orphan, signal.SIGKILL)
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
    assert ("reaped orphan" in sup.stderr) is subreaper
    if subreaper:
        assert f"reaped orphan {orphan} (returncode -15)" in sup.stderr
        assert not os.path.exists(f"/proc/{orphan}")


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
