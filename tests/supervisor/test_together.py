"""The issue-15 features used together, as a user of ``fdloop supervise`` would.

Each test here is a bug found by running readiness, dependencies, the control socket,
``--events json``, reload and cgroups at once, and fails on the code before its fix:

* restarting every program (``restart()``, SIGHUP) ignored ``depends_on``: a dependant
  was started again while what it depends on was still the old instance, or already
  stopped and not yet ready again;
* ``--events json`` gave ``"state": null`` for ``ready``, ``status`` and the other
  readiness events;
* a program removed (by ``remove()``, so by a reload) left its cgroup directory behind
  until the supervisor exited;
* a ``tail`` client whose socket failed mid-stream was logged as an "internal error"
  (the send's error came wrapped in the tail's task group);
* a bad ``depends_on`` of a ``numprocs`` program named ``program.'web.1'``, a table
  the config does not have, instead of ``program.web``;
* a reload (``apply()``, ``replace()``) that added or changed a dependant of a program
  not ready yet hung until that program was ready (for ever without ready_timeout);
* a program a reload added had its console prefix padded to its own name's width.

Order is checked by the order of events, never by a stopwatch; timeouts are hang guards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from fdloop.errors import SupervisorConfigError
from fdloop.supervisor import Supervisor, make_spec, parse_config
from fdloop.supervisor.cgroup import support
from fdloop.supervisor.config import tomllib
from fdloop.supervisor.control import OutputTaps

from ..helpers import eventually
from .event_helpers import steps, until
from .supervise_harness import Supervise, write
from .test_control import served

HANG = 20.0
PY = sys.executable
PEER = str(Path(__file__).with_name("notify_peer.py"))
SLEEP = [PY, "-c", "import time; time.sleep(1000)"]
needs_cgroups = pytest.mark.skipif(support()[0] is None, reason=f"no cgroups: {support()[1]}")


async def test_restart_of_every_program_keeps_the_dependency_order() -> None:
    async with Supervisor() as sup:
        sup.add("db", [PY, PEER, "sleep:0.2", "send:READY=1"], ready="notify")
        sup.add("web", SLEEP, depends_on=["db"])
        events = sup.events()
        await sup.start()
        await until(events, lambda e: e.kind == "started" and e.name == "web")
        await sup.restart()
        order = steps(await until(events, lambda e: e.kind == "started" and e.name == "web"))
    # web goes down before db is stopped, and comes back only once the new db is ready.
    assert order.index("web:stopped") < order.index("db:stopping"), order
    assert order.index("db:started") < order.index("db:ready") < order.index("web:started"), order


@needs_cgroups
async def test_a_removed_program_leaves_no_cgroup_directory() -> None:
    async with Supervisor(cgroups=True) as sup:
        sup.add("keep", SLEEP)
        sup.add("gone", SLEEP)
        await sup.start()
        root = sup.cgroup_root
        assert root is not None
        gone = sup.status()["gone"].cgroup
        assert gone is not None and os.path.isdir(gone.path)
        await sup.remove("gone")
        assert not os.path.exists(gone.path)
        # The name can come back, in a cgroup of its own again.
        sup.add("gone", SLEEP)
        await sup.start("gone")
        again = sup.status()["gone"].cgroup
        assert again is not None and again.path == gone.path
        # (the spawned wrapper moves itself in just before it execs)
        assert await eventually(lambda: os.path.isdir(gone.path) and
                                sup.status()["gone"].cgroup.processes == 1)  # type: ignore[union-attr]
        assert {"gone", "keep"} <= set(os.listdir(root))


async def test_a_tail_client_that_takes_no_lines_is_dropped_as_such(tmp_path: Path) -> None:
    taps = OutputTaps()
    logged: list[str] = []
    async with Supervisor() as sup:
        sup.add("web", SLEEP)
        async with served(tmp_path, sup, taps=taps, logged=logged, send_timeout=0.2) as path:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
                stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                await anyio.to_thread.run_sync(stalled.connect, str(path))
                stalled.sendall(b'{"command": "tail", "name": "web"}\n')
                # Fill its socket buffer, well below the tail's own limit, then read nothing.
                for _ in range(300):
                    taps.publish("web", b"y" * 999 + b"\n")
                    await anyio.sleep(0)
                assert await eventually(lambda: any("dropped" in m for m in logged), HANG)
    assert not any("internal error" in message for message in logged), logged
    assert any("took no answer" in message for message in logged), logged


def test_fdloop_supervise_json_events_and_sighup_with_dependencies(tmp_path: Path) -> None:
    config = write(tmp_path, f"""
[program.db]
command = {json.dumps([PY, PEER, "sleep:0.2", "send:STATUS=up|READY=1"])}
ready = "notify"

[program.web]
command = {json.dumps(SLEEP)}
depends_on = ["db"]
""")
    run = Supervise(tmp_path, "--no-control", "--events", "json", "--loop", "asyncio",
                    str(config))
    try:
        run.wait_for(r'"kind":"started","program":"web"')
        run.signal(signal.SIGHUP)
        run.wait_for(r'"kind":"started","program":"web"', count=2)
    finally:
        run.signal(signal.SIGTERM)
        assert run.finish() == 0
    records = [json.loads(line) for line in run.stderr.splitlines()]
    for record in records:
        if record["program"] is not None and record["kind"] in ("ready", "status"):
            assert record["state"] == "running", record
    after_hup = records[next(i for i, r in enumerate(records) if r["kind"] == "signal"):]
    order = [f"{r['program']}:{r['kind']}" for r in after_hup if r["program"]]
    assert order.index("web:stopped") < order.index("db:stopping"), order
    assert order.index("db:ready") < order.index("web:started"), order


def test_a_bad_dependency_of_a_numprocs_program_names_its_table(tmp_path: Path) -> None:
    text = f"""
[program.web]
command = {json.dumps(SLEEP)}
numprocs = 2
depends_on = ["nosuch"]
"""
    with pytest.raises(SupervisorConfigError) as caught:
        parse_config(tomllib.loads(text), base_dir=tmp_path)
    assert str(caught.value).startswith("program.web.depends_on: no program called 'nosuch'")


async def test_a_reload_does_not_wait_for_a_dependency_that_is_not_ready() -> None:
    # fdloop ctl reload hung for as long as db was not ready: apply() and replace()
    # waited for the start of every added or changed dependant of db.
    async with Supervisor() as sup:
        sup.add("db", SLEEP, ready="notify")  # never sends READY=1
        sup.add("web", SLEEP, depends_on=["db"])
        with anyio.fail_after(5):  # a hang guard: the fixed reload takes milliseconds
            await sup.start("db")
            sup._programs["web"].submit("start")  # what start() queues, unawaited
            db = sup._programs["db"].spec
            web = make_spec("web", SLEEP, depends_on=["db"], stop_timeout=3)
            api = make_spec("api", SLEEP, depends_on=["db"])
            changes = await sup.apply([db, web, api])
        assert changes.added == ("api",) and changes.changed == ("web",)
        status = sup.status()
        assert status["db"].state == "running" and not status["db"].ready
        assert status["web"].pid is None and status["api"].pid is None


def test_a_program_a_reload_adds_is_padded_as_the_others(tmp_path: Path) -> None:
    base = f"""
[program.longname]
command = {json.dumps(SLEEP)}
"""
    config = write(tmp_path, base)
    control = tmp_path / "ctl.sock"
    run = Supervise(tmp_path, "--control", str(control), "--loop", "asyncio", str(config))
    try:
        run.wait_for(r"longname: started")
        config.write_text(base + '[program.b]\ncommand = ["echo", "hi"]\nrestart = "never"\n')
        reload = subprocess.run(
            [PY, "-m", "fdloop.cli", "ctl", "--control", str(control), "reload"],
            capture_output=True, text=True, timeout=HANG, check=False)
        assert reload.returncode == 0, reload.stderr
        run.wait_for(r"^b +\| hi$", stream="stdout")
    finally:
        run.signal(signal.SIGTERM)
        run.finish()
    assert "b        | hi\n" in run.stdout, run.stdout
