"""SpawnRequest: everything a backend needs to start one child, checked and built once.

``fdloop.spawn`` (fdloop/primitives/spawn.py) turns the caller's arguments into one
immutable SpawnRequest; every backend takes it as it is, so an option is named in one
signature and its shape never changes on the way to the kernel. The type lives down
here, below the primitives, because both sides of that arrow need it.

A NamedTuple rather than a frozen dataclass: one is built per spawn, and a frozen
dataclass sets its 18 fields one ``object.__setattr__`` at a time (154 bytecodes, about
six times what building the tuple costs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

Stdio = int | None
"""None (inherit), an fd >= 0, or subprocess's PIPE / DEVNULL / STDOUT."""


class SpawnRequest(NamedTuple):
    """One child to start. Every field is already validated; fds are C-int sized."""

    program: str
    """The name errors use for the program: argv[0] (or ``executable``) as given."""
    argv: tuple[bytes, ...]
    executable: bytes | None = None
    """What to exec instead of argv[0] (looked up in the child's PATH without a slash)."""
    env: tuple[bytes, ...] | None = None
    """``NAME=value`` entries for execve, or None for our own environment."""
    stdio: tuple[Stdio, Stdio, Stdio] = (None, None, None)
    cwd: bytes | None = None
    pass_fds: tuple[int, ...] = ()
    """Sorted, unique, all >= 3."""
    close_fds: bool = True
    start_new_session: bool = False
    process_group: int | None = None
    """setpgid(0, process_group) in the child: 0 makes it the leader of a new group."""
    user: int | None = None
    group: int | None = None
    extra_groups: tuple[int, ...] | None = None
    umask: int | None = None
    restore_signals: bool = True
    """SIGPIPE and SIGXFSZ (ignored by CPython) back to SIG_DFL, as subprocess does."""
    default_signals: tuple[int, ...] = ()
    """Signals a SignalFD took over here: SIG_DFL in the child, whatever we set."""
    pipesize: int | None = None
    """F_SETPIPE_SZ for the pipes made for PIPE stdio (Linux)."""
    die_with_parent: bool = False
    """SIGKILL the child when the spawning thread dies (PR_SET_PDEATHSIG)."""
    cgroup: int | None = None
    """An open O_DIRECTORY fd of a cgroup v2 directory the child starts in (clone3's
    CLONE_INTO_CGROUP; the caller owns and closes it), or None: our own cgroup."""

    @property
    def env_map(self) -> Mapping[bytes, bytes] | None:
        """``env`` as a mapping (for the PATH search), or None for our own environment.
        (Built on each call: only a PATH search with a given ``env`` asks for it.)"""
        if self.env is None:
            return None
        return dict(entry.split(b"=", 1) for entry in self.env if b"=" in entry)

    @property
    def needs_clone(self) -> tuple[str, ...]:
        """The options that only the compiled clone path can carry out."""
        wanted = {
            "user": self.user is not None,
            "group": self.group is not None,
            "extra_groups": self.extra_groups is not None,
            "umask": self.umask is not None,
        }
        return tuple(name for name, asked in wanted.items() if asked)
