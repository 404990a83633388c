"""``fdloop supervise``'s side of ``fdloop ctl``: the control socket, reload, JSON events.

:class:`Remote` is made before anything starts (:meth:`Remote.bind` refuses a control
path that is live or not a socket, so a second supervisor of the same config exits 2),
then serves :class:`~fdloop.supervisor.control.ControlServer` for the running
Supervisor. ``reload`` re-reads the config with the same command-line options (a
config with an error is refused whole) and hands the new programs to
:meth:`Supervisor.apply`; programs it adds, or whose log files change, get pipes and
copiers of their own. :func:`event_record` is one event as ``--events json`` writes it.

The default control socket is ``.fdloop.sock`` beside the config file (``fdloop ctl``
looks for it in the current directory); ``-- CMD`` mode has one only with ``--control``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import SupervisorConfigError
from .changes import Changes
from .control import ControlServer, OutputTaps, to_json
from .control_socket import bind_control_socket
from .ctl import DEFAULT_CONTROL
from .events import Event, EventKind

if TYPE_CHECKING:
    from .config import Config
    from .core import Supervisor
    from .output import LineDestination, ProgramOutputs
    from .sink import LineSink

JSON_EVENTS: ContextVar[bool] = ContextVar("fdloop_supervise_json_events", default=False)
"""``--events json``: every line ``fdloop supervise`` writes to stderr is a JSON object."""

_STATE_AFTER = {
    EventKind.STARTED: "running", EventKind.STOPPING: "stopping",
    EventKind.STOPPED: "stopped", EventKind.RESTARTING: "backoff",
    EventKind.GAVE_UP: "gave-up",
}


def event_record(event: Event, supervisor: Supervisor | None = None) -> dict[str, Any]:
    """One event as a JSON-ready dict: ``time``, ``kind``, ``program`` (null for the
    supervisor's own), ``state`` (the program's state after it; for ``exited``, the
    state the restart policy chose, and for the readiness events the state they left
    alone, both read from ``supervisor``), ``exit`` (returncode,
    exit_code, signal, core_dumped) and every other field the event has set."""
    record: dict[str, Any] = {
        "time": round(event.time, 6), "kind": str(event.kind), "program": event.name or None,
    }
    state = _STATE_AFTER.get(event.kind)
    # exited: the state the restart policy chose; ready, status, watchdog and the other
    # readiness events leave the state as it was: read both from the supervisor.
    if state is None and event.name and supervisor is not None:
        status = supervisor.status().get(event.name)
        state = None if status is None else str(status.state)
    if event.name:
        record["state"] = state
    for name, value in to_json(event).items():
        if name in ("kind", "name", "time") or value is None:
            continue
        if name == "status":
            record["exit"] = {key: value.get(key) for key in (
                "returncode", "exit_code", "signal", "core_dumped")}
        else:
            record[name] = value
    return record


def message_record(message: str) -> dict[str, Any]:
    """A line of the supervisor's own (not an event) as a JSON-ready dict."""
    import time

    return {"time": round(time.time(), 6), "kind": "message", "program": None,
            "message": message}


@dataclass
class Remote:
    """The control socket of one ``fdloop supervise`` run, and how to reload its config."""

    path: str
    sock: socket.socket
    load: Callable[[], Config] | None = None
    """Re-reads the config (None: ``-- CMD`` mode, nothing to reload)."""
    taps: OutputTaps = field(default_factory=OutputTaps)
    _inode: int = 0
    _reloader: Reloader | None = None

    @classmethod
    def bind(cls, path: str, load: Callable[[], Config] | None) -> Remote:
        """Listen at ``path``; SupervisorConfigError (exit 2) if it is live or no socket."""
        sock = bind_control_socket(path)
        try:
            inode = os.stat(path).st_ino
        except OSError:
            inode = 0
        return cls(path, sock, load, _inode=inode)

    @staticmethod
    def default_path(config_path: str | None) -> str | None:
        """``.fdloop.sock`` beside the config file, or None without one."""
        if config_path is None:
            return None
        return os.path.join(os.path.dirname(os.path.abspath(config_path)), DEFAULT_CONTROL)

    def close_write_ends(self) -> None:
        """Our ends of the pipes reloads made: their copiers see EOF once the programs'
        copies close too (as ``ProgramOutputs.close_write_ends``)."""
        for outputs in self._extra_outputs():
            outputs.close_write_ends()

    def close_outputs(self) -> None:
        """Close the pipes (and log files) that reloads made; idempotent."""
        for outputs in self._extra_outputs():
            outputs.close()

    def _extra_outputs(self) -> list[ProgramOutputs]:
        return [] if self._reloader is None else self._reloader.extra_outputs

    def close(self) -> None:
        """Close the socket and remove its file, unless another one has replaced it."""
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def serve(
        self, supervisor: Supervisor, *, config: Config, outputs: ProgramOutputs,
        console: LineDestination, task_group: anyio.abc.TaskGroup,
        log: Callable[[str], None],
    ) -> anyio.CancelScope:
        """Serve the control socket in ``task_group``; cancel the returned scope to stop."""
        reloader = None if self.load is None else Reloader(
            supervisor, load=self.load, config=config, outputs=outputs, console=console,
            task_group=task_group, log=log, taps=self.taps,
        )
        self._reloader = reloader
        server = ControlServer(
            supervisor, self.sock, taps=self.taps, log=log,
            reload=None if reloader is None else reloader.reload,
        )
        scope = anyio.CancelScope()

        async def run(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with scope:
                await server.serve(task_status=task_status)

        await task_group.start(run)
        return scope


class Reloader:
    """``fdloop ctl reload``: re-read the config, apply what changed, give new pipes."""

    def __init__(
        self, supervisor: Supervisor, *, load: Callable[[], Config], config: Config,
        outputs: ProgramOutputs, console: LineDestination, task_group: anyio.abc.TaskGroup,
        log: Callable[[str], None], taps: OutputTaps,
    ) -> None:
        self._supervisor = supervisor
        self._load = load
        self._logs: Mapping[str, Any] = dict(config.logs)
        self._subreaper = config.subreaper
        self._fds = {spec.name: outputs.fds(spec.name) for spec in config.programs}
        self._width = max((len(spec.name) for spec in config.programs), default=0)
        self._console = console
        self._task_group = task_group
        self._log = log
        self._taps = taps
        self.extra_outputs: list[ProgramOutputs] = []
        """Pipes made for programs that reloads added (closed at exit with the rest)."""

    async def reload(self) -> Changes:
        """Apply the re-read config; SupervisorConfigError (nothing changed) if it is bad."""
        from .output import ProgramOutputs

        try:
            config = self._load()
        except (TypeError, ValueError) as exc:
            raise SupervisorConfigError(str(exc)) from None
        needs_pipes = [
            spec for spec in config.programs
            if spec.name not in self._fds or config.logs.get(spec.name) != self._logs.get(spec.name)
        ]
        fresh = None
        if needs_pipes:
            try:
                # Padded as the console's other lines are (to the names at start).
                fresh = ProgramOutputs(needs_pipes, config.logs, self._console,
                                       on_problem=self._log, width=self._width)
            except OSError as exc:
                raise SupervisorConfigError(
                    f"cannot make pipes for {', '.join(s.name for s in needs_pipes)}: "
                    f"{exc.strerror or exc}") from None
            tap_outputs(fresh, self._taps)
            for copier in fresh:
                self._task_group.start_soon(copier.copy_lines)
            self.extra_outputs.append(fresh)
            for spec in needs_pipes:
                self._fds[spec.name] = fresh.fds(spec.name)
        specs = []
        for spec in config.programs:
            stdout, stderr = self._fds[spec.name]
            specs.append(replace(spec, stdout=stdout, stderr=stderr))
        changes = await self._supervisor.apply(specs)
        self._logs = dict(config.logs)
        if config.subreaper != self._subreaper:
            self._log("reload: [supervisor] subreaper applies only at start; unchanged")
        self._log(
            "reloaded: " + "; ".join(f"{key} {', '.join(names) or '-'}"
                                     for key, names in changes.as_dict().items())
        )
        return changes


def tap_outputs(outputs: ProgramOutputs, taps: OutputTaps) -> None:
    """Let ``tail`` clients see every line the copiers of ``outputs`` copy."""
    for copier in outputs:
        copier.listeners.append(taps.publisher(copier.name))


def say_json(record: dict[str, Any], sink: LineSink | None) -> None:
    """One JSON line on stderr: queued on ``sink``, or written at once if None."""
    import json

    line = json.dumps(record, separators=(",", ":"))
    if sink is None:
        print(line, file=sys.stderr, flush=True)
    else:
        sink.put(line.encode(errors="replace"))
