"""What ``fdloop.Channel`` needs from the OS besides a MemFD and two EventFDs.

* :class:`HangupSocket`: one end of an AF_UNIX stream socketpair. The kernel hangs a
  socket up when the *last* fd of its peer is closed, in any process, and also when that
  process is killed: that is how each end of a Channel learns that the other end is gone
  for good, without trusting anything a close (or a crash) could leave in shared memory.
  The sender's socket also carries one-byte markers to the receiver (``O`` when a copy of
  the sender is rebuilt in a process, ``C`` when such a copy is closed), which is how a
  clean close is told from a kill. Every call is non-blocking (``MSG_DONTWAIT``) and
  leaves the shared open file description's flags alone.
* :func:`cpu_refusal` and :func:`capability`: whether this CPU can carry a Channel (each
  backend adds its own reasons in its ``channel_refusal()``), and the ``capabilities()``
  row that says so.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import stat

from ...errors import ClosedResourceError, NotThisKindOfFD
from ..contract import Capability

OPENED = b"O"
"""Marker: a copy of the sender was rebuilt in a process (``from_fds``). (A forked copy
refuses to send, so it never announces itself.)"""
CLOSED = b"C"
"""Marker: a copy of the sender that had announced itself was closed cleanly."""

_TSO_MACHINES = ("x86_64", "amd64")
"""CPUs whose ordering the ring protocol relies on (stores and loads each stay in order;
aligned 8-byte moves are single-copy atomic)."""


class HangupSocket:
    """One end of a stream socketpair, used only for hang-up and for markers."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock

    @classmethod
    def pair(cls) -> tuple[HangupSocket, HangupSocket]:
        """A connected pair (close-on-exec): (sender's end, receiver's end)."""
        one, two = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(one), cls(two)

    @classmethod
    def adopt(cls, fd: int) -> HangupSocket:
        """Own an inherited or received fd; NotThisKindOfFD (fd left open) unless it is
        an AF_UNIX stream socket."""
        mode = os.fstat(fd).st_mode
        if not stat.S_ISSOCK(mode):
            raise NotThisKindOfFD(f"fd {fd} is not a socket (the Channel's hang-up socket "
                                  "is an AF_UNIX stream socket)")
        sock = socket.socket(fileno=fd)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            kind = f"{sock.family.name}/{sock.type.name}"
            sock.detach()
            raise NotThisKindOfFD(f"fd {fd} is a {kind} socket, not the AF_UNIX stream "
                                  "socket of a Channel")
        return cls(sock)

    @property
    def closed(self) -> bool:
        return self._sock is None

    def fileno(self) -> int:
        if self._sock is None:
            raise ClosedResourceError("the Channel's hang-up socket is closed")
        return self._sock.fileno()

    def send_marker(self, marker: bytes) -> None:
        """Send one marker byte; dropped if the peer is gone or (never seen) its buffer
        is full."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.send(marker, socket.MSG_DONTWAIT)

    def drain(self) -> tuple[bytes, bool]:
        """Everything the peer sent so far, and whether the peer has hung up (EOF)."""
        if self._sock is None:
            raise ClosedResourceError("the Channel's hang-up socket is closed")
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return b"".join(chunks), False
            except ConnectionResetError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)

    def peer_gone(self) -> bool:
        """True once every copy of the peer's socket is closed. Consumes nothing."""
        if self._sock is None:
            raise ClosedResourceError("the Channel's hang-up socket is closed")
        try:
            return self._sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def detach(self) -> int:
        """Give the fd back unclosed (a refused ``from_fds`` leaves its fds as it found
        them)."""
        sock, self._sock = self._sock, None
        return sock.detach() if sock is not None else -1


# -- can this machine carry a Channel? ---------------------------------------------------

def cpu_refusal() -> str | None:
    """Why this CPU cannot carry a Channel, or None when it can."""
    machine = platform.machine().lower()
    if machine not in _TSO_MACHINES:
        return (f"fdloop.Channel needs an x86-64 CPU, this is {machine or 'unknown'}: its "
                "shared ring publishes indices with plain 8-byte stores and relies on "
                "the CPU keeping stores (and loads) in order, which Python cannot fence")
    return None


def capability(backend: str, why: str | None) -> Capability:
    """The ``Channel`` row of ``capabilities()`` for ``backend``, which refuses a Channel
    for the reason ``why`` (None: it can carry one)."""
    what = "memfd ring + eventfd doorbells + socketpair hang-up"
    if why is not None:
        return Capability("Channel", backend, False, "not available",
                          (why + ": channel() and from_fds() raise UnsupportedOperation",))
    return Capability("Channel", backend, True, what)


__all__ = ["CLOSED", "OPENED", "HangupSocket", "capability", "cpu_refusal"]
