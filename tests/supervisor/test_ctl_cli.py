"""``fdloop ctl`` against a running ``fdloop supervise`` (a real process), as a user runs it.

The supervisor is always a subprocess. Most ``fdloop ctl`` calls run the command's own
entry point (``fdloop.cli.main(["ctl", ...])``) in this process, which saves an
interpreter start (about a second here) per call; ``tail`` (ended by Ctrl-C) and the
client of another uid run as processes of their own. Every wait is bounded (HANG) only to
turn a hang into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fdloop.cli
from fdloop.errors import SupervisorConfigError
from fdloop.supervisor.cli import _remote, build_parser

from .supervise_harness import HANG, LOOPS, Supervise, run_to_end, write

PY = sys.executable
TICKER = (
    '''["python3", "-c", '''
    '''"import time\\nwhile True:\\n print('tick', flush=True); time.sleep(0.05)"]'''
)


def config(sleeper: str, last: str) -> str:
    """The ticker, a sleeper with a 5 s stop timeout, and one more program (``last``)."""
    return f"""
[program.ticker]
command = {TICKER}

[program.sleeper]
command = "{sleeper}"
stop_timeout = 5
{last}"""


# At start: ticker, sleeper, doomed. The reload changes the sleeper's command (a restart),
# drops doomed and adds newcomer (with a log file).
CONFIG = config("sleep 1000", '\n[program.doomed]\ncommand = "sleep 1000"\n')
RELOADED = config(
    "sleep 999",
    "\n[program.newcomer]\n"
    "command = \"sh -c 'echo hello from newcomer; exec sleep 1000'\"\n"
    'log = "newcomer.log"\n',
)

AS_NOBODY = """
import os, sys
from fdloop.supervisor.ctl import ctl_main  # imported as root: /root is 0700
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(ctl_main(sys.argv[1:]))
"""


def ctl(capsys: pytest.CaptureFixture[str], control: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = fdloop.cli.main(["ctl", "--control", str(control), *args])
    out, err = capsys.readouterr()
    return code, out, err


def pids(capsys: pytest.CaptureFixture[str], control: Path) -> dict[str, int | None]:
    code, out, err = ctl(capsys, control, "status", "--json")
    assert code == 0, err
    return {program["name"]: program["pid"] for program in json.loads(out)}


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory another uid can reach (pytest's tmp_path lives under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="fdloop-ctl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("loop", [loop for loop in LOOPS if loop != "uvloop"])
def test_every_ctl_command(
    tmp_path: Path, loop: str, started: list[Supervise], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write(tmp_path, CONFIG)
    control = tmp_path / ".fdloop.sock"  # the default: beside the config
    # A stale socket left by a supervisor that was killed: replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(control))
    stale.close()
    sup = Supervise(tmp_path, "--loop", loop, str(config))
    started.append(sup)
    sup.wait_for(r"control socket .*\.fdloop\.sock")
    for name in ("ticker", "sleeper", "doomed"):
        sup.started_pid(name)
    assert control.stat().st_mode & 0o777 == 0o600

    code, out, err = ctl(capsys, control, "status")
    assert code == 0, err
    assert re.search(r"^NAME\s+STATE\s+READY\s+PID\s+UPTIME\s+RESTARTS\s+LAST EXIT\s+STATUS$",
                     out, re.M), out
    assert re.search(r"^sleeper\s+running\s+yes\s+\d+\s", out, re.M), out
    before = pids(capsys, control)
    # Without --control: $FDLOOP_CONTROL, else .fdloop.sock in the current directory.
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert fdloop.cli.main(["ctl", "status"]) == 0
    monkeypatch.chdir("/")
    monkeypatch.setenv("FDLOOP_CONTROL", str(control))
    assert fdloop.cli.main(["ctl", "status"]) == 0
    monkeypatch.delenv("FDLOOP_CONTROL")
    assert fdloop.cli.main(["ctl", "status"]) == 3  # no /.fdloop.sock

    assert ctl(capsys, control, "stop", "sleeper")[:2] == (0, "sleeper: stop done\n")
    assert pids(capsys, control)["sleeper"] is None
    assert ctl(capsys, control, "start", "sleeper")[0] == 0
    assert ctl(capsys, control, "restart", "ticker")[0] == 0
    now = pids(capsys, control)
    assert now["ticker"] not in (None, before["ticker"])
    assert now["sleeper"] not in (None, before["sleeper"])
    assert now["doomed"] == before["doomed"]
    assert ctl(capsys, control, "signal", "doomed", "USR1")[:2] == (0, "doomed: sent SIGUSR1\n")
    sup.wait_for(r"doomed: exited \(killed by SIGUSR1\)")
    # It is restarted after a backoff; the snapshots below must not race that restart.
    restarted = sup.started_pid("doomed", index=1)

    # Bad input: the supervisor says what is wrong; nothing changes.
    code, _out, err = ctl(capsys, control, "start", "nope")
    assert (code, err) == (1, "fdloop ctl: name: no program called 'nope'\n")
    code, _out, err = ctl(capsys, control, "signal", "ticker", "SIGFOO")
    assert code == 1 and "no signal called 'SIGFOO'" in err
    code, _out, err = ctl(capsys, control, "tail", "nope")
    assert code == 1 and "no program called 'nope'" in err
    assert ctl(capsys, control, "frobnicate")[0] == 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(HANG)
        raw.connect(str(control))
        raw.sendall(b'{"command": "status"\n{"command": "launch"}\n')
        with raw.makefile("rb") as replies:  # the fd is freed only once both are closed
            assert "malformed request" in json.loads(replies.readline())["error"]
            assert "unknown command 'launch'" in json.loads(replies.readline())["error"]

    # tail and a second supervisor: on one loop only (a tail is served like any other
    # client, and a second supervisor is refused before its loop starts).
    if loop == "asyncio":
        _tail_and_second_supervisor(tmp_path, control, config)

    # reload: a bad config is refused whole; then added, removed, changed, unchanged.
    before = pids(capsys, control)
    assert before["doomed"] == restarted
    config.write_text(RELOADED + '\n[program.broken]\ncommand = "sleep 1"\nrestart = "sometimes"\n')
    code, _out, err = ctl(capsys, control, "reload")
    assert code == 1 and "reload refused, nothing changed" in err and "restart" in err, err
    assert pids(capsys, control) == before
    config.write_text(RELOADED)
    code, out, err = ctl(capsys, control, "reload")
    assert (code, out) == (
        0, "reloaded; added: newcomer; removed: doomed; changed: sleeper; unchanged: ticker\n",
    ), err
    now = pids(capsys, control)
    assert list(now) == ["ticker", "sleeper", "newcomer"]
    assert now["ticker"] == before["ticker"]
    assert now["sleeper"] not in (None, before["sleeper"])
    assert now["newcomer"] is not None
    log = tmp_path / "newcomer.log"  # an added program gets a pipe (and log file) of its own
    for _ in range(int(HANG / 0.02)):
        if log.exists() and log.read_text() == "hello from newcomer\n":
            break
        time.sleep(0.02)
    assert log.read_text() == "hello from newcomer\n"
    assert ctl(capsys, control, "start", "doomed")[0] == 1

    # shutdown returns once every program is down; the supervisor exits 0.
    code, out, err = ctl(capsys, control, "shutdown")
    assert (code, out) == (0, "stopping ticker, sleeper, newcomer\nevery program is down\n"), err
    assert sup.finish() == 0, sup.stderr
    assert not control.exists()
    code, _out, err = ctl(capsys, control, "status")
    assert code == 3 and "no control socket there" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become uid 65534")
def test_a_client_of_another_uid_is_refused(
    tmp_path: Path, open_dir: Path, started: list[Supervise],
) -> None:
    control = open_dir / "ctl.sock"
    config = write(tmp_path, '[program.sleeper]\ncommand = "sleep 1000"\n')
    sup = Supervise(tmp_path, "--control", str(control), str(config))
    started.append(sup)
    sup.wait_for("control socket")
    nobody = [PY, "-c", AS_NOBODY, "--control", str(control), "status"]
    # Mode 0600: the kernel refuses the connect itself.
    result = subprocess.run(nobody, capture_output=True, text=True, timeout=HANG, check=False)
    assert result.returncode == 3, result
    assert "permission denied (the socket is mode 0600" in result.stderr
    # Opened up by hand: SO_PEERCRED still refuses, and the supervisor logs it.
    control.chmod(0o666)
    result = subprocess.run(nobody, capture_output=True, text=True, timeout=HANG, check=False)
    assert result.returncode == 1, result
    assert ("permission denied: this supervisor runs as uid 0, and only that uid may "
            "control it (you are uid 65534)") in result.stderr
    sup.wait_for(r"control: refused a client of uid 65534 \(pid \d+\)")
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0


def test_a_control_path_that_is_no_socket_is_refused(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    config = write(tmp_path, '[program.sleeper]\ncommand = "sleep 1000"\n')
    code, out, err = run_to_end(tmp_path, "--control", str(precious), str(config))
    assert code == 2
    assert f"control socket {precious}: exists and is not a socket" in err
    assert out == "" and "started" not in err
    assert precious.read_text() == "keep me"
    # Both --control and --no-control: refused too (checked where the command checks it).
    args = build_parser().parse_args(["--control", "x", "--no-control", str(config)])
    with pytest.raises(SupervisorConfigError, match="not both"):
        _remote(args, [])


def test_events_json(tmp_path: Path, started: list[Supervise]) -> None:
    config = write(tmp_path, """
[program.once]
command = "sh -c 'echo hello; exit 3'"
restart = "never"

[program.sleeper]
command = "sleep 1000"
""")
    sup = Supervise(tmp_path, "--events", "json", "--no-control", str(config))
    started.append(sup)
    sup.wait_for(r'"kind":"exited","program":"once"')
    sup.wait_for(r'"kind":"started","program":"sleeper"')
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 1  # once failed and stays down
    assert sup.stdout == "once    | hello\n"
    records = [json.loads(line) for line in sup.stderr.splitlines()]  # every line is JSON
    events = {(record["program"], record["kind"]): record for record in records}
    started_event, exited = events["once", "started"], events["once", "exited"]
    assert started_event["state"] == "running" and isinstance(started_event["pid"], int)
    assert isinstance(started_event["time"], float)
    assert exited["exit"] == {"returncode": 3, "exit_code": 3, "signal": None,
                              "core_dumped": False}
    assert exited["state"] == "exited" and exited["pid"] == started_event["pid"]
    received = events[None, "signal"]
    assert received["signal"] == "SIGTERM" and "state" not in received
    stopped = events["sleeper", "stopped"]
    assert stopped["state"] == "stopped" and stopped["exit"]["signal"] == signal.SIGTERM
    messages = [record["message"] for record in records if record["kind"] == "message"]
    assert any(message.startswith("supervising once, sleeper") for message in messages)
    assert not (tmp_path / ".fdloop.sock").exists()  # --no-control
    # -- CMD mode has no control socket unless --control names one.
    code, _out, err = run_to_end(tmp_path, "--events", "json", "--", "true")
    assert code == 0 and all(json.loads(line) for line in err.splitlines())
    assert not any(name.endswith(".sock") for name in os.listdir(tmp_path))


def _tail_and_second_supervisor(tmp_path: Path, control: Path, config: Path) -> None:
    """tail streams a program's lines until Ctrl-C; a second supervisor of the same
    config is refused and leaves the first one alone."""
    tail = subprocess.Popen(
        [PY, "-m", "fdloop.cli", "ctl", "--control", str(control), "tail", "ticker"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert tail.stdout is not None
        assert tail.stdout.readline() == "tick\n"
        assert tail.stdout.readline() == "tick\n"
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=HANG) == 130
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        for stream in (tail.stdout, tail.stderr):
            if stream is not None:
                stream.close()

    # A second supervisor of the same config: refused, the first one is untouched.
    code, _out, err = run_to_end(tmp_path, str(config))
    assert code == 2 and "another supervisor is listening there" in err, err
