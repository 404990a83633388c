"""Procfiles, as honcho and foreman read them, turned into a supervisor :class:`Config`.

A Procfile has one process type per line, ``NAME: COMMAND`` (foreman's pattern
``^([A-Za-z0-9_]+):\\s*(.+)$``, with ``-`` allowed in names as honcho 2.0 allows it;
checked side by side with honcho 2.0.0, PORT values included). Blank lines and
``#`` comment lines are skipped; any other line is refused with its number (honcho and
foreman skip it silently), and so is a name given twice. Each command runs through
``/bin/sh -c``, as both do, in the Procfile's directory.

Instances are named ``TYPE.1``, ``TYPE.2``, ... (``-c web=3,worker=2``; every type runs
once unless ``-c`` says otherwise; ``all=N`` sets the default; 0 runs none). Each gets
``PORT`` the way foreman assigns it: base port + 100 x the type's position in the
Procfile (types not run still take their slot) + the instance number - 1. The base is
``-p PORT``, else ``PORT`` from the .env files, else ``PORT`` in our environment, else
5000. Each also gets ``FDLOOP_PROCESS_NAME`` (``web.2``), like honcho's
``HONCHO_PROCESS_NAME``, and the .env variables laid over our environment. The .env
files are the ``-e`` ones (comma-separated or repeated; each must exist), or else
``.env`` beside the Procfile when there is one (see :mod:`fdloop.supervisor.dotenv`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import SupervisorConfigError
from .config import Config, check_executable, instance, read_text
from .dotenv import content_lines, load_dotenv
from .program import make_spec, option_flag

__all__ = [
    "DEFAULT_PORT",
    "load_procfile",
    "parse_concurrency",
    "parse_procfile",
    "port_for",
]

DEFAULT_PORT = 5000
SHELL = "/bin/sh"
_LINE = re.compile(r"([A-Za-z0-9_-]+):\s*(.+)\Z")


def parse_procfile(text: str, source: str = "Procfile") -> dict[str, str]:
    """Process types and their commands, in file order; errors name ``source:LINE``."""
    processes: dict[str, str] = {}
    for number, raw, line in content_lines(text):
        match = _LINE.match(line)
        if match is None:
            raise SupervisorConfigError(
                f"{source}:{number}: expected 'NAME: COMMAND' (NAME of letters, digits, "
                f"_ and -), got {raw!r}"
            )
        name, command = match.group(1), match.group(2).strip()
        if name in processes:
            raise SupervisorConfigError(f"{source}:{number}: process type {name!r} given twice")
        if "\0" in command:
            raise SupervisorConfigError(f"{source}:{number}: NUL character in the command")
        processes[name] = command
    return processes


def parse_concurrency(text: str) -> dict[str, int]:
    """``web=3,worker=2`` (and ``all=N``) as a mapping; SupervisorConfigError names -c."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, equals, number = item.strip().partition("=")
        name, number = name.strip(), number.strip()
        if not equals or not name or not re.fullmatch(r"[0-9]+", number):
            raise SupervisorConfigError(
                f"-c/--concurrency: expected TYPE=N[,TYPE=N...] with N a whole number "
                f">= 0, got {text!r}"
            )
        if name in counts:
            raise SupervisorConfigError(f"-c/--concurrency: {name!r} given twice in {text!r}")
        counts[name] = int(number)
    return counts


def port_for(base: int, type_index: int, instance_number: int) -> int:
    """Foreman's rule: ``base + 100 * type_index + instance_number - 1`` (both from 0/1)."""
    return base + 100 * type_index + instance_number - 1


def load_procfile(
    path: str | os.PathLike[str],
    *,
    env_files: Sequence[str | os.PathLike[str]] | None = None,
    concurrency: Mapping[str, int] | None = None,
    port: int | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Read ``path`` and its .env files into a Config (see the module docstring).

    ``env_files=None`` reads ``.env`` beside the Procfile if it exists; ``defaults``
    are the command line's program options (restart, backoff, ...). Raises
    SupervisorConfigError naming the file and line, or the option.
    """
    path = Path(path)
    processes = parse_procfile(read_text(path), str(path))
    if not processes:
        raise SupervisorConfigError(f"{path}: no process types (add lines 'NAME: COMMAND')")
    base_dir = path.parent
    env: dict[str, str] = {}
    if env_files is None:
        default = base_dir / ".env"
        if default.is_file():
            env.update(load_dotenv(default))
    else:
        for env_file in env_files:
            env.update(load_dotenv(env_file))
    counts = _counts(concurrency or {}, processes, path)
    base = _base_port(port, env)
    last = port_for(base, len(processes) - 1, max(1, *counts.values()))
    if last > 65535:
        raise SupervisorConfigError(
            f"-p/--port: base port {base} gives ports up to {last}, past 65535"
        )
    specs = []
    for index, (name, command) in enumerate(processes.items()):
        for number in range(1, counts[name] + 1):
            instance_name = f"{name}.{number}"
            try:
                # Only the command line's options can be wrong here: named as it spells them.
                spec = make_spec(
                    name, [SHELL, "-c", command], cwd=str(base_dir), where=option_flag,
                    **(defaults or {}),
                )
            except (TypeError, ValueError) as exc:
                raise SupervisorConfigError(str(exc)) from None
            port_env = {"PORT": str(port_for(base, index, number))}
            specs.append(instance(spec, instance_name, {**env, **port_env}))
    if not specs:
        raise SupervisorConfigError("-c/--concurrency: every process type has 0 instances")
    check_executable(specs[0], f"{path}: {SHELL}")
    return Config(tuple(specs))


def _counts(wanted: Mapping[str, int], processes: Mapping[str, str], path: Path) -> dict[str, int]:
    unknown = [name for name in wanted if name != "all" and name not in processes]
    if unknown:
        raise SupervisorConfigError(
            f"-c/--concurrency: no process type {unknown[0]!r} in {path} "
            f"(it has {', '.join(processes)})"
        )
    default = wanted.get("all", 1)
    return {name: wanted.get(name, default) for name in processes}


def _base_port(port: int | None, env: Mapping[str, str]) -> int:
    if port is not None:
        where, value = "-p/--port", str(port)
    elif "PORT" in env:
        where, value = "PORT in the .env file", env["PORT"]
    elif "PORT" in os.environ:
        where, value = "PORT in the environment", os.environ["PORT"]
    else:
        return DEFAULT_PORT
    if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value) <= 65535:
        raise SupervisorConfigError(f"{where} must be a port number 1-65535, got {value!r}")
    return int(value)
