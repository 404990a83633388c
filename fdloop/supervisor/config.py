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

Every error names the table and key (``program.web.restart: ...``) and is raised before
anything starts. The command's program must exist (searched on the child's PATH).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SupervisorConfigError
from .program import ProgramSpec, make_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PROGRAM_KEYS = (
    "command", "restart", "backoff", "max_restarts", "stop_signal", "stop_timeout",
    "env", "cwd", "die_with_supervisor",
)
SUPERVISOR_KEYS = ("subreaper",)
_OPTION_TO_KEY = {"argv": "command"}


@dataclass(frozen=True)
class Config:
    """A parsed, validated config: the programs in file order, and supervisor options."""

    programs: tuple[ProgramSpec, ...]
    subreaper: bool = False


def load_config(path: str | os.PathLike[str], defaults: Mapping[str, Any] | None = None) -> Config:
    """Read and validate ``path``; ``defaults`` supply options a program table omits.

    Raises SupervisorConfigError (a ValueError) naming the file, table and key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SupervisorConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SupervisorConfigError(f"{path}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SupervisorConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return parse_config(data, base_dir=path.parent, defaults=defaults)
    except SupervisorConfigError as exc:
        raise SupervisorConfigError(f"{path}: {exc}") from None


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
    specs = tuple(
        program_spec(name, table, base_dir=Path(base_dir), defaults=defaults or {})
        for name, table in programs.items()
    )
    return Config(specs, subreaper)


def program_spec(
    name: str, table: object, *, base_dir: Path, defaults: Mapping[str, Any]
) -> ProgramSpec:
    """One ``[program.NAME]`` table as a ProgramSpec; errors name ``program.NAME.KEY``."""
    prefix = f"program.{name}" if _bare_key(name) else f"program.{name!r}"
    if not isinstance(table, Mapping):
        raise SupervisorConfigError(f"{prefix} must be a table, not {type(table).__name__}")
    for key in table:
        if key not in PROGRAM_KEYS:
            raise SupervisorConfigError(
                f"{prefix}.{key}: unknown key (expected one of {', '.join(PROGRAM_KEYS)})"
            )
    if "command" not in table:
        raise SupervisorConfigError(f"{prefix}.command: missing (the program to run)")
    options = {**defaults, **{key: value for key, value in table.items() if key != "command"}}
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
