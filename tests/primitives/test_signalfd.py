"""SignalFD with real signals sent to this very process, on asyncio, uvloop and trio.

Two things differ from the other primitive tests, both because a signal is a process-wide
event:

* Async bodies run through ``anyio.run`` (``@on_every_loop``) rather than anyio's pytest
  plugin. The plugin drives trio in *guest mode*, where ``epoll_wait`` runs in a trio
  worker thread: that thread predates every SignalFD, does not block its signals (so a
  process-directed one may be handed to it and run the default action: the test process
  dies), and its poll cannot see a signal aimed at the main thread. ``trio.run`` polls
  in the calling thread, as applications do.
* Tests that send a process-directed signal (kill(2), a child's exit) first wait for idle
  worker threads left by earlier tests (trio's and anyio's end after 10 s idle) to go
  away, and skip if a thread that could take the signal stays. Other tests aim their
  signals at the main thread (pthread_kill), which no other thread can take.

Every test must leave the signal mask, the dispositions and the pending set exactly as it
found them (``signal_state_is_left_as_found``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import signal
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name
from fdloop.primitives.signalfd import signals_taken_over

SIGUSR1 = signal.SIGUSR1
SIGUSR2 = signal.SIGUSR2
SIGRT = signal.SIGRTMIN + 1
USED = (SIGUSR1, SIGUSR2, SIGRT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP)
LINUX = selected_name() == "linux"
TIMEOUT = 10  # generous: only there so that a bug fails instead of hanging


if LINUX:
    from fdloop.backends.linux.signalfd import SI_QUEUE, SI_TKILL, SI_USER


def on_every_loop(body: Callable[[], Awaitable[None]]) -> Callable[..., None]:
    """Turn an async test body into a sync test run by anyio.run on each loop."""

    def test(anyio_backend: tuple[str, dict[str, Any]]) -> None:
        name, options = anyio_backend

        async def bounded() -> None:
            with anyio.fail_after(TIMEOUT):
                await body()

        anyio.run(bounded, backend=name, backend_options=options)

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


# -- the process-wide state every test must leave alone -----------------------------------


@pytest.fixture(autouse=True)
def signal_state_is_left_as_found() -> Iterator[None]:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    handlers = {signo: signal.getsignal(signo) for signo in USED}
    yield
    problems = []
    pending = signal.sigpending() & set(USED)
    for signo in pending:  # take them, or unblocking below would deliver them
        while signal.sigtimedwait([signo], 0) is not None:
            pass
    if pending:
        problems.append(f"left pending: {sorted(pending)}")
    if signals_taken_over():
        problems.append(f"still taken over: {sorted(signals_taken_over())}")
    mask_after = signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if mask_after != mask:
        problems.append(f"mask was {sorted(mask)}, left {sorted(mask_after)}")
    for signo, handler in handlers.items():
        if signal.getsignal(signo) != handler:
            problems.append(f"{signo}: handler was {handler}, left {signal.getsignal(signo)}")
            if handler is not None:
                signal.signal(signo, handler)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def exposed_threads() -> list[int]:
    """Other threads that do not block every signal in USED."""
    me, exposed = threading.get_native_id(), []
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/status") as status:
                line = next(x for x in status if x.startswith("SigBlk:"))
        except (OSError, StopIteration):
            continue
        blocked = int(line.split(":")[1], 16)
        if int(name) != me and any(not blocked >> (s - 1) & 1 for s in USED):
            exposed.append(int(name))
    return exposed


@pytest.fixture
def alone() -> None:
    """Wait until no other thread could take a process-directed signal; skip otherwise."""
    deadline = time.monotonic() + 20
    while exposed_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    if exposed_threads():
        pytest.skip(f"threads {exposed_threads()} could take a process-directed signal")


def to_main_thread(signo: int) -> None:
    """Aim a signal at the main thread (tgkill): no other thread can take it."""
    signal.pthread_kill(threading.main_thread().ident or 0, signo)


def blocked() -> set[int]:
    return signal.pthread_sigmask(signal.SIG_BLOCK, [])


def sigqueue(pid: int, signo: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    # union sigval is passed like a pointer-sized integer on the ABIs we run on.
    if libc.sigqueue(pid, signo, value) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")


# -- reading ---------------------------------------------------------------------------------


@on_every_loop
async def test_kill_is_read_with_sender_and_code() -> None:
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        to_main_thread(SIGUSR1)
        info = await sfd.read()
    assert isinstance(info, fdloop.SignalInfo)
    assert info.signo == SIGUSR1
    assert info.signal is signal.Signals.SIGUSR1
    if LINUX:
        assert (info.code, info.pid, info.uid) == (SI_TKILL, os.getpid(), os.getuid())


def test_process_directed_kill_reports_si_user(alone: None, anyio_backend: Any) -> None:
    async def body() -> None:
        with fdloop.SignalFD([SIGUSR1, SIGUSR2]) as sfd:
            os.kill(os.getpid(), SIGUSR2)
            info = await sfd.read()
        assert info.signo == SIGUSR2
        if LINUX:
            assert (info.code, info.pid, info.uid) == (SI_USER, os.getpid(), os.getuid())

    on_every_loop(body)(anyio_backend)


@on_every_loop
async def test_read_waits_for_a_signal_from_another_thread() -> None:
    async with fdloop.SignalFD({SIGUSR1}) as sfd:
        main = threading.get_ident()

        def send_later() -> None:
            time.sleep(0.05)
            signal.pthread_kill(main, SIGUSR1)

        thread = threading.Thread(target=send_later)
        thread.start()
        try:
            info = await sfd.read()
        finally:
            thread.join()
    assert info.signo == SIGUSR1
    if LINUX:
        assert (info.code, info.pid) == (SI_TKILL, os.getpid())


@on_every_loop
async def test_standard_signals_coalesce_while_pending() -> None:
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        for _ in range(3):
            to_main_thread(SIGUSR1)
        assert (await sfd.read()).signo == SIGUSR1
        with pytest.raises(BlockingIOError):
            sfd.read_nowait()


@on_every_loop
async def test_realtime_signals_queue_one_read_per_send() -> None:
    with fdloop.SignalFD({SIGRT}) as sfd:
        for _ in range(3):
            to_main_thread(SIGRT)
        infos = [await sfd.read() for _ in range(3)]
        assert [i.signo for i in infos] == [SIGRT] * 3
        assert infos[0].signal == SIGRT
        with pytest.raises(BlockingIOError):
            sfd.read_nowait()


@pytest.mark.skipif(not LINUX, reason="sigqueue values are read by the Linux backend only")
def test_sigqueue_value_and_code(alone: None) -> None:
    with fdloop.SignalFD({SIGRT}) as sfd:
        for value in (42, -7 & 0xFFFFFFFF, 0x1_0000_002A):
            sigqueue(os.getpid(), SIGRT, value)
        infos = [sfd.read_nowait() for _ in range(3)]
    assert {i.code for i in infos} == {SI_QUEUE}
    assert [i.value for i in infos] == [42, -7, 42]  # ssi_int: the low 32 bits, signed
    assert [i.ptr for i in infos] == [42, 0xFFFFFFF9, 0x1_0000_002A]
    assert {i.pid for i in infos} == {os.getpid()}


def test_sender_pid_and_uid_from_a_child_process(alone: None, anyio_backend: Any) -> None:
    async def body() -> None:
        with fdloop.SignalFD({SIGUSR1}) as sfd:
            parent = os.getpid()
            child = os.fork()
            if child == 0:
                try:
                    os.kill(parent, SIGUSR1)
                finally:
                    os._exit(0)
            try:
                info = await sfd.read()
            finally:
                os.waitpid(child, 0)
        assert (info.signo, info.pid, info.uid) == (SIGUSR1, child, os.getuid())
        if LINUX:
            assert info.code == SI_USER

    on_every_loop(body)(anyio_backend)


def test_sigchld_reports_the_child_exit(alone: None, anyio_backend: Any) -> None:
    async def body() -> None:
        with fdloop.SignalFD({signal.SIGCHLD}) as sfd:
            child = os.fork()
            if child == 0:
                os._exit(7)
            try:
                info = await sfd.read()
            finally:
                os.waitpid(child, 0)
        assert (info.signal, info.pid) == (signal.SIGCHLD, child)
        if LINUX:
            assert (info.code, info.status) == (os.CLD_EXITED, 7)
            assert info.utime is not None and info.utime >= 0

    on_every_loop(body)(anyio_backend)


# -- waiting, cancelling, closing ------------------------------------------------------------


@on_every_loop
async def test_cancelled_read_consumes_nothing() -> None:
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        with anyio.move_on_after(0.05) as scope:
            await sfd.read()
        assert scope.cancelled_caught
        async with anyio.create_task_group() as tg:
            reader_scope = anyio.CancelScope()

            async def reader() -> None:
                with reader_scope:
                    await sfd.read()

            tg.start_soon(reader)
            await anyio.sleep(0.02)
            to_main_thread(SIGUSR1)  # pending now, but the reader is cancelled first
            reader_scope.cancel()
        assert reader_scope.cancelled_caught
        assert sfd.read_nowait().signo == SIGUSR1


@on_every_loop
async def test_many_waiters_each_get_one_signal() -> None:
    got: list[int] = []
    with fdloop.SignalFD({SIGRT}) as sfd:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(lambda: _read_into(got, sfd))
            await anyio.sleep(0.05)
            for _ in range(4):
                to_main_thread(SIGRT)
    assert got == [SIGRT] * 4


async def _read_into(got: list[int], sfd: fdloop.SignalFD) -> None:
    got.append((await sfd.read()).signo)


@on_every_loop
async def test_close_wakes_every_waiter_with_closed_resource_error() -> None:
    sfd = fdloop.SignalFD({SIGUSR1})
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await sfd.read()
        except fdloop.ClosedResourceError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(reader)
        await anyio.sleep(0.05)
        sfd.close()
    assert len(errors) == 3
    assert SIGUSR1 not in blocked()


@on_every_loop
async def test_async_for_yields_signals_and_ends_on_close() -> None:
    seen: list[int] = []
    async with fdloop.SignalFD({SIGUSR1, SIGUSR2}) as sfd, anyio.create_task_group() as tg:
        async def consume() -> None:
            async for info in sfd:
                seen.append(info.signo)

        tg.start_soon(consume)
        for count, signo in enumerate((SIGUSR1, SIGUSR2, SIGUSR1), start=1):
            to_main_thread(signo)
            while len(seen) < count:  # one at a time, or two SIGUSR1 would coalesce
                await anyio.sleep(0.01)
        await sfd.aclose()
    assert seen == [SIGUSR1, SIGUSR2, SIGUSR1]


# -- taking over and giving back ---------------------------------------------------------


def test_signals_are_blocked_while_open_and_unblocked_after() -> None:
    assert SIGUSR1 not in blocked()
    with fdloop.SignalFD({SIGUSR1, SIGRT}) as sfd:
        assert {SIGUSR1, SIGRT} <= blocked()
        assert signals_taken_over() == {SIGUSR1, SIGRT}
        assert sfd.signals == {signal.Signals.SIGUSR1, SIGRT}
    assert not {SIGUSR1, SIGRT} & blocked()
    assert signals_taken_over() == frozenset()


def test_overlapping_signalfds_give_back_only_with_the_last_one() -> None:
    first = fdloop.SignalFD({SIGUSR1, SIGUSR2})
    second = fdloop.SignalFD({SIGUSR1})
    first.close()
    assert SIGUSR1 in blocked()  # the second one still needs it
    assert SIGUSR2 not in blocked()
    to_main_thread(SIGUSR1)
    assert second.read_nowait().signo == SIGUSR1
    second.close()
    assert SIGUSR1 not in blocked()


def test_a_signal_blocked_beforehand_stays_blocked() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIGUSR1})
    try:
        with fdloop.SignalFD({SIGUSR1, SIGUSR2}):
            assert signals_taken_over() == {SIGUSR2}  # SIGUSR1 was not ours to block
        assert SIGUSR1 in blocked()
        assert SIGUSR2 not in blocked()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIGUSR1})


def test_an_ignored_signal_is_read_and_ignored_again_afterwards() -> None:
    previous = signal.signal(SIGUSR1, signal.SIG_IGN)
    try:
        with fdloop.SignalFD({SIGUSR1}) as sfd:
            # An ignored signal is dropped when sent; SIG_DFL is safe while it is blocked.
            assert signal.getsignal(SIGUSR1) == signal.SIG_DFL
            assert signals_taken_over() == {SIGUSR1}
            to_main_thread(SIGUSR1)
            assert sfd.read_nowait().signo == SIGUSR1
        assert signal.getsignal(SIGUSR1) == signal.SIG_IGN
    finally:
        signal.signal(SIGUSR1, previous)


def test_sigpipe_which_python_ignores_can_be_read() -> None:
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's own start-up
    with fdloop.SignalFD({signal.SIGPIPE}) as sfd:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            with pytest.raises(BrokenPipeError):
                os.write(write_end, b"x")  # raises SIGPIPE at the writing thread
        finally:
            os.close(write_end)
        assert sfd.read_nowait().signal == signal.SIGPIPE
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN


def test_sigchld_is_never_set_to_ignore() -> None:
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with fdloop.SignalFD({signal.SIGCHLD}):
            assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
        # Putting SIG_IGN back would make the kernel reap every child on its own.
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_a_handler_installed_meanwhile_is_kept() -> None:
    def handler(signo: int, frame: object) -> None:
        pass

    previous = signal.signal(SIGUSR1, signal.SIG_IGN)
    try:
        with fdloop.SignalFD({SIGUSR1}):
            signal.signal(SIGUSR1, handler)
        assert signal.getsignal(SIGUSR1) is handler
    finally:
        signal.signal(SIGUSR1, previous)


def test_closing_discards_what_was_not_read() -> None:
    delivered: list[int] = []
    previous = signal.signal(SIGUSR1, lambda signo, frame: delivered.append(signo))
    try:
        with fdloop.SignalFD({SIGUSR1, SIGRT}):
            to_main_thread(SIGUSR1)
            to_main_thread(SIGRT)
            to_main_thread(SIGRT)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # runs pending Python handlers
        assert delivered == []
        assert not signal.sigpending() & {SIGUSR1, SIGRT}
    finally:
        signal.signal(SIGUSR1, previous)


@pytest.mark.parametrize(
    ("signals", "error", "words"),
    [
        ([], ValueError, "empty"),
        ([0], ValueError, "not a signal number"),
        ([-1], ValueError, "not a signal number"),
        ([signal.NSIG], ValueError, "not a signal number"),
        ([SIGUSR1, signal.SIGKILL], ValueError, "SIGKILL"),
        ([signal.SIGSTOP], ValueError, "SIGSTOP"),
        ([32], ValueError, "reserved"),
        (["10"], TypeError, "ints"),
        ([10.0], TypeError, "ints"),
        ([True], TypeError, "ints"),
        ([None], TypeError, "ints"),
        (10, TypeError, "iterable"),
        ("10", TypeError, "iterable"),
        (None, TypeError, "iterable"),
    ],
)
def test_bad_signals_are_refused_and_nothing_changes(
    signals: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=f"signals.*{words}|{words}.*signals"):
        fdloop.SignalFD(signals)  # type: ignore[arg-type]
    assert blocked() == set()
    assert signals_taken_over() == frozenset()


def test_an_ignored_signal_cannot_be_taken_from_another_thread() -> None:
    outcome: list[object] = []

    def worker() -> None:
        before = blocked()
        try:
            fdloop.SignalFD({SIGUSR1, signal.SIGPIPE})  # SIGPIPE is SIG_IGN
        except ValueError as exc:
            outcome.append(exc)
        outcome.append(blocked() == before)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert isinstance(outcome[0], ValueError)
    assert "SIGPIPE" in str(outcome[0]) and "main thread" in str(outcome[0])
    assert outcome[1] is True
    assert signals_taken_over() == frozenset()


# -- threads ------------------------------------------------------------------------------


def test_warns_when_an_earlier_thread_could_take_the_signal() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.warns(fdloop.SignalDeliveryWarning, match=f"SIGUSR1.*{thread.native_id}"):
            sfd = fdloop.SignalFD({SIGUSR1})
        sfd.close()
    finally:
        stop.set()
        thread.join()


def test_no_warning_for_threads_that_inherited_the_mask(alone: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", fdloop.SignalDeliveryWarning)
        with fdloop.SignalFD({SIGUSR1}):
            stop = threading.Event()
            thread = threading.Thread(target=stop.wait)
            thread.start()  # inherits the blocked mask, so it cannot take SIGUSR1
            try:
                fdloop.SignalFD({SIGUSR1}).close()
            finally:
                stop.set()
                thread.join()


def test_created_in_a_worker_thread_warns_about_the_main_thread() -> None:
    seen: list[object] = []

    def worker() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fdloop.SignalFD({SIGUSR1}):
                seen.append(SIGUSR1 in blocked())
        seen.append(SIGUSR1 in blocked())
        seen.append([w.category for w in caught])
        seen.append(str(caught[0].message) if caught else "")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen[:3] == [True, False, [fdloop.SignalDeliveryWarning]]
    assert str(threading.get_native_id()) in str(seen[3])


def test_closing_in_another_thread_warns_that_the_mask_stays() -> None:
    sfd = fdloop.SignalFD({SIGUSR1})
    caught: list[warnings.WarningMessage] = []

    def closer() -> None:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            sfd.close()
        caught.extend(record)

    thread = threading.Thread(target=closer)
    thread.start()
    thread.join()
    try:
        assert sfd.closed
        assert [w.category for w in caught] == [fdloop.SignalDeliveryWarning]
        assert "stays blocked" in str(caught[0].message)
        assert SIGUSR1 in blocked()  # only the creating thread could unblock it
        assert signals_taken_over() == frozenset()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIGUSR1})


# -- living next to the loops' own signal handling --------------------------------------------


@on_every_loop
async def test_coexists_with_the_loops_own_signal_handlers() -> None:
    """SIGUSR2 through the loop's handler while a SignalFD reads SIGUSR1: both arrive."""
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        if fdloop._aio.current_library() == "trio":
            import trio

            with trio.open_signal_receiver(SIGUSR2) as receiver:
                to_main_thread(SIGUSR1)
                os.kill(os.getpid(), SIGUSR2)  # any thread may take it: it has a handler
                assert await receiver.__anext__() == SIGUSR2
                assert (await sfd.read()).signo == SIGUSR1
        else:
            loop = asyncio.get_running_loop()
            got_usr2 = asyncio.Event()
            loop.add_signal_handler(SIGUSR2, got_usr2.set)
            try:
                to_main_thread(SIGUSR1)
                os.kill(os.getpid(), SIGUSR2)
                await got_usr2.wait()
                assert (await sfd.read()).signo == SIGUSR1
            finally:
                loop.remove_signal_handler(SIGUSR2)


@on_every_loop
async def test_anyio_signal_receiver_for_other_signals() -> None:
    with fdloop.SignalFD({SIGUSR1}) as sfd, anyio.open_signal_receiver(SIGUSR2) as receiver:
        to_main_thread(SIGUSR2)
        to_main_thread(SIGUSR1)
        async for signo in receiver:
            assert signo == SIGUSR2
            break
        assert (await sfd.read()).signo == SIGUSR1


# -- ownership -----------------------------------------------------------------------------


def test_detach_gives_back_and_from_fd_takes_over_again() -> None:
    sfd = fdloop.SignalFD({SIGUSR1, SIGRT})
    fd = sfd.detach()
    assert sfd.closed
    assert not {SIGUSR1, SIGRT} & blocked()
    with fdloop.SignalFD.from_fd(fd) as adopted:
        assert adopted.fileno() == fd
        assert adopted.signals == {SIGUSR1, SIGRT}
        assert {SIGUSR1, SIGRT} <= blocked()
        to_main_thread(SIGRT)
        assert adopted.read_nowait().signo == SIGRT
        assert "SIGRTMIN+1" in repr(adopted)
    with pytest.raises(OSError):
        os.fstat(fd)
    assert not {SIGUSR1, SIGRT} & blocked()


def test_from_fd_refuses_other_kinds_of_fd() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(fdloop.NotThisKindOfFD, match="pipe"):
            fdloop.SignalFD.from_fd(read_end)
        os.fstat(read_end)  # still open: a refused fd is not taken over
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(OSError, match="not open"):
        fdloop.SignalFD.from_fd(read_end)
    with pytest.raises(TypeError, match="fd"):
        fdloop.SignalFD.from_fd("3")  # type: ignore[arg-type]
    assert blocked() == set()


@on_every_loop
async def test_closed_object_refuses_everything_and_double_close_is_fine() -> None:
    sfd = fdloop.SignalFD({SIGUSR1})
    sfd.close()
    sfd.close()
    await sfd.aclose()
    assert sfd.closed
    assert "closed" in repr(sfd)
    for call in (sfd.fileno, sfd.read_nowait, sfd.detach):
        with pytest.raises(fdloop.ClosedResourceError):
            call()
    with pytest.raises(fdloop.ClosedResourceError):
        await sfd.read()
    with pytest.raises(fdloop.ClosedResourceError):
        with sfd:
            pass


def test_garbage_collected_open_signalfd_warns_and_gives_back() -> None:
    sfd = fdloop.SignalFD({SIGUSR1})
    fd = sfd.fileno()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del sfd
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
    assert SIGUSR1 not in blocked()


def test_repr_lists_the_signals() -> None:
    with fdloop.SignalFD({SIGRT, SIGUSR1}) as sfd:
        assert repr(sfd) == f"<fdloop.SignalFD fd={sfd.fileno()}, SIGUSR1 SIGRTMIN+1>"
        to_main_thread(SIGUSR1)
        info = sfd.read_nowait()
    assert repr(info).startswith("SignalInfo(signo=SIGUSR1")
    assert fdloop.SignalInfo(signo=SIGRT).signal == SIGRT
    assert fdloop.SignalInfo(signo=SIGRT).pid is None
    with pytest.raises(AttributeError):
        info.signo = 1  # type: ignore[misc]
