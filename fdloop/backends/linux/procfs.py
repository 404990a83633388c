"""What /proc/self says about an fd: its kind and its fdinfo lines.

``from_fd`` in every Linux primitive uses this to refuse an fd of the wrong kind with a
clear error instead of misbehaving later.
"""

from __future__ import annotations

import os

from ...errors import NotThisKindOfFD


def fd_kind(fd: int) -> str:
    """What the fd is, e.g. ``anon_inode:[eventfd]``, ``anon_inode:[pidfd]``, ``pipe:[12]``."""
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"fd must be an int, not {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"fd must be >= 0, got {fd}")
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        raise OSError(9, f"fd {fd} is not open") from None


def require_kind(fd: int, *expected: str) -> str:
    """Return the fd's kind, or raise NotThisKindOfFD naming what it is instead."""
    kind = fd_kind(fd)
    if not any(kind == e or kind.startswith(e) for e in expected):
        raise NotThisKindOfFD(f"fd {fd} is {kind}, not {' or '.join(expected)}")
    return kind


def fdinfo(fd: int) -> dict[str, str]:
    """The key/value lines of /proc/self/fdinfo/FD."""
    with open(f"/proc/self/fdinfo/{fd}") as info:
        pairs = (line.split(":", 1) for line in info if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}
