"""The control socket of ``fdloop supervise``: a line-delimited JSON protocol over AF_UNIX.

:class:`ControlServer` listens on a stream socket (mode 0600) and serves each client in
a task of its own, through the loop's poll (non-blocking sockets awaited with anyio; no
thread). The first thing it does with a client is read its credentials (SO_PEERCRED):
a client whose uid is not the supervisor's — root included, unless the supervisor runs
as root — is answered with an error, logged, and dropped.

Protocol: the client sends one JSON object per line; each request gets one response
line, except ``tail``, which streams. Requests (``name`` is a program's name)::

    {"command": "status"}                      -> {"ok": true, "programs": [STATUS...]}
    {"command": "start",   "name": "web"}      -> {"ok": true}   (once spawned)
    {"command": "stop",    "name": "web"}      -> {"ok": true}   (once stopped)
    {"command": "restart", "name": "web"}      -> {"ok": true}
    {"command": "signal",  "name": "web", "signal": "HUP"}   (or a number)
                                               -> {"ok": true, "delivered": true|false}
    {"command": "tail",    "name": "web"}      -> {"ok": true, "tail": "web"}, then
                                                  {"program": "web", "line": "..."} ...
    {"command": "reload"}                      -> {"ok": true, "added": [...],
                                                  "removed": [...], "changed": [...],
                                                  "unchanged": [...]}
    {"command": "shutdown"}                    -> {"ok": true, "stopping": [...]}

A STATUS object has ``name``, ``state``, ``pid``, ``restarts``, ``uptime`` and
``last_exit`` (null, or ``{"pid", "returncode", "exit_code", "signal",
"core_dumped"}``), plus any field a newer Supervisor reports. Every failure is
``{"ok": false, "error": "..."}`` (an unknown command or program, a bad signal,
malformed JSON, a refused reload); the connection stays usable after it, except after
a refused uid or a request line longer than :data:`REQUEST_LIMIT`. ``delivered`` is
false when the program had no running instance. ``tail`` streams the program's output
lines (as the supervisor copies them) until the client closes the connection; a client
that falls :data:`TAIL_BUFFER` bytes behind, or does not take a response within
:data:`SEND_TIMEOUT` seconds, is dropped, so no client can hold the supervisor up.
A client that sends no complete request line for :data:`IDLE_TIMEOUT` seconds (connected
and silent, or a line trickling in) is dropped as well and its slot freed: the
:data:`MAX_CLIENTS` slots cannot be held by clients that do nothing. A client that
keeps one connection for several commands must send the next within that time.
After ``shutdown``'s response the connection stays open until every program is down
and the supervisor closes it. ``reload`` re-reads the config file; a config with an
error changes nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import json
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import SupervisorConfigError
from .control_socket import (
    REQUEST_LIMIT,
    SEND_TIMEOUT,
    ClientGone,
    peer_credentials,
    read_line,
    send,
    until_hangup,
    wait_readable,
)
from .program import signal_number

if TYPE_CHECKING:
    from .changes import Changes
    from .core import Supervisor

TAIL_BUFFER = 1024 * 1024
"""Bytes of output lines a ``tail`` client may be behind before it is dropped."""
REFUSAL_GRACE = 1.0
"""How long a refused client's request is waited for before its connection closes."""
MAX_CLIENTS = 64
"""Clients served at once; one more is told so and closed."""
IDLE_TIMEOUT = 60.0
"""Seconds a client may take to send its next request line (the first included) before
it is dropped, so that a silent client cannot keep one of the MAX_CLIENTS slots. Long
enough for a person typing into ``socat``; ``fdloop ctl`` sends at once."""
COMMANDS = ("status", "start", "stop", "restart", "signal", "tail", "reload", "shutdown")
NAMED = ("start", "stop", "restart", "signal", "tail")

class OutputTaps:
    """Who wants a program's output lines: the ``tail`` clients, by program name.

    The supervisor's output copier calls :meth:`publish` for each line; a listener is a
    plain function that never waits (it queues the line).
    """

    def __init__(self) -> None:
        self._listeners: dict[str, set[Callable[[bytes], None]]] = {}

    def listen(self, name: str, listener: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``listener(line)`` for each line of ``name``; returns the function that stops it."""
        self._listeners.setdefault(name, set()).add(listener)

        def stop() -> None:
            listeners = self._listeners.get(name)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[name]

        return stop

    def publisher(self, name: str) -> Callable[[bytes], None]:
        """A function that publishes one line of ``name`` (for the output copier)."""
        return lambda line: self.publish(name, line)

    def publish(self, name: str, line: bytes) -> None:
        for listener in tuple(self._listeners.get(name, ())):
            listener(line)


# -- JSON views --------------------------------------------------------------------------------


def to_json(value: object) -> Any:  # noqa: PLR0911 - one return per kind of value
    """Events, statuses and exit statuses as JSON-ready values (every dataclass field)."""
    if isinstance(value, enum.Enum):
        return value.name if isinstance(value, int) else str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line as a checked dict; ValueError with the message for the client."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed request (one JSON object per line): {exc}") from None
    if not isinstance(request, dict):
        raise ValueError(f"malformed request: expected a JSON object, got {type(request).__name__}")
    command = request.get("command")
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r} (expected one of {', '.join(COMMANDS)})")
    if command in NAMED and not isinstance(request.get("name"), str):
        raise ValueError(f"{command}: give the program's name as \"name\"")
    if command == "signal" and not isinstance(request.get("signal"), (str, int)):
        raise ValueError("signal: give the signal as \"signal\" (a name or a number)")
    return request


# -- the server ------------------------------------------------------------------------------


class ControlServer:
    """Serves the control protocol (see the module docstring) for one Supervisor.

    ``reload``: called for a ``reload`` request, returns what changed (None: reload is
    refused as not available). ``taps``: where ``tail`` finds output lines (None: tail
    is refused). ``log``: told about refused and dropped clients. ``send_timeout``:
    seconds a client may take none of an answer before it is dropped; ``idle_timeout``:
    seconds it may take to send its next request line (:data:`IDLE_TIMEOUT`).
    """

    def __init__(
        self, supervisor: Supervisor, sock: socket.socket, *,
        reload: Callable[[], Awaitable[Changes]] | None = None,
        taps: OutputTaps | None = None,
        log: Callable[[str], None] = lambda message: None,
        send_timeout: float = SEND_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._supervisor = supervisor
        self._sock = sock
        self._reload = reload
        self._taps = taps
        self._log = log
        self._send_timeout = send_timeout
        self._idle_timeout = idle_timeout
        self._reloading = anyio.Lock()
        self._clients = 0
        self._task_group: anyio.abc.TaskGroup | None = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                    ) -> None:
        """Accept and serve clients until cancelled; closes every client then."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            task_status.started()
            while True:
                await wait_readable(self._sock)
                try:
                    client, _ = self._sock.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        raise
                    self._log(f"control: cannot accept a client ({exc.strerror}); retrying")
                    await anyio.sleep(0.1)  # the backlog keeps it meanwhile
                    continue
                client.setblocking(False)
                task_group.start_soon(self._serve_client, client)

    async def _serve_client(self, client: socket.socket) -> None:
        self._clients += 1
        try:
            with client:
                if self._clients > MAX_CLIENTS:
                    await self._send(client, encode({"ok": False, "error": "too many clients"}))
                    return
                if await self._refused(client):
                    return
                await self._converse(client)
        except ClientGone:
            self._log(f"control: dropped a client that took no answer for "
                      f"{self._send_timeout} s")
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self._log(f"control: dropped a client after an error: {exc}")
        except Exception as exc:  # a bug of ours must cost one client, not the supervisor
            self._log(f"control: dropped a client after an internal error: {exc!r}")
        finally:
            self._clients -= 1

    async def _send(self, client: socket.socket, data: bytes) -> None:
        await send(client, data, self._send_timeout)

    async def _refused(self, client: socket.socket) -> bool:
        """Refuse (answer, log) a client whose uid is not ours; True if refused."""
        pid, uid, _gid = peer_credentials(client)
        ours = os.geteuid()
        if uid == ours:
            return False
        self._log(f"control: refused a client of uid {uid} (pid {pid}): only uid {ours} "
                  "may control this supervisor")
        await self._send(client, encode({
            "ok": False,
            "error": f"permission denied: this supervisor runs as uid {ours}, and only that "
            f"uid may control it (you are uid {uid})",
        }))
        # Take its request (briefly) before closing: closing on unread data would reset
        # the connection, and the client might never read why.
        with anyio.move_on_after(REFUSAL_GRACE):
            await read_line(client, bytearray())
        return True

    async def _converse(self, client: socket.socket) -> None:
        pending = bytearray()
        while True:
            line: bytes | None = None
            with anyio.move_on_after(self._idle_timeout) as idle:
                line = await read_line(client, pending)
            if idle.cancelled_caught:  # no whole line came in time
                self._log(f"control: dropped a client that sent no request for "
                          f"{self._idle_timeout} s")
                return
            if line is None:
                return
            if len(line) > REQUEST_LIMIT:
                await self._send(client, encode({
                    "ok": False, "error": f"request longer than {REQUEST_LIMIT} bytes"}))
                return
            if not line.strip():
                continue
            try:
                request = parse_request(line)
            except ValueError as exc:
                await self._send(client, encode({"ok": False, "error": str(exc)}))
                continue
            command = request["command"]
            if command == "tail":
                if await self._tail(client, request["name"]):
                    return  # it streamed until the client hung up (or was dropped)
                continue
            response = await self._answer(request)
            await self._send(client, encode(response))
            if command == "shutdown" and response["ok"]:
                await anyio.sleep_forever()  # closed with the server, once all are down

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        sup = self._supervisor
        command, name = request["command"], request.get("name")
        try:
            if command == "status":
                return {"ok": True, "programs": [to_json(item) for item in sup.status().values()]}
            if command == "start":
                await sup.start(name)
            elif command == "stop":
                await sup.stop(name)
            elif command == "restart":
                await sup.restart(name)
            elif command == "signal":
                assert name is not None
                signo = signal_number("signal", request["signal"])
                return {"ok": True, "delivered": sup.signal(name, signo), "signal": signo.name}
            elif command == "reload":
                return await self._reload_config()
            elif command == "shutdown":
                stopping = sup.names
                assert self._task_group is not None
                self._task_group.start_soon(self._shut_down)
                return {"ok": True, "stopping": stopping}
        except (LookupError, ValueError, TypeError, RuntimeError) as exc:
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            return {"ok": False, "error": text}
        return {"ok": True}

    async def _shut_down(self) -> None:
        try:
            await self._supervisor.shutdown()
        except Exception as exc:  # in the server's task group: must not end the server
            self._log(f"control: shutdown failed: {exc}")

    async def _reload_config(self) -> dict[str, Any]:
        if self._reload is None:
            return {"ok": False, "error": "reload: this supervisor has no config file to re-read"}
        async with self._reloading:  # one at a time, in the order asked
            try:
                changes = await self._reload()
            except SupervisorConfigError as exc:
                return {"ok": False, "error": f"reload refused, nothing changed: {exc}"}
        return {"ok": True, **changes.as_dict()}

    async def _tail(self, client: socket.socket, name: str) -> bool:
        """Stream ``name``'s lines until the client hangs up; False if refused at once."""
        if self._taps is None:
            await self._send(client, encode({
                "ok": False, "error": "tail: this supervisor does not capture output"}))
            return False
        if name not in self._supervisor.names:
            await self._send(client, encode({"ok": False, "error": f"no program called {name!r}"}))
            return False
        lines: deque[bytes] = deque()
        queued = [0]  # bytes in ``lines``
        wake = [anyio.Event()]
        with anyio.CancelScope() as dropped:

            def on_line(line: bytes) -> None:  # called by the output copier: never waits
                if queued[0] + len(line) > TAIL_BUFFER:
                    if not dropped.cancel_called:
                        self._log(f"control: dropped a tail of {name} that fell "
                                  f"{TAIL_BUFFER} bytes behind")
                        stop_listening()
                        dropped.cancel()
                    return
                lines.append(line)
                queued[0] += len(line)
                wake[0].set()

            stop_listening = self._taps.listen(name, on_line)
            failed: list[Exception] = []
            try:
                await self._send(client, encode({"ok": True, "tail": name}))
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(until_hangup, client, task_group.cancel_scope)
                    while True:
                        while not lines:
                            await wake[0].wait()
                            wake[0] = anyio.Event()
                        batch = _take_all(lines)
                        queued[0] -= sum(map(len, batch))
                        try:
                            await self._send(client, b"".join(
                                encode({"program": name, "line": line.rstrip(b"\n").decode(
                                    errors="replace")})
                                for line in batch
                            ))
                        except (OSError, ClientGone) as exc:
                            # Raised out of the task group it would come wrapped in an
                            # exception group, and be logged as an internal error.
                            failed.append(exc)
                            task_group.cancel_scope.cancel()
                            break
            finally:
                stop_listening()
            if failed:
                raise failed[0]
        return True


def _take_all(lines: deque[bytes]) -> list[bytes]:
    taken = list(lines)
    lines.clear()
    return taken


