"""The ``fdloop`` command: ``info``, ``bench``, ``supervise`` and ``ctl``.

``info`` says what this machine offers (kernel, Python, loop libraries, and per
primitive whether the kernel provides it natively). ``bench`` hands over to
:mod:`fdloop.bench`, ``supervise`` and ``ctl`` to :mod:`fdloop.supervisor`; all are imported
only when asked for, so ``fdloop info`` works with nothing else installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Sequence


def info_main() -> int:
    """``fdloop info``: machine, interpreter, libraries, backend and capabilities."""
    from . import info

    try:
        print(info.describe())
    except ValueError as error:  # a bad FDLOOP_BACKEND value
        print(f"fdloop info: {error}", file=sys.stderr)
        return 2
    return 0


def bench_main(argv: list[str]) -> int:
    """``fdloop bench ...``: see ``fdloop bench --help``."""
    try:
        module = importlib.import_module("fdloop.bench.main")
    except ImportError as error:
        print(f"fdloop bench: the benchmarks are not importable ({error}); "
              "reinstall fdloop: pip install 'fdloop[uvloop,trio,plot]'",
              file=sys.stderr)
        return 2
    status: int = module.bench_main(argv)
    return status


def supervise_main(argv: list[str]) -> int:
    """``fdloop supervise ...``: every argument goes to fdloop.supervisor."""
    try:
        module = importlib.import_module("fdloop.supervisor")
        run: Callable[[list[str]], int] = module.supervise_main
    except (ImportError, AttributeError) as error:
        print(f"fdloop supervise: the supervisor is not available in this build ({error})",
              file=sys.stderr)
        return 2
    return run(argv)


def ctl_main(argv: list[str]) -> int:
    """``fdloop ctl ...``: talk to a running ``fdloop supervise`` (fdloop.supervisor.ctl)."""
    from .supervisor.ctl import ctl_main as run

    return run(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fdloop`` script; returns the exit status."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # The reader went away (``fdloop bench --list | head``): not an error. Point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fdloop",
        description="The kernel's fd primitives as async classes, awaited through one poll loop.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="kernel, Python, loop libraries and what each primitive uses")
    commands.add_parser("bench", add_help=False,
                        help="benchmarks against asyncio, uvloop, trio, anyio (see bench --help)")
    commands.add_parser("supervise", add_help=False,
                        help="run and watch programs (see supervise --help)")
    commands.add_parser("ctl", add_help=False,
                        help="control a running fdloop supervise (see ctl --help)")
    # bench and supervise own everything after their name, --help included.
    if args and args[0] == "bench":
        return bench_main(args[1:])
    if args and args[0] == "supervise":
        return supervise_main(args[1:])
    if args and args[0] == "ctl":
        return ctl_main(args[1:])
    parsed = parser.parse_args(args)
    if parsed.command == "info":
        return info_main()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
