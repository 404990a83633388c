"""SignalFD taking signals over and giving them back: the mask, dispositions, threads.

Each test checks the process-wide state it changes while a SignalFD is open and that
everything is as before once it closes (``signal_harness.signal_state_is_left_as_found``
checks that after every test, too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import warnings

import anyio
import pytest

import fdloop
from fdloop.primitives.signalfd import signals_taken_over

from .signal_harness import (  # the fixtures are used by name
    SIGRT,
    SIGUSR1,
    SIGUSR2,
    alone,  # noqa: F401
    backend_has_signalfd,  # noqa: F401
    blocked,
    on_every_loop,
    send,
    signal_state_is_left_as_found,  # noqa: F401
)

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
    send(SIGUSR1)
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
            send(SIGUSR1)
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
    # Handlers only so that a failure shows up as a delivery, not as a killed test run.
    delivered: list[int] = []
    previous = {
        signo: signal.signal(signo, lambda signo, frame: delivered.append(signo))
        for signo in (SIGUSR1, SIGRT)
    }
    try:
        with fdloop.SignalFD({SIGUSR1, SIGRT}):
            send(SIGUSR1)
            send(SIGRT)
            send(SIGRT)
            assert signal.sigpending() >= {SIGUSR1, SIGRT}
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # runs pending Python handlers
        assert delivered == []
        assert not signal.sigpending() & {SIGUSR1, SIGRT}
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


@on_every_loop
async def test_a_child_spawned_meanwhile_gets_ordinary_delivery() -> None:
    """spawn() undoes signals_taken_over() in the child: nothing stays blocked there."""
    with fdloop.SignalFD({SIGUSR1, SIGRT}):
        try:
            result = await fdloop.run(["cat", "/proc/self/status"], capture_output=True)
        except fdloop.UnsupportedOperation as exc:
            pytest.skip(str(exc))
    status = dict(line.split(":", 1) for line in result.stdout.decode().splitlines())
    child_blocked = int(status["SigBlk"], 16)
    assert not child_blocked >> (SIGUSR1 - 1) & 1
    assert not child_blocked >> (SIGRT - 1) & 1


def test_a_subprocess_child_is_terminable_when_started_through_child_argv() -> None:
    """A Popen child inherits SIGTERM blocked while a SignalFD holds it (restore_signals
    does not touch the mask), so terminate() does nothing to it; child_argv gives the
    program ordinary delivery back."""
    with fdloop.SignalFD({signal.SIGTERM}):
        plain = subprocess.Popen(["sleep", "30"])
        helped = subprocess.Popen(fdloop.SignalFD.child_argv(["sleep", "30"]))
        try:
            helped.terminate()
            assert helped.wait(timeout=10) == -signal.SIGTERM
            plain.terminate()
            with pytest.raises(subprocess.TimeoutExpired):
                plain.wait(timeout=0.2)  # the trap child_argv is for
        finally:
            for child in (plain, helped):
                child.kill()
                child.wait()
    assert fdloop.SignalFD.child_argv(("true",)) == ["true"]  # nothing taken over now


def test_child_argv_keeps_the_users_own_blocked_signals_and_refuses_a_string() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIGUSR2})
    try:
        with fdloop.SignalFD({SIGUSR1}):
            argv = fdloop.SignalFD.child_argv(["grep", "SigBlk", "/proc/self/status"])
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                 check=True).stdout
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIGUSR2})
    child_blocked = int(out.split(":")[1], 16)
    assert not child_blocked >> (SIGUSR1 - 1) & 1  # ours: given back
    assert child_blocked >> (SIGUSR2 - 1) & 1  # the user's: inherited as usual
    with pytest.raises(TypeError, match="argv"):
        fdloop.SignalFD.child_argv("sleep 1")  # type: ignore[arg-type]


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
        ([SIGUSR1, signal.SIGSEGV], ValueError, "SIGSEGV is raised synchronously"),
        ([signal.SIGBUS], ValueError, "SIGBUS is raised synchronously"),
        ([signal.SIGFPE], ValueError, "SIGFPE is raised synchronously"),
        ([signal.SIGILL], ValueError, "SIGILL is raised synchronously"),
        ([signal.SIGTRAP], ValueError, "SIGTRAP is raised synchronously"),
        ([signal.SIGSYS], ValueError, "SIGSYS is raised synchronously"),
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


@pytest.mark.usefixtures("alone")
def test_no_warning_for_threads_that_inherited_the_mask() -> None:
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


@on_every_loop
async def test_closing_in_another_thread_runs_in_the_creating_threads_loop() -> None:
    """A SignalFD made in the loop's thread and closed from a worker thread: the close
    runs in the loop's thread, which unblocks the signals again (a close in the worker
    could only warn that they stay blocked), and returns once done."""
    sfd = fdloop.SignalFD({SIGUSR1})
    assert SIGUSR1 in blocked()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await anyio.to_thread.run_sync(sfd.close)
    assert sfd.closed
    assert [str(w.message) for w in caught] == []
    assert SIGUSR1 not in blocked()
    assert signals_taken_over() == frozenset()
