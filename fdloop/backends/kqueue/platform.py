"""The numbers kqueue uses on each platform, and which platform is in force.

CPython's ``select`` module exports only the constants common to every BSD (the
``KQ_FILTER_*``, ``KQ_EV_*`` and ``KQ_NOTE_*`` of 1990s kqueue). Everything newer —
EVFILT_USER and its NOTE_* flags, EV_RECEIPT, EV_DISPATCH, the timer unit flags,
EVFILT_PROCDESC, NOTE_EXITSTATUS — is missing, and several differ between platforms, so
they are defined here from each platform's ``<sys/event.h>``:

* FreeBSD: EVFILT_USER is -11 and EVFILT_PROCDESC -8; timer units NOTE_SECONDS 1,
  NOTE_MSECONDS 2, NOTE_USECONDS 4, NOTE_NSECONDS 8 and NOTE_ABSTIME 0x10 (kqueue(2):
  "If fflags is not set, the default is milliseconds"); NOTE_EXIT always carries the exit
  status ("The exit status will be stored in data").
* macOS (xnu ``bsd/sys/event.h``): EVFILT_USER is -10 and there is no EVFILT_PROCDESC;
  timer units NOTE_SECONDS 1, NOTE_USECONDS 2, NOTE_NSECONDS 4 and NOTE_ABSOLUTE 8 (no
  NOTE_MSECONDS: milliseconds is the default); the exit status is in ``data`` only when
  NOTE_EXITSTATUS (0x04000000) is asked for.

The platform is read from ``sys.platform``, except when ``select.kqueue`` announces that
it emulates one (``fdloop_emulated_platform``, as the Linux test emulator does).
``select.kqueue`` is looked up on every call, never kept from import time, so an emulator
installed later is seen.

The kqueue numbers (:class:`Platform`) and the facts of the OS this process runs on
(:class:`Host`: which shared memory it has, whether /proc shows fds and thread masks) are
two questions: under the test emulator they differ (FreeBSD's kqueue rules on a Linux
host). Every platform question of the kqueue backend is asked here, and only here is
``sys.platform`` read.
"""

from __future__ import annotations

import functools
import os
import select
import sys
from dataclasses import dataclass
from typing import Any

from ...errors import UnsupportedOperation

# Common to FreeBSD and macOS (and equal to CPython's select.KQ_* where it has them).
EVFILT_READ = -1
EVFILT_PROC = -5
EVFILT_SIGNAL = -6
EVFILT_TIMER = -7
EV_ADD = 0x0001
EV_DELETE = 0x0002
EV_ENABLE = 0x0004
EV_DISABLE = 0x0008
EV_ONESHOT = 0x0010
EV_CLEAR = 0x0020
EV_RECEIPT = 0x0040
EV_DISPATCH = 0x0080
EV_ERROR = 0x4000
EV_EOF = 0x8000
NOTE_EXIT = 0x80000000
NOTE_FFNOP = 0x00000000
NOTE_FFCOPY = 0xC0000000
NOTE_TRIGGER = 0x01000000


@dataclass(frozen=True)
class Platform:
    """The platform-specific kqueue numbers."""

    name: str
    """``freebsd`` or ``darwin``."""
    EVFILT_USER: int
    EVFILT_PROCDESC: int | None
    NOTE_NSECONDS: int
    NOTE_ABSTIME: int
    """FreeBSD's NOTE_ABSTIME, macOS's NOTE_ABSOLUTE: ``data`` is a time since the Epoch."""
    NOTE_EXITSTATUS: int
    """What to add to NOTE_EXIT to get the status in ``data`` (0: it is always there)."""


FREEBSD = Platform("freebsd", -11, -8, 0x8, 0x10, 0)
DARWIN = Platform("darwin", -10, None, 0x4, 0x8, 0x04000000)


def kqueue_module() -> Any:
    """``select`` as the kqueue backend sees it: typed loosely, because typeshed only
    declares ``select.kqueue`` on BSD and macOS while tests install an emulator on Linux."""
    return select


def current() -> Platform:
    """The platform whose kqueue numbers apply now.

    Raises UnsupportedOperation where ``select`` has no kqueue or the platform's numbers
    are not known to fdloop.
    """
    kqueue = getattr(select, "kqueue", None)
    if kqueue is None:
        raise UnsupportedOperation(
            "the kqueue backend needs select.kqueue (FreeBSD or macOS); this Python on "
            f"{sys.platform} has none. Use FDLOOP_BACKEND=linux here."
        )
    name = getattr(kqueue, "fdloop_emulated_platform", None) or sys.platform
    if name.startswith("freebsd"):
        return FREEBSD
    if name == "darwin":
        return DARWIN
    raise UnsupportedOperation(
        f"fdloop knows the kqueue numbers of FreeBSD and macOS, not of {name}"
    )


@dataclass(frozen=True)
class Host:
    """What the OS this process runs on offers the kqueue backend, beside kqueue itself.

    Unlike :func:`current` this needs no ``select.kqueue``: a child process adopts a
    MemFD without any kqueue.
    """

    name: str
    """``sys.platform``: ``freebsd14``, ``darwin``, or ``linux`` under the test emulator."""
    darwin: bool
    native_eventfd: bool
    """FreeBSD 13+: a real eventfd(2), shared across processes like Linux's."""
    shared_memory: str
    """How a MemFD is made: ``memfd_create`` (FreeBSD 13+), ``SHM_ANON`` (older FreeBSD)
    or ``shm_open`` (a named object unlinked at once: macOS, and Linux test runs)."""
    shm_name_max: int
    """The longest shm_open name (macOS PSHMNAMLEN is 31)."""
    maxrss_unit: int
    """Bytes per unit of ``ru_maxrss``: 1 on macOS, 1024 (kilobytes) elsewhere."""
    proc_fd_links: bool
    """``/proc/self/fd/N`` names what fd N is (Linux test runs; not FreeBSD or macOS)."""
    proc_thread_masks: bool
    """``/proc/self/task/*/status`` shows each thread's signal mask (Linux test runs)."""


@functools.cache
def host() -> Host:
    """The facts of the OS this process runs on (they cannot change while it runs)."""
    name = sys.platform
    freebsd = name.startswith("freebsd")
    darwin = name == "darwin"
    if freebsd:
        memory = "memfd_create" if hasattr(os, "memfd_create") else "SHM_ANON"
    else:
        memory = "shm_open"
    return Host(
        name=name, darwin=darwin, native_eventfd=freebsd and hasattr(os, "eventfd"),
        shared_memory=memory, shm_name_max=31 if darwin else 250,
        maxrss_unit=1 if darwin else 1024, proc_fd_links=os.path.isdir("/proc/self/fd"),
        proc_thread_masks=os.path.isdir("/proc/self/task"),
    )
