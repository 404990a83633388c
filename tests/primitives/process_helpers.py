"""Small helpers shared by the ProcessFD tests: /proc lookups and backend skips.

The stress size and ``eventually`` are in tests/helpers.py."""

from __future__ import annotations

import os
import select

import pytest
import sniffio

import fdloop.backends

from ..leaks import children_of, processes, stat_fields


def state_of(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (Z = zombie), or None if it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else fields[0]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    return state_of(pid) not in (None, "Z")


def members_of_group(pgid: int) -> set[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    return {pid for pid, f in processes().items() if int(f[2]) == pgid and f[0] != "Z"}


def ended_by(pid: int) -> int | None:
    """Block until our child ``pid`` has exited, reaping nothing (waitid WNOWAIT), and
    return the signal that ended it (0 for an exit); None if it was reaped already.

    For tests with no loop running: after it, one reaper sweep must reap the child.
    Spawn such children with a bounded life (``sleep 30``) so that a missing kill fails
    the test instead of hanging it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        return None
    assert info is not None
    return info.si_status if info.si_code != os.CLD_EXITED else 0


def no_children() -> bool:
    return not children_of(os.getpid())


@pytest.fixture(autouse=True)
def process_backend_only(request: pytest.FixtureRequest) -> None:
    """Skip on a backend without ProcessFD (the kqueue backend has none yet)."""
    if "fdloop_backend" in request.fixturenames:
        request.getfixturevalue("fdloop_backend")
    if not hasattr(fdloop.backends.current(), "spawn_process"):
        pytest.skip("this backend has no ProcessFD")


def only_on(library: str) -> None:
    """Skip the running test unless ``library`` ("asyncio" or "trio") runs it."""
    if sniffio.current_async_library() != library:
        pytest.skip(f"{library} only")


# -- where the kqueue backend differs (see fdloop.capabilities()) -------------------------


def pidfd_fact() -> None:
    """Skip a test of a Linux pidfd fact (its fd kind, or Linux-only instrumentation)."""
    if fdloop.backends.selected_name() != "linux":
        pytest.skip("a Linux pidfd fact: on the kqueue backend the fd is a kqueue")


def needs_backend_in_child_interpreters() -> None:
    """Skip where a child Python would lack this backend: the kqueue emulator lives in
    the test process only (on FreeBSD/macOS the real kqueue is everywhere)."""
    kqueue = getattr(select, "kqueue", None)
    if (
        fdloop.backends.selected_name() == "kqueue"
        and hasattr(kqueue, "fdloop_emulated_platform")
        and not os.environ.get("FDLOOP_KQUEUE_EMULATE_CHILDREN")
    ):
        pytest.skip("the kqueue emulator is not installed in child interpreters")


def kqueue_lacks(words: str) -> bool:
    """True if capabilities() says ProcessFD lacks something mentioning ``words``."""
    for capability in fdloop.backends.capabilities():
        if capability.primitive == "ProcessFD":
            return any(words in missing for missing in capability.missing)
    return False


def wait_exited_unreaped(proc: fdloop.ProcessFD) -> None:
    """Block until our child has exited, leaving it unreaped (waitid with WNOWAIT)."""
    if fdloop.backends.selected_name() == "linux":
        os.waitid(os.P_PIDFD, proc.fileno(), os.WEXITED | os.WNOWAIT)
    else:  # the fd is a kqueue; the pid is safe: our child, not yet reaped
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
