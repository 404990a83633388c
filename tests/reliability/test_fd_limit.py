"""``fdloop.raise_fd_limit``: raises the soft RLIMIT_NOFILE, never lowers it, refuses clearly."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

import fdloop


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield before
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_default_raises_the_soft_limit_to_the_hard_limit(limits: tuple[int, int]) -> None:
    _soft, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    assert fdloop.raise_fd_limit() == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_raises_to_n_and_never_lowers(limits: tuple[int, int]) -> None:
    _soft, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    assert fdloop.raise_fd_limit(300) == 300
    assert fdloop.raise_fd_limit(100) == 300  # asking for less changes nothing
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (300, hard)


def test_past_what_the_kernel_allows_is_refused_and_changes_nothing(
    limits: tuple[int, int],
) -> None:
    with open("/proc/sys/fs/nr_open") as nr_open:
        ceiling = int(nr_open.read())  # not even root may go past fs.nr_open
    with pytest.raises(PermissionError, match="RLIMIT_NOFILE"):
        fdloop.raise_fd_limit(ceiling + 1)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == limits
