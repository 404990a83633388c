"""The eventfd(2) man page's example, across real processes, with fdloop.

A child writes each command-line number to the shared counter; the parent, awaiting
through its event loop, reads the sum. Run with no arguments for the man page's
numbers:

    $ python examples/eventfd_across_processes.py
    Child writing 1 to efd
    ...
    Parent read 28 (0x1c) from efd

``--via fork|exec|socket`` picks how the child gets the eventfd: inherited across
fork, inherited across exec (``pass_fds``), or sent over a UNIX socket (SCM_RIGHTS).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys

import fdloop


def child_writes(fd: int, numbers: list[int]) -> None:
    """What the man page's child does: write each number to the eventfd."""
    with fdloop.EventFD.from_fd(fd) as efd:
        for number in numbers:
            print(f"Child writing {number} to efd", flush=True)
            efd.write(number)
    print("Child completed write loop", flush=True)


def start_child(efd: fdloop.EventFD, numbers: list[int], via: str) -> int | subprocess.Popen[bytes]:
    """Start the writer; returns a pid (fork) or a Popen (exec, socket)."""
    if via == "fork":
        pid = os.fork()
        if pid == 0:
            try:
                child_writes(efd.fileno(), numbers)
            finally:
                os._exit(0)
        return pid
    argv = [sys.executable, __file__, "--child", *map(str, numbers)]
    if via == "exec":
        return subprocess.Popen([*argv, "--fd", str(efd.fileno())], pass_fds=[efd.fileno()])
    parent_end, child_end = socket.socketpair(socket.AF_UNIX)
    with parent_end, child_end:
        child = subprocess.Popen([*argv, "--socket", str(child_end.fileno())],
                                 pass_fds=[child_end.fileno()])
        socket.send_fds(parent_end, [b"efd"], [efd.fileno()])
    return child


async def main(numbers: list[int], via: str) -> int:
    async with fdloop.EventFD() as efd:
        child = start_child(efd, numbers, via)
        if isinstance(child, int):
            os.waitpid(child, 0)
        else:
            child.wait()
        print("Parent about to read", flush=True)
        total = await efd.read()
        print(f"Parent read {total} (0x{total:x}) from efd", flush=True)
        return total


def run_child(args: argparse.Namespace) -> None:
    if args.socket is not None:
        with socket.socket(fileno=args.socket) as sock:
            _, fds, _, _ = socket.recv_fds(sock, 16, 1)
        child_writes(fds[0], args.numbers)
    else:
        child_writes(args.fd, args.numbers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("numbers", nargs="*", type=int, default=[1, 2, 4, 7, 14])
    parser.add_argument("--via", choices=("fork", "exec", "socket"), default="fork")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--socket", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        run_child(arguments)
    else:
        asyncio.run(main(arguments.numbers, arguments.via))
