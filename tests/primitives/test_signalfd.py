"""SignalFD reading real signals sent to this very process, on asyncio, uvloop and trio.

How these tests send signals safely, and why async bodies run through ``anyio.run``:
see ``signal_harness.py``. Taking signals over and giving them back (mask, dispositions,
threads) is tested in ``test_signalfd_takeover.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import anyio
import pytest

import fdloop

from .signal_harness import (  # the fixtures are used by name
    SI_QUEUE,
    SI_TKILL,
    SI_USER,
    SIGRT,
    SIGUSR1,
    SIGUSR2,
    alone,  # noqa: F401
    backend_has_signalfd,  # noqa: F401
    linux,
    on_every_loop,
    send,
    signal_state_is_left_as_found,  # noqa: F401
    sigqueue,
    thread_directed_reach_signalfd,
    to_main_thread,
)

# anyio's pytest plugin runs trio tests in trio's guest mode, whose I/O waits run in a
# trio worker thread ("Trio thread 0") that idles on for 10 s after a trio test and
# predates the SignalFDs here, so the first of them rightly warns that it could take a
# signal. These tests aim every signal at the main thread (or wait until they are alone,
# ``alone``), so that thread cannot; test_signalfd_takeover.py tests the warning itself.
pytestmark = pytest.mark.filterwarnings("ignore::fdloop.SignalDeliveryWarning")

# -- reading ---------------------------------------------------------------------------------


@on_every_loop
async def test_kill_is_read_with_sender_and_code() -> None:
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        send(SIGUSR1)
        info = await sfd.read()
    assert isinstance(info, fdloop.SignalInfo)
    assert info.signo == SIGUSR1
    assert info.signal is signal.Signals.SIGUSR1
    if linux():
        assert (info.code, info.pid, info.uid) == (SI_TKILL, os.getpid(), os.getuid())


@pytest.mark.usefixtures("alone")
def test_process_directed_kill_reports_si_user(anyio_backend: Any) -> None:
    async def body() -> None:
        with fdloop.SignalFD([SIGUSR1, SIGUSR2]) as sfd:
            os.kill(os.getpid(), SIGUSR2)
            info = await sfd.read()
        assert info.signo == SIGUSR2
        if linux():
            assert (info.code, info.pid, info.uid) == (SI_USER, os.getpid(), os.getuid())

    on_every_loop(body)(anyio_backend)


@on_every_loop
async def test_read_waits_for_a_signal_from_another_thread() -> None:
    async with fdloop.SignalFD({SIGUSR1}) as sfd:
        def send_later() -> None:
            time.sleep(0.05)
            send(SIGUSR1)

        thread = threading.Thread(target=send_later)
        thread.start()
        try:
            info = await sfd.read()
        finally:
            thread.join()
    assert info.signo == SIGUSR1
    if linux():
        assert (info.code, info.pid) == (SI_TKILL, os.getpid())


@on_every_loop
async def test_standard_signals_coalesce_on_linux_and_count_every_send_on_kqueue() -> None:
    """The contract per backend: Linux keeps one pending instance of a standard signal
    (three SIGUSR1 unread: one read); kqueue's EVFILT_SIGNAL counts every send (FreeBSD
    and xnu filt_signal increment per send): three SIGUSR1, three reads."""
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        for _ in range(3):
            send(SIGUSR1)
        expected = 1 if linux() else 3
        assert [(await sfd.read()).signo for _ in range(expected)] == [SIGUSR1] * expected
        with pytest.raises(BlockingIOError):
            sfd.read_nowait()


def test_a_signal_aimed_at_a_thread_reaches_the_signalfd_except_on_macos_kqueue() -> None:
    """pthread_kill (and raise(), a fault) aims a signal at one thread: Linux's signalfd
    and FreeBSD's EVFILT_SIGNAL see it, macOS's does not (xnu posts no knote for a
    PSIG_THREAD send); capabilities() says so there."""
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        to_main_thread(SIGUSR1)
        to_main_thread(SIGUSR1)
        if not thread_directed_reach_signalfd():
            with pytest.raises(BlockingIOError):
                sfd.read_nowait()
            return
        reads = 1 if linux() else 2  # FreeBSD counts thread-directed sends too
        assert [sfd.read_nowait().signo for _ in range(reads)] == [SIGUSR1] * reads
        with pytest.raises(BlockingIOError):
            sfd.read_nowait()


@on_every_loop
async def test_realtime_signals_queue_one_read_per_send() -> None:
    with fdloop.SignalFD({SIGRT}) as sfd:
        for _ in range(3):
            send(SIGRT)
        infos = [await sfd.read() for _ in range(3)]
        assert [i.signo for i in infos] == [SIGRT] * 3
        assert infos[0].signal == SIGRT
        with pytest.raises(BlockingIOError):
            sfd.read_nowait()


@pytest.mark.usefixtures("alone")
def test_sigqueue_value_and_code() -> None:
    if not linux():
        pytest.skip("sigqueue values are read by the Linux backend only")
    with fdloop.SignalFD({SIGRT}) as sfd:
        for value in (42, -7 & 0xFFFFFFFF, 0x1_0000_002A):
            sigqueue(os.getpid(), SIGRT, value)
        infos = [sfd.read_nowait() for _ in range(3)]
    assert {i.code for i in infos} == {SI_QUEUE}
    assert [i.value for i in infos] == [42, -7, 42]  # ssi_int: the low 32 bits, signed
    assert [i.ptr for i in infos] == [42, 0xFFFFFFF9, 0x1_0000_002A]
    assert {i.pid for i in infos} == {os.getpid()}


@pytest.mark.usefixtures("alone")
def test_sender_pid_and_uid_from_a_child_process(anyio_backend: Any) -> None:
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
        assert info.signo == SIGUSR1
        if linux():
            assert (info.pid, info.uid, info.code) == (child, os.getuid(), SI_USER)
        else:  # kqueue keeps no siginfo: capabilities() lists the missing fields
            assert (info.pid, info.uid, info.code) == (None, None, None)

    on_every_loop(body)(anyio_backend)


@pytest.mark.usefixtures("alone")
def test_sigchld_reports_the_child_exit(anyio_backend: Any) -> None:
    async def body() -> None:
        with fdloop.SignalFD({signal.SIGCHLD}) as sfd:
            child = os.fork()
            if child == 0:
                os._exit(7)
            try:
                info = await sfd.read()
            finally:
                os.waitpid(child, 0)
        assert info.signal == signal.SIGCHLD
        if linux():
            assert (info.pid, info.code, info.status) == (child, os.CLD_EXITED, 7)
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
            send(SIGUSR1)  # pending now, but the reader is cancelled first
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
                send(SIGRT)
    assert got == [SIGRT] * 4


async def _read_into(got: list[int], sfd: fdloop.SignalFD) -> None:
    got.append((await sfd.read()).signo)


# -- living next to the loops' own signal handling --------------------------------------------


@on_every_loop
async def test_coexists_with_the_loops_own_signal_handlers() -> None:
    """SIGUSR2 through the loop's handler while a SignalFD reads SIGUSR1: both arrive."""
    with fdloop.SignalFD({SIGUSR1}) as sfd:
        if fdloop._aio.current_library() == "trio":
            import trio

            with trio.open_signal_receiver(SIGUSR2) as receiver:
                send(SIGUSR1)
                os.kill(os.getpid(), SIGUSR2)  # any thread may take it: it has a handler
                assert await receiver.__anext__() == SIGUSR2
                assert (await sfd.read()).signo == SIGUSR1
        else:
            loop = asyncio.get_running_loop()
            got_usr2 = asyncio.Event()
            loop.add_signal_handler(SIGUSR2, got_usr2.set)
            try:
                send(SIGUSR1)
                os.kill(os.getpid(), SIGUSR2)
                await got_usr2.wait()
                assert (await sfd.read()).signo == SIGUSR1
            finally:
                loop.remove_signal_handler(SIGUSR2)


@on_every_loop
async def test_anyio_signal_receiver_for_other_signals() -> None:
    with fdloop.SignalFD({SIGUSR1}) as sfd, anyio.open_signal_receiver(SIGUSR2) as receiver:
        to_main_thread(SIGUSR2)
        send(SIGUSR1)
        async for signo in receiver:
            assert signo == SIGUSR2
            break
        assert (await sfd.read()).signo == SIGUSR1


# -- ownership -----------------------------------------------------------------------------


ADOPTING_CHILD = """
import os, signal, sys
import fdloop
with fdloop.SignalFD.from_fd(int(sys.argv[1])) as sfd:
    os.kill(os.getpid(), signal.SIGUSR1)
    info = sfd.read_nowait()
    print(info.signal.name, info.pid == os.getpid(), *sorted(map(int, sfd.signals)))
"""


def test_a_signalfd_passed_to_another_program_reads_that_programs_signals() -> None:
    """signalfd(2): after exec the fd keeps its mask and reads the new program's signals."""
    if not linux():
        pytest.skip("only a signalfd survives exec; a kqueue does not")
    with fdloop.SignalFD({SIGUSR1, SIGUSR2}) as sfd:
        result = subprocess.run(
            [sys.executable, "-c", ADOPTING_CHILD, str(sfd.fileno())],
            pass_fds=[sfd.fileno()], capture_output=True, text=True, timeout=60, check=True,
            env={**os.environ, "FDLOOP_BACKEND": "linux"},
        )
        with pytest.raises(BlockingIOError):
            sfd.read_nowait()  # the child's signal was the child's, not ours
    assert result.stdout.split() == ["SIGUSR1", "True", str(SIGUSR1.value), str(SIGUSR2.value)]


def test_repr_lists_the_signals() -> None:
    with fdloop.SignalFD({SIGRT, SIGUSR1}) as sfd:
        assert repr(sfd) == f"<fdloop.SignalFD fd={sfd.fileno()}, SIGUSR1 SIGRTMIN+1>"
        send(SIGUSR1)
        info = sfd.read_nowait()
    assert repr(info).startswith("SignalInfo(signo=SIGUSR1")
    assert fdloop.SignalInfo(signo=SIGRT).signal == SIGRT
    assert fdloop.SignalInfo(signo=SIGRT).pid is None
    with pytest.raises(AttributeError):
        info.signo = 1  # type: ignore[misc]
