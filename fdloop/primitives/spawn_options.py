"""Checks for the subprocess-style options of ``fdloop.spawn``.

Each function takes what a subprocess user would pass (names or ids, a str command for
``shell=True``) and returns the plain value the SpawnRequest carries, raising TypeError,
ValueError (or, for too large a ``user``/``group`` id, OverflowError, as subprocess does)
that names the argument, before anything is created. The meanings are
subprocess's (Lib/subprocess.py, ``Popen._execute_child`` and ``_get_*`` helpers).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable, Sequence

from .. import _validate
from ..errors import UnknownUserOrGroup

_MAX_ID = 2**32 - 2
"""uid_t/gid_t are 32-bit; 2**32 - 1 is (uid_t)-1, "no change", to the kernel."""
_MAX_PIPE_SIZE = 1 << 31


def shell_argv(argv: object, executable: object) -> list[object]:
    """``/bin/sh -c COMMAND [ARG...]`` (``executable`` in place of /bin/sh), as subprocess
    builds it: a str or bytes is the command; a sequence is the command and the shell's
    ``$0``, ``$1``..."""
    shell: object = "/bin/sh" if executable is None else executable
    if isinstance(argv, (str, bytes)):
        return [shell, "-c", argv]
    if isinstance(argv, os.PathLike):  # (subprocess's refusal: a path is no command)
        raise TypeError("path-like argv is not allowed with shell=True: pass the command str")
    if isinstance(argv, Sequence) and argv:
        return [shell, "-c", *argv]
    raise TypeError(
        f"with shell=True, argv must be a command string, not {type(argv).__name__}"
    )


def path_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a str, bytes or path-like, not {type(value).__name__}")
    encoded = os.fsencode(value)
    if not encoded or b"\0" in encoded:
        raise ValueError(f"{name} must be a non-empty path without NUL bytes")
    return encoded


def process_group(value: object) -> int:
    """setpgid's pgid: 0 (a new group led by the child) or an existing group's id."""
    return _validate.integer("process_group", value, low=0, high=2**31 - 1)


def user_id(value: object) -> int:
    """A uid from a user name or number (UnknownUserOrGroup for an unknown name)."""
    if isinstance(value, str):
        try:
            return pwd.getpwnam(value).pw_uid
        except KeyError:
            raise UnknownUserOrGroup(f"user: no user named {value!r}") from None
    return _fitting_id("user", value)


def group_id(value: object) -> int:
    """``group``: a gid from a group name or number."""
    if isinstance(value, str):
        return _gid_of("group", value)
    return _fitting_id("group", value)


def _gid_of(name: str, group: str) -> int:
    """The gid of the group named ``group`` (UnknownUserOrGroup if there is none)."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnknownUserOrGroup(f"{name}: no group named {group!r}") from None


def _fitting_id(name: str, value: object) -> int:
    """A uid/gid number as subprocess checks ``user`` and ``group``: negative is a
    ValueError, too large for a uid_t/gid_t an OverflowError (both naming ``name``).
    (subprocess raises ValueError for too large an ``extra_groups`` item, and so do we.)"""
    number = _validate.integer(name, value, low=0)
    if number > _MAX_ID:
        raise OverflowError(f"{name} must be <= {_MAX_ID} (a 32-bit id), got {number}")
    return number


def group_ids(values: object) -> tuple[int, ...]:
    """The supplementary groups (setgroups); an empty iterable drops them all."""
    if not isinstance(values, Iterable) or isinstance(values, (str, bytes)):
        raise TypeError(
            f"extra_groups must be an iterable of group names or ids, "
            f"not {type(values).__name__}"
        )
    name = "extra_groups item"
    gids = tuple(
        _gid_of(name, value) if isinstance(value, str)
        else _validate.integer(name, value, low=0, high=_MAX_ID)
        for value in values
    )
    limit = os.sysconf("SC_NGROUPS_MAX")
    if len(gids) > limit:
        raise ValueError(f"extra_groups: {len(gids)} groups, more than NGROUPS_MAX ({limit})")
    return gids


def umask(value: object) -> int | None:
    """The umask to set in the child; None for a negative one, which (as Popen's docs
    put it) means the umask is not set."""
    mask = _validate.integer("umask", value, high=0o777)
    return None if mask < 0 else mask


def pipesize(value: object) -> int:
    return _validate.integer("pipesize", value, low=1, high=_MAX_PIPE_SIZE)
