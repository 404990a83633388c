"""The control socket's idle bound: a client that sends no request line in time is
dropped, so that silent clients cannot hold the MAX_CLIENTS slots for good.

In-process ControlServer (test_control.py's ``served``) on a real AF_UNIX socket, on
asyncio, uvloop and trio, with a short ``idle_timeout``; every wait is bounded by HANG
only to turn a hang into a failure.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import anyio

from fdloop.supervisor import Supervisor
from fdloop.supervisor.control import MAX_CLIENTS

from .test_control import HANG, SLEEPER, client, served

IDLE = 0.3


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset), without blocking."""
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _connect_silent(path: Path, stack: contextlib.ExitStack) -> list[socket.socket]:
    """MAX_CLIENTS connections that never send a whole request line (the first sends
    half of one: a line that never ends counts as none)."""
    silent = []
    for index in range(MAX_CLIENTS):
        sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        sock.connect(str(path))
        sock.setblocking(False)
        if index == 0:
            sock.send(b'{"command": "sta')
        silent.append(sock)
    return silent


async def test_silent_clients_are_dropped_and_their_slots_freed(tmp_path: Path) -> None:
    logged: list[str] = []
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        async with served(tmp_path, sup, logged=logged, idle_timeout=IDLE) as path:
            with contextlib.ExitStack() as stack:
                silent = _connect_silent(path, stack)
                with anyio.fail_after(HANG):
                    while not all(_closed_by_peer(sock) for sock in silent):
                        await anyio.sleep(0.02)
            assert logged.count(
                f"control: dropped a client that sent no request for {IDLE} s"
            ) == MAX_CLIENTS
            # Every slot is free again: a new client is served, not told "too many".
            async with client(path) as late:
                assert (await late.ask(command="status"))["ok"]


async def test_a_client_that_keeps_asking_is_kept(tmp_path: Path) -> None:
    logged: list[str] = []
    async with Supervisor() as sup:
        sup.add("web", SLEEPER)
        # More than the idle timeout in all, never a quarter of it without a request
        # (slack for a slow machine): the bound is per request, not per connection.
        idle = 1.2
        async with served(tmp_path, sup, logged=logged, idle_timeout=idle) as path, \
                client(path) as busy:
            for _ in range(5):
                assert (await busy.ask(command="status"))["ok"]
                await anyio.sleep(idle / 4)
            assert not logged
