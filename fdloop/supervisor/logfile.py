"""Log files for supervised programs: whole lines, size-based rotation, a full disk survived.

A :class:`LogFile` is where one program's output lines go when its config says
``log = "PATH"``. Rotation is by size, named as logrotate and supervisord name it: when
the next line would take ``PATH`` past ``max_bytes``, ``PATH.N-1`` becomes ``PATH.N``
(the oldest, ``PATH.N``, is overwritten), ..., ``PATH`` becomes ``PATH.1``, and a fresh
``PATH`` is started. So no file ever holds more than ``max_bytes``: a single line longer
than that is cut at the limit and goes on in the next file. ``backups = 0`` keeps no
old file (``PATH`` starts again empty); ``max_bytes = 0`` never rotates.

Why the writes may be synchronous: a regular file is always "ready" to the kernel's
poll (epoll refuses to watch one at all), so there is nothing to await, and fdloop uses
no helper threads. The program-output task writes each line with one ``write(2)`` on an
``O_APPEND`` fd as it comes out of the line splitter: at most 64 KiB plus a timestamp,
which lands in the page cache (microseconds; writeback happens later, in the kernel).
The supervisor never calls fsync. What this cannot cover is a file system whose writes
stall (a hung NFS server): keep logs on local disks. A rotation is one rename per
existing backup and an open, also done on the spot (hence at most 100 backups).

Write errors never escape :meth:`LogFile.put`. The first failure (ENOSPC on a full
disk, EDQUOT, EIO, EFBIG) is reported once through ``on_problem``; lines are dropped and
counted while it lasts, and every later line tries again, so writing resumes by itself
when space returns. The first line that gets through is preceded, in the file, by
``fdloop supervise: N lines dropped (REASON)``, and ``on_problem`` hears that writing
resumed. A rotation that fails (a rename refused) is reported once too; the file then
grows past the limit rather than lose lines, and rotation is tried again every
``max_bytes``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import _validate

__all__ = [
    "DEFAULT_BACKUPS",
    "DEFAULT_MAX_BYTES",
    "MAX_BACKUPS",
    "LOG_KEYS",
    "LogFile",
    "LogSettings",
    "log_settings",
    "timestamp",
]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Rotate past 50 MiB, as supervisord's ``stdout_logfile_maxbytes`` does by default."""
DEFAULT_BACKUPS = 10
"""Keep PATH.1 ... PATH.10, as supervisord's ``stdout_logfile_backups`` does by default."""
MAX_BACKUPS = 100
"""A rotation renames every backup while the loop waits (about 0.1 ms each on a busy
disk): at most 100 keeps that under ~10-20 ms, once per ``max_bytes``."""
LOG_KEYS = ("log", "stderr_log", "log_max_bytes", "log_backups", "log_timestamps")
"""The program keys this module reads (config.py accepts them in ``[program.NAME]``)."""


@dataclass(frozen=True)
class LogSettings:
    """Where one program's lines go, already validated.

    ``stdout`` receives stdout, and stderr too unless ``stderr`` names another file.
    Either may be None: that stream goes to the supervisor's own stdout, prefixed.
    """

    stdout: Path | None = None
    stderr: Path | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS
    timestamps: bool = False

    @property
    def separate(self) -> bool:
        """Whether stdout and stderr need pipes of their own (they go to different places)."""
        stderr = self.stderr if self.stderr is not None else self.stdout
        return stderr != self.stdout


def log_settings(
    prefix: str, table: Mapping[str, object], base_dir: Path
) -> LogSettings | None:
    """The log keys of one program table, or None if it has none of them.

    Paths are relative to ``base_dir`` (the config file's directory); the directory
    must exist. TypeError/ValueError name ``prefix.KEY``.
    """
    if not any(key in table for key in LOG_KEYS):
        return None
    stdout = _log_path(f"{prefix}.log", table.get("log"), base_dir)
    stderr = _log_path(f"{prefix}.stderr_log", table.get("stderr_log"), base_dir)
    if stdout is None and stderr is None:
        raise ValueError(
            f"{prefix}: log_max_bytes, log_backups and log_timestamps need log or stderr_log"
        )
    max_bytes = _validate.integer(
        f"{prefix}.log_max_bytes", table.get("log_max_bytes", DEFAULT_MAX_BYTES), low=0
    )
    backups = _validate.integer(
        f"{prefix}.log_backups", table.get("log_backups", DEFAULT_BACKUPS), low=0,
        high=MAX_BACKUPS,
    )
    timestamps = table.get("log_timestamps", False)
    if not isinstance(timestamps, bool):
        raise TypeError(f"{prefix}.log_timestamps must be true or false, not {timestamps!r}")
    return LogSettings(stdout, stderr, max_bytes, backups, timestamps)


def _log_path(key: str, value: object, base_dir: Path) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a path (a str), not {type(value).__name__}")
    if not value or "\0" in value or value.endswith("/"):
        raise ValueError(f"{key} must name a file, got {value!r}")
    path = Path(os.path.abspath(base_dir / value))
    if path.is_dir():
        raise ValueError(f"{key}: {str(path)!r} is a directory, not a file")
    if path.exists() and not path.is_file():
        # A FIFO would block the open, and rotating a device would rename it.
        raise ValueError(f"{key}: {str(path)!r} exists and is not a regular file")
    if not path.parent.is_dir():
        raise ValueError(f"{key}: directory {str(path.parent)!r} does not exist")
    return path


def timestamp(now: float | None = None) -> bytes:
    """``2026-12-02T01:44:25.123+0000 ``: local time to the millisecond, with its offset."""
    if now is None:
        now = time.time()
    local = time.localtime(now)
    millis = int(now % 1 * 1000)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{millis:03d}"
        + time.strftime("%z", local) + " "
    ).encode()


class LogFile:
    """One log file with size-based rotation; :meth:`put` writes a line and never raises.

    Opening happens here: OSError (the file cannot be created or opened) is the only
    exception, raised before anything is written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        timestamps: bool = False,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        """``on_problem(message)`` hears, once each, that writing failed and resumed."""
        self.path = Path(os.fspath(path))
        self.max_bytes = _validate.integer("max_bytes", max_bytes, low=0)
        self.backups = _validate.integer("backups", backups, low=0)
        if not isinstance(timestamps, bool):
            raise TypeError(f"timestamps must be a bool, not {type(timestamps).__name__}")
        self.timestamps = timestamps
        self.on_problem = on_problem
        self.failure: OSError | None = None
        """The error that is making lines drop right now; None while writing works."""
        self.dropped = 0
        """Lines dropped since writing last failed (reset once it works again)."""
        self._partial = False  # the failed write left half a line in the file
        self._limit = self.max_bytes  # pushed on while rotating fails (_try_rotate)
        self._rotation_failed = False
        self._fd = -1
        self._size = 0
        self._open()

    crowded = False
    """Output copiers check this between lines (see ProgramOutput): a file never is."""

    @property
    def size(self) -> int:
        """Bytes in the current ``path`` (as written through this object)."""
        return self._size

    @property
    def closed(self) -> bool:
        return self._size < 0

    def fileno(self) -> int:
        return self._fd

    def _open(self) -> None:
        # O_NONBLOCK only so that a FIFO put in the file's place cannot hang the open
        # (ENXIO without a reader); it is refused just below, as is any other non-file.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(self.path, flags, 0o644)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(self.path))
        except BaseException:
            os.close(fd)
            raise
        self._size = info.st_size
        self._fd = fd

    def put(self, line: bytes) -> None:
        """Write one line (``\\n`` added if missing, timestamp first if asked).

        Never raises: a failure drops the line, is counted and reported once.
        """
        if self._size < 0:
            return  # closed
        if not line.endswith(b"\n"):
            line += b"\n"
        if self.timestamps:
            line = timestamp() + line
        try:
            if self.failure is not None:
                self._write_notice()
                self._recovered()
            self._write(line)
        except OSError as exc:
            self._fail(exc)

    def _write_notice(self) -> None:
        """Say in the file what was lost, before the first line after a failure."""
        reason = self.failure.strerror if self.failure is not None else None
        notice = (
            f"fdloop supervise: {self.dropped} lines dropped "
            f"({reason or self.failure})\n".encode()
        )
        if self._partial:
            notice = b"\n" + notice  # end the half-written line first
        self._write(notice)
        self._partial = False

    def _write(self, data: bytes) -> None:
        """Write all of ``data``, rotating on the way; OSError once the kernel refuses."""
        if self._fd < 0:
            self._open()  # a rotation could not reopen PATH: try again now
        view = memoryview(data)
        try:
            while view:
                room = len(view)
                if self.max_bytes:
                    if self._size + room > self._limit and self._size > 0:
                        self._try_rotate()
                    room = min(room, self._limit - self._size)
                written = os.write(self._fd, view[:room])
                self._size += written
                view = view[written:]
        except OSError:
            if len(view) < len(data):
                self._partial = True  # short write, then ENOSPC: half a line is there
            raise

    def _try_rotate(self) -> None:
        """Rotate; if that fails but the file is still open, write on past the limit.

        Losing lines because a rename is refused (an immutable directory, say) would be
        worse than a file that grows: the next try comes ``max_bytes`` later.
        """
        try:
            self._rotate()
        except OSError as exc:
            if self._fd < 0:
                raise  # nowhere to write: the line is dropped, the next one reopens
            self._limit = self._size + self.max_bytes
            if not self._rotation_failed:
                self._rotation_failed = True
                self._report(
                    f"cannot rotate log {str(self.path)!r} ({exc.strerror or exc}): it "
                    "grows past log_max_bytes; trying again each log_max_bytes"
                )
            return
        self._limit = self.max_bytes
        if self._rotation_failed:
            self._rotation_failed = False
            self._report(f"rotating log {str(self.path)!r} again")

    def _rotate(self) -> None:
        """PATH.N-1 -> PATH.N, ..., PATH -> PATH.1 (or PATH emptied without backups)."""
        if self.backups == 0:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next write lands at offset 0
            self._size = 0
            return
        base = os.fspath(self.path)
        for number in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):  # not that many backups yet
                os.replace(f"{base}.{number}", f"{base}.{number + 1}")
        os.replace(base, f"{base}.1")
        old, self._fd = self._fd, -1
        os.close(old)
        self._open()

    def _fail(self, exc: OSError) -> None:
        self.dropped += 1
        if self.failure is None:
            self.failure = exc
            self._report(
                f"cannot write to log {str(self.path)!r} ({exc.strerror or exc}): its lines "
                "are dropped until writing works again"
            )

    def _recovered(self) -> None:
        if self.failure is None:
            return
        count, self.dropped, self.failure = self.dropped, 0, None
        self._report(f"writing to log {str(self.path)!r} again ({count} lines dropped)")

    def _report(self, message: str) -> None:
        if self.on_problem is not None:
            self.on_problem(message)

    def close(self) -> None:
        """Close the file; later lines are ignored. Idempotent."""
        fd, self._fd, self._size = self._fd, -1, -1
        if fd >= 0:
            os.close(fd)

    def __repr__(self) -> str:
        state = "closed" if self._size < 0 else f"{self._size} bytes"
        return f"<LogFile {str(self.path)!r} {state}, max_bytes={self.max_bytes}>"
