"""``fdloop supervise`` config files: TOML with one ``[program.NAME]`` table per program.

::

    [supervisor]
    subreaper = true                 # optional: adopt and reap orphaned grandchildren

    [program.web]
    command = ["python3", "-m", "http.server", "8000"]   # or one string, split by shlex
    restart = "always"               # "on-failure" (default), "always", "never"
    backoff = [0.5, 30]              # first delay, maximum delay (seconds)
    max_restarts = 5                 # give up after 5 restarts in a row (default: never)
    stop_signal = "SIGINT"           # default SIGTERM
    stop_timeout = 10                # seconds before SIGKILL
    env = { PYTHONUNBUFFERED = "1" } # added to the supervisor's environment
    cwd = "www"                      # relative to the config file's directory
    die_with_supervisor = false      # default true: killed with a SIGKILLed supervisor
    numprocs = 3                     # run web.1, web.2, web.3 (default 1: just "web")
    log = "logs/web.log"             # stdout and stderr to this file, not to our stdout
    stderr_log = "logs/web.err"      # stderr to its own file instead (optional)
    log_max_bytes = 1048576          # rotate past 1 MiB (default 50 MiB; 0: never)
    log_backups = 5                  # keep web.log.1 ... web.log.5 (default 10)
    log_timestamps = true            # each line starts with its local time (default false)

With ``numprocs = N`` (N > 1) the instances are programs called ``NAME.1`` ... ``NAME.N``,
as honcho and foreman name them, each with ``FDLOOP_PROCESS_NAME`` in its environment;
their log files are shared, lines prefixed with the instance's name; ``depends_on =
["NAME"]`` elsewhere waits for every instance. Log paths are
relative to the config file's directory (see :mod:`fdloop.supervisor.logfile`).

Every error names the table and key (``program.web.restart: ...``) and is raised before
anything starts. The command's program must exist (searched on the child's PATH).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import _validate
from ..errors import SupervisorConfigError
from .depends import check_graph
from .logfile import LOG_KEYS, LogSettings, log_settings
from .program import ProgramSpec, make_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PROGRAM_KEYS = (
    "command", "restart", "backoff", "max_restarts", "stop_signal", "stop_timeout",
    "env", "cwd", "die_with_supervisor",
    "numprocs", *LOG_KEYS,
    "ready", "ready_timeout", "watchdog", "depends_on",  # readiness.py, depends.py
)
SUPERVISOR_KEYS = ("subreaper",)
_OPTION_TO_KEY = {"argv": "command"}
_OWN_KEYS = ("numprocs", *LOG_KEYS)
"""Keys read here and by logfile.py, not by make_spec."""
MAX_NUMPROCS = 1000


@dataclass(frozen=True)
class Config:
    """A parsed, validated config: the programs in file order, and supervisor options."""

    programs: tuple[ProgramSpec, ...]
    subreaper: bool = False
    logs: Mapping[str, LogSettings] = field(default_factory=dict, hash=False)
    """Log files by program name; a program not in it writes to the supervisor's stdout."""


def load_config(path: str | os.PathLike[str], defaults: Mapping[str, Any] | None = None) -> Config:
    """Read and validate ``path``; ``defaults`` supply options a program table omits.

    Raises SupervisorConfigError (a ValueError) naming the file, table and key.
    """
    path = Path(path)
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SupervisorConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return parse_config(data, base_dir=path.parent, defaults=defaults)
    except SupervisorConfigError as exc:
        raise SupervisorConfigError(f"{path}: {exc}") from None


def read_text(path: Path) -> str:
    """A config file's UTF-8 text (TOML, Procfile, .env); SupervisorConfigError names
    the file and why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SupervisorConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SupervisorConfigError(f"{path}: not UTF-8 text: {exc}") from None


def parse_config(
    data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".",
    defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Validate an already parsed TOML document (see the module docstring)."""
    for table in data:
        if table not in ("program", "supervisor"):
            raise SupervisorConfigError(
                f"unknown top-level key {table!r} (expected [program.NAME] tables "
                "and an optional [supervisor] table)"
            )
    subreaper = False
    supervisor = data.get("supervisor", {})
    if not isinstance(supervisor, Mapping):
        raise SupervisorConfigError("supervisor must be a table")
    for key, value in supervisor.items():
        if key not in SUPERVISOR_KEYS:
            raise SupervisorConfigError(
                f"supervisor.{key}: unknown key (expected one of {', '.join(SUPERVISOR_KEYS)})"
            )
        if not isinstance(value, bool):
            raise SupervisorConfigError(
                f"supervisor.{key} must be true or false, not {value!r}"
            )
        subreaper = value
    programs = data.get("program")
    if programs is None:
        raise SupervisorConfigError("no programs: add at least one [program.NAME] table")
    if not isinstance(programs, Mapping):
        raise SupervisorConfigError("program must be a table of [program.NAME] tables")
    if not programs:
        raise SupervisorConfigError("no programs: add at least one [program.NAME] table")
    specs: list[ProgramSpec] = []
    taken: set[str] = set()
    logs: dict[str, LogSettings] = {}
    groups: dict[str, tuple[str, ...]] = {}
    table_of: dict[str, str] = {}  # instance name -> its [program.NAME] table
    for name, table in programs.items():
        instances, settings = program_instances(
            name, table, base_dir=Path(base_dir), defaults=defaults or {}
        )
        if instances[0].name != name:
            groups[name] = tuple(spec.name for spec in instances)
        for spec in instances:
            if spec.name in taken:
                raise SupervisorConfigError(
                    f"{_prefix(name)}: two programs would be called {spec.name!r} "
                    "(numprocs names instances NAME.1, NAME.2, ...)"
                )
            specs.append(spec)
            taken.add(spec.name)
            table_of[spec.name] = name
            if settings is not None:
                logs[spec.name] = settings
    specs = _expand_groups(specs, groups)
    try:  # unknown names and cycles, named (depends.py)
        check_graph(specs, where=lambda program: (
            f"{_prefix(table_of.get(program, program))}.depends_on"))
    except ValueError as exc:
        raise SupervisorConfigError(str(exc)) from None
    return Config(tuple(specs), subreaper, logs)


def _expand_groups(
    specs: list[ProgramSpec], groups: Mapping[str, tuple[str, ...]]
) -> list[ProgramSpec]:
    """``depends_on = ["web"]`` with ``numprocs`` on web means every instance of web."""
    if not groups:
        return specs
    expanded = []
    for spec in specs:
        names: list[str] = []
        for dependency in spec.depends_on:
            for each in groups.get(dependency, (dependency,)):
                if each not in names:
                    names.append(each)
        expanded.append(replace(spec, depends_on=tuple(names)))
    return expanded


def program_instances(
    name: str, table: object, *, base_dir: Path, defaults: Mapping[str, Any]
) -> tuple[list[ProgramSpec], LogSettings | None]:
    """One ``[program.NAME]`` table: its instances (``numprocs``) and log settings."""
    spec = program_spec(name, table, base_dir=base_dir, defaults=defaults)
    assert isinstance(table, Mapping)  # program_spec checked it
    prefix = _prefix(name)
    try:
        count = _validate.integer(
            f"{prefix}.numprocs", table.get("numprocs", 1), low=1, high=MAX_NUMPROCS
        )
        settings = log_settings(prefix, table, base_dir)
    except (TypeError, ValueError) as exc:
        raise SupervisorConfigError(str(exc)) from None
    if count == 1:
        return [spec], settings
    return [instance(spec, f"{name}.{number}") for number in range(1, count + 1)], settings


def instance(spec: ProgramSpec, name: str, env: Mapping[str, str] | None = None) -> ProgramSpec:
    """``spec`` as the instance ``name``: FDLOOP_PROCESS_NAME (and ``env``) set for it."""
    return replace(
        spec, name=name, env={**(spec.env or {}), **(env or {}), "FDLOOP_PROCESS_NAME": name}
    )


def _prefix(name: str) -> str:
    return f"program.{name}" if _bare_key(name) else f"program.{name!r}"


def program_spec(
    name: str, table: object, *, base_dir: Path, defaults: Mapping[str, Any]
) -> ProgramSpec:
    """One ``[program.NAME]`` table as a ProgramSpec; errors name ``program.NAME.KEY``.

    Ignores ``numprocs`` and the log keys (see :func:`program_instances`).
    """
    prefix = _prefix(name)
    if not isinstance(table, Mapping):
        raise SupervisorConfigError(f"{prefix} must be a table, not {type(table).__name__}")
    for key in table:
        if key not in PROGRAM_KEYS:
            raise SupervisorConfigError(
                f"{prefix}.{key}: unknown key (expected one of {', '.join(PROGRAM_KEYS)})"
            )
    if "command" not in table:
        raise SupervisorConfigError(f"{prefix}.command: missing (the program to run)")
    options = {
        **defaults,
        **{key: value for key, value in table.items()
           if key != "command" and key not in _OWN_KEYS},
    }
    cwd = options.get("cwd")
    if isinstance(cwd, str):
        options["cwd"] = str(base_dir / cwd)

    def where(option: str) -> str:
        return prefix if option == "name" else f"{prefix}.{_OPTION_TO_KEY.get(option, option)}"

    try:
        spec = make_spec(name, table["command"], where=where, **options)
    except (TypeError, ValueError) as exc:
        raise SupervisorConfigError(str(exc)) from None
    check_executable(spec, f"{prefix}.command")
    return spec


def check_executable(spec: ProgramSpec, key: str) -> None:
    """Refuse a command whose program cannot be found or run, naming ``key``."""
    program = spec.argv[0]
    if "/" in program:
        path = os.path.join(spec.cwd or ".", program)
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise SupervisorConfigError(f"{key}: {program!r} is not an executable file")
        return
    env = spec.child_env() or os.environ
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise SupervisorConfigError(f"{key}: {program!r} was not found on PATH")


def _bare_key(name: str) -> bool:
    return bool(name) and all(ch.isalnum() or ch in "-_" for ch in name) and name.isascii()
