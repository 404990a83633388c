"""Subreaper mode reaps an orphan whose pid is that of a reaped but still open handle.

The orphan reaper spares the children that fdloop reaps itself (``reaper.children()``).
A spawning ProcessFD whose child has exited and been reaped, but that is still open,
used to count as one, by pid; an orphan that is later given the same pid was then
spared too, and stayed a zombie for good. The pid is forced: in a private pid
namespace (as root) ``/proc/sys/kernel/ns_last_pid`` is set so that the orphan gets the
handle's pid. Fresh interpreter per loop; skipped where ``unshare`` cannot make a pid
namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conditions import on_backend

HANG = 30.0  # hang guard only
LOOPS = ["asyncio", "uvloop", "trio"]

SCRIPT = r"""
import os, sys
import anyio
import fdloop
from fdloop.supervisor import Supervisor

LOOP, PIDFILE = sys.argv[1], sys.argv[2]


def set_next_pid(pid):
    with open("/proc/sys/kernel/ns_last_pid", "w") as last:
        last.write(str(pid - 1))


async def main():
    # Fill low pids first, so that the two before the handle's pid are free for reuse.
    # One of them with die_with_parent: without the compiled spawn path its first use
    # runs `setpriv --help` once, which must not take a pid after ns_last_pid is set.
    for number in range(6):
        async with fdloop.spawn(["true"], die_with_parent=number == 0) as dummy:
            await dummy.wait()
    async with Supervisor(subreaper=True) as sup:
        events = sup.events()
        other = fdloop.spawn(["true"])  # reaped below, and kept open
        await other.wait()
        reused = other.pid
        # The program takes reused - 1, its background child (our orphan-to-be) reused.
        sup.add("parent", ["sh", "-c", f"sh -c 'sleep 0.2; exit 7' & echo $! > {{PIDFILE}}"],
                restart="never")
        set_next_pid(reused - 1)
        await sup.start()
        with anyio.fail_after({hang}):
            async for event in events:
                if event.kind == "reaped":
                    break
        with open(PIDFILE) as pidfile:
            orphan = int(pidfile.read())
        assert orphan == reused, f"pid reuse not forced: orphan {{orphan}}, handle {{reused}}"
        assert event.pid == orphan and event.returncode == 7, event
        assert not os.path.exists(f"/proc/{{orphan}}"), "the orphan is still there"
        await other.aclose()
    print("OK")


anyio.run(
    main, backend="trio" if LOOP == "trio" else "asyncio",
    backend_options={{"use_uvloop": True}} if LOOP == "uvloop" else {{}},
)
"""


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
        check=False, timeout=HANG,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare --pid --mount-proc")
@on_backend("linux")  # the subreaper is Linux's (PR_SET_CHILD_SUBREAPER)
@pytest.mark.parametrize("loop", LOOPS)
def test_an_orphan_with_the_pid_of_a_reaped_open_handle_is_reaped(
    loop: str, tmp_path: Path
) -> None:
    code = SCRIPT.format(hang=HANG / 3)
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code, loop,
         str(tmp_path / "orphan.pid")],
        capture_output=True, text=True, timeout=HANG, check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (
        result.stdout + result.stderr
    )
