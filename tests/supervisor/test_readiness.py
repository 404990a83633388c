"""Readiness (``ready=``, ``ready_timeout=``, ``watchdog=``) with real programs.

The programs speak the protocols themselves (notify_peer.py writes sd_notify datagrams
to ``$NOTIFY_SOCKET`` and newlines to fd N); systemd's own ``systemd-notify`` where it
is installed. Timeouts are hang guards only, except ready_timeout/watchdog, which are
what is tested: short (0.2 s), and nothing asserts how fast anything was.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop.errors import SupervisorConfigError
from fdloop.supervisor import Event, Supervisor, parse_config
from fdloop.supervisor.config import tomllib

from .event_helpers import until

HANG = 20.0
PY = sys.executable
PEER = str(Path(__file__).with_name("notify_peer.py"))


def peer(*words: str) -> list[str]:
    return [PY, PEER, *words]


SLEEP_PEER = peer()


def kind_is(kind: str, name: str = "p") -> Callable[[Event], bool]:
    return lambda event: event.kind == kind and event.name == name


async def read_env(path: Path) -> list[str]:
    with anyio.fail_after(HANG):
        while not path.exists():
            await anyio.sleep(0.01)
    return path.read_text().split("\n")


async def test_notify_ready_and_status(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    async with Supervisor() as sup:
        sup.add("p", peer(f"env:{env_file}", "sleep:0.1", "send:STATUS=warming up",
                          "sleep:0.1", "send:READY=1|STATUS=serving"), ready="notify")
        events = sup.events()
        await sup.start()
        facts = await read_env(env_file)
        assert facts[0] != "-"  # NOTIFY_SOCKET was set
        assert facts[1:3] == ["-", "-"]  # no watchdog asked for
        seen = await until(events, kind_is("ready"))
        statuses = [e.text for e in seen if e.kind == "status"]
        assert statuses[0] == "warming up"
        status = sup.status()["p"]
        assert status.ready and status.status_text == "serving"
        assert seen[-1].pid == status.pid == int(facts[3])
        assert "ready" in seen[-1].describe()
    # The socket and its private directory are gone with the supervisor.
    assert not os.path.exists(facts[0])
    assert not os.path.exists(os.path.dirname(facts[0]))


async def test_notify_socket_is_private(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    async with Supervisor() as sup:
        sup.add("p", peer(f"env:{env_file}"), ready="notify")
        await sup.start()
        path = (await read_env(env_file))[0]
        mode = os.stat(os.path.dirname(path)).st_mode & 0o777
        assert mode == 0o700


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="no systemd-notify")
async def test_systemd_notify_itself() -> None:
    # systemd-notify speaks for its parent (the shell, our program's main process).
    async with Supervisor() as sup:
        sup.add("p", ["/bin/sh", "-c", "systemd-notify --ready --status='up via systemd'; "
                      "exec sleep 1000"], ready="notify")
        events = sup.events()
        await sup.start()
        await until(events, kind_is("ready"))
        assert sup.status()["p"].status_text == "up via systemd"


async def test_forged_ready_from_a_foreign_process_is_ignored(tmp_path: Path) -> None:
    env_file, go = tmp_path / "env", tmp_path / "go"
    async with Supervisor() as sup:
        sup.add("p", peer(f"env:{env_file}", f"wait:{go}", "send:READY=1"), ready="notify")
        events = sup.events()
        await sup.start()
        socket_path = (await read_env(env_file))[0]
        forger = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "s.sendto(b'READY=1\\nSTATUS=forged\\nMAINPID=1', sys.argv[1])\n"
        )
        await fdloop.run([PY, "-c", forger, socket_path], check=True)
        await anyio.sleep(0.1)  # the datagram was queued before the forger exited
        status = sup.status()["p"]
        assert not status.ready and status.status_text is None
        assert status.main_pid == status.pid
        go.touch()  # now the program itself says READY=1
        seen = await until(events, kind_is("ready"))
        assert [e.kind for e in seen if e.kind in ("status", "mainpid")] == []
        assert seen[-1].pid == status.pid


async def test_mainpid_handover() -> None:
    # The program forks; the parent names the child MAINPID; only then may the child
    # speak: its READY=1 and STATUS= count.
    async with Supervisor() as sup:
        sup.add("p", peer("fork", "send:READY=1|STATUS=child speaking"),
                ready="notify")
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("ready"))
        handover = [e for e in seen if e.kind == "mainpid"]
        assert len(handover) == 1
        status = sup.status()["p"]
        assert handover[0].pid == status.main_pid != status.pid
        assert status.ready and status.status_text == "child speaking"


async def test_a_flood_of_datagrams_is_read_whole_and_in_order() -> None:
    # 1000 datagrams (more than the socket queue holds: the sender blocks, nothing is
    # lost), read 64 per wake-up; READY=1 after them still counts, and is the last word.
    async with Supervisor() as sup:
        sup.add("p", peer("flood:1000", "send:READY=1|STATUS=done"), ready="notify")
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("ready"))
        texts = [e.text for e in seen if e.kind == "status"]
        assert texts == [*(str(index) for index in range(1000)), "done"]
        assert sup.status()["p"].status_text == "done"


async def test_mainpid_outside_the_programs_session_is_refused() -> None:
    # Else a program could name pid 1 (or its supervisor) and have it stopped later.
    async with Supervisor() as sup:
        sup.add("p", peer("send:MAINPID=1", f"send:MAINPID={os.getpid()}",
                          "send:READY=1|STATUS=claimed"), ready="notify")
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("status"))
        assert "mainpid" not in [str(e.kind) for e in seen]
        status = sup.status()["p"]
        assert status.main_pid == status.pid and status.ready


async def test_ready_timeout_is_a_failed_start() -> None:
    # The program exits 0 on SIGTERM: only the missed readiness makes the end a failure.
    async with Supervisor() as sup:
        sup.add("p", peer("term-exits-0"), ready="notify", ready_timeout=0.2,
                max_restarts=0, stop_timeout=2)
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
        assert [str(e.kind) for e in seen] == ["started", "ready-timeout", "exited", "gave-up"]
        assert seen[1].delay == 0.2
        # Exit 0 (the handler was in place) is still a failure; under heavy load the
        # SIGTERM may come before Python installed it (-15): a failure all the same.
        assert seen[2].status is not None and seen[2].status.returncode in (0, -signal.SIGTERM)
        assert not sup.status()["p"].ready
        assert not sup.all_clean()


@pytest.mark.parametrize("fd", [3, 40])
async def test_fd_n_readiness(fd: int, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    async with Supervisor() as sup:
        sup.add("p", peer(f"env:{env_file}", "sleep:0.1", f"fd:{fd}"), ready=f"fd:{fd}")
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("ready"))
        assert seen[-1].pid == sup.status()["p"].pid == int((await read_env(env_file))[3])
        assert sup.status()["p"].ready


async def test_fd_n_closed_without_newline_is_not_ready() -> None:
    async with Supervisor() as sup:
        sup.add("p", peer("close:5"), ready="fd:5", ready_timeout=0.2, max_restarts=0)
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
        assert "ready-timeout" in [str(e.kind) for e in seen]
        assert "ready" not in [str(e.kind) for e in seen]


async def test_fd_n_program_not_found_is_a_spawn_error() -> None:
    async with Supervisor() as sup:
        sup.add("p", ["/nonexistent/program"], ready="fd:3", restart="never")
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("exited"))
        assert seen[-1].error is not None and "/nonexistent/program" in seen[-1].error


async def test_exit_readiness() -> None:
    async with Supervisor() as sup:
        sup.add("setup", [PY, "-c", "pass"], ready="exit")
        sup.add("broken", [PY, "-c", "raise SystemExit(3)"], ready="exit", restart="never")
        events = sup.events()
        await sup.start()
        await until(events, kind_is("ready", "setup"))
        await sup.wait()
        status = sup.status()
        assert status["setup"].ready and status["setup"].state == "exited"
        assert not status["broken"].ready


async def test_exit_ready_timeout() -> None:
    async with Supervisor() as sup:
        sup.add("p", [PY, "-c", "import time; time.sleep(100)"], ready="exit",
                ready_timeout=0.2, restart="never")
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("exited"))
        assert "ready-timeout" in [str(e.kind) for e in seen]
        assert not sup.status()["p"].ready


async def test_watchdog_restarts_a_silent_program(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    async with Supervisor() as sup:
        sup.add("p", peer(f"env:{env_file}", "send:READY=1", "ping:0.03:3"), ready="notify",
                watchdog=0.2, backoff=0.01, stop_timeout=2)
        events = sup.events()
        await sup.start()
        facts = await read_env(env_file)
        assert facts[1] == "200000"  # WATCHDOG_USEC
        assert facts[2] == facts[3]  # WATCHDOG_PID is the program's own pid
        seen = await until(events, kind_is("restarting"))
        names = [str(e.kind) for e in seen]
        assert names[:2] == ["started", "ready"]
        assert names[-3:] == ["watchdog", "exited", "restarting"]
        exited = seen[-2].status
        assert exited is not None and exited.signal == signal.SIGABRT
        assert "watchdog" in seen[-3].describe()


async def test_watchdog_trigger() -> None:
    async with Supervisor() as sup:
        sup.add("p", peer("send:READY=1", "send:WATCHDOG=trigger"), ready="notify",
                watchdog=30, restart="never", stop_timeout=2)
        events = sup.events()
        await sup.start()
        seen = await until(events, kind_is("exited"))
        assert "watchdog" in [str(e.kind) for e in seen]


async def test_reloading_stopping_and_errno() -> None:
    async with Supervisor() as sup:
        sup.add("p", peer("send:READY=1", "sleep:0.05", "send:RELOADING=1|ERRNO=5",
                          "sleep:0.05", "send:READY=1", "sleep:0.05",
                          "send:STOPPING=1|STATUS=shutting down"), ready="notify")
        events = sup.events()
        await sup.start()
        await until(events, kind_is("ready"))
        await until(events, kind_is("reloading"))  # not ready again until its READY=1
        await until(events, kind_is("ready"))
        assert sup.status()["p"].errno == 5
        await until(events, kind_is("status"))
        status = sup.status()["p"]
        assert not status.ready and status.status_text == "shutting down"


# -- bad input -------------------------------------------------------------------------------

BAD_OPTIONS = [
    ({"ready": 3}, TypeError, "ready"),
    ({"ready": None}, TypeError, "ready"),
    ({"ready": "sometimes"}, ValueError, "ready"),
    ({"ready": "fd:"}, ValueError, "ready"),
    ({"ready": "fd:x"}, ValueError, "ready"),
    ({"ready": "fd:2"}, ValueError, "ready"),
    ({"ready": "fd:-4"}, ValueError, "ready"),
    ({"ready": "fd:99999"}, ValueError, "ready"),
    ({"ready_timeout": "1"}, TypeError, "ready_timeout"),
    ({"ready_timeout": True}, TypeError, "ready_timeout"),
    ({"ready_timeout": 0}, ValueError, "ready_timeout"),
    ({"ready_timeout": -1}, ValueError, "ready_timeout"),
    ({"ready_timeout": float("nan")}, ValueError, "ready_timeout"),
    ({"watchdog": "10"}, TypeError, "watchdog"),
    ({"watchdog": 0, "ready": "notify"}, ValueError, "watchdog"),
    ({"watchdog": float("inf"), "ready": "notify"}, ValueError, "watchdog"),
    ({"watchdog": 5}, ValueError, "watchdog"),  # needs ready="notify"
    ({"watchdog": 5, "ready": "fd:3"}, ValueError, "watchdog"),
]


def test_bad_readiness_options() -> None:
    # One test for every row (a test per row would cost the leak check's teardown each).
    sup = Supervisor()
    for options, error, named in BAD_OPTIONS:
        with pytest.raises(error, match=named):
            sup.add("p", ["true"], **options)  # type: ignore[arg-type]
        assert sup.names == [], options


BAD_KEYS = [
    ('ready = 1', "program.p.ready"),
    ('ready = "fd:1"', "program.p.ready"),
    ('ready = "later"', "program.p.ready"),
    ('ready_timeout = "5s"', "program.p.ready_timeout"),
    ('ready_timeout = -2', "program.p.ready_timeout"),
    ('watchdog = [1]', "program.p.watchdog"),
    ('watchdog = 0', "program.p.watchdog"),
    ('ready = "notify"\nwatchdog = -1', "program.p.watchdog"),
    ('depends_on = "q"', "program.p.depends_on"),
    ('depends_on = [1]', "program.p.depends_on"),
    ('depends_on = ["p"]', "program.p.depends_on"),
]


def test_bad_readiness_config_keys() -> None:
    for line, named in BAD_KEYS:
        document = tomllib.loads(f'[program.p]\ncommand = "true"\n{line}\n')
        with pytest.raises(SupervisorConfigError, match=named.replace(".", r"\.")):
            parse_config(document)


def test_readiness_config_keys() -> None:
    document = tomllib.loads(
        '[program.db]\ncommand = "true"\nready = "notify"\nready_timeout = 5\n'
        'watchdog = 2.5\n[program.web]\ncommand = "true"\nready = "fd:3"\n'
        'depends_on = ["db"]\n'
    )
    db, web = parse_config(document).programs
    assert (db.ready, db.ready_timeout, db.watchdog) == ("notify", 5.0, 2.5)
    assert (web.ready, web.ready_fd, web.depends_on) == ("fd", 3, ("db",))


async def test_a_datagram_counts_only_with_the_programs_own_pidfd() -> None:
    # The check a recycled pid would meet: the right pid with another process's pidfd
    # inode is refused. The inodes are real (pidfs), taken from live processes.
    from fdloop.supervisor.notify import Notice, pidfs, process_inode

    if not pidfs():
        pytest.skip("no pidfs here: senders are told apart by pid only")
    async with Supervisor() as sup:
        sup.add("p", SLEEP_PEER, ready="notify")
        await sup.start()
        pid = sup.status()["p"].pid
        assert pid is not None
        board = sup._shared.board
        other = process_inode(os.getpid())
        board.deliver(Notice({"READY": "1"}, pid, other))
        board.deliver(Notice({"READY": "1"}, pid, None))
        assert not sup.status()["p"].ready
        board.deliver(Notice({"READY": "1"}, os.getpid(), process_inode(pid)))
        assert sup.status()["p"].ready


HANDOVER_SCRIPT = """
import os, sys, anyio
from fdloop.supervisor import Supervisor

async def main():
    async with Supervisor(subreaper=True) as sup:
        events = sup.events()
        sup.add("p", [sys.executable, sys.argv[2], "daemonize",
                "send:READY=1|STATUS=daemon"],
                ready="notify", ready_timeout=10, stop_timeout=5)
        await sup.start()
        first = sup.status()["p"].pid
        seen = []
        with anyio.fail_after(20):
            async for event in events:
                seen.append(str(event.kind))
                if event.kind == "ready":
                    break
        # The parent exited 0 after MAINPID=: the program is its successor now.
        with anyio.fail_after(20):
            while sup.status()["p"].pid == first:
                await anyio.sleep(0.01)
        status = sup.status()["p"]
        assert seen[:2] == ["started", "mainpid"], seen
        assert "exited" not in seen, seen
        assert status.state == "running" and status.ready, status
        assert status.pid == status.main_pid != first, status
        assert status.status_text == "daemon", status
        successor = status.pid
        await sup.stop("p")
        stopped = sup.status()["p"]
        assert stopped.state == "stopped", stopped
        assert stopped.last_exit is not None, stopped
        if os.environ.get("FDLOOP_BACKEND") != "kqueue":
            # (the kqueue backend watches a non-child by pid: no exit status for it)
            assert stopped.last_exit.returncode == -15, stopped
        try:
            os.kill(successor, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError("the successor still runs")
    print("OK")

anyio.run(main, backend=sys.argv[1] if sys.argv[1] == "trio" else "asyncio",
          backend_options={"use_uvloop": True} if sys.argv[1] == "uvloop" else {})
"""


@pytest.mark.parametrize("loop", ["asyncio", "trio"])  # uvloop: test_mainpid_handover
def test_mainpid_handover_when_the_parent_exits(loop: str) -> None:
    # A daemon that forks, names its child MAINPID= and exits: the child is the program
    # from then on (watched through its pidfd; reaped by us as subreaper), and stop()
    # stops it. In a fresh interpreter: subreaper mode reads SIGCHLD for the process.
    import subprocess

    result = subprocess.run(
        [PY, "-c", HANDOVER_SCRIPT, loop, PEER], capture_output=True, text=True,
        timeout=HANG * 2, check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (
        result.stdout + result.stderr
    )
