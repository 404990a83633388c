"""The per-process limit on open files (RLIMIT_NOFILE): raising it, and naming it in errors.

Every fdloop object is one fd, and a spawned child with piped stdio costs up to four
(a pidfd and three pipe ends). Many systems still start processes with a soft limit of
1024, so a program holding a couple of thousand children, timers or streams runs into
EMFILE. That limit is plain POSIX (Linux, FreeBSD, macOS alike), so this module serves
every backend:

* :func:`raise_fd_limit` lifts the soft limit up to the hard limit, which needs no
  privilege (setrlimit(2): an unprivileged process may set its soft limit to any value
  up to the hard limit);
* :func:`out_of_fds` turns a bare EMFILE/ENFILE into an OSError (same errno) that says
  what fdloop was doing, which limit was hit and how to raise it.
"""

from __future__ import annotations

import errno
import numbers
import os
import resource
import sys

__all__ = ["fd_limit", "out_of_fds", "raise_fd_limit"]

_MACOS_OPEN_MAX = 10240
"""macOS refuses a soft limit above OPEN_MAX (10240) even when the hard limit is
RLIM_INFINITY (setrlimit(2) on Darwin)."""


def fd_limit() -> tuple[int, int]:
    """``(soft, hard)`` RLIMIT_NOFILE of this process (RLIM_INFINITY as -1 on some builds)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _ceiling(hard: int) -> int:
    """The highest soft limit the kernel will take when the hard limit is ``hard``."""
    if hard != resource.RLIM_INFINITY:
        return hard
    if sys.platform == "darwin":
        return _MACOS_OPEN_MAX
    try:  # Linux: fs.nr_open caps every fd table, whatever the rlimit says
        with open("/proc/sys/fs/nr_open") as nr_open:
            return int(nr_open.read())
    except (OSError, ValueError):
        return 1 << 20


def raise_fd_limit(n: int | None = None) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``n`` (default: as high as allowed).

    Never lowers it: returns the soft limit now in force, which is at least ``n``.
    ``n=None`` raises the soft limit to the hard limit, which any process may do. An
    ``n`` above the hard limit raises both, which needs privilege (CAP_SYS_RESOURCE on
    Linux). Raises TypeError/ValueError naming ``n`` for a non-int or negative value,
    PermissionError (and changes nothing) when the kernel refuses.
    """
    wanted = _wanted(n)
    soft, hard = fd_limit()
    target = _ceiling(hard) if wanted is None else wanted
    if soft != resource.RLIM_INFINITY and target > soft:
        new_hard = hard if hard == resource.RLIM_INFINITY or target <= hard else target
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, new_hard))
        except (OSError, ValueError) as exc:
            raise PermissionError(
                errno.EPERM,
                f"raise_fd_limit: cannot set RLIMIT_NOFILE to {target} (soft limit {soft}, "
                f"hard limit {hard}; above the hard limit needs CAP_SYS_RESOURCE, and Linux "
                f"caps it at fs.nr_open): {exc}",
            ) from None
    return fd_limit()[0]


def _wanted(n: object) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int or None, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(n)


def out_of_fds(exc: OSError, doing: str) -> OSError:
    """An OSError with ``exc``'s errno naming the limit ``doing`` ran into.

    ``exc`` is returned unchanged unless it is EMFILE (this process's RLIMIT_NOFILE) or
    ENFILE (the system-wide table).
    """
    if exc.errno == errno.EMFILE:
        soft, hard = fd_limit()
        text = (
            f"{doing}: too many open files in this process (RLIMIT_NOFILE soft limit {soft}, "
            f"hard limit {hard}); raise the soft limit with fdloop.raise_fd_limit() or "
            "close fds you no longer need"
        )
    elif exc.errno == errno.ENFILE:
        text = f"{doing}: the system-wide table of open files is full (ENFILE)"
    else:
        return exc
    detail = exc.strerror if exc.strerror and exc.strerror != os.strerror(exc.errno) else ""
    return OSError(exc.errno, f"{text}{'; ' + detail if detail else ''}")
