"""Reading /proc for what a test may have left behind: open fds and child processes."""

from __future__ import annotations

import os


def open_fds() -> set[int]:
    """The fds open in this process right now (the listing's own fd excluded)."""
    names = os.listdir("/proc/self/fd")
    return {int(name) for name in names if os.path.exists(f"/proc/self/fd/{name}")}


def children_of(parent: int) -> set[tuple[int, str]]:
    """(pid, state letter) of every process whose parent is ``parent``; Z means zombie."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # The command name is in parentheses and may itself contain spaces or ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == parent:
            found.add((int(entry), state))
    return found
