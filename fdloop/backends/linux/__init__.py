"""The Linux backend: eventfd, timerfd, signalfd, pidfd and memfd, one kernel fd each.

The stdlib is used wherever it has the call (``os.eventfd``, ``os.memfd_create``,
``os.pidfd_open``, ``signal.pidfd_send_signal``); ctypes only where it does not.
Each primitive's syscalls live in their own module below this package; what Linux shares
with the BSDs is in fdloop/backends/posix/. :class:`LinuxBackend` is the one object
``fdloop.backends.current()`` hands to the primitives.
"""

from __future__ import annotations

from ..contract import Capability
from ..posix import channel as _channel
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


def python_only() -> None:
    """Stop using the optional compiled extension (``_clone_spawn``) in this process:
    posix_spawn + pidfd_open to start children, ctypes (or os.waitid) to reap them, and
    the ready set's collection in Python. For the benchmark's pure-Python contenders,
    which run in a fresh interpreter each; there is no way back."""
    from . import pidfd, readyset, spawn

    spawn._clone_spawn = None
    pidfd.use_python_waitid()
    readyset._arm = readyset._collect = None


class LinuxBackend:
    """The Linux backend as one object (a :class:`fdloop.backends.contract.Backend`)."""

    name = NAME
    eventfd = staticmethod(_LinuxEventFD.create)
    eventfd_from_fd = staticmethod(_LinuxEventFD.adopt)
    memfd = staticmethod(_LinuxMemFD.create)
    memfd_from_fd = staticmethod(_LinuxMemFD.adopt)
    timerfd = staticmethod(_LinuxTimerFD.create)
    timerfd_from_fd = staticmethod(_LinuxTimerFD.adopt)
    signalfd = staticmethod(_LinuxSignalFD.create)
    signalfd_from_fd = staticmethod(_LinuxSignalFD.adopt)
    spawn_process = staticmethod(_LinuxPidFD.spawn)
    process_open = staticmethod(_LinuxPidFD.open_pid)
    process_from_fd = staticmethod(_LinuxPidFD.adopt)
    ready_set = staticmethod(_LinuxReadySet.create)
    virtual_fd = staticmethod(_vpoll.create)
    poll_requests = staticmethod(_vpoll.poll_requests)
    channel_refusal = staticmethod(_channel.cpu_refusal)

    def capabilities(self) -> list[Capability]:
        return [
            _channel.capability(NAME, self.channel_refusal()),
            Capability("EventFD", NAME, True, "eventfd"),
            Capability("MemFD", NAME, True, "memfd", _memfd_missing()),
            _process_capability(NAME),
            Capability("SignalFD", NAME, True, "signalfd"),
            Capability("TimerFD", NAME, True, "timerfd"),
            *_vpoll.capabilities(NAME),
        ]

    def __repr__(self) -> str:
        return "<fdloop linux backend>"
