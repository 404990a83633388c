"""What ``fdloop supervise`` checks before it starts anything: fds 0-2 and RLIMIT_NOFILE.

Closed standard fds. A process started with fd 0, 1 or 2 closed (``>&-``) hands the
next fd it opens to that number: a pipe or an epoll fd lands on fd 1, and writing
"stdout" then writes into it (uvloop even aborts, asserting that the fds it closes are
above 2). So the very first thing the command does is open /dev/null onto every closed
one. A closed stdin is fine (nothing reads it). A closed stdout or stderr is refused
with one line on the other one, if open, and :data:`EXIT_OUTPUT`: there would be nowhere
for the programs' output (or the events) to go, and ``>/dev/null`` says "discard" clearly.

File descriptors. Each program costs the supervisor about :data:`FDS_PER_PROGRAM` fds
while it runs. Where the soft RLIMIT_NOFILE is too low and the hard limit allows, the
soft limit is raised to what is needed (not further: programs inherit it, and some
still use select()); beyond the hard limit the command refuses, naming both numbers,
instead of failing halfway with EMFILE.
"""

from __future__ import annotations

import contextlib
import os
import resource

EXIT_OUTPUT = 3
"""Exit status: stdout or stderr was closed at start (nothing started), or a write to
one of them failed (e.g. ENOSPC: reported once on the other stream)."""

FDS_PER_PROGRAM = 6
"""Measured with 50 sleeping programs: 3 each on the Linux backend (the output pipe's
two ends, which stay open for restarts, and the pidfd), 5 on the kqueue backend (its
kqueue and process descriptor too); plus one while a program is spawned (stdin from
/dev/null)."""
FDS_BASE = 64
"""The loop, the signalfds, the ready set, the guardian's pipe, and some slack."""

_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}
_WHAT = {1: "the programs' output", 2: "events and errors"}
_REDIRECT = {1: ">/dev/null", 2: "2>/dev/null"}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def fill_closed_standard_fds() -> tuple[str, int] | None:
    """Open /dev/null onto each closed fd 0-2; if 1 or 2 was closed, a refusal.

    Must run before anything else opens an fd. The refusal is a one-line message and
    the fd to write it to, the other of 1 and 2 (/dev/null now if both were closed);
    None means carry on.
    """
    closed = [fd for fd in (0, 1, 2) if not _is_open(fd)]
    for fd in closed:  # ascending: each open() takes the lowest free number, this one
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    refused = [fd for fd in closed if fd in (1, 2)]
    if not refused:
        return None
    fd = refused[0]
    message = (
        f"fdloop supervise: {_NAMES[fd]} (fd {fd}) is closed, so {_WHAT[fd]} would have "
        f"nowhere to go; to discard {_WHAT[fd]}, redirect it ({_REDIRECT[fd]}) instead"
    )
    return message, 3 - fd


def say(message: str, fd: int = 2) -> None:
    """Write one line to ``fd`` (unbuffered: a failing stream must not fail at exit)."""
    with contextlib.suppress(OSError):  # nowhere else to say it
        os.write(fd, message.encode(errors="replace") + b"\n")


def fd_limit_problem(programs: int) -> str | None:
    """Make RLIMIT_NOFILE fit ``programs``, raising the soft limit if needed and allowed.

    Returns None if it fits (now), else a one-line refusal naming the limit.
    """
    need = FDS_BASE + FDS_PER_PROGRAM * programs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return None
    if hard == resource.RLIM_INFINITY or need <= hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (OSError, ValueError) as exc:
            return (
                f"fdloop supervise: {programs} programs need about {need} file descriptors, "
                f"and raising the soft RLIMIT_NOFILE from {soft} failed: {exc}"
            )
        return None
    return (
        f"fdloop supervise: {programs} programs need about {need} file descriptors, but "
        f"RLIMIT_NOFILE allows at most {hard} (hard limit; soft {soft}): raise it "
        "(ulimit -Hn, LimitNOFILE= under systemd) or split the programs over several "
        "supervisors"
    )
