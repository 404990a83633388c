"""Process supervision built only from ProcessFD (child exits) and SignalFD (signals).

:class:`Supervisor` runs programs, restarts them by policy with exponential backoff,
gives up on a program that keeps failing, and reports every step as an :class:`Event`.
``fdloop supervise`` (:func:`supervise_main`) drives it from a TOML file.

Modules: ``program`` (validated options, restart delays), ``events`` (states, events,
status snapshots), ``core`` (the Supervisor: configuration, requests, status) with
``shutdown`` (leaving ``async with``, the SIGTERM/SIGINT/SIGHUP SignalFD) and
``changes`` (signal, remove, replace, apply and shutdown on a running Supervisor) and
``threads`` (calls from other threads, carried out in the supervisor's);
``runner`` (one program's lifecycle task and request worker) with ``stopping`` (stop
signal, timeout, SIGKILL, the program's tree) and ``shared`` (what the runners share, a
queued request); ``readiness`` (ready modes, ready_timeout, watchdog, MAINPID handover),
``notify`` (the NOTIFY_SOCKET and sd_notify datagrams), ``depends`` (depends_on order
and graph checks); ``lifeline`` (programs that die with a killed supervisor), ``cgroup``
(one cgroup v2 per program), ``orphans`` (subreaper mode), ``pid1`` (running as PID 1).
``fdloop supervise``: ``cli`` (running the command) with ``arguments`` (its options and
the Config they make), ``config`` (TOML files), ``procfile`` and ``dotenv``
(honcho/foreman Procfiles and .env files), ``startup`` (fds 0-2, RLIMIT_NOFILE),
``output`` (bounded lines), ``sink`` (non-blocking stdout/stderr), ``logfile`` (log
files with rotation) and ``remote`` (its side of ``fdloop ctl``: the control socket,
reload, ``--events json``). ``fdloop ctl``: ``control`` (the control socket's JSON
protocol and server), ``control_socket`` (its file, peer uid and line I/O) and ``ctl``
(the client command).
"""

from __future__ import annotations

from .cli import supervise_main
from .config import Config, load_config, parse_config
from .core import Supervisor
from .events import Event, EventKind, EventStream, ProgramState, ProgramStatus
from .logfile import LogFile
from .procfile import load_procfile
from .program import ProgramSpec, make_spec

__all__ = [
    "Config",
    "Event",
    "EventKind",
    "EventStream",
    "LogFile",
    "ProgramSpec",
    "ProgramState",
    "ProgramStatus",
    "Supervisor",
    "load_config",
    "load_procfile",
    "make_spec",
    "parse_config",
    "supervise_main",
]
