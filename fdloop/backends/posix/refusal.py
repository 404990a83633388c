"""Naming the call when a sandbox refuses it before it runs.

A container's seccomp profile fails a system call it does not allow with EPERM or ENOSYS
(SECCOMP_RET_ERRNO), a security module with EACCES or EPERM. Python's OSError then says
only "Operation not permitted", which reads like a file's permissions, and the caller
cannot tell which of the calls behind a constructor was refused. :func:`refused` words
such an error (same type, same errno) so that it names the call; other errors pass
through unchanged.
"""

from __future__ import annotations

import errno
import os

__all__ = ["REFUSALS", "refused"]

REFUSALS = frozenset({errno.EPERM, errno.ENOSYS, errno.EACCES})
"""The errnos a sandbox answers with for a call it does not allow."""


def refused(
    exc: OSError, call: str, hint: str = "a seccomp filter or a security module?",
    then: str = "",
) -> OSError:
    """``exc`` as "CALL refused (strerror; HINT)THEN" if its errno is a refusal's, else
    ``exc`` itself. Raise the result ``from exc``."""
    if exc.errno not in REFUSALS:
        return exc
    return type(exc)(exc.errno, f"{call} refused ({os.strerror(exc.errno)}; {hint}){then}")
