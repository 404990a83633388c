"""The compiled ready-set calls, arm() and collect() (fdloop/backends/linux/_ready_set.c).

Real children, their real pidfds, a real epoll set (select.epoll's fd): what collect()
reaps and how, that EPOLLONESHOT reports a pidfd once until it is armed again, and the
answers for a pidfd that is not our child and for a child someone else reaped.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux pidfds")

if sys.platform.startswith("linux"):
    from fdloop.backends.linux import spawn as linux_spawn

    native = linux_spawn._clone_spawn
else:
    native = None

if native is None or not hasattr(native, "collect"):
    pytestmark = pytest.mark.skip(reason="_clone_spawn (with arm/collect) is not built")

HANG = 10.0
WEXITED, WNOHANG, WNOWAIT = 4, 1, 0x01000000


@pytest.fixture
def epfd() -> Iterator[int]:
    ep = select.epoll()
    try:
        yield ep.fileno()
    finally:
        ep.close()


def _child(script: str) -> tuple[int, int]:
    """`sh -c script` started by the extension: (pid, pidfd)."""
    assert native is not None
    pid, pidfd, err, step = native.spawn(
        b"/bin/sh", [b"sh", b"-c", script.encode()], None, (-1, -1, -1), None, [], [], True,
        0, False, -1, -1, [], -1, -1, None, 0, 0)
    assert (err, step) == (0, 0)
    return pid, pidfd


def _until_readable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(HANG * 1000), "the process did not exit"


def _running(pidfd: int) -> bool:
    """Our unreaped child is still running (WNOWAIT: the check reaps nothing)."""
    return os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None


def test_an_exited_child_is_reaped_with_its_status_and_rusage(epfd: int) -> None:
    assert native is not None
    pid, pidfd = _child("i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exit 3")
    try:
        native.arm(epfd, pidfd, True)
        _until_readable(pidfd)
        ((fd, item),) = native.collect(epfd, 8)
        assert fd == pidfd
        reaped_pid, status, user, system, max_rss = item
        assert reaped_pid == pid and os.waitstatus_to_exitcode(status) == 3
        assert user + system > 0 and max_rss > 1024 * 1024  # seconds; bytes, not KiB
        with pytest.raises(ChildProcessError):  # reaped: no zombie left
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    finally:
        os.close(pidfd)


def test_a_signalled_child_gives_the_wait_status_reap_gives(epfd: int) -> None:
    assert native is not None
    pid, pidfd = _child("kill -TERM $$")
    try:
        native.arm(epfd, pidfd, True)
        _until_readable(pidfd)
        ((fd, item),) = native.collect(epfd, 8)
        assert fd == pidfd and item[0] == pid and os.waitstatus_to_exitcode(item[1]) == -15
    finally:
        os.close(pidfd)


def test_a_running_child_is_not_reported_and_stays_unreaped(epfd: int) -> None:
    assert native is not None
    _pid, pidfd = _child("exec sleep 30")
    try:
        native.arm(epfd, pidfd, True)
        assert native.collect(epfd, 8) == []
        assert _running(pidfd)
    finally:
        os.kill(_pid, 9)
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        os.close(pidfd)


def test_oneshot_reports_once_until_armed_again(epfd: int) -> None:
    """A reaped child's pidfd stays readable for good; ONESHOT reports it once. Armed
    again, it is reported again, and waitid now says ECHILD (we reaped it already)."""
    assert native is not None
    pid, pidfd = _child("exit 0")
    try:
        native.arm(epfd, pidfd, True)
        _until_readable(pidfd)
        ((_fd, item),) = native.collect(epfd, 8)
        assert item[0] == pid
        assert native.collect(epfd, 8) == []
        native.arm(epfd, pidfd, True)  # in the set already: EEXIST, then EPOLL_CTL_MOD
        assert native.collect(epfd, 8) == [(pidfd, errno.ECHILD)]
        assert native.collect(epfd, 8) == []
    finally:
        os.close(pidfd)


def test_a_child_someone_else_reaped_gives_echild(epfd: int) -> None:
    assert native is not None
    _pid, pidfd = _child("exit 5")
    try:
        assert os.waitid(os.P_PIDFD, pidfd, os.WEXITED).si_status == 5  # "someone else"
        native.arm(epfd, pidfd, True)
        assert native.collect(epfd, 8) == [(pidfd, errno.ECHILD)]
    finally:
        os.close(pidfd)


def test_a_pidfd_that_is_not_our_child_gives_none(epfd: int) -> None:
    """A grandchild's pidfd (its parent is the shell) is armed as no child of ours: its
    exit is reported as None, and nothing of ours is reaped."""
    assert native is not None
    shell = subprocess.Popen(["sh", "-c", "sleep 100 & echo $!; wait"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout is not None
        grandchild = os.pidfd_open(int(shell.stdout.readline()))
        try:
            native.arm(epfd, grandchild, False)
            signal.pidfd_send_signal(grandchild, signal.SIGTERM)  # (opened first: no race)
            _until_readable(grandchild)
            assert native.collect(epfd, 8) == [(grandchild, None)]
        finally:
            os.close(grandchild)
    finally:
        assert shell.wait(HANG) == 0
        if shell.stdout is not None:
            shell.stdout.close()


def test_more_events_than_fit_on_the_stack(epfd: int) -> None:
    assert native is not None
    fds = [os.eventfd(1, os.EFD_CLOEXEC) for _ in range(70)]
    try:
        for fd in fds:
            native.arm(epfd, fd, False)
        got = native.collect(epfd, 100)
        assert sorted(got) == [(fd, None) for fd in sorted(fds)]
        assert native.collect(epfd, 100) == []
    finally:
        for fd in fds:
            os.close(fd)


def test_arm_and_collect_errors_name_the_cause(epfd: int, tmp_path: os.PathLike[str]) -> None:
    assert native is not None
    closed = os.open(os.devnull, os.O_RDONLY)
    os.close(closed)
    with pytest.raises(OSError) as caught:
        native.arm(epfd, closed, True)
    assert caught.value.errno == errno.EBADF
    path = os.path.join(tmp_path, "file")
    regular = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC)
    try:
        with pytest.raises(PermissionError):  # epoll refuses regular files: EPERM
            native.arm(epfd, regular, False)
    finally:
        os.close(regular)
    with pytest.raises(ValueError, match="maxevents must be >= 1"):
        native.collect(epfd, 0)
    with pytest.raises(ValueError, match="fd must be >= 0"):
        native.arm(epfd, -1, False)
    with pytest.raises(OSError) as caught:
        native.collect(closed, 8)
    assert caught.value.errno == errno.EBADF
