"""ExitStatus built by the fast decoding path is the same object the dataclass builds."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import signal

import pytest

from fdloop.backends.contract import RawExit
from fdloop.primitives.exitstatus import ExitStatus, ResourceUsage

RAWS = [
    RawExit(10, 0),
    RawExit(11, 7 << 8, 0.25, 0.5, 4096),
    RawExit(12, int(signal.SIGKILL)),
    RawExit(13, int(signal.SIGQUIT) | 0x80, 0.0, 0.0, 1),
]


def _by_dataclass(raw: RawExit) -> ExitStatus:
    pid, status, user_cpu, system_cpu, max_rss = raw
    rusage = None if max_rss is None else ResourceUsage(user_cpu or 0.0, system_cpu or 0.0,
                                                        max_rss)
    if status & 0x7F:
        signo = status & 0x7F
        return ExitStatus(pid, -signo, None, signo, bool(status & 0x80), rusage)
    return ExitStatus(pid, status >> 8, status >> 8, None, False, rusage)


@pytest.mark.parametrize("raw", RAWS, ids=["exit-0", "exit-7", "sigkill", "sigquit-core"])
def test_from_raw_equals_the_dataclass_built_status(raw: RawExit) -> None:
    fast, slow = ExitStatus.from_raw(raw), _by_dataclass(raw)
    assert set(vars(fast)) == {field.name for field in dataclasses.fields(ExitStatus)}
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
    assert repr(fast) == repr(slow) and str(fast) == str(slow)
    assert int(fast) == int(slow) == fast.returncode
    assert hash(fast) == hash(slow)
    for twin in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert dataclasses.astuple(twin) == dataclasses.astuple(fast)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.pid = 1  # type: ignore[misc]
    if fast.rusage is not None:
        assert fast.rusage == slow.rusage
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.rusage.max_rss = 1  # type: ignore[misc]
