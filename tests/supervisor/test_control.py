"""The control socket in-process: ControlServer, Supervisor.apply/replace/remove/signal.

Real child processes and a real AF_UNIX socket, on asyncio, uvloop and trio; the client
side is anyio's ``connect_unix``. The command-line client and ``fdloop supervise`` are
driven as a user would in test_ctl_cli.py. Every wait is bounded (HANG) only to turn a
hang into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from fdloop.errors import NoSuchProgram, SupervisorConfigError
from fdloop.supervisor import ProgramState, Supervisor, make_spec
from fdloop.supervisor.control import (
    MAX_CLIENTS,
    TAIL_BUFFER,
    ControlServer,
    OutputTaps,
    to_json,
)
from fdloop.supervisor.control_socket import REQUEST_LIMIT, bind_control_socket

HANG = 30.0
PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(1000)"]


class Client:
    """One control connection: send a request dict, read response dicts."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self._pending = b""

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def line(self) -> dict[str, Any] | None:
        with anyio.fail_after(HANG):
            while b"\n" not in self._pending:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return None
                self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    async def ask(self, **request: Any) -> dict[str, Any]:
        await self.send_raw(json.dumps(request).encode() + b"\n")
        reply = await self.line()
        assert reply is not None, f"no answer to {request}"
        return reply


@asynccontextmanager
async def served(
    tmp_path: Path, sup: Supervisor, *, taps: OutputTaps | None = None, reload: Any = None,
    logged: list[str] | None = None, send_timeout: float = 5.0, idle_timeout: float = HANG,
) -> AsyncIterator[Path]:
    path = tmp_path / "ctl.sock"
    sock = bind_control_socket(str(path))
    server = ControlServer(sup, sock, taps=taps, reload=reload, send_timeout=send_timeout,
                           idle_timeout=idle_timeout,
                           log=(logged.append if logged is not None else lambda m: None))
    try:
        async with anyio.create_task_group() as task_group:
            await task_group.start(server.serve)
            yield path
            task_group.cancel_scope.cancel()
    finally:
        sock.close()


@asynccontextmanager
async def client(path: Path) -> AsyncIterator[Client]:
    stream = await anyio.connect_unix(str(path))
    async with stream:
        yield Client(stream)


async def test_every_request_through_one_connection(tmp_path: Path) -> None:
    async with Supervisor() as sup:
        sup.add("sleeper", SLEEPER, stop_timeout=5)
        sup.add("hup", SLEEPER, restart="never")
        await sup.start()
        async with served(tmp_path, sup) as path, client(path) as ctl:
            status = await ctl.ask(command="status")
            assert status["ok"]
            assert [p["name"] for p in status["programs"]] == ["sleeper", "hup"]
            assert status["programs"][0]["state"] == "running"
            assert status["programs"][0]["pid"] == sup.status()["sleeper"].pid
            old_pid = status["programs"][0]["pid"]

            assert await ctl.ask(command="restart", name="sleeper") == {"ok": True}
            assert sup.status()["sleeper"].pid not in (None, old_pid)
            assert sup.status()["sleeper"].restarts == 1
            assert await ctl.ask(command="stop", name="sleeper") == {"ok": True}
            assert sup.status()["sleeper"].state == ProgramState.STOPPED
            assert await ctl.ask(command="start", name="sleeper") == {"ok": True}
            assert sup.status()["sleeper"].state == ProgramState.RUNNING

            reply = await ctl.ask(command="signal", name="hup", signal="HUP")
            assert reply == {"ok": True, "delivered": True, "signal": "SIGHUP"}
            with anyio.fail_after(HANG):
                while sup.status()["hup"].state != ProgramState.EXITED:
                    await anyio.sleep(0.01)
            last = sup.status()["hup"].last_exit
            assert last is not None and last.signal == signal.SIGHUP
            reply = await ctl.ask(command="signal", name="hup", signal=int(signal.SIGHUP))
            assert reply["ok"] and reply["delivered"] is False  # nothing runs: nothing sent

            # Bad input: each answered with an error, and the connection stays usable.
            for request, error in [
                ({"command": "frobnicate"}, "unknown command 'frobnicate'"),
                ({"command": "start", "name": "nope"}, "no program called 'nope'"),
                ({"command": "start"}, "give the program's name"),
                ({"command": "signal", "name": "sleeper", "signal": "SIGFOO"},
                 "no signal called 'SIGFOO'"),
                ({"command": "signal", "name": "sleeper", "signal": 0}, "signal"),
                ({"command": "signal", "name": "sleeper"}, "give the signal"),
                ({"command": "reload"}, "no config file"),
                ({"command": "tail", "name": "sleeper"}, "does not capture output"),
            ]:
                reply = await ctl.ask(**request)
                assert reply["ok"] is False and error in reply["error"], (request, reply)
            for raw, error in [
                (b"{not json\n", "malformed request"),
                (b"[1, 2]\n", "expected a JSON object"),
                (b"\xff\xfe\n", "malformed request"),
            ]:
                await ctl.send_raw(raw)
                reply = await ctl.line()
                assert reply is not None and reply["ok"] is False and error in reply["error"]
            assert sup.status()["sleeper"].state == ProgramState.RUNNING
            assert (await ctl.ask(command="status"))["ok"]


async def test_too_long_request_closes_the_connection(tmp_path: Path) -> None:
    async with Supervisor() as sup:
        sup.add("sleeper", SLEEPER)
        async with served(tmp_path, sup) as path, client(path) as ctl:
            await ctl.send_raw(b"x" * (REQUEST_LIMIT + 10))
            reply = await ctl.line()
            assert reply is not None and "longer than" in reply["error"]
            assert await ctl.line() is None
            async with client(path) as again:  # the server itself is fine
                assert (await again.ask(command="status"))["ok"]


async def test_tail_streams_lines_and_drops_a_reader_that_falls_behind(tmp_path: Path) -> None:
    taps = OutputTaps()
    logged: list[str] = []
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        async with served(tmp_path, sup, taps=taps, logged=logged) as path:
            async with client(path) as ctl:
                assert await ctl.ask(command="tail", name="web") == {"ok": True, "tail": "web"}
                taps.publish("web", b"hello\n")
                taps.publish("other", b"not for this tail\n")
                taps.publish("web", b"world\n")
                assert await ctl.line() == {"program": "web", "line": "hello"}
                assert await ctl.line() == {"program": "web", "line": "world"}
            with anyio.fail_after(HANG):  # the client hung up: its listener goes
                while taps._listeners:
                    await anyio.sleep(0.01)
            # A tail that never reads: the publisher never waits, and the tail is dropped
            # once it is TAIL_BUFFER bytes behind (its socket buffer full meanwhile).
            async with client(path) as stalled:
                assert (await stalled.ask(command="tail", name="web"))["ok"]
                line = b"x" * 999 + b"\n"
                with anyio.fail_after(HANG):
                    while not any("fell" in message for message in logged):
                        for _ in range(100):
                            taps.publish("web", line)
                        await anyio.sleep(0)
                assert f"{TAIL_BUFFER} bytes behind" in logged[-1]
                assert not taps._listeners
            async with client(path) as ctl:
                assert (await ctl.ask(command="status"))["ok"]


async def test_a_client_that_stops_reading_answers_is_dropped(tmp_path: Path) -> None:
    logged: list[str] = []
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        await sup.start()
        async with served(tmp_path, sup, logged=logged, send_timeout=0.2) as path:
            # A plain non-blocking socket: requests until the kernel takes no more, and
            # never a read of the answers.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
                stalled.connect(str(path))
                stalled.setblocking(False)
                requests = b'{"command": "status"}\n' * 1000
                with anyio.fail_after(HANG):
                    while not any("took no answer for 0.2 s" in line for line in logged):
                        with contextlib.suppress(BlockingIOError, BrokenPipeError,
                                                 ConnectionResetError):
                            stalled.send(requests)
                        # Meanwhile the supervisor and other clients are served as usual.
                        async with client(path) as other:
                            assert await other.ask(command="restart", name="web") == {"ok": True}
            async with client(path) as other:
                assert (await other.ask(command="status"))["ok"]


async def test_one_client_too_many_is_told_so(tmp_path: Path) -> None:
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        async with served(tmp_path, sup) as path, contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(client(path))
                       for _ in range(MAX_CLIENTS)]
            assert (await clients[-1].ask(command="status"))["ok"]  # all 64 accepted
            async with client(path) as extra:
                reply = await extra.line()
                assert reply == {"ok": False, "error": "too many clients"}
            assert (await clients[0].ask(command="status"))["ok"]


async def test_reload_applies_added_removed_changed_and_leaves_the_rest(tmp_path: Path) -> None:
    async def reload() -> Any:
        new = [
            make_spec("keep", SLEEPER),
            make_spec("change", SLEEPER, stop_timeout=3),
            make_spec("new", SLEEPER),
        ]
        return await sup.apply(new)

    async with Supervisor() as sup:
        for name in ("keep", "change", "gone"):
            sup.add(name, SLEEPER)
        await sup.start()
        before = {name: status.pid for name, status in sup.status().items()}
        async with served(tmp_path, sup, reload=reload) as path, client(path) as ctl:
            reply = await ctl.ask(command="reload")
        assert reply == {
            "ok": True, "added": ["new"], "removed": ["gone"], "changed": ["change"],
            "unchanged": ["keep"],
        }
        status = sup.status()
        assert sup.names == ["keep", "change", "new"]
        assert status["keep"].pid == before["keep"]
        assert status["change"].pid not in (None, before["change"])
        assert status["new"].state == ProgramState.RUNNING
        with pytest.raises(NoSuchProgram):
            await sup.start("gone")


async def test_refused_reload_changes_nothing(tmp_path: Path) -> None:
    async def reload() -> Any:
        raise SupervisorConfigError("supervise.toml: program.web.restart: bad")

    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        await sup.start()
        pid = sup.status()["web"].pid
        async with served(tmp_path, sup, reload=reload) as path, client(path) as ctl:
            reply = await ctl.ask(command="reload")
        assert reply["ok"] is False
        assert reply["error"] == (
            "reload refused, nothing changed: supervise.toml: program.web.restart: bad")
        assert sup.status()["web"].pid == pid


async def test_an_internal_error_costs_one_client_not_the_server(tmp_path: Path) -> None:
    async def reload() -> Any:
        raise ZeroDivisionError("a bug")

    logged: list[str] = []
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        async with served(tmp_path, sup, reload=reload, logged=logged) as path:
            async with client(path) as ctl:
                await ctl.send_raw(b'{"command": "reload"}\n')
                assert await ctl.line() is None  # dropped
            assert logged == [
                "control: dropped a client after an internal error: ZeroDivisionError('a bug')"]
            async with client(path) as ctl:
                assert (await ctl.ask(command="status"))["ok"]


async def test_replacing_the_only_program_does_not_end_wait(tmp_path: Path) -> None:
    async with Supervisor() as sup:
        sup.add("only", SLEEPER)
        await sup.start()
        ended: list[bool] = []

        async def waiter() -> None:
            await sup.wait()
            ended.append(True)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(waiter)
            assert await sup.replace(make_spec("only", SLEEPER, stop_timeout=2)) is True
            await anyio.sleep(0.05)
            assert not ended, "wait() took the replacement's gap for the end"
            assert sup.status()["only"].state == ProgramState.RUNNING
            await sup.shutdown()
        assert ended
        assert sup.status()["only"].state == ProgramState.STOPPED


async def test_library_bad_input() -> None:
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        sup.add("down", SLEEPER)
        await sup.start("web")
        with pytest.raises(ValueError, match="sig: no signal called 'NOPE'"):
            sup.signal("web", "NOPE")
        with pytest.raises(NoSuchProgram):
            sup.signal("nope", "TERM")
        assert sup.signal("down", "TERM") is False
        with pytest.raises(TypeError, match="spec must be a ProgramSpec"):
            await sup.replace("web")  # type: ignore[arg-type]
        with pytest.raises(NoSuchProgram):
            await sup.replace(make_spec("nope", SLEEPER))
        with pytest.raises(ValueError, match="given twice"):
            await sup.apply([make_spec("a", SLEEPER), make_spec("a", SLEEPER)])
        with pytest.raises(TypeError, match=r"specs\[0\] must be a ProgramSpec"):
            await sup.apply(["web"])  # type: ignore[list-item]
        assert sup.names == ["web", "down"]  # a refused apply changed nothing
        with pytest.raises(NoSuchProgram):
            await sup.remove("nope")
        await sup.remove("down")
        assert sup.names == ["web"]


async def test_removed_program_is_stopped_before_remove_returns() -> None:
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        await sup.start()
        pid = sup.status()["web"].pid
        assert pid is not None
        await sup.remove("web")
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already: it is no child of ours any more


def test_to_json_of_status_and_exit() -> None:
    from fdloop.primitives.exitstatus import ExitStatus

    status = ExitStatus(12, -9, signal=9)
    assert to_json(status)["returncode"] == -9
    assert to_json(signal.SIGTERM) == "SIGTERM"
    assert to_json(ProgramState.GAVE_UP) == "gave-up"
    assert to_json({"a": (1, 2.0000001), 3: None}) == {"a": [1, 2.0], "3": None}


# -- the socket file --------------------------------------------------------------------------


def test_existing_control_paths(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    # A live listener there: refused, and left alone.
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(1)
    try:
        with pytest.raises(SupervisorConfigError, match="another supervisor is listening"):
            bind_control_socket(str(path))
        assert path.exists()
    finally:
        live.close()
    # Now stale (nobody listens): replaced.
    sock = bind_control_socket(str(path))
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        sock.close()
        path.unlink()
    # Not a socket: refused, untouched.
    path.write_text("precious")
    with pytest.raises(SupervisorConfigError, match="exists and is not a socket"):
        bind_control_socket(str(path))
    assert path.read_text() == "precious"
    with pytest.raises(SupervisorConfigError, match="cannot listen there"):
        bind_control_socket(str(tmp_path / "no-such-dir" / "ctl.sock"))


def test_a_path_longer_than_sun_path_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "ctl.sock"
    assert len(str(path)) > 108
    sock = bind_control_socket(str(path))
    try:
        assert path.is_socket()
        with pytest.raises(SupervisorConfigError, match="another supervisor"):
            bind_control_socket(str(path))
    finally:
        sock.close()
