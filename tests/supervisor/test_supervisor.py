"""fdloop.Supervisor in-process, with real child processes, on asyncio, uvloop and trio.

No timing assertions: every wait is bounded by a generous timeout only to turn a hang
into a failure. Parallel stopping is checked by the order of events (every ``stopping``
before any ``stopped``), not by a stopwatch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import anyio
import pytest

import fdloop
from fdloop.backends.linux import subreaper
from fdloop.supervisor import Event, EventKind, ProgramState, Supervisor

from .event_helpers import until
from .supervise_harness import LOOP_PARAMS

HANG = 60.0
"""Seconds after which a wait counts as a hang (never reached by a passing test)."""
FAST = (0.01, 0.05)
"""A backoff that keeps restart tests short."""
PY = sys.executable
IGNORE_TERM = [
    PY, "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(1000)",
]


def kind_is(kind: str, name: str | None = None) -> Callable[[Event], bool]:
    return lambda event: event.kind == kind and (name is None or event.name == name)


def kinds(events: list[Event], name: str) -> list[str]:
    return [str(event.kind) for event in events if event.name == name]


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"restart": "sometimes"}, ValueError, "restart"),
        ({"restart": 1}, TypeError, "restart"),
        ({"backoff": (2, 1)}, ValueError, "backoff"),
        ({"backoff": (-1, 1)}, ValueError, "backoff"),
        ({"backoff": "fast"}, TypeError, "backoff"),
        ({"max_restarts": -1}, ValueError, "max_restarts"),
        ({"max_restarts": 1.5}, TypeError, "max_restarts"),
        ({"stop_signal": "SIGNOPE"}, ValueError, "stop_signal"),
        ({"stop_signal": 0}, ValueError, "stop_signal"),
        ({"stop_timeout": -1}, ValueError, "stop_timeout"),
        ({"stop_timeout": float("nan")}, ValueError, "stop_timeout"),
        ({"env": {"A": 1}}, TypeError, "env"),
        ({"env": ["A=1"]}, TypeError, "env"),
        ({"cwd": "/no/such/directory"}, ValueError, "cwd"),
    ],
)
def test_add_refuses_bad_options_naming_them(
    kwargs: dict[str, object], error: type[Exception], names: str
) -> None:
    sup = Supervisor()
    with pytest.raises(error, match=names):
        sup.add("prog", ["true"], **kwargs)  # type: ignore[arg-type]
    assert sup.names == []  # nothing was added


@pytest.mark.parametrize(
    ("name", "argv", "error", "names"),
    [
        ("", ["true"], ValueError, "name"),
        (3, ["true"], TypeError, "name"),
        ("prog", [], ValueError, "argv"),
        ("prog", ["true", 3], TypeError, r"argv\[1\]"),
        ("prog", "unclosed 'quote", ValueError, "argv"),
        ("prog", None, TypeError, "argv"),
    ],
)
def test_add_refuses_bad_name_or_argv(
    name: object, argv: object, error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names):
        Supervisor().add(name, argv)  # type: ignore[arg-type]


def test_add_refuses_a_duplicate_name() -> None:
    sup = Supervisor()
    sup.add("prog", "true")
    with pytest.raises(ValueError, match=r"name: .*'prog'"):
        sup.add("prog", "false")
    assert sup.names == ["prog"]


def test_constructor_flags_must_be_bools() -> None:
    with pytest.raises(TypeError, match="handle_signals"):
        Supervisor(handle_signals=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="subreaper"):
        Supervisor(subreaper="yes")  # type: ignore[arg-type]


def test_kinds_and_states_accept_any_separator() -> None:
    assert EventKind.GAVE_UP == "gave-up" == EventKind.GAVE_UP
    assert EventKind.GAVE_UP == "gave_up"
    assert EventKind.GAVE_UP == "gave up"
    assert EventKind.GAVE_UP != "started"
    assert ProgramState.GAVE_UP == "gave_up"


async def test_requests_need_the_context_and_known_names() -> None:
    sup = Supervisor()
    sup.add("prog", "true")
    with pytest.raises(RuntimeError, match="async with"):
        await sup.start()
    async with sup:
        with pytest.raises(fdloop.FdloopError, match="nope"):
            await sup.start("nope")
        with pytest.raises(KeyError, match=r"^name: no program called 'nope'$"):
            await sup.stop("nope")
        with pytest.raises(ValueError, match="nope"):
            await sup.restart("nope")
        with pytest.raises(TypeError, match="name"):
            await sup.start(3)  # type: ignore[arg-type]


# -- restart policy and backoff ---------------------------------------------------------------


async def test_crash_is_restarted_with_backoff_then_given_up() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        # sh, not python: a run must stay shorter than 1 s (healthy_after) even on a busy box
        sup.add("crash", ["sh", "-c", "exit 3"], backoff=FAST, max_restarts=2)
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
        statuses = await sup.wait()
    assert kinds(seen, "crash") == [
        "started", "exited", "restarting",
        "started", "exited", "restarting",
        "started", "exited", "gave-up",
    ]
    delays = [event.delay for event in seen if event.kind == "restarting"]
    assert delays == [0.01, 0.02]  # doubling from the initial delay
    exits = [event.status for event in seen if event.kind == "exited"]
    assert all(status is not None and status.exit_code == 3 for status in exits)
    assert len({event.pid for event in seen if event.kind == "started"}) == 3
    crash = statuses["crash"]
    assert crash.state == ProgramState.GAVE_UP
    assert crash.restarts == 2
    assert crash.last_exit is not None and crash.last_exit.returncode == 3
    assert crash.pid is None and crash.uptime is None
    assert not sup.all_clean()


async def test_backoff_stops_growing_at_its_maximum() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("crash", "false", backoff=(0.01, 0.03), max_restarts=4)
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
    assert [e.delay for e in seen if e.kind == "restarting"] == [0.01, 0.02, 0.03, 0.03]


async def test_on_failure_leaves_a_clean_exit_down() -> None:
    async with Supervisor() as sup:
        sup.add("ok", [PY, "-c", "pass"], backoff=FAST)
        await sup.start()
        statuses = await sup.wait()
        assert statuses["ok"].state == ProgramState.EXITED
        assert statuses["ok"].restarts == 0
        assert statuses["ok"].last_exit is not None
        assert statuses["ok"].last_exit.exit_code == 0
        assert sup.all_clean()


async def test_never_does_not_restart_a_failure_and_it_is_not_clean() -> None:
    async with Supervisor() as sup:
        sup.add("bad", ["sh", "-c", "exit 9"], restart="never")
        await sup.start()
        statuses = await sup.wait()
    assert statuses["bad"].state == "exited"
    assert statuses["bad"].last_exit is not None
    assert statuses["bad"].last_exit.exit_code == 9
    assert not sup.all_clean()


async def test_always_restarts_a_clean_exit_too() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("cron", "true", restart="always", backoff=FAST, max_restarts=1)
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
    assert kinds(seen, "cron") == [
        "started", "exited", "restarting", "started", "exited", "gave-up",
    ]


async def test_killed_by_a_signal_counts_as_failure() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("victim", ["sh", "-c", "kill -KILL $$"], backoff=FAST, max_restarts=0)
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
    exited = [e for e in seen if e.kind == "exited"]
    assert exited[0].status is not None
    assert exited[0].status.signal == signal.SIGKILL
    assert exited[0].status.returncode == -signal.SIGKILL


async def test_a_program_that_cannot_start_is_reported_and_given_up() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("ghost", ["/no/such/program"], backoff=FAST, max_restarts=1)
        await sup.start()
        seen = await until(events, kind_is("gave-up"))
    failures = [e for e in seen if e.kind == "exited"]
    assert len(failures) == 2
    assert all(e.error is not None and "/no/such/program" in e.error for e in failures)
    assert "started" not in kinds(seen, "ghost")


# -- requests --------------------------------------------------------------------------------


async def test_status_stop_and_start_again() -> None:
    async with Supervisor() as sup:
        sup.add("sleeper", ["sleep", "1000"], env={"FDLOOP_TEST": "1"}, cwd="/")
        assert sup.status()["sleeper"].state == "stopped"
        await sup.start()
        status = sup.status()["sleeper"]
        assert status.state == ProgramState.RUNNING
        assert status.pid is not None and status.pid > 0
        assert status.uptime is not None and status.uptime >= 0
        assert b"FDLOOP_TEST=1\0" in await _environ_after_exec(status.pid)
        assert os.readlink(f"/proc/{status.pid}/cwd") == "/"
        await sup.stop("sleeper")
        stopped = sup.status()["sleeper"]
        assert stopped.state == ProgramState.STOPPED
        assert stopped.pid is None
        assert stopped.last_exit is not None
        assert stopped.last_exit.signal == signal.SIGTERM
        assert not os.path.exists(f"/proc/{status.pid}/stat") or _ppid(status.pid) != os.getpid()
        await sup.start("sleeper")
        again = sup.status()["sleeper"]
        assert again.state == ProgramState.RUNNING and again.pid != status.pid
        await sup.stop()  # every program
        assert (await sup.wait())["sleeper"].state == "stopped"
        assert sup.all_clean()


async def test_stop_uses_stop_signal() -> None:
    async with Supervisor() as sup:
        sup.add("sleeper", ["sleep", "1000"], stop_signal="SIGINT")
        await sup.start()
        await sup.stop("sleeper")
        last = sup.status()["sleeper"].last_exit
        assert last is not None and last.signal == signal.SIGINT


async def test_stop_escalates_to_sigkill_after_stop_timeout() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("stubborn", IGNORE_TERM, stop_timeout=0.5, stdout=fdloop.DEVNULL)
        await sup.start()
        await until(events, kind_is("started"))
        await _until_ignoring_term(sup.status()["stubborn"].pid)
        await sup.stop("stubborn")
        last = sup.status()["stubborn"].last_exit
        assert last is not None and last.signal == signal.SIGKILL


async def test_stop_all_stops_in_parallel() -> None:
    names = ["a", "b", "c"]
    async with Supervisor() as sup:
        events = sup.events()
        for name in names:
            sup.add(name, IGNORE_TERM, stop_timeout=0.5, stdout=fdloop.DEVNULL)
        await sup.start()
        for name in names:
            await _until_ignoring_term(sup.status()[name].pid)
        await sup.stop()
        stopped: list[str] = []
        seen = await until(events, lambda e: _count(stopped, e, "stopped") == len(names))
    order = [str(e.kind) for e in seen if e.kind in ("stopping", "stopped")]
    # Parallel: all three were asked before any of them was done waiting out its timeout.
    assert order == ["stopping"] * 3 + ["stopped"] * 3


async def test_stop_during_backoff_cancels_the_restart() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("crash", "false", backoff=(1000, 1000))
        await sup.start()
        await until(events, kind_is("restarting"))
        assert sup.status()["crash"].state == ProgramState.BACKOFF
        await sup.stop("crash")
        seen = await until(events, kind_is("stopped"))
        assert seen[-1].status is None  # nothing was running
        status = sup.status()["crash"]
        assert status.state == "stopped" and status.restarts == 0
        assert status.last_exit is not None and status.last_exit.exit_code == 1
        assert (await sup.wait())["crash"].state == "stopped"


async def test_status_shows_the_pid_while_stopping() -> None:
    async with Supervisor() as sup, anyio.create_task_group() as tg:
        events = sup.events()
        sup.add("stubborn", IGNORE_TERM, stop_timeout=HANG, stdout=fdloop.DEVNULL)
        await sup.start()
        pid = sup.status()["stubborn"].pid
        await _until_ignoring_term(pid)
        tg.start_soon(sup.stop, "stubborn")
        await until(events, kind_is("stopping"))
        stopping = sup.status()["stubborn"]
        assert stopping.state == "stopping" and stopping.pid == pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # rather than waiting out stop_timeout
    assert sup.status()["stubborn"].state == "stopped"


async def test_restart_replaces_the_instance_and_revives_a_given_up_program() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("sleeper", ["sleep", "1000"])
        sup.add("crash", "false", max_restarts=0)
        await sup.start()
        first = sup.status()["sleeper"].pid
        await until(events, kind_is("gave-up", "crash"))
        await sup.restart("sleeper")
        status = sup.status()["sleeper"]
        assert status.state == "running" and status.pid != first
        assert status.restarts == 1
        await sup.restart("crash")
        seen = await until(events, lambda e: e.kind == "gave-up" and e.restarts == 1)
        assert kinds(seen, "crash")[-3:] == ["started", "exited", "gave-up"]


async def test_leaving_the_block_stops_everything_and_ends_event_iteration() -> None:
    async with Supervisor() as sup:
        events = sup.events()
        sup.add("one", ["sleep", "1000"])
        sup.add("two", ["sleep", "1000"])
        await sup.start()
        pids = [status.pid for status in sup.status().values()]
    rest = [event async for event in events]  # ends: the supervisor closed
    assert sorted(e.name for e in rest if e.kind == "stopped") == ["one", "two"]
    for pid in pids:
        assert pid is not None
        assert not os.path.exists(f"/proc/{pid}/stat") or _ppid(pid) != os.getpid()


async def test_events_replay_the_recent_past_to_a_late_subscriber() -> None:
    async with Supervisor() as sup:
        sup.add("ok", "true")
        await sup.start()
        await sup.wait()
        late = sup.events()
        first = await late.next(timeout=HANG)
        assert first is not None and first.kind == "started" and first.name == "ok"


async def test_cancelling_the_host_scope_still_stops_children() -> None:
    with anyio.move_on_after(0.3):
        async with Supervisor() as sup:
            sup.add("sleeper", ["sleep", "1000"])
            await sup.start()
            await anyio.sleep(HANG)
    # The leak fixture fails this test if the sleeper is still our child.
    assert sup.status()["sleeper"].state == "stopped"


# -- the subreaper's reaping, against real zombies ----------------------------------------


def _zombie(code: int) -> int:
    """A child of ours that has exited with ``code`` and is not reaped yet."""
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {code}"], os.environ)
    with_timeout = time.monotonic() + HANG
    while _state(pid) != "Z":
        assert time.monotonic() < with_timeout, "the child never became a zombie"
        time.sleep(0.005)
    return pid


@pytest.mark.parametrize("managed_first", [True, False])
def test_reaping_spares_managed_zombies_even_when_they_come_first(managed_first: bool) -> None:
    # waitid(P_ALL, WNOWAIT) reports one zombie only; whichever of the two it picks, the
    # unmanaged one must be reaped and the managed one left for its own waiter.
    first, second = _zombie(3), _zombie(4)
    managed, unmanaged = (first, second) if managed_first else (second, first)
    try:
        reaped = subreaper.reap_unmanaged({managed})
        assert reaped == [(unmanaged, 3 if unmanaged == first else 4)]
        assert _state(managed) == "Z"  # still there, status intact
        assert _state(unmanaged) is None
        assert subreaper.reap_unmanaged({managed}) == []
    finally:
        for pid in (first, second):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def test_reaping_leaves_running_children_alone() -> None:
    pid = os.posix_spawn("/bin/sleep", ["sleep", "1000"], os.environ)
    try:
        assert subreaper.reap_unmanaged(set()) == []
        assert _state(pid) not in (None, "Z")
        assert pid in subreaper.unmanaged_children(set())
        assert pid not in subreaper.unmanaged_children({pid})
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


# -- signals and orphans --------------------------------------------------------------------
#
# Signals sent to the whole process reach any thread that does not block them. anyio's
# pytest plugin runs trio in guest mode, whose I/O thread predates any SignalFD, so
# these tests run the Supervisor in a fresh interpreter (anyio.run, one thread) on each
# loop; the body still uses the class directly and asserts inside.

SCRIPT = """
import os, signal, sys
import anyio
from fdloop.supervisor import Supervisor
from fdloop.backends.linux import subreaper

async def until(events, kind):
    seen = []
    with anyio.fail_after({hang}):
        async for event in events:
            seen.append(event)
            if event.kind == kind:
                return seen
    raise AssertionError("events ended")

async def main():
{body}

loop = sys.argv[1]
anyio.run(
    main, backend="trio" if loop == "trio" else "asyncio",
    backend_options={{"use_uvloop": True}} if loop == "uvloop" else {{}},
)
print("OK")
"""


def run_script(body: str, loop: str) -> None:
    code = SCRIPT.format(hang=HANG, body=textwrap.indent(textwrap.dedent(body), "    "))
    result = subprocess.run(
        [PY, "-c", code, loop], capture_output=True, text=True, timeout=HANG * 2, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (
        result.stdout + result.stderr
    )


@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_signals_are_read_through_signalfd_without_python_handlers(loop: str) -> None:
    run_script(
        """
        watched = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        before = {signo: signal.getsignal(signo) for signo in watched}
        async with Supervisor(handle_signals=True) as sup:
            events = sup.events()
            sup.add("sleeper", ["sleep", "1000"])
            await sup.start()
            first = sup.status()["sleeper"].pid
            assert {s: signal.getsignal(s) for s in watched} == before
            os.kill(os.getpid(), signal.SIGHUP)
            await until(events, "started")
            await until(events, "started")
            assert sup.status()["sleeper"].pid != first
            assert sup.status()["sleeper"].restarts == 1
            os.kill(os.getpid(), signal.SIGTERM)
            statuses = await sup.wait()
            assert statuses["sleeper"].state == "stopped", statuses
            seen = await until(events, "stopped")
            assert any(e.kind == "signal" and e.signal == signal.SIGTERM for e in seen)
            try:
                await sup.start()
            except RuntimeError as exc:
                assert "shutting down" in str(exc)
            else:
                raise AssertionError("start() during shutdown should fail")
        assert {s: signal.getsignal(s) for s in watched} == before
        assert not subreaper.children(), subreaper.children()
        """,
        loop,
    )


@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_subreaper_reaps_orphans_but_never_a_managed_child(loop: str) -> None:
    run_script(
        """
        assert not subreaper.is_child_subreaper()
        async with Supervisor(subreaper=True) as sup:
            assert subreaper.is_child_subreaper()
            events = sup.events()
            # "parent" exits at once; its child (exit 5 later) becomes our orphan.
            # "seven" exits at about the same time: its ProcessFD must still get 7.
            sup.add("parent", ["sh", "-c", "sh -c 'sleep 0.3; exit 5' & exit 0"],
                    restart="never")
            sup.add("seven", ["sh", "-c", "sleep 0.3; exit 7"], restart="never")
            await sup.start()
            seen = await until(events, "reaped")
            statuses = await sup.wait()
        reaped = [e for e in seen if e.kind == "reaped"]
        assert reaped[0].returncode == 5, reaped
        seven = statuses["seven"].last_exit
        assert seven is not None and seven.known and seven.exit_code == 7, seven
        assert not subreaper.is_child_subreaper()
        assert not subreaper.children(), subreaper.children()
        """,
        loop,
    )


@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_subreaper_spares_children_spawned_elsewhere_with_fdloop(loop: str) -> None:
    run_script(
        """
        import fdloop
        async with Supervisor(subreaper=True) as sup:
            events = sup.events()
            other = fdloop.spawn(["sh", "-c", "exit 6"])  # not a supervised program
            while open(f"/proc/{other.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                await anyio.sleep(0.01)
            # An orphan now makes the supervisor sweep while "other" is a zombie.
            sup.add("parent", ["sh", "-c", "sh -c 'sleep 0.2; exit 5' & exit 0"],
                    restart="never")
            await sup.start()
            seen = await until(events, "reaped")
            assert other.pid not in [e.pid for e in seen if e.kind == "reaped"], seen
            status = await other.wait()
            # rusage exists only when the ProcessFD reaped the child itself.
            assert status.exit_code == 6 and status.rusage is not None, status
            await other.aclose()
        """,
        loop,
    )


@pytest.mark.parametrize("loop", LOOP_PARAMS)
def test_subreaper_stops_orphans_still_running_at_shutdown(loop: str) -> None:
    run_script(
        """
        async with Supervisor(subreaper=True) as sup:
            events = sup.events()
            sup.add("daemonizer", ["sh", "-c", "sleep 1000 & exit 0"], restart="never")
            await sup.start()
            await until(events, "exited")
            orphans = subreaper.unmanaged_children(set())
            assert orphans, "the orphan should have been adopted by this process"
        seen = [e async for e in events]
        assert [e.pid for e in seen if e.kind == "reaped"] == orphans, seen
        assert not subreaper.children(), subreaper.children()
        """,
        loop,
    )


# -- helpers ----------------------------------------------------------------------------------


def _count(found: list[str], event: Event, kind: str) -> int:
    if event.kind == kind:
        found.append(event.name)
    return len(found)


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return -1
    return int(stat[stat.rindex(")") + 2 :].split()[1])


async def _environ_after_exec(pid: int) -> bytes:
    # The spawned process may still be between fork and exec for a moment; its environ
    # is empty until exec has built the new one.
    with anyio.fail_after(HANG):
        while True:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                data = environ.read()
            if data:
                return data
            await anyio.sleep(0.01)


async def _until_ignoring_term(pid: int | None) -> None:
    """Wait until the child has set SIGTERM to SIG_IGN (read from /proc, no timing)."""
    assert pid is not None
    bit = 1 << (signal.SIGTERM - 1)
    with anyio.fail_after(HANG):
        while True:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("SigIgn:") and int(line.split()[1], 16) & bit:
                        return
            await anyio.sleep(0.01)


async def test_wait_does_not_return_while_programs_restart() -> None:
    returned: list[bool] = []
    async with Supervisor() as sup, anyio.create_task_group() as tg:
        sup.add("one", ["sleep", "1000"])
        sup.add("two", ["sleep", "1000"])
        await sup.start()

        async def waiter() -> None:
            await sup.wait()
            returned.append(True)

        tg.start_soon(waiter)
        for _ in range(3):
            await sup.restart()
            await anyio.sleep(0)
        assert returned == []
        await sup.stop()
    assert returned == [True]
