"""Process supervision built only from ProcessFD (child exits) and SignalFD (signals).

:class:`Supervisor` runs programs, restarts them by policy with exponential backoff,
gives up on a program that keeps failing, and reports every step as an :class:`Event`.
``fdloop supervise`` (:func:`supervise_main`) drives it from a TOML file.

Modules: ``program`` (validated options, restart delays), ``events`` (states, events,
status snapshots), ``runner`` (one program's lifecycle task, request worker and graceful
stop) with ``shared`` (what the runners share, a queued request), ``readiness`` (ready
modes, ready_timeout, watchdog, MAINPID handover), ``notify`` (the NOTIFY_SOCKET and
sd_notify datagrams), ``depends`` (depends_on order and graph checks), ``core`` (the
Supervisor), ``lifeline`` (programs that die with a killed
supervisor), ``orphans`` (subreaper mode), ``config`` (TOML files), ``cli`` (the
command), with ``startup`` (fds 0-2, RLIMIT_NOFILE), ``output`` (bounded lines) and
``sink`` (non-blocking stdout/stderr), ``logfile`` (log files with rotation),
``procfile`` and ``dotenv`` (honcho/foreman Procfiles and .env files). ``fdloop ctl``:
``changes`` (signal, remove, replace, apply and shutdown on a running Supervisor),
``control`` (the control socket's JSON protocol and server), ``control_socket`` (its
file, peer uid and line I/O), ``remote`` (the supervise command's side: reload,
``--events json``) and ``ctl`` (the client command).
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
