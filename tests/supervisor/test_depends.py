"""``depends_on``: start after the dependencies are ready, stop in reverse, bad graphs.

Order is checked by the order of events, never by a stopwatch.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from fdloop.errors import SupervisorConfigError
from fdloop.supervisor import Event, Supervisor, parse_config
from fdloop.supervisor.config import tomllib

from .event_helpers import steps, until
from .supervise_harness import Supervise

HANG = 20.0
PY = sys.executable
PEER = str(Path(__file__).with_name("notify_peer.py"))
SLEEP = [PY, "-c", "import time; time.sleep(1000)"]


def peer(*words: str) -> list[str]:
    return [PY, PEER, *words]


def kind_is(kind: str, name: str) -> Callable[[Event], bool]:
    return lambda event: event.kind == kind and event.name == name


async def test_start_waits_for_ready_and_stop_goes_in_reverse() -> None:
    events_seen: list[Event] = []
    async with Supervisor() as sup:
        # Added dependants first: the order comes from depends_on, not from add().
        sup.add("web", SLEEP, depends_on=["db", "migrate"])
        sup.add("migrate", [PY, "-c", "pass"], ready="exit", depends_on=["db"])
        sup.add("db", peer("sleep:0.2", "send:READY=1"), ready="notify")
        events = sup.events()
        await sup.start()
        events_seen += await until(events, kind_is("started", "web"))
        order = steps(events_seen)
        assert order.index("db:ready") < order.index("migrate:started")
        assert order.index("migrate:ready") < order.index("web:started")
        assert "web:started" not in order[: order.index("db:ready")]
    events_seen += [event async for event in events]
    order = steps(events_seen)
    # web is down before db is asked to stop (migrate had already exited).
    assert order.index("web:stopped") < order.index("db:stopping")


async def test_stop_all_stops_dependants_first() -> None:
    async with Supervisor() as sup:
        sup.add("db", SLEEP)
        sup.add("cache", SLEEP, depends_on=["db"])
        sup.add("web", SLEEP, depends_on=["cache", "db"])
        events = sup.events()
        await sup.start()
        await sup.stop()
        seen = steps(await until(events, kind_is("stopped", "db")))
        assert seen.index("web:stopped") < seen.index("cache:stopping")
        assert seen.index("cache:stopped") < seen.index("db:stopping")


async def test_starting_a_dependant_starts_its_dependencies() -> None:
    async with Supervisor() as sup:
        sup.add("db", peer("send:READY=1"), ready="notify")
        sup.add("web", SLEEP, depends_on=["db"])
        sup.add("other", SLEEP)
        await sup.start("web")
        status = sup.status()
        assert status["db"].state == "running" and status["db"].ready
        assert status["web"].state == "running"
        assert status["other"].state == "stopped"


async def test_dependency_given_up_fails_the_dependant() -> None:
    # sh, not python: a run that lasts healthy_after (1 s, a slow interpreter start)
    # would reset the restart count, and db would never give up.
    with anyio.fail_after(HANG):
        async with Supervisor() as sup:
            sup.add("db", ["sh", "-c", "exit 1"], ready="exit", max_restarts=1, backoff=0.01)
            sup.add("web", SLEEP, depends_on=["db"])
            events = sup.events()
            await sup.start()
            seen = await until(events, kind_is("exited", "web"))
            assert seen[-1].error is not None and "'db'" in seen[-1].error
            assert "web:started" not in steps(seen)
            assert sup.status()["web"].state == "exited"


async def test_shutdown_while_a_dependant_waits() -> None:
    # db never becomes ready: leaving the block must not hang on web's pending start.
    with anyio.fail_after(HANG):
        async with Supervisor() as sup:
            sup.add("db", SLEEP, ready="notify")
            sup.add("web", SLEEP, depends_on=["db"])
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(sup.start)
                await anyio.sleep(0.1)
                task_group.cancel_scope.cancel()
            assert sup.status()["web"].state == "stopped"


def test_cycle_is_refused_naming_the_programs() -> None:
    sup = Supervisor()
    sup.add("a", SLEEP, depends_on=["b"])
    sup.add("b", SLEEP, depends_on=["c"])
    with pytest.raises(ValueError, match=r"a dependency cycle: a -> b -> c -> a"):
        sup.add("c", SLEEP, depends_on=["a"])
    assert sup.names == ["a", "b"]


async def test_unknown_dependency_is_refused_before_anything_starts() -> None:
    sup = Supervisor()
    sup.add("web", SLEEP, depends_on=["db"])
    with pytest.raises(ValueError, match=r"web\.depends_on: no program called 'db'"):
        async with sup:
            raise AssertionError("entered")


BAD_DEPENDS_ON = [
    ("db", TypeError, "list of program names"),
    (None, TypeError, "list of program names"),
    ([1], TypeError, r"depends_on\[0\] must be a str"),
    ([""], ValueError, r"depends_on\[0\]"),
    (["web"], ValueError, "cannot depend on itself"),
    (["db", "db"], ValueError, "listed twice"),
]


def test_bad_depends_on() -> None:
    sup = Supervisor()
    for value, error, message in BAD_DEPENDS_ON:
        with pytest.raises(error, match=message):
            sup.add("web", SLEEP, depends_on=value)  # type: ignore[arg-type]
        assert sup.names == [], value


CONFIG_GRAPH_ERRORS = [
    ('[program.web]\ncommand = "true"\ndepends_on = ["db"]\n',
     r"program\.web\.depends_on: no program called 'db'"),
    ('[program.a]\ncommand = "true"\ndepends_on = ["b"]\n'
     '[program.b]\ncommand = "true"\ndepends_on = ["a"]\n',
     r"program\.a\.depends_on: a dependency cycle: a -> b -> a"),
]


def test_config_graph_errors() -> None:
    for tables, message in CONFIG_GRAPH_ERRORS:
        with pytest.raises(SupervisorConfigError, match=message):
            parse_config(tomllib.loads(tables))


def test_fdloop_supervise_with_readiness_and_dependencies(tmp_path: Path) -> None:
    # The command as a user runs it: a TOML file with ready/depends_on; the log shows db
    # ready before web starts, and on SIGTERM web stopped before db is asked to stop.
    config = tmp_path / "supervise.toml"
    config.write_text(
        f'[program.web]\ncommand = ["sleep", "1000"]\ndepends_on = ["db"]\n'
        f'[program.db]\ncommand = ["{PY}", "{PEER}", "sleep:0.2", "send:READY=1|STATUS=up"]\n'
        'ready = "notify"\nready_timeout = 30\n'
    )
    # One loop: the in-process tests above run the same code on all three.
    run = Supervise(tmp_path, "--loop", "trio", str(config))
    try:
        run.wait_for(r"web: started")
        run.signal(signal.SIGTERM)
        assert run.finish() == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    lines = [line.split(" ", 2)[-1] if line[:1].isdigit() else line
             for line in run.stderr.splitlines()]
    text = "\n".join(lines)

    def at(fragment: str) -> int:
        assert fragment in text, text
        return text.index(fragment)

    assert at("db: ready") < at("web: started")
    assert at("db: status: up") < at("web: started")
    assert at("web: stopped") < at("db: stopping")
