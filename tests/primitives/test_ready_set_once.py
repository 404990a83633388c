"""A ready set's one-shot members (``add_once``), on each backend.

The loop's hub adds every awaited process fd for one report: the kernel (EPOLLONESHOT) or
the kqueue set itself then stops reporting it, so a woken child costs no removal call.
Pinned here on real eventfds and a real child: reported once, silent afterwards though
still readable, re-armed by another ``add_once``, and ``discard`` of a member that has
not fired yet keeps it quiet.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest

import fdloop
from fdloop import backends
from fdloop.backends.contract import ReadySetBackend


@pytest.fixture
def ready_set() -> Iterator[ReadySetBackend]:
    ready = backends.current().ready_set()
    yield ready
    ready.close()


def test_a_once_member_is_reported_once_then_rearmed_on_request(
    ready_set: ReadySetBackend,
) -> None:
    with fdloop.EventFD() as quiet, fdloop.EventFD() as loud:
        loud.write(1)
        ready_set.add_once(quiet.fileno())
        ready_set.add_once(loud.fileno())
        assert ready_set.ready() == [loud.fileno()]
        assert ready_set.ready() == []  # still readable, no longer watched
        ready_set.add_once(loud.fileno())  # re-armed
        assert ready_set.ready() == [loud.fileno()]
        quiet.write(1)
        assert ready_set.ready() == [quiet.fileno()]
        assert ready_set.ready() == []


def test_discarding_an_armed_once_member_keeps_it_quiet(ready_set: ReadySetBackend) -> None:
    with fdloop.EventFD() as efd:
        ready_set.add_once(efd.fileno())
        ready_set.discard(efd.fileno())
        efd.write(1)
        assert ready_set.ready() == []
        ready_set.discard(efd.fileno())  # twice: nothing happens


def test_a_member_keeps_the_mode_of_its_last_add(ready_set: ReadySetBackend) -> None:
    # (kqueue: EV_ADD on an existing event keeps the flags it was created with, so the
    # set must replace the event, not modify it, when the mode changes)
    with fdloop.EventFD() as efd:
        efd.write(1)
        ready_set.add_once(efd.fileno())
        ready_set.add(efd.fileno())  # before it fired: level from now on
        for _ in range(3):
            assert ready_set.ready() == [efd.fileno()]
        ready_set.add_once(efd.fileno())  # level -> once
        assert ready_set.ready() == [efd.fileno()]
        assert ready_set.ready() == []
        ready_set.add(efd.fileno())  # after it fired: level again
        assert ready_set.ready() == [efd.fileno()]
        assert ready_set.ready() == [efd.fileno()]


def test_a_level_member_stays_reported_beside_once_members(ready_set: ReadySetBackend) -> None:
    with fdloop.EventFD() as level, fdloop.EventFD() as once:
        level.write(1)
        once.write(1)
        ready_set.add(level.fileno())
        ready_set.add_once(once.fileno())
        assert sorted(ready_set.ready()) == sorted([level.fileno(), once.fileno()])
        assert ready_set.ready() == [level.fileno()]
        ready_set.discard(level.fileno())
        assert ready_set.ready() == []


def test_an_exited_child_is_reported_once(ready_set: ReadySetBackend) -> None:
    proc = fdloop.spawn(["/bin/true"])
    try:
        ready_set.add_once(proc.fileno())
        poller = select.poll()
        poller.register(ready_set.fileno(), select.POLLIN)
        assert poller.poll(10_000), "the exit was never reported"
        assert ready_set.ready() == [proc.fileno()]
        assert ready_set.ready() == []
        assert proc.poll() == 0
    finally:
        proc.close()


@pytest.fixture(params=["compiled", "python"])
def reaping_ready_set(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                      ) -> Iterator[ReadySetBackend]:
    """The Linux ready set with the extension's arm/collect, and with its pure-Python
    collection (as without the extension)."""
    if backends.selected_name() != "linux":
        pytest.skip("only the Linux ready set reaps as it reports")
    from fdloop.backends.linux import readyset

    if request.param == "python":
        monkeypatch.setattr(readyset, "_arm", None)
        monkeypatch.setattr(readyset, "_collect", None)
    elif readyset._collect is None:
        pytest.skip("the _clone_spawn extension is not built")
    ready = backends.current().ready_set()
    yield ready
    ready.close()


def test_ready_reaped_reaps_a_child_member_as_it_reports_it(
    reaping_ready_set: ReadySetBackend,
) -> None:
    ready_set = reaping_ready_set
    child = fdloop.spawn(["/bin/sh", "-c", "exit 7"])
    watched = fdloop.EventFD()
    try:
        watched.write(1)
        ready_set.add_once(child.fileno(), child=True)
        ready_set.add_once(watched.fileno())
        poller = select.poll()
        poller.register(child.fileno(), select.POLLIN)
        assert poller.poll(10_000), "the child never exited"
        reports = dict(ready_set.ready_reaped())
        raw = reports[child.fileno()]
        assert type(raw) is tuple
        pid, status, _user, _system, max_rss = raw
        assert (pid, status >> 8) == (child.pid, 7)
        assert max_rss > 0
        assert type(reports[watched.fileno()]) is not tuple  # not a child: never reaped
        assert ready_set.ready_reaped() == []  # both reported once
        with pytest.raises(ChildProcessError):
            os.waitid(os.P_PIDFD, child.fileno(), os.WEXITED | os.WNOHANG)  # reaped
    finally:
        watched.close()
        child.close()


async def test_a_wait_gets_the_status_the_ready_set_reaped() -> None:
    with fdloop.spawn(["/bin/sh", "-c", "exit 5"]) as proc:
        status = await proc.wait()
    assert status.returncode == 5
    assert status.rusage is not None
