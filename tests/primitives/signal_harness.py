"""What every SignalFD test module shares: the signals used, loop runner, state checks.

A signal is a process-wide event, so SignalFD tests differ from the other primitive
tests in two ways:

* Async bodies run through ``anyio.run`` (``@on_every_loop``) rather than anyio's pytest
  plugin. The plugin drives trio in *guest mode*, where ``epoll_wait`` runs in a trio
  worker thread: that thread predates every SignalFD, does not block its signals (so a
  process-directed one may be handed to it and run the default action: the test process
  dies), and its poll cannot see a signal aimed at the main thread. ``trio.run`` polls
  in the calling thread, as applications do.
* Tests that send a process-directed signal (kill(2), a child's exit) first wait for idle
  worker threads left by earlier tests (trio's and anyio's end after 10 s idle) to go
  away (``alone``), and skip if a thread that could take the signal stays. Other tests
  send with :func:`send`, which aims the signal at the main thread (pthread_kill), which
  no other thread can take — except where a thread-directed signal never reaches a
  SignalFD (the kqueue backend on macOS: xnu records only process-directed signals for
  EVFILT_SIGNAL), where it sends to the process, and such tests need ``alone`` too
  (``on_every_loop`` and :func:`send` see to it).

Every test must leave the signal mask, the dispositions and the pending set exactly as it
found them (``signal_state_is_left_as_found``). Test modules import the fixtures from
here by name.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
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
TIMEOUT = 10  # generous: only there so that a bug fails instead of hanging

SI_USER, SI_QUEUE, SI_TKILL = 0, -1, -6  # Linux si_code values (asm-generic/siginfo.h)


def linux() -> bool:
    """True when the Linux backend, which reports every siginfo field, is in force."""
    return selected_name() == "linux"


@pytest.fixture(autouse=True)
def backend_has_signalfd(request: pytest.FixtureRequest) -> None:
    if "fdloop_backend" in request.fixturenames:  # conftest's per-backend switch, if any
        request.getfixturevalue("fdloop_backend")
    if not hasattr(fdloop.backends.current(), "signalfd"):
        pytest.skip(f"the {selected_name()} backend has no SignalFD yet")


def thread_directed_reach_signalfd() -> bool:
    """False on the kqueue backend imitating (or running on) macOS: xnu's
    psignal_internal() posts no EVFILT_SIGNAL knote for a signal aimed at a thread."""
    if selected_name() != "kqueue":
        return True
    from fdloop.backends.kqueue import platform_name

    return platform_name() != "darwin"


def on_every_loop(body: Callable[[], Awaitable[None]]) -> Callable[..., None]:
    """Turn an async test body into a sync test run by anyio.run on each loop."""

    def test(anyio_backend: tuple[str, dict[str, Any]]) -> None:
        name, options = anyio_backend
        if not thread_directed_reach_signalfd():
            require_alone()  # the body's send() goes to the whole process

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


def exposed_threads(signals: tuple[int, ...] = USED) -> list[int]:
    """Other threads that do not block every one of ``signals``."""
    me, exposed = threading.get_native_id(), []
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/status") as status:
                line = next(x for x in status if x.startswith("SigBlk:"))
        except (OSError, StopIteration):
            continue
        blocked = int(line.split(":")[1], 16)
        if int(name) != me and any(not blocked >> (s - 1) & 1 for s in signals):
            exposed.append(int(name))
    return exposed


_LINGERING: set[int] = set()  # threads that outlived one full wait: not waited for again


@pytest.fixture
def alone() -> None:
    """Wait until no other thread could take a process-directed signal; skip otherwise."""
    require_alone()


def require_alone(signals: tuple[int, ...] = USED) -> None:
    """What the ``alone`` fixture does, callable from a test or helper."""
    deadline = time.monotonic() + 20
    while (threads := exposed_threads(signals)) and time.monotonic() < deadline:
        if set(threads) <= _LINGERING:
            break
        time.sleep(0.05)
    if threads:
        _LINGERING.update(threads)
        pytest.skip(f"threads {threads} could take a process-directed signal")


def to_main_thread(signo: int) -> None:
    """Aim a signal at the main thread (tgkill): no other thread can take it."""
    signal.pthread_kill(threading.main_thread().ident or 0, signo)


def send(signo: int) -> None:
    """Send ``signo`` so that this backend's SignalFD sees it: to the main thread, or,
    where thread-directed signals never reach a SignalFD (macOS kqueue), to the process
    (skipping the test if another thread could take it; ``on_every_loop`` checked that
    already before an async body ran)."""
    if thread_directed_reach_signalfd():
        to_main_thread(signo)
        return
    if threading.current_thread() is threading.main_thread():
        require_alone((signo,))
    os.kill(os.getpid(), signo)


def blocked() -> set[int]:
    return signal.pthread_sigmask(signal.SIG_BLOCK, [])


def sigqueue(pid: int, signo: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    # union sigval is passed like a pointer-sized integer on the ABIs we run on.
    if libc.sigqueue(pid, signo, value) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")
