"""Finding the program to exec: the PATH search that execvp(3) would make, done first.

posix_spawn(3) takes a path, and a spawn should fail in the parent, naming the program,
rather than start a child that cannot exec: so the search happens here, in the child's
environment (its PATH), before anything is started.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def find_executable(program: str, env: Mapping[bytes, bytes] | None) -> str:
    """The path posix_spawn should exec for ``program``, searching the child's PATH.

    A name with a slash is used as given (relative to the child's cwd, as execve does).
    Raises FileNotFoundError / PermissionError naming the program.
    """
    if "/" in program:
        return program
    denied = False
    # get_exec_path reads a bytes b"PATH" key too; its stub only admits str keys.
    for directory in os.get_exec_path(env):  # type: ignore[arg-type]
        candidate = os.path.join(directory, program)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = True
    if denied:
        raise PermissionError(13, "Permission denied", program)
    raise FileNotFoundError(2, "No such file or directory", program)
