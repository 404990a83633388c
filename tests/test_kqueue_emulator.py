"""The kqueue emulator against the man-page statements it claims to follow.

On Linux these tests run the emulator imitating FreeBSD and macOS; on FreeBSD or macOS
they run the same statements against the real ``select.kqueue`` (which checks that the
emulator's claims are the kernel's).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests import kqueue_emulator as emu
from tests.kqueue_emulator.linux import readable
from tests.primitives.signal_harness import require_alone

# Several tests fork a child that only exits (or only calls kevent) right away.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

REAL = emu.REAL_KQUEUE  # the emulator may already stand in select.kqueue
if REAL is not None:
    PLATFORMS = ["darwin" if sys.platform == "darwin" else "freebsd"]
elif sys.platform.startswith("linux"):
    PLATFORMS = ["freebsd", "darwin"]
else:  # pragma: no cover
    pytest.skip("no kqueue and no emulator here", allow_module_level=True)


@pytest.fixture(params=PLATFORMS)
def platform(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def kq(platform: str) -> Iterator[Any]:
    cls = REAL or (emu.kqueue_darwin if platform == "darwin" else emu.kqueue)
    queue = cls()
    yield queue
    queue.close()


def kev(*args: Any) -> Any:
    return (select.kevent if REAL else emu.kevent)(*args)


def user(platform: str) -> int:
    return emu.EVFILT_USER[platform]


def events(kq: Any, timeout: float = 0) -> list[tuple[int, int, int, int, int]]:
    return [(e.ident, e.filter, e.flags, e.fflags, e.data) for e in kq.control(None, 8, timeout)]


# -- EVFILT_USER, EV_CLEAR, EV_ENABLE/DISABLE, EV_ONESHOT, EV_DISPATCH -------------------

def test_user_event_fires_only_when_triggered(kq: Any, platform: str) -> None:
    kq.control([kev(7, user(platform), emu.KQ_EV_ADD | emu.KQ_EV_CLEAR)], 0)
    assert events(kq) == []
    assert not readable(kq.fileno())
    kq.control([kev(7, user(platform), 0, emu.NOTE_TRIGGER)], 0)
    assert readable(kq.fileno())
    assert events(kq) == [(7, user(platform), emu.KQ_EV_CLEAR, 0, 0)]
    assert events(kq) == []  # EV_CLEAR: "its state is reset"
    assert not readable(kq.fileno())


def test_user_event_without_clear_stays_triggered(kq: Any, platform: str) -> None:
    kq.control([kev(1, user(platform), emu.KQ_EV_ADD, emu.NOTE_TRIGGER)], 0)
    assert len(events(kq)) == 1
    assert len(events(kq)) == 1
    assert readable(kq.fileno())


def test_user_fflags_and_or_copy_nop(kq: Any, platform: str) -> None:
    f = user(platform)
    kq.control([kev(1, f, emu.KQ_EV_ADD | emu.KQ_EV_CLEAR, emu.NOTE_FFCOPY | 0b1100)], 0)
    kq.control([kev(1, f, 0, emu.NOTE_FFOR | 0b0011)], 0)
    kq.control([kev(1, f, 0, emu.NOTE_FFAND | 0b0110)], 0)
    kq.control([kev(1, f, 0, emu.NOTE_FFNOP | 0xFFFF | emu.NOTE_TRIGGER)], 0)
    assert [e[3] for e in events(kq)] == [0b0110]
    kq.control([kev(1, f, 0, emu.NOTE_TRIGGER)], 0)
    assert [e[3] for e in events(kq)] == [0]  # EV_CLEAR also reset the user flags


def test_disabled_event_is_kept_but_not_reported(kq: Any, platform: str) -> None:
    f = user(platform)
    kq.control([kev(1, f, emu.KQ_EV_ADD | emu.KQ_EV_CLEAR | emu.KQ_EV_DISABLE)], 0)
    kq.control([kev(1, f, 0, emu.NOTE_TRIGGER)], 0)
    assert events(kq) == []
    assert not readable(kq.fileno())
    kq.control([kev(1, f, emu.KQ_EV_ENABLE)], 0)
    assert len(events(kq)) == 1


def test_oneshot_event_is_deleted_after_retrieval(kq: Any, platform: str) -> None:
    f = user(platform)
    kq.control([kev(1, f, emu.KQ_EV_ADD | emu.KQ_EV_ONESHOT, emu.NOTE_TRIGGER)], 0)
    assert len(events(kq)) == 1
    with pytest.raises(FileNotFoundError):  # ENOENT: "could not be found to be modified"
        kq.control([kev(1, f, 0, emu.NOTE_TRIGGER)], 0)


def test_dispatch_disables_after_delivery(kq: Any, platform: str) -> None:
    f = user(platform)
    kq.control([kev(1, f, emu.KQ_EV_ADD | emu.EV_DISPATCH, emu.NOTE_TRIGGER)], 0)
    assert len(events(kq)) == 1
    assert events(kq) == []
    kq.control([kev(1, f, emu.KQ_EV_ENABLE)], 0)
    assert len(events(kq)) == 1


# -- errors and receipts ---------------------------------------------------------------

def test_errors_go_to_the_eventlist_when_there_is_room(kq: Any, platform: str) -> None:
    kq.control([kev(1, user(platform), emu.KQ_EV_ADD, emu.NOTE_TRIGGER)], 0)
    got = kq.control([kev(5, user(platform), emu.KQ_EV_DELETE)], 4, 0)
    assert [(e.ident, e.flags & emu.KQ_EV_ERROR, e.data) for e in got] == [
        (5, emu.KQ_EV_ERROR, errno.ENOENT)
    ]  # and the triggered event 1 was not collected in the same call
    with pytest.raises(FileNotFoundError):
        kq.control([kev(5, user(platform), emu.KQ_EV_DELETE)], 0)


def test_receipt_reports_success_without_draining(kq: Any, platform: str) -> None:
    f = user(platform)
    kq.control([kev(1, f, emu.KQ_EV_ADD, emu.NOTE_TRIGGER)], 0)
    got = kq.control([kev(2, f, emu.KQ_EV_ADD | emu.EV_RECEIPT)], 4, 0)
    assert [(e.ident, e.flags & emu.KQ_EV_ERROR, e.data) for e in got] == [
        (2, emu.KQ_EV_ERROR, 0)
    ]
    assert [e[0] for e in events(kq)] == [1]


def test_unknown_filter_is_einval(kq: Any) -> None:
    with pytest.raises(OSError) as caught:
        kq.control([kev(1, -99, emu.KQ_EV_ADD)], 0)
    assert caught.value.errno == errno.EINVAL


def test_closed_kqueue_refuses(kq: Any) -> None:
    kq.close()
    assert kq.closed
    with pytest.raises(ValueError):
        kq.control(None, 1, 0)
    with pytest.raises(ValueError):
        kq.fileno()


@pytest.mark.allow_leaks  # the child exits through os._exit and is reaped here
def test_kqueue_is_not_inherited_by_a_forked_child(kq: Any, platform: str) -> None:
    kq.control([kev(1, user(platform), emu.KQ_EV_ADD)], 0)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            kq.control([kev(1, user(platform), 0, emu.NOTE_TRIGGER)], 0)
        except OSError as error:
            code = 0 if error.errno == errno.EBADF else 2
        os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.allow_leaks  # the child exits through os._exit and is reaped here
def test_a_forked_child_cannot_take_the_kqueue_out_of_a_shared_poll_set(
    kq: Any, platform: str
) -> None:
    """A host loop's epoll set is shared with a forked child; the child's loop teardown
    drops the kqueue fd from it (asyncio's remove_reader, libuv's poll stop). As the
    queue "is not inherited", that must not drop the parent's registration."""
    kq.control([kev(1, user(platform), emu.KQ_EV_ADD | emu.KQ_EV_CLEAR)], 0)
    with select.epoll() as host:
        host.register(kq.fileno(), select.EPOLLIN)
        pid = os.fork()
        if pid == 0:
            with contextlib.suppress(OSError):
                host.unregister(kq.fileno())
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        kq.control([kev(1, user(platform), 0, emu.NOTE_TRIGGER)], 0)
        assert [fd for fd, _ in host.poll(5)] == [kq.fileno()]


# -- EVFILT_TIMER ----------------------------------------------------------------------

def test_periodic_timer_counts_expirations_since_last_report(kq: Any) -> None:
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD, 0, 10)], 0)  # 10 ms
    time.sleep(0.06)
    [(ident, _f, flags, _ff, data)] = events(kq)
    assert ident == 1 and flags & emu.KQ_EV_CLEAR  # "automatically sets the EV_CLEAR"
    assert data >= 4
    assert len(events(kq, timeout=5)) == 1  # still periodic


def test_oneshot_timer_fires_once_and_is_deleted(kq: Any) -> None:
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD | emu.KQ_EV_ONESHOT, 0, 1)], 0)
    assert [e[4] for e in events(kq, timeout=5)] == [1]
    with pytest.raises(FileNotFoundError):
        kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_DELETE)], 0)


@pytest.mark.parametrize("unit", ["seconds", "useconds", "nseconds"])
def test_timer_units(kq: Any, platform: str, unit: str) -> None:
    flag = {"freebsd": {"seconds": 1, "useconds": 4, "nseconds": 8},
            "darwin": {"seconds": 1, "useconds": 2, "nseconds": 4}}[platform][unit]
    amount = {"seconds": 3600, "useconds": 1000, "nseconds": 1_000_000}[unit]
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD | emu.KQ_EV_ONESHOT, flag,
                    amount)], 0)
    if unit == "seconds":
        assert events(kq, timeout=0.05) == []  # an hour is not up yet
    else:
        assert len(events(kq, timeout=5)) == 1


def test_absolute_timer_in_the_past_fires_at_once_and_once(kq: Any, platform: str) -> None:
    flag = emu.TIMER_ABSOLUTE[platform] | 0x1  # NOTE_SECONDS on both
    deadline = int(time.time()) - 10
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD, flag, deadline)], 0)
    assert [e[4] for e in events(kq, timeout=5)] == [1]
    assert events(kq, timeout=0.05) == []


def test_readding_a_timer_drops_undelivered_expirations(kq: Any) -> None:
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD, 0, 1)], 0)
    time.sleep(0.02)
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD, 0, 3_600_000)], 0)
    assert events(kq) == []
    assert not readable(kq.fileno())


# -- EVFILT_SIGNAL ---------------------------------------------------------------------

def _to_this_thread(signo: int) -> None:
    """Aim the signal at this thread, which blocks it: idle worker threads left by other
    tests could take a process-directed one (an emulation limit, see _SignalKnote)."""
    signal.pthread_kill(threading.get_ident(), signo)


def _send(platform: str, signo: int) -> None:
    """A send this platform's EVFILT_SIGNAL records: to this thread on FreeBSD, to the
    process on macOS (xnu records no thread-directed signal), skipping the test if some
    other thread could take it there."""
    if platform == "darwin":
        require_alone((signo,))
        os.kill(os.getpid(), signo)
    else:
        _to_this_thread(signo)


@pytest.fixture(autouse=True)
def send_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's view of this process's own sends (install() puts it in place for
    fdloop's tests; these tests use the emulator classes directly)."""
    if REAL is None:
        emu.install_send_hooks(monkeypatch.setattr)


@pytest.fixture
def ignored_usr1() -> Iterator[None]:
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.usefixtures("ignored_usr1")
def test_signal_is_recorded_even_when_ignored(kq: Any, platform: str) -> None:
    kq.control([kev(signal.SIGUSR1, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
    assert events(kq) == []
    _send(platform, signal.SIGUSR1)
    [(ident, _f, flags, _ff, data)] = events(kq, timeout=5)
    assert (ident, data) == (signal.SIGUSR1, 1) and flags & emu.KQ_EV_CLEAR
    assert events(kq) == []


@pytest.mark.usefixtures("ignored_usr1")
def test_every_kqueue_watching_a_signal_sees_it(kq: Any, platform: str) -> None:
    other = type(kq)()
    try:
        for queue in (kq, other):
            queue.control([kev(signal.SIGUSR1, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
        _send(platform, signal.SIGUSR1)
        assert [e[4] for e in events(kq, timeout=5)] == [1]
        assert [e[4] for e in events(other, timeout=5)] == [1]
    finally:
        other.close()


def test_signal_still_reaches_its_handler(kq: Any, platform: str) -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signo, frame: seen.append(signo))
    try:
        kq.control([kev(signal.SIGUSR2, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
        _send(platform, signal.SIGUSR2)
        assert [e[4] for e in events(kq, timeout=5)] == [1]
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.001)  # let the interpreter run the Python-level handler
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


@pytest.mark.usefixtures("ignored_usr1")
def test_data_counts_every_send_not_only_what_linux_keeps_pending(
    kq: Any, platform: str
) -> None:
    """FreeBSD's tdsendsignal() and xnu's psignal_internal() post the knote on every
    send, and filt_signal() adds one each time: three sends before a kevent(), data 3."""
    kq.control([kev(signal.SIGUSR1, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
    for _ in range(3):
        _send(platform, signal.SIGUSR1)
    assert [e[4] for e in events(kq, timeout=5)] == [3]
    assert events(kq) == []


@pytest.mark.usefixtures("ignored_usr1")
def test_a_thread_directed_signal_is_recorded_on_freebsd_only(
    kq: Any, platform: str
) -> None:
    """xnu skips the knote for PSIG_THREAD sends (pthread_kill, raise); FreeBSD's
    tdsendsignal() posts it for a thread's signal too."""
    kq.control([kev(signal.SIGUSR1, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
    _to_this_thread(signal.SIGUSR1)
    _to_this_thread(signal.SIGUSR1)
    if platform == "darwin":
        assert events(kq, timeout=0.05) == []
    else:
        assert [e[4] for e in events(kq, timeout=5)] == [2]


def test_sigpipe_of_a_write_is_recorded_on_both(kq: Any) -> None:
    """A write to a broken pipe raises SIGPIPE with plain psignal() on macOS (sys_generic.c
    dofilewrite): process-directed, so recorded there too. (Python ignores SIGPIPE.)"""
    kq.control([kev(signal.SIGPIPE, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError):
            os.write(write_end, b"x")
    finally:
        os.close(write_end)
    assert [e[4] for e in events(kq, timeout=5)] == [1]


@pytest.mark.allow_leaks  # SIG_IGN auto-reaps the child; nothing is left to check
def test_ignored_sigchld_is_not_recorded(kq: Any) -> None:
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        kq.control([kev(signal.SIGCHLD, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        with pytest.raises(ChildProcessError):  # auto-reaped
            for _ in range(1000):
                os.waitpid(pid, 0)
                time.sleep(0.001)
        assert events(kq, timeout=0.05) == []
    finally:
        signal.signal(signal.SIGCHLD, previous)


@pytest.mark.usefixtures("ignored_usr1")
def test_deleting_the_last_signal_knote_restores_the_mask(kq: Any) -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    kq.control([kev(signal.SIGUSR1, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_ADD)], 0)
    kq.control([kev(signal.SIGUSR1, emu.KQ_FILTER_SIGNAL, emu.KQ_EV_DELETE)], 0)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


# -- EVFILT_PROC -----------------------------------------------------------------------

def _fork_exiting(code: int, *, wait_for: int | None = None) -> int:
    pid = os.fork()
    if pid == 0:
        if wait_for is not None:
            os.read(wait_for, 1)
        os._exit(code)
    return pid


def test_note_exit_reports_the_wait_status_once(kq: Any, platform: str) -> None:
    read_end, write_end = os.pipe()
    pid = _fork_exiting(7, wait_for=read_end)
    try:
        fflags = emu.KQ_NOTE_EXIT | (emu.NOTE_EXITSTATUS if platform == "darwin" else 0)
        kq.control([kev(pid, emu.KQ_FILTER_PROC, emu.KQ_EV_ADD, fflags)], 0)
        assert events(kq) == []
        os.write(write_end, b"x")
        [(ident, _f, flags, got_fflags, data)] = events(kq, timeout=10)
        assert ident == pid and got_fflags & emu.KQ_NOTE_EXIT
        assert flags & emu.KQ_EV_EOF and flags & emu.KQ_EV_ONESHOT
        assert os.WEXITSTATUS(data) == 7 and os.WIFEXITED(data)
        assert events(kq) == []  # deleted after retrieval
    finally:
        os.close(read_end)
        os.close(write_end)
        assert os.waitpid(pid, 0)[1] == 7 << 8  # the emulator left the zombie to us


def test_macos_gives_the_status_only_with_note_exitstatus(kq: Any, platform: str) -> None:
    if platform != "darwin":
        pytest.skip("a macOS rule")
    read_end, write_end = os.pipe()
    pid = _fork_exiting(7, wait_for=read_end)
    try:
        kq.control([kev(pid, emu.KQ_FILTER_PROC, emu.KQ_EV_ADD, emu.KQ_NOTE_EXIT)], 0)
        os.write(write_end, b"x")
        assert [e[4] for e in events(kq, timeout=10)] == [0]
    finally:
        os.close(read_end)
        os.close(write_end)
        os.waitpid(pid, 0)


def _is_zombie(pid: int) -> bool:
    if sys.platform.startswith("linux"):
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    time.sleep(0.2)  # pragma: no cover - no /proc: give the child time to exit
    return True


def test_registering_on_a_zombie(kq: Any, platform: str) -> None:
    pid = _fork_exiting(3)
    try:
        while not _is_zombie(pid):
            time.sleep(0.001)
        change = kev(pid, emu.KQ_FILTER_PROC, emu.KQ_EV_ADD, emu.KQ_NOTE_EXIT)
        if platform == "darwin":
            with pytest.raises(ProcessLookupError):
                kq.control([change], 0)
        else:
            kq.control([change], 0)
            assert os.WEXITSTATUS(events(kq, timeout=5)[0][4]) == 3
    finally:
        os.waitpid(pid, 0)


def test_registering_on_a_missing_process_is_esrch(kq: Any) -> None:
    pid = _fork_exiting(0)
    os.waitpid(pid, 0)
    with pytest.raises(ProcessLookupError):
        kq.control([kev(pid, emu.KQ_FILTER_PROC, emu.KQ_EV_ADD, emu.KQ_NOTE_EXIT)], 0)


# -- EVFILT_READ -----------------------------------------------------------------------

def test_read_filter_reports_bytes_available_and_eof(kq: Any) -> None:
    read_end, write_end = os.pipe()
    try:
        kq.control([kev(read_end, emu.KQ_FILTER_READ, emu.KQ_EV_ADD)], 0)
        assert events(kq) == []
        os.write(write_end, b"hello")
        assert [e[4] for e in events(kq)] == [5]
        os.close(write_end)
        write_end = -1
        [(_i, _f, flags, _ff, data)] = events(kq)
        assert flags & emu.KQ_EV_EOF and data == 5
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_write_filter_reports_room_and_the_reader_leaving(kq: Any) -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        kq.control([kev(write_end, emu.KQ_FILTER_WRITE, emu.KQ_EV_ADD)], 0)
        [(_i, _f, _flags, _ff, room)] = events(kq)
        assert room > 0  # "the amount of space remaining in the write buffer"
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(write_end, b"x" * 65536)
        assert events(kq) == []  # full: not writable
        assert not readable(kq.fileno())
        os.read(read_end, 65536)
        assert [e[1] for e in events(kq)] == [emu.KQ_FILTER_WRITE]
        os.close(read_end)
        read_end = -1
        [(_i, _f, flags, _ff, _room)] = events(kq)
        assert flags & emu.KQ_EV_EOF  # "EV_EOF when the reader disconnects"
    finally:
        os.close(write_end)
        if read_end >= 0:
            os.close(read_end)


def test_read_and_write_filters_on_one_descriptor(kq: Any) -> None:
    # "A kevent is identified by the (ident, filter) pair": two events on one socket.
    left, right = socket.socketpair()
    with left, right:
        kq.control([kev(left.fileno(), emu.KQ_FILTER_READ, emu.KQ_EV_ADD),
                    kev(left.fileno(), emu.KQ_FILTER_WRITE, emu.KQ_EV_ADD)], 0)
        assert [e[1] for e in events(kq)] == [emu.KQ_FILTER_WRITE]
        right.send(b"ping")
        assert sorted(e[1] for e in events(kq)) == sorted(
            [emu.KQ_FILTER_READ, emu.KQ_FILTER_WRITE]
        )
        kq.control([kev(left.fileno(), emu.KQ_FILTER_WRITE, emu.KQ_EV_DELETE)], 0)
        assert [e[1] for e in events(kq)] == [emu.KQ_FILTER_READ]
        left.recv(4)
        assert events(kq) == []
        assert not readable(kq.fileno())


# -- the kqueue fd in a host loop --------------------------------------------------------

async def test_host_loop_sees_the_kqueue_fd_readable(kq: Any) -> None:
    kq.control([kev(1, emu.KQ_FILTER_TIMER, emu.KQ_EV_ADD | emu.KQ_EV_ONESHOT, 0, 20)], 0)
    with anyio.fail_after(10):
        await anyio.wait_readable(kq.fileno())
    assert [e[4] for e in events(kq)] == [1]
    assert not readable(kq.fileno())


def test_note_exit_of_a_process_that_is_not_our_child(kq: Any, platform: str) -> None:
    """FreeBSD stores any watched process's status; macOS only a child's."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    child = os.fork()
    if child == 0:  # forks the grandchild we watch, reports its pid, reaps it later
        grandchild = os.fork()
        if grandchild == 0:
            os.read(to_child_r, 1)
            os._exit(5)
        os.write(from_child_w, str(grandchild).encode())
        os.waitpid(grandchild, 0)
        os._exit(0)
    try:
        grandchild = int(os.read(from_child_r, 32))
        kq.control([kev(grandchild, emu.KQ_FILTER_PROC, emu.KQ_EV_ADD, emu.KQ_NOTE_EXIT)], 0)
        os.write(to_child_w, b"x")
        [(ident, _f, flags, _ff, data)] = events(kq, timeout=10)
        assert ident == grandchild and flags & emu.KQ_EV_EOF
        assert data == (0 if platform == "darwin" else 5 << 8)
    finally:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            os.close(fd)
        os.waitpid(child, 0)
