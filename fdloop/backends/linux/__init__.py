"""The Linux backend: eventfd, timerfd, signalfd, pidfd and memfd, one kernel fd each.

The stdlib is used wherever it has the call (``os.eventfd``, ``os.memfd_create``,
``os.pidfd_open``, ``signal.pidfd_send_signal``); ctypes only where it does not.
Each primitive's syscalls live in their own module below this package.
"""

from __future__ import annotations

from .. import Capability
from ..channel import capability as _channel_capability
from . import vpoll as _vpoll
from .eventfd import LinuxEventFD as _LinuxEventFD
from .memfd import LinuxMemFD as _LinuxMemFD
from .memfd import missing as _memfd_missing
from .pidfd import LinuxPidFD as _LinuxPidFD
from .pidfd import process_capability as _process_capability
from .readyset import LinuxReadySet as _LinuxReadySet
from .signalfd import LinuxSignalFD as _LinuxSignalFD
from .timerfd import LinuxTimerFD as _LinuxTimerFD

NAME = "linux"

eventfd = _LinuxEventFD.create
eventfd_from_fd = _LinuxEventFD.adopt
memfd = _LinuxMemFD.create
memfd_from_fd = _LinuxMemFD.adopt
timerfd = _LinuxTimerFD.create
timerfd_from_fd = _LinuxTimerFD.adopt
signalfd = _LinuxSignalFD.create
signalfd_from_fd = _LinuxSignalFD.adopt
spawn_process = _LinuxPidFD.spawn
process_open = _LinuxPidFD.open_pid
process_from_fd = _LinuxPidFD.adopt
ready_set = _LinuxReadySet.create
virtual_fd = _vpoll.create
poll_requests = _vpoll.poll_requests


def capabilities() -> list[Capability]:
    return [
        _channel_capability(NAME),
        Capability("EventFD", NAME, True, "eventfd"),
        Capability("MemFD", NAME, True, "memfd", _memfd_missing()),
        _process_capability(NAME),
        Capability("SignalFD", NAME, True, "signalfd"),
        Capability("TimerFD", NAME, True, "timerfd"),
        *_vpoll.capabilities(NAME),
    ]
