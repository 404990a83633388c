"""Programs started straight into their cgroup: ``spawn(cgroup=)`` (clone3's
CLONE_INTO_CGROUP) and the Supervisor's use of it, with the ``/bin/sh`` wrapper only as
the fallback (fdloop/supervisor/lifeline.py spawn_guarded, fdloop/supervisor/cgroup.py).

Real cgroups under this process's own cgroup v2 directory (root here), real processes.
The wrapper execs the program by its resolved path, so a program's argv[0] tells the two
ways apart: as given when it was started into its cgroup, the full path behind the wrapper.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name
from fdloop.backends.linux import spawn as linux_spawn
from fdloop.supervisor import Supervisor
from fdloop.supervisor import cgroup as cgroup_module
from fdloop.supervisor.cgroup import own_cgroup_dir, support

from ..helpers import eventually

HANG = 10.0
CLONE3 = (selected_name() == "linux" and linux_spawn._clone_spawn is not None
          and linux_spawn._clone_spawn.variant() == "clone3")
needs_cgroups = pytest.mark.skipif(support()[0] is None, reason=f"no cgroups: {support()[1]}")
SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
needs_clone3 = pytest.mark.skipif(not CLONE3, reason="CLONE_INTO_CGROUP needs the clone3 path")


def _posix_spawn_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every compiled part off, as tests/conftest.py's spawn_path fixture does."""
    from fdloop.backends.linux import pidfd as linux_pidfd
    from fdloop.backends.linux import readyset as linux_readyset

    monkeypatch.setattr(linux_spawn, "_clone_spawn", None)
    monkeypatch.setattr(linux_pidfd, "_native_reap", None)
    monkeypatch.setattr(linux_pidfd, "_waitid", linux_pidfd._python_waitid)
    monkeypatch.setattr(linux_readyset, "_arm", None)
    monkeypatch.setattr(linux_readyset, "_collect", None)


@pytest.fixture
def cgroup_dir() -> Iterator[str]:
    """A fresh cgroup v2 directory under ours; removed after."""
    parent = own_cgroup_dir()[0]
    if parent is None or not os.access(parent, os.W_OK):
        pytest.skip("no writable cgroup v2 directory of ours (needs root and cgroup2)")
    path = os.path.join(parent, f"fdloop-cgroup-spawn-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


def _v2_line(text: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith("0::")]
    return line[3:]


# -- spawn(cgroup=) ------------------------------------------------------------------------


@needs_clone3
async def test_spawn_starts_the_child_in_the_cgroup(cgroup_dir: str) -> None:
    done = await fdloop.run(["cat", "/proc/self/cgroup"], capture_output=True,
                            cgroup=Path(cgroup_dir))
    assert done.returncode == 0
    assert cgroup_dir.endswith(_v2_line(done.stdout.decode()))
    assert Path(cgroup_dir, "cgroup.procs").read_text() == ""


@needs_clone3
@pytest.mark.parametrize("bad", ["missing", "file", "plain directory", "not a path"])
def test_spawn_refuses_a_bad_cgroup_naming_it(bad: str, tmp_path: Path) -> None:
    value: object = {"missing": str(tmp_path / "nothing"), "file": "/etc/passwd",
                     "plain directory": str(tmp_path), "not a path": 5}[bad]
    expected: type[Exception] = {"missing": FileNotFoundError, "file": NotADirectoryError,
                                 "plain directory": OSError, "not a path": TypeError}[bad]
    with pytest.raises(expected, match="^cgroup must be the path" if bad == "not a path"
                       else "cgroup") as caught:
        fdloop.spawn(["true"], cgroup=value)  # type: ignore[arg-type]
    if bad == "plain directory":  # the kernel's refusal, reworded
        assert caught.value.errno == errno.EBADF  # type: ignore[attr-defined]
        assert "not an open cgroup v2 directory" in str(caught.value)
    if bad != "not a path":
        assert caught.value.filename == value  # type: ignore[attr-defined]
    with pytest.raises(ChildProcessError):  # nothing was started
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)


@needs_cgroups
def test_spawn_cgroup_on_the_posix_spawn_path_is_unsupported(
    cgroup_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _posix_spawn_path(monkeypatch)
    with pytest.raises(fdloop.UnsupportedOperation, match=r"^cgroup: .*compiled spawn path"):
        fdloop.spawn(["true"], cgroup=cgroup_dir)
    with pytest.raises(ChildProcessError):
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)


@pytest.mark.skipif(selected_name() != "kqueue", reason="the kqueue backend's refusal")
def test_spawn_cgroup_on_the_kqueue_backend_is_unsupported() -> None:
    own = own_cgroup_dir()[0]
    if own is None:
        pytest.skip("no cgroup v2 directory to name")
    with pytest.raises(fdloop.UnsupportedOperation, match=r"^cgroup: not available on the kqueue"):
        fdloop.spawn(["true"], cgroup=own)


# -- the Supervisor ------------------------------------------------------------------------


async def _run_in_cgroups(tmp_path: Path) -> tuple[str, str, str, str, str]:
    """A Supervisor with cgroups: a program that copies its own /proc/self/cgroup as its
    first act, and a sleeper; (the sleeper's binary and /proc cgroup just after start,
    its cgroup path, its /proc cgroup once it runs sleep, its argv[0])."""
    seen = tmp_path / "first-cgroup"
    async with Supervisor(cgroups=True) as sup:
        sup.add("first", ["cp", "/proc/self/cgroup", str(seen)], restart="never")
        sup.add("sleeper", ["sleep", "30"], stop_timeout=0.2)
        await sup.start()
        pid = sup.status()["sleeper"].pid
        assert pid is not None
        assert await eventually(lambda: seen.exists() and seen.read_text().endswith("\n"),
                                HANG)
        exe_at_start = os.path.realpath(f"/proc/{pid}/exe")  # (cp took its time since)
        usage = sup.status()["sleeper"].cgroup
        assert usage is not None
        own_at_start = Path(f"/proc/{pid}/cgroup").read_text()
        assert await eventually(lambda: os.path.realpath(f"/proc/{pid}/exe") == SLEEP, HANG)
        own = Path(f"/proc/{pid}/cgroup").read_text()
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        with anyio.fail_after(HANG):
            await sup.stop("sleeper")
        first = sup.status()["first"].cgroup
        assert first is not None
        assert first.path.endswith(_v2_line(seen.read_text()))
        return exe_at_start, own_at_start, usage.path, own, argv0


@needs_cgroups
@needs_clone3
async def test_a_program_starts_in_its_cgroup_without_a_wrapper(tmp_path: Path) -> None:
    assert cgroup_module.direct_start_problem() is None
    assert "started in it by clone3" in cgroup_module.describe_support()
    exe_at_start, own_at_start, path, own, argv0 = await _run_in_cgroups(tmp_path)
    assert path.endswith(_v2_line(own))
    assert own_at_start == own  # in it the moment spawn returned
    # The spawned pid was the program the moment spawn returned (the clone returns after
    # the exec), and it was exec'd as given: no /bin/sh ran first to exec it by its path.
    assert exe_at_start == SLEEP
    assert argv0 == "sleep"


@needs_cgroups
async def test_the_wrapper_still_joins_the_cgroup_on_the_posix_spawn_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _posix_spawn_path(monkeypatch)
    assert "posix_spawn" in (cgroup_module.direct_start_problem() or "")
    assert "joined by a /bin/sh wrapper" in cgroup_module.describe_support()
    _exe, _own_at_start, path, own, argv0 = await _run_in_cgroups(tmp_path)
    assert path.endswith(_v2_line(own))
    assert argv0.endswith("/sleep")  # the wrapper exec'd it by its path


@needs_cgroups
async def test_a_program_that_cannot_start_into_its_cgroup_is_reported() -> None:
    async with Supervisor(cgroups=True) as sup:
        events = sup.events()
        sup.add("ghost", ["/no/such/program"], restart="never")
        await sup.start()
        with anyio.fail_after(HANG):
            while (event := await events.next(HANG)) is not None and event.kind != "exited":
                pass
        assert event is not None and event.error is not None
        assert "/no/such/program" in event.error
        assert sup.status()["ghost"].pid is None
