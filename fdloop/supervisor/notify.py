"""The supervisor's NOTIFY_SOCKET: systemd's sd_notify protocol, read through the loop.

One :class:`NotifySocket` per Supervisor: an AF_UNIX datagram socket bound in a private
directory (mode 0700, from ``tempfile.mkdtemp``) whose path each ``ready = "notify"``
program finds in ``$NOTIFY_SOCKET``. A datagram is newline-separated ``KEY=VALUE``
assignments (sd_notify(3)): ``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``,
``WATCHDOG=1``, ``MAINPID=N``, ``ERRNO=N``; unknown keys are ignored, as systemd does.

Who sent it is the kernel's word, not the message's: ``SO_PASSCRED`` attaches the
sender's pid (``SCM_CREDENTIALS``) and, on Linux 6.5+, ``SO_PASSPIDFD`` a pidfd of the
sender (``SCM_PIDFD``). On pidfs kernels (6.9+) a pidfd's inode number names one process
for the life of the system — never reused —, so a datagram is matched to a program by
that inode: a process that got a recycled pid cannot pass for the program. Without a
pidfd only the pid is compared (weaker: documented by :func:`sender_check`). A privileged
sender (root, CAP_SYS_ADMIN) may state any live pid in its credentials, and the kernel
then attaches that process's pidfd; no receiver can tell, systemd included.

:class:`NoticeBoard` holds the socket (made at the first notify program's start) and
who may speak on it: the sender keys of each running notify program.

Every fd that arrives with a datagram (pidfds, SCM_RIGHTS such as systemd-notify's
``BARRIER=1`` pipe) is closed at once: closing is also what answers a barrier.

A SIGKILLed supervisor runs no code, so the directory would stay behind. Each
NotifySocket therefore starts a *sweeper* with it: ``/bin/sh`` in a session of its own,
waiting for EOF on a pipe whose only write end (close-on-exec) this process holds. The
kernel closes that end when we die, however we die; the sweeper then removes the
directory and exits (at a normal close we have removed it already, and it only exits).
Why a process of its own rather than the cgroup guardian (lifeline.py): the guardian
exists only for ``fdloop supervise`` where a cgroup could be made, while a Supervisor
used as a library, ``--no-cgroup`` and the kqueue backend need the same cleanup; and an
abstract socket (which leaves nothing) would let any process of the network namespace
send to us, where the 0700 directory lets only our uid (and root) in.
"""

from __future__ import annotations

import array
import contextlib
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import UnsupportedOperation
from ..primitives.events import POLLIN, notify_closing, wait_events
from ..primitives.streams import DEVNULL

if TYPE_CHECKING:
    from ..primitives.processfd import ProcessFD

SO_PASSPIDFD = getattr(socket, "SO_PASSPIDFD", 76)
"""Linux 6.5 (include/uapi/asm-generic/socket.h); Python 3.11 does not export it."""
SCM_PIDFD = getattr(socket, "SCM_PIDFD", 0x04)
MESSAGE_MAX = 4096
"""Longer datagrams are dropped whole (systemd's limit, NOTIFY_BUFFER_MAX = PIPE_BUF)."""
_FDS_MAX = 32
"""SCM_RIGHTS fds received per datagram; the kernel discards (closes) any beyond."""
_UCRED = struct.Struct("iII")
_BATCH = 64
"""Datagrams handled per wake-up of the reader."""
_SWEEPER_SCRIPT = 'read _ignored; rm -rf -- "$0"'
"""EOF on stdin: the supervisor is gone (or closed the socket): remove the directory."""


@dataclass(frozen=True)
class Notice:
    """One datagram: its assignments and what the kernel said about its sender."""

    fields: dict[str, str]
    pid: int | None
    """The sender's pid (SCM_CREDENTIALS), None if the kernel attached none."""
    inode: int | None
    """The pidfs inode of the sender's pidfd (SCM_PIDFD on a pidfs kernel), else None."""


def parse(data: bytes) -> dict[str, str] | None:
    """``KEY=VALUE`` lines as a dict (the last of a repeated key wins); None if not text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = {}
    for line in text.split("\n"):
        key, equals, value = line.partition("=")
        if equals and key:
            fields[key] = value
    return fields


_pidfs: list[bool] = []


def pidfs() -> bool:
    """Whether pidfd inode numbers identify processes here (Linux 6.9+ pidfs)."""
    if not _pidfs:
        try:
            first, second = os.pidfd_open(os.getpid()), os.pidfd_open(os.getpid())
        except (AttributeError, OSError):
            _pidfs.append(False)
        else:
            try:
                # Before pidfs every pidfd was an anon inode: all shared one number.
                same = os.fstat(first).st_ino == os.fstat(second).st_ino
                _pidfs.append(same and os.fstat(first).st_ino != os.fstat(1).st_ino)
            finally:
                os.close(first)
                os.close(second)
    return _pidfs[0]


def process_inode(pid: int) -> int | None:
    """The pidfs inode naming process ``pid`` now (None without pidfs, or if it is gone).

    Only race-free while ``pid`` is our unreaped child, or was just announced by one."""
    if not pidfs():
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        return os.fstat(pidfd).st_ino
    finally:
        os.close(pidfd)


def sender_check() -> str:
    """How senders are told apart on this kernel (for ``fdloop info`` and the docs)."""
    if pidfs():
        return "SCM_PIDFD inode (a recycled pid cannot pretend)"
    return "SCM_CREDENTIALS pid only (a recycled pid could pretend)"


class NotifySocket:
    """The bound socket; :meth:`serve` hands each datagram from a live sender to a callback."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="fdloop-notify-")
        path = os.path.join(self._dir, "notify")
        self._sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        )
        try:
            if len(os.fsencode(path)) >= 108:
                # sun_path holds 108 bytes: a long TMPDIR gets an abstract name instead
                # (reachable by any process in our network namespace; senders are checked
                # by their credentials all the same).
                path = "\0" + os.path.basename(self._dir)
            self._sock.bind(path)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            with contextlib.suppress(OSError):  # before Linux 6.5: ENOPROTOOPT
                self._sock.setsockopt(socket.SOL_SOCKET, SO_PASSPIDFD, 1)
        except BaseException:
            self._sock.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.path = "@" + path[1:] if path.startswith("\0") else path
        """The value for ``$NOTIFY_SOCKET`` (``@name`` for an abstract socket, as systemd)."""
        self._closed = False
        self._sweeper, self._sweeper_pipe = _start_sweeper(self._dir)

    async def serve(self, deliver: Callable[[Notice], None]) -> None:
        """Read datagrams for ever, waiting in the loop's poll; ``deliver`` each one.

        Returns once :meth:`close` is called (ClosedResourceError is swallowed)."""
        from ..errors import ClosedResourceError

        while not self._closed:
            try:
                await wait_events(self._sock.fileno(), POLLIN)
            except (ClosedResourceError, OSError):
                if self.closed:
                    return
                raise
            # A bounded batch per wake-up: a program flooding the socket must not keep the
            # loop from everything else (the next wait returns at once if more is queued).
            self.receive_pending(deliver, limit=_BATCH)

    def receive_pending(self, deliver: Callable[[Notice], None], limit: int = 1024) -> None:
        """``deliver`` the datagrams already queued (at most ``limit``), without waiting."""
        for _ in range(limit):
            if self._closed:
                return
            try:
                notice = self._receive()
            except BlockingIOError:
                return
            except OSError:
                continue  # one bad datagram (e.g. ENOBUFS for its fds) is dropped, not fatal
            if notice is not None:
                deliver(notice)

    def _receive(self) -> Notice | None:
        """One datagram, or None if it is to be ignored; BlockingIOError when none is left."""
        room = (
            socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(4)
            + socket.CMSG_SPACE(4 * _FDS_MAX)
        )
        data, ancillary, flags, _address = self._sock.recvmsg(MESSAGE_MAX + 1, room)
        pid: int | None = None
        inode: int | None = None
        for level, kind, payload in ancillary:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                pid = _UCRED.unpack_from(payload)[0]
            elif kind in (SCM_PIDFD, socket.SCM_RIGHTS):
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                for fd in fds:
                    if kind == SCM_PIDFD and inode is None and pidfs():
                        with contextlib.suppress(OSError):
                            inode = os.fstat(fd).st_ino
                    os.close(fd)
        if len(data) > MESSAGE_MAX or flags & socket.MSG_TRUNC:
            return None
        fields = parse(data)
        if fields is None:
            return None
        return Notice(fields, pid, inode)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop :meth:`serve` and remove the socket and its directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            notify_closing(self._sock.fileno())
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._sweeper is not None:
            os.close(self._sweeper_pipe)  # EOF: the sweeper finds nothing left and exits
            self._sweeper.close()  # a daemon: the reaper reaps it when it has exited


def _start_sweeper(directory: str) -> tuple[ProcessFD | None, int]:
    """Start the process that removes ``directory`` once we are gone; (handle, the pipe's
    write end), or (None, -1) if it cannot be started (then only a normal close removes
    the directory)."""
    from ..primitives.spawn import spawn

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        sweeper = spawn(
            ["/bin/sh", "-c", _SWEEPER_SCRIPT, directory], stdin=read_end, stdout=DEVNULL,
            stderr=DEVNULL,
            # Its own session: a terminal's Ctrl-C or hang-up that ends us must not end it.
            start_new_session=True, daemon=True,
        )
    except (OSError, UnsupportedOperation):
        os.close(write_end)
        return None, -1
    finally:
        os.close(read_end)
    return sweeper, write_end


class Listener(Protocol):
    """What a NoticeBoard hands datagrams to (a program's Readiness)."""

    def receive(self, notice: Notice) -> None: ...


class NoticeBoard:
    """The Supervisor's NotifySocket, created at the first notify program's start, and
    who may speak on it: each running notify program's sender keys."""

    def __init__(self) -> None:
        self.socket: NotifySocket | None = None
        self._by_key: dict[tuple[str, int], Listener] = {}

    def open(self, start_reader: Callable[[NotifySocket], None]) -> NotifySocket:
        if self.socket is None:
            self.socket = NotifySocket()
            start_reader(self.socket)
        return self.socket

    def register(self, pid: int, owner: Listener) -> tuple[str, int] | None:
        """Let process ``pid`` speak for ``owner``; the key, or None if it is gone."""
        if pidfs():
            inode = process_inode(pid)
            if inode is None:
                return None
            key = ("inode", inode)
        else:
            key = ("pid", pid)
        self._by_key[key] = owner
        return key

    def unregister(self, key: tuple[str, int]) -> None:
        self._by_key.pop(key, None)

    def deliver(self, notice: Notice) -> None:
        """Hand a datagram to the program that sent it; drop it if none did."""
        if pidfs():
            if notice.inode is None:
                return  # no pidfd attached: we cannot tell who sent it
            owner = self._by_key.get(("inode", notice.inode))
        else:
            owner = None if notice.pid is None else self._by_key.get(("pid", notice.pid))
        if owner is not None:
            owner.receive(notice)

    def receive_pending(self) -> None:
        """Deliver the datagrams already queued (the reader task may not have run yet)."""
        if self.socket is not None:
            self.socket.receive_pending(self.deliver)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self._by_key.clear()
