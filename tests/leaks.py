"""Reading /proc for what a test may have left behind: open fds and child processes."""

from __future__ import annotations

import os


def open_fds() -> set[int]:
    """The fds open in this process right now (the listing's own fd excluded)."""
    names = os.listdir("/proc/self/fd")
    return {int(name) for name in names if os.path.exists(f"/proc/self/fd/{name}")}


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone.

    The command name is in parentheses and may itself contain spaces or ')', so the
    fields start after the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def processes() -> dict[int, list[str]]:
    """stat_fields of every process now: [0] state, [1] ppid, [2] process group."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat_fields(entry)) is not None:
            found[int(entry)] = fields
    return found


def children_of(parent: int) -> set[tuple[int, str]]:
    """(pid, state letter) of every process whose parent is ``parent``; Z means zombie."""
    return {(pid, f[0]) for pid, f in processes().items() if int(f[1]) == parent}
