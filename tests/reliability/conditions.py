"""Conditions the reliability tests set up: exactly k free fds, and backend-only facts.

(The stress size, :func:`scaled`, is in tests/helpers.py.)

* :func:`free_fds` lowers RLIMIT_NOFILE and fills every free fd number below it, so that
  the code under test finds exactly ``k`` fd numbers left: the (k+1)-th fd it makes fails
  with a real EMFILE from the kernel, no mock involved.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fdloop.backends import selected_name

from ..leaks import open_fds


@contextmanager
def free_fds(k: int) -> Iterator[None]:
    """Within the block, exactly ``k`` fd numbers are free below the soft RLIMIT_NOFILE.

    Fds already open above the lowered limit stay usable (the limit only stops new ones).
    Everything is restored on exit. Nothing inside the block may open files before the
    code under test runs (even ``os.listdir`` takes an fd).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = max(open_fds()) + 1 + k + 8
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        fillers.append(spare)
        while True:
            try:
                fillers.append(os.dup(spare))
            except OSError:
                break
        for _ in range(k):
            os.close(fillers.pop())
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def on_backend(*names: str) -> pytest.MarkDecorator:
    """Skip unless the backend in force (FDLOOP_BACKEND, else the native one) is one of
    ``names``: for tests whose exact numbers are facts of that backend's kernel objects."""
    current = selected_name()
    return pytest.mark.skipif(
        current not in names, reason=f"checks {'/'.join(names)} facts; backend is {current}"
    )
