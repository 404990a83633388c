"""The control socket's file and bytes: binding it safely, the peer's uid, line I/O.

:func:`bind_control_socket` makes the listening socket (mode 0600) and decides what to
do with a path that already exists; :func:`unix_address` reaches a path longer than
sockaddr_un allows; :func:`peer_credentials` reads SO_PEERCRED. The coroutines below
move bytes on a non-blocking socket through the loop's poll (anyio), never waiting more
than :data:`SEND_TIMEOUT` for a client to take an answer. The protocol itself is
:mod:`fdloop.supervisor.control`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterator

import anyio

from ..errors import SupervisorConfigError

REQUEST_LIMIT = 64 * 1024
"""The longest request line accepted (newline included)."""
SEND_TIMEOUT = 5.0
"""A client that takes no response bytes for this long is dropped."""
_NO_SIGPIPE = getattr(socket, "MSG_NOSIGNAL", 0)
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, NUL included

# anyio 4.7 renamed wait_socket_readable/writable (the old names warn there).
wait_readable: Callable[[socket.socket], Awaitable[None]] = getattr(
    anyio, "wait_readable", None) or anyio.wait_socket_readable
wait_writable: Callable[[socket.socket], Awaitable[None]] = getattr(
    anyio, "wait_writable", None) or anyio.wait_socket_writable


class ControlPathTaken(SupervisorConfigError):
    """The control path is in use: a live supervisor listens there, or it is no socket."""


class ClientGone(Exception):
    """The client stopped reading (SEND_TIMEOUT) or closed its end."""


@contextlib.contextmanager
def unix_address(path: str) -> Iterator[str]:
    """An address for ``path`` that fits sockaddr_un: the path itself if short enough,
    else ``/proc/self/fd/N/NAME`` through an O_PATH fd of its directory (Linux)."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX or not hasattr(os, "O_PATH"):
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def bind_control_socket(path: str) -> socket.socket:
    """A listening, non-blocking AF_UNIX socket at ``path``, mode 0600.

    A socket already at ``path`` is replaced if stale (nobody listens: connect says
    ECONNREFUSED). Raises ControlPathTaken (a SupervisorConfigError) naming the path if
    a live process listens there or ``path`` is anything but a socket, and
    SupervisorConfigError if it cannot be bound.
    """
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise SupervisorConfigError(f"control socket {path}: {exc.strerror}") from None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise ControlPathTaken(
                f"control socket {path}: exists and is not a socket (refusing to replace it)"
            )
        if _answers(path):
            raise ControlPathTaken(
                f"control socket {path}: another supervisor is listening there "
                "(stop it, or give --control another path)"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: left by a supervisor that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # The umask closes the window between bind and chmod in which another user
        # could connect (they would still be refused by uid, but never get that far).
        old_umask = os.umask(0o177)
        try:
            with unix_address(path) as address:
                sock.bind(address)
                os.chmod(address, 0o600)
        finally:
            os.umask(old_umask)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SupervisorConfigError(
            f"control socket {path}: cannot listen there: {exc.strerror or exc}"
        ) from None
    return sock


def _answers(path: str) -> bool:
    """Whether something listens on the socket at ``path`` (a non-blocking connect)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.setblocking(False)
    try:
        with unix_address(path) as address:
            probe.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except BlockingIOError:
        return True  # its backlog is full: alive, and busy
    except OSError as exc:
        raise SupervisorConfigError(
            f"control socket {path}: cannot tell whether a supervisor listens there: "
            f"{exc.strerror or exc}"
        ) from None
    finally:
        probe.close()
    return True


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process that connected ``sock`` (SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        raise OSError(errno.ENOTSUP, "SO_PEERCRED is Linux-only: cannot check the client's uid")
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


async def receive(sock: socket.socket) -> bytes:
    """Up to 64 KiB from ``sock``, waiting for some; ``b""`` at EOF or reset."""
    while True:
        try:
            return sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            await wait_readable(sock)
        except ConnectionResetError:
            return b""


async def read_line(sock: socket.socket, pending: bytearray) -> bytes | None:
    """The next line (newline included; a longer-than-limit piece as it is); None at EOF."""
    while True:
        end = pending.find(b"\n")
        if end >= 0:
            line = bytes(pending[: end + 1])
            del pending[: end + 1]
            return line
        if len(pending) > REQUEST_LIMIT:
            return bytes(pending)
        data = await receive(sock)
        if not data:
            return bytes(pending) if pending.strip() else None
        pending += data


async def send(sock: socket.socket, data: bytes, timeout: float = SEND_TIMEOUT) -> None:
    """Send all of ``data``; ClientGone if the client takes none of it for ``timeout`` s."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view, _NO_SIGPIPE)
        except (BlockingIOError, InterruptedError):
            with anyio.move_on_after(timeout) as scope:
                await wait_writable(sock)
            if scope.cancelled_caught:
                raise ClientGone from None
            continue
        view = view[sent:]


async def until_hangup(client: socket.socket, scope: anyio.CancelScope) -> None:
    """Return (cancelling ``scope``) once the client closes its end; its data is ignored."""
    while True:
        try:
            data = await receive(client)
        except OSError:
            data = b""
        if not data:
            scope.cancel()
            return
