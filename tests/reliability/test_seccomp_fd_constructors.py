"""EventFD, TimerFD, SignalFD and MemFD where a seccomp filter refuses the call that
makes their fd (SECCOMP_RET_ERRNO, as container profiles answer calls they do not know).

Each case runs a fresh interpreter under a real filter refusing one syscall, builds the
primitive, and reports what it raised and whether any fd was left open. The error keeps
the kernel's errno and type (PermissionError for EPERM) and names the refused call, so a
refusal no longer reads like a file's permissions; the fds open afterwards are the ones
open before, and a refused SignalFD gives its signals back (the mask is unchanged).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from fdloop.backends import selected_name

from ..helpers import SECCOMP_PRELUDE

SYSCALLS = {  # the numbers differ per architecture for calls older than Linux 5.1
    "x86_64": {"eventfd2": 290, "timerfd_create": 283, "signalfd4": 289,
               "memfd_create": 319},
    "aarch64": {"eventfd2": 19, "timerfd_create": 85, "signalfd4": 74,
                "memfd_create": 279},
}.get(platform.machine(), {})

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or selected_name() != "linux",
        reason="the Linux backend's fd calls (the kqueue backend makes kqueues)"),
    pytest.mark.skipif(not SYSCALLS, reason=f"syscall numbers of {platform.machine()}"),
]

SCRIPT = SECCOMP_PRELUDE + r'''
import errno, json, os, signal, sys

number, error, kind = int(sys.argv[1]), getattr(errno, sys.argv[2]), sys.argv[3]
import fdloop
from fdloop.backends.posix import sigmask

MAKE = {
    "EventFD": lambda: fdloop.EventFD(),
    "TimerFD": lambda: fdloop.TimerFD(),
    "SignalFD": lambda: fdloop.SignalFD({signal.SIGUSR1}),
    "MemFD": lambda: fdloop.MemFD("refused", size=4096),
}
before = sorted(os.listdir("/proc/self/fd"))
mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
refuse_syscalls([number], error)
try:
    MAKE[kind]().close()
    raised = None
except OSError as exc:
    raised = {"type": type(exc).__name__, "errno": exc.errno, "message": str(exc)}
print(json.dumps({
    "raised": raised,
    "fds_left": sorted(set(os.listdir("/proc/self/fd")) - set(before)),
    "mask_same": signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask,
}))
'''

CASES = [("EventFD", "eventfd2"), ("TimerFD", "timerfd_create"),
         ("SignalFD", "signalfd4"), ("MemFD", "memfd_create")]


def _run(kind: str, call: str, error: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(SYSCALLS[call]), error, kind],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(("kind", "call"), CASES)
@pytest.mark.parametrize(("error", "type_name", "number"),
                         [("EPERM", "PermissionError", 1), ("ENOSYS", "OSError", 38)])
def test_a_refused_fd_call_is_named_and_leaves_nothing(
    kind: str, call: str, error: str, type_name: str, number: int
) -> None:
    result = _run(kind, call, error)
    raised = result["raised"]
    assert isinstance(raised, dict), f"{kind}() should fail when {call} is refused"
    assert raised["type"] == type_name and raised["errno"] == number
    assert f"{call} refused" in raised["message"], raised["message"]
    assert result["fds_left"] == [] and result["mask_same"] is True


def test_an_unrelated_refusal_leaves_the_constructors_alone() -> None:
    # pidfd_open (434 everywhere) refused: none of the four makes that call.
    for kind, _call in CASES:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, "434", "EPERM", kind],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["raised"] is None, kind
