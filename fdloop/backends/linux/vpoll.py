"""VirtualFD on Linux: the kernel's own, where it has one, else a loopback TCP connection.

Two out-of-tree implementations of the EFD_VPOLL idea exist (Renzo Davoli's
libvpoll-eventfd): the eventfd flag ``EFD_VPOLL`` (``1 << 1``; write an 8-byte command
``EFD_VPOLL_MODEVENTS | mask``, read the mask back) and the ``vpoll.ko`` device
``/dev/vpoll`` (``ioctl(fd, VPOLL_IO_SETEVENTS, mask)``). Both make every event exact:
raised and cleared at will, nothing else attached, ``read``/``write`` harmless. Neither is
in mainline: on mainline ``eventfd2`` refuses the flag with EINVAL. They are *probed*
(once per process: created, set to POLLPRI, and polled — a kernel that accepted the flag
for something else fails the poll check), never assumed; without them
:mod:`fdloop.backends.posix.vpoll_socket` builds the fd from a loopback TCP connection.
"""

from __future__ import annotations

import fcntl
import os
import select
import sys

from ..contract import Capability, OwnedFD
from ..posix.vpoll_socket import ALL, SocketVirtualFD
from .aiopoll import AIOPolls
from .uring import URingPolls

EFD_VPOLL = 1 << 1
EFD_VPOLL_MODEVENTS = 3 << 32
VPOLL_IO_SETEVENTS = 0x5E03  # _IO('^', 3)
_DEVICE = "/dev/vpoll"

_chosen: type[EventfdVPoll | DeviceVPoll | SocketVirtualFD] | None = None


class EventfdVPoll(OwnedFD):
    """An ``eventfd(EFD_VPOLL)``: the mask is the counter."""

    native = True
    kernel_object = "eventfd (EFD_VPOLL)"
    raises = clears = ALL

    def __init__(self, events: int = 0) -> None:
        super().__init__(os.eventfd(0, EFD_VPOLL | os.EFD_CLOEXEC | os.EFD_NONBLOCK))
        if events:
            self.set(events)

    @property
    def events(self) -> int:
        return int.from_bytes(os.read(self.fileno(), 8), sys.byteorder) & ALL

    def set(self, events: int) -> int:
        command = (EFD_VPOLL_MODEVENTS | events).to_bytes(8, sys.byteorder)
        os.write(self.fileno(), command)
        return events


class DeviceVPoll(OwnedFD):
    """An open ``/dev/vpoll`` (the vpoll.ko module)."""

    native = True
    kernel_object = "/dev/vpoll"
    raises = clears = ALL

    def __init__(self, events: int = 0) -> None:
        super().__init__(os.open(_DEVICE, os.O_RDWR | os.O_CLOEXEC))
        self._events = 0
        self.set(events)

    @property
    def events(self) -> int:
        return self._events

    def set(self, events: int) -> int:
        fcntl.ioctl(self.fileno(), VPOLL_IO_SETEVENTS, events)
        self._events = events
        return events


def _works(kind: type) -> bool:
    try:
        probe = kind(select.POLLPRI)
    except (OSError, ValueError):
        return False
    try:
        poller = select.poll()
        poller.register(probe.fileno(), ALL)
        ready = poller.poll(0)
        return bool(ready) and ready[0][1] & ALL == select.POLLPRI
    finally:
        probe.close()


def implementation() -> type[EventfdVPoll | DeviceVPoll | SocketVirtualFD]:
    """The class VirtualFD uses here: the first of EFD_VPOLL, /dev/vpoll, TCP that works."""
    global _chosen
    if _chosen is None:
        _chosen = next((kind for kind in (EventfdVPoll, DeviceVPoll) if _works(kind)),
                       SocketVirtualFD)
    return _chosen


def create(events: int = 0) -> EventfdVPoll | DeviceVPoll | SocketVirtualFD:
    """A new VirtualFD backend object showing ``events``."""
    return implementation()(events)


def poll_requests() -> URingPolls | AIOPolls:
    """The poll-request ring for ``wait_events``: io_uring, else Linux AIO.

    Raises UnsupportedOperation when the kernel refuses both."""
    from ...errors import UnsupportedOperation

    global _ring_kind
    errors = []
    kinds: tuple[type[URingPolls | AIOPolls], ...] = (
        (_ring_kind,) if _ring_kind is not None else (URingPolls, AIOPolls))
    for kind in kinds:
        try:
            ring = kind()
        except OSError as error:
            errors.append(f"{kind.kernel_object}: {error.strerror}")
            continue
        _ring_kind = kind
        return ring
    raise UnsupportedOperation("wait_events needs io_uring or Linux AIO poll requests; "
                               "here " + "; ".join(errors))


_ring_kind: type[URingPolls | AIOPolls] | None = None


def ring_kind() -> str:
    """Which poll requests wait_events uses here (probed on first call)."""
    if _ring_kind is None:
        try:
            ring = poll_requests()
        except Exception as error:
            return f"none ({error})"
        ring.close()
    assert _ring_kind is not None
    return str(_ring_kind.kernel_object)


def capabilities(backend: str) -> list[Capability]:
    """The VirtualFD and wait_events rows of ``capabilities()``: per event what can be
    raised and cleared, and which poll requests serve wait_events."""
    from ..posix.vpoll_socket import fidelity

    kind = implementation()
    if kind is SocketVirtualFD:
        virtual = Capability(
            "VirtualFD", backend, False, SocketVirtualFD.kernel_object,
            ("every event exact (EFD_VPOLL): probed, the kernel has neither the eventfd "
             "flag nor /dev/vpoll", *fidelity()))
    else:
        virtual = Capability("VirtualFD", backend, True, str(kind.kernel_object))
    ring = ring_kind()
    ring_missing: tuple[str, ...] = (
        "ClosedResourceError on a plain close(): a poll request holds the file; call "
        "fdloop.notify_closing(fd) first (VirtualFD.close() does)",)
    if ring.startswith("Linux AIO"):
        ring_missing += ("one report per wake-up in watch_events (AIO polls are "
                         "one-shot: level-triggered there)",)
    elif ring.startswith("none"):
        ring_missing = (ring,)
    return [virtual, Capability("PollEvents", backend, not ring.startswith("none"),
                                ring.split(" (")[0] if ring.startswith("none") else ring,
                                ring_missing)]
