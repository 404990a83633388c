"""A kqueue emulator for Linux test runs — a stand-in that follows the FreeBSD and macOS
man pages, not a kernel.

fdloop's kqueue backend (``fdloop/backends/kqueue``) targets FreeBSD and macOS, but its
tests run here, on Linux. This package imitates CPython's ``select.kqueue`` /
``select.kevent`` API and the ``KQ_*`` constants closely enough that the backend runs
unchanged, building every kqueue filter on the Linux fd that has the same meaning:

=============== =========================== ==========================================
filter          Linux fd behind it          ``data`` on return
=============== =========================== ==========================================
EVFILT_READ     the watched fd itself       bytes available (FIONREAD) where known
EVFILT_WRITE    the watched fd itself       room left in a pipe, else 0
EVFILT_USER     one eventfd per knote       the ``data`` given at registration
EVFILT_TIMER    one timerfd per knote       expirations since the last report
EVFILT_SIGNAL   one process-wide signalfd   sends since the last report
EVFILT_PROC     one pidfd per knote         the wait(2) status (NOTE_EXIT)
=============== =========================== ==========================================

The emulated kqueue fd is an epoll fd holding those Linux fds, so a host asyncio or trio
loop that polls ``kqueue.fileno()`` sees it readable exactly while ``control()`` would
return an event: every source is in the epoll set only while its knote is enabled, and a
source is drained when its event is reported.

It **steps aside whenever the real ``select.kqueue`` exists**: :func:`install` only
fills in names that ``select`` lacks, and the tests that use it run against the real
kernel on FreeBSD and macOS. It can imitate either platform (``platform = "freebsd"`` or
``"darwin"``), which differ in filter numbers, timer unit flags, NOTE_EXITSTATUS and how
a zombie is registered; the backend reads ``kqueue.fdloop_emulated_platform`` to pick its
constants, as it reads ``sys.platform`` on a real BSD.

The package, top down:

* ``__init__`` (here): :func:`install`, which steps aside where the real kqueue exists,
  and the names a test or ``select`` gets from the emulator.
* ``queue``: the emulated ``kqueue`` object (``control()``, the epoll set behind it).
* ``filters``: one class per filter, each quoting the man-page statements it implements;
  where Linux cannot follow one exactly, its docstring says so under "Emulation limit".
* ``signals``: EVFILT_SIGNAL, which counts every send as FreeBSD and macOS do, and leaves
  out thread-directed signals on macOS, as xnu does.
* ``linux``: the Linux calls under them (timerfd and signalfd through ctypes, a pidfd's
  exit status without reaping).
* ``child_site/sitecustomize.py``: puts the emulator into child Pythons of a kqueue test
  run (tests/conftest.py adds the directory to PYTHONPATH).

Man pages quoted: FreeBSD kqueue(2) (``lib/libc/sys/kqueue.2``), macOS kevent(2) (xnu
``bsd/man/man2/kqueue.2``).
"""

from __future__ import annotations

import select
from typing import Any

from . import filters
from .filters import (  # noqa: F401 - the emulator's names, for tests and for select
    DEFAULT_UNIT_NS,
    EV_DISPATCH,
    EV_RECEIPT,
    EVFILT_USER,
    KQ_EV_ADD,
    KQ_EV_CLEAR,
    KQ_EV_DELETE,
    KQ_EV_DISABLE,
    KQ_EV_ENABLE,
    KQ_EV_EOF,
    KQ_EV_ERROR,
    KQ_EV_FLAG1,
    KQ_EV_ONESHOT,
    KQ_EV_SYSFLAGS,
    KQ_FILTER_AIO,
    KQ_FILTER_PROC,
    KQ_FILTER_READ,
    KQ_FILTER_SIGNAL,
    KQ_FILTER_TIMER,
    KQ_FILTER_VNODE,
    KQ_FILTER_WRITE,
    KQ_NOTE_CHILD,
    KQ_NOTE_EXEC,
    KQ_NOTE_EXIT,
    KQ_NOTE_FORK,
    KQ_NOTE_LOWAT,
    KQ_NOTE_PCTRLMASK,
    KQ_NOTE_PDATAMASK,
    KQ_NOTE_TRACK,
    KQ_NOTE_TRACKERR,
    NOTE_EXITSTATUS,
    NOTE_FFAND,
    NOTE_FFCOPY,
    NOTE_FFCTRLMASK,
    NOTE_FFLAGSMASK,
    NOTE_FFNOP,
    NOTE_FFOR,
    NOTE_TRIGGER,
    TIMER_ABSOLUTE,
    TIMER_UNITS,
    kevent,
)
from .queue import kqueue, kqueue_darwin
from .signals import install_send_hooks

REAL_KQUEUE = getattr(select, "kqueue", None)
"""The real ``select.kqueue`` (None on Linux), taken before :func:`install` can put the
emulator in its place."""


def install(setattr_: Any, platform: str = "freebsd") -> bool:
    """Put the emulator into ``select`` where the real kqueue is missing.

    ``setattr_`` is ``pytest.MonkeyPatch.setattr`` (so the names go away after the test).
    Returns False — and changes nothing — when the real ``select.kqueue`` exists.
    """
    if REAL_KQUEUE is not None:
        return False
    cls = kqueue_darwin if platform == "darwin" else kqueue
    install_send_hooks(setattr_)
    setattr_(select, "kqueue", cls, raising=False)
    setattr_(select, "kevent", kevent, raising=False)
    for name, value in vars(filters).items():
        if name.startswith("KQ_"):
            setattr_(select, name, value, raising=False)
    return True
