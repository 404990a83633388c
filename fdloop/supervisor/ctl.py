"""``fdloop ctl``: talk to a running ``fdloop supervise`` through its control socket.

A plain blocking client of the protocol that :mod:`fdloop.supervisor.control`
documents: one request line, then its response line (``tail`` reads lines until the
supervisor goes away or Ctrl-C). The socket is ``--control PATH``, else
``$FDLOOP_CONTROL``, else ``.fdloop.sock`` in the current directory — where
``fdloop supervise CONFIG`` puts it when CONFIG is in the current directory.

Exit status: 0 done; 1 the supervisor refused the request (unknown program, bad signal,
a reload whose config has an error, ...: its message on stderr); 2 bad command line;
3 no supervisor could be reached there (no socket, nobody listening, permission
denied, or the connection was lost before the answer); 130 ``tail`` ended by Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from typing import Any, BinaryIO

from .control import encode
from .control_socket import unix_address

DEFAULT_CONTROL = ".fdloop.sock"
"""The control socket's name beside the config file (``fdloop supervise`` default)."""
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class Unreachable(Exception):
    """No supervisor answered at the control path (the message says why)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fdloop ctl",
        description="Control a running 'fdloop supervise' through its control socket.",
        epilog="The socket: --control PATH, else $FDLOOP_CONTROL, else ./.fdloop.sock "
        "(fdloop supervise CONFIG makes one beside CONFIG).",
    )
    parser.add_argument("--control", metavar="PATH", help="the supervisor's control socket")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = commands.add_parser("status", help="every program's state, pid, uptime, restarts")
    status.add_argument("--json", action="store_true", help="the status as one JSON document")
    for name, text in (("start", "start a program"), ("stop", "stop a program and wait"),
                       ("restart", "stop then start a program"),
                       ("tail", "print a program's output lines as they come (Ctrl-C ends)")):
        commands.add_parser(name, help=text).add_argument("name", metavar="NAME")
    signal = commands.add_parser("signal", help="send a signal to a program's process group")
    signal.add_argument("name", metavar="NAME")
    signal.add_argument("signal", metavar="SIG", help="a name (HUP, SIGUSR1) or a number")
    commands.add_parser("reload", help="re-read the config; apply only what changed")
    commands.add_parser("shutdown", help="stop every program; wait until the supervisor is done")
    return parser


def control_path(given: str | None) -> str:
    return given or os.environ.get("FDLOOP_CONTROL") or DEFAULT_CONTROL


def ctl_main(argv: list[str]) -> int:
    """``fdloop ctl ARGS...``: returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    path = control_path(args.control)
    request: dict[str, Any] = {"command": args.command}
    if hasattr(args, "name"):
        request["name"] = args.name
    if args.command == "signal":
        request["signal"] = int(args.signal) if args.signal.isdigit() else args.signal
    try:
        with connect(path) as sock:
            replies = sock.makefile("rb")
            # Closed on us (a refused uid)? Its reason may still be there to read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(encode(request))
            response = read_response(replies, path)
            if not response.get("ok"):
                print(f"fdloop ctl: {response.get('error', response)}", file=sys.stderr)
                return EXIT_REFUSED
            return _present(args, response, replies)
    except Unreachable as exc:
        print(f"fdloop ctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def connect(path: str) -> socket.socket:
    """A blocking socket connected to the control socket at ``path``; Unreachable if not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with unix_address(path) as address:
            sock.connect(address)
    except OSError as exc:
        sock.close()
        why = {
            "FileNotFoundError": "no control socket there (is fdloop supervise running? "
            "give --control PATH)",
            "ConnectionRefusedError": "nobody listens there (the supervisor has exited)",
            "PermissionError": "permission denied (the socket is mode 0600: run as the "
            "supervisor's user)",
        }.get(type(exc).__name__, exc.strerror or str(exc))
        raise Unreachable(f"{path}: {why}") from None
    return sock


def read_response(replies: BinaryIO, path: str) -> dict[str, Any]:
    try:
        line = replies.readline()
    except ConnectionResetError:
        line = b""
    if not line:
        raise Unreachable(f"{path}: the supervisor closed the connection without an answer")
    message = json.loads(line)
    if not isinstance(message, dict):
        raise Unreachable(f"{path}: not a control socket answer: {line[:200]!r}")
    return message


def _present(args: argparse.Namespace, response: dict[str, Any], replies: BinaryIO) -> int:
    command = args.command
    if command == "status":
        if args.json:
            print(json.dumps(response["programs"], indent=2))
        else:
            print(status_table(response["programs"]))
    elif command == "signal":
        if not response.get("delivered"):
            print(f"fdloop ctl: {args.name} is not running: nothing was signalled",
                  file=sys.stderr)
            return EXIT_REFUSED
        print(f"{args.name}: sent {response.get('signal', args.signal)}")
    elif command == "reload":
        parts = [f"{key}: {', '.join(response[key]) or '-'}"
                 for key in ("added", "removed", "changed", "unchanged")]
        print("reloaded; " + "; ".join(parts))
    elif command == "tail":
        _follow(replies)
    elif command == "shutdown":
        print(f"stopping {', '.join(response['stopping']) or 'nothing'}", flush=True)
        replies.read()  # the supervisor closes the connection once every program is down
        print("every program is down")
    else:
        print(f"{args.name}: {command} done")
    return EXIT_OK


def _follow(replies: BinaryIO) -> None:
    out = sys.stdout
    for raw in replies:
        message = json.loads(raw)
        if "line" in message:
            out.write(message["line"] + "\n")
            out.flush()
        elif not message.get("ok", True):
            print(f"fdloop ctl: {message.get('error')}", file=sys.stderr)


def status_table(programs: list[dict[str, Any]]) -> str:
    """The ``status`` response as an aligned text table."""
    rows = [("NAME", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "STATUS")]
    for program in programs:
        uptime = program.get("uptime")
        ready = program.get("ready")
        rows.append((
            str(program["name"]), str(program["state"]),
            "-" if ready is None else ("yes" if ready else "no"),
            "-" if program.get("pid") is None else str(program["pid"]),
            "-" if uptime is None else _duration(uptime),
            str(program.get("restarts", 0)), _exit_text(program.get("last_exit")),
            str(program.get("status_text") or ""),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _exit_text(status: dict[str, Any] | None) -> str:
    if status is None:
        return "-"
    if status.get("signal") is not None:
        return f"signal {status['signal']}"
    if status.get("exit_code") is not None:
        return f"exit {status['exit_code']}"
    return "unknown"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else (
        f"{int(seconds // 86400)}d")
