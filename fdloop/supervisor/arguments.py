"""The ``fdloop supervise`` command line: its parser, and the Config it stands for.

:func:`build_parser` knows every option; :func:`make_config` turns the parsed options
(and the words after ``--``) into a :class:`~fdloop.supervisor.config.Config`: one
program for ``-- CMD``, a TOML file, or a honcho/foreman Procfile with ``-e``/``-c``/
``-p``. Command-line defaults (``--restart``, ``--backoff``, ...) are checked once, with
the options' own names in the messages. Running it is :mod:`fdloop.supervisor.cli`'s.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from typing import Any

from ..errors import SupervisorConfigError
from .config import Config, check_executable, load_config
from .procfile import load_procfile, parse_concurrency
from .program import make_spec, option_flag

LOOPS = ("asyncio", "uvloop", "trio")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fdloop supervise",
        usage="fdloop supervise [options] CONFIG.toml\n"
        "       fdloop supervise [options] [-e .env] [-c web=2] [-p 5000] Procfile\n"
        "       fdloop supervise [options] -- CMD [ARGS...]",
        description="Run programs, restart them by policy, prefix their output with their "
        "name. SIGTERM/SIGINT stop all gracefully, SIGHUP restarts all.",
        epilog="Examples: fdloop supervise examples/supervise.toml ; "
        "fdloop supervise --restart always -- python3 -m http.server",
    )
    parser.add_argument(
        "config", nargs="?",
        help="TOML file with [program.NAME] tables (a name ending in .toml), or a "
        "honcho/foreman Procfile (any other name); or, after --, one command to run",
    )
    parser.add_argument(
        "-e", "--env", action="append", metavar="FILE[,FILE...]",
        help="Procfile only: .env files to read (default: .env beside the Procfile)",
    )
    parser.add_argument(
        "-c", "--concurrency", metavar="TYPE=N[,...]",
        help="Procfile only: instances per process type, e.g. web=3,worker=2 (default 1)",
    )
    parser.add_argument(
        "-p", "--port", type=int, metavar="PORT",
        help="Procfile only: base of the PORT values (+100 per type, +1 per instance; "
        "default PORT from .env or the environment, else 5000)",
    )
    parser.add_argument("--name", help="name of the -- program (default: its basename)")
    parser.add_argument("--restart", choices=("on-failure", "always", "never"))
    parser.add_argument(
        "--backoff", nargs=2, type=float, metavar=("INITIAL", "MAX"),
        help="restart delay: first, and the most it doubles up to (seconds)",
    )
    parser.add_argument("--max-restarts", type=int, metavar="N")
    parser.add_argument("--stop-signal", metavar="SIG", help="e.g. SIGINT (default SIGTERM)")
    parser.add_argument("--stop-timeout", type=float, metavar="SECONDS")
    parser.add_argument(
        "--subreaper", action="store_true",
        help="adopt and reap orphaned grandchildren (PR_SET_CHILD_SUBREAPER)",
    )
    parser.add_argument(
        "--no-cgroup", action="store_true",
        help="do not put programs in a cgroup of their own (then only PR_SET_PDEATHSIG "
        "ends them if the supervisor is killed: their own children may live on)",
    )
    parser.add_argument(
        "--control", metavar="PATH",
        help="control socket for fdloop ctl (default: .fdloop.sock beside CONFIG; "
        "none for -- CMD)",
    )
    parser.add_argument("--no-control", action="store_true", help="no control socket")
    parser.add_argument(
        "--events", choices=("text", "json"), default="text",
        help="stderr as timestamped text (default) or one JSON object per line",
    )
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="event loop to run on")
    return parser


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1 :]
    return argv, []


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if args.restart is not None:
        defaults["restart"] = args.restart
    if args.backoff is not None:
        defaults["backoff"] = tuple(args.backoff)
    if args.max_restarts is not None:
        defaults["max_restarts"] = args.max_restarts
    if args.stop_signal is not None:
        defaults["stop_signal"] = args.stop_signal
    if args.stop_timeout is not None:
        defaults["stop_timeout"] = args.stop_timeout
    return defaults


def make_config(args: argparse.Namespace, command: list[str]) -> Config:
    defaults = _defaults(args)
    # Check the command-line options once, with their own names in the messages.
    make_spec("check", ["true"], where=option_flag, **defaults)
    if command:
        if args.config is not None:
            raise SupervisorConfigError("give either CONFIG.toml or -- CMD ARGS..., not both")
        name = args.name or os.path.basename(command[0]) or "program"
        spec = make_spec(name, command, where=_cli_option, **defaults)
        check_executable(spec, "command")
        return Config((spec,), args.subreaper)
    if args.config is None:
        raise SupervisorConfigError("give a CONFIG.toml, or -- CMD ARGS... for one program")
    if args.name is not None:
        raise SupervisorConfigError("--name applies only to -- CMD ARGS...")
    if not args.config.lower().endswith(".toml"):
        config = load_procfile(
            args.config, concurrency=_concurrency(args.concurrency), port=args.port,
            env_files=_env_files(args.env), defaults=defaults,
        )
        return replace(config, subreaper=args.subreaper)
    if args.env is not None or args.concurrency is not None or args.port is not None:
        raise SupervisorConfigError(
            "-e/--env, -c/--concurrency and -p/--port apply only to a Procfile "
            "(use env and numprocs in CONFIG.toml)"
        )
    config = load_config(args.config, defaults)
    return replace(config, subreaper=config.subreaper or args.subreaper)


def _env_files(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    files = [item for value in values for item in value.split(",")]
    if not all(files):
        raise SupervisorConfigError(f"-e/--env: an empty file name in {values!r}")
    return files


def _concurrency(value: str | None) -> dict[str, int] | None:
    return None if value is None else parse_concurrency(value)


def _cli_option(option: str) -> str:
    return {"name": "--name", "argv": "command"}.get(option) or option_flag(option)


def loop_backend(loop: str) -> tuple[str, dict[str, Any]]:
    if loop == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return loop, {}
