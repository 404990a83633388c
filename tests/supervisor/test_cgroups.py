"""Whole trees: a Supervisor with one cgroup v2 per program (fdloop/supervisor/cgroup.py).

Real cgroups under this process's own cgroup v2 directory (root here), real processes;
every cgroup made is removed when the Supervisor closes, which each test checks. Where
cgroups cannot be made (not root, no cgroup v2, the kqueue backend) the cgroup tests
skip and the fallback tests run: process groups, and the reason said.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop.backends import selected_name
from fdloop.supervisor.cgroup import CgroupTree, support

from ..helpers import eventually

HANG = 10.0
CGROUPS = support()[0] is not None
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason=f"no cgroups: {support()[1]}")


def _pid_from(path: Path) -> int:
    return int(path.read_text().split()[0])


async def _written(path: Path) -> int:
    assert await eventually(lambda: path.exists() and path.read_text().endswith("\n"), HANG)
    return _pid_from(path)


def _commands(cgroup: str) -> list[str]:
    """The command names of the processes in a cgroup now."""
    names = []
    for pid in Path(cgroup, "cgroup.procs").read_text().split():
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue  # gone meanwhile
    return names


def _exited(process: fdloop.ProcessFD) -> bool:
    """Whether the process has exited now: its pidfd polls readable (no waiting)."""
    return bool(select.select([process.fileno()], [], [], 0)[0])


@needs_cgroups
async def test_stop_kills_a_setsid_grandchild_that_ignores_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    # The grandchild leaves the program's session and process group and ignores
    # SIGTERM: only the cgroup still knows it is the program's.
    script = (
        f"setsid sh -c 'trap \"\" TERM; echo $$ > {pidfile}; exec sleep 30' & exec sleep 30"
    )
    async with fdloop.Supervisor(cgroups=True) as sup:
        root = sup.cgroup_root
        assert root is not None and os.path.isdir(root)
        assert sup.process_trees.startswith("one cgroup per program under ")
        sup.add("tree", ["sh", "-c", script], stop_timeout=0.2)
        await sup.start()
        grandchild_pid = await _written(pidfile)
        with fdloop.ProcessFD.open(grandchild_pid) as grandchild:
            usage = sup.status()["tree"].cgroup
            assert usage is not None and usage.populated
            assert grandchild_pid in map(int, Path(usage.path, "cgroup.procs").read_text().split())
            with anyio.fail_after(HANG):
                await sup.stop("tree")
            # The stop returned only once the tree was gone: no waiting needed here.
            assert _exited(grandchild)
            status = sup.status()["tree"]
            assert status.state == "stopped"
            assert status.cgroup is not None and not status.cgroup.populated
            assert status.cgroup.processes == 0
    assert not os.path.exists(root), "the Supervisor left its cgroup tree behind"


@needs_cgroups
async def test_status_reports_cpu_and_memory_of_the_whole_tree(tmp_path: Path) -> None:
    marker = tmp_path / "busy-done"
    # The CPU is burnt by a child in a session of its own: it counts all the same.
    busy = (f"setsid sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
            f"echo done > {marker}' & exec sleep 30")
    async with fdloop.Supervisor(cgroups=True) as sup:
        sup.add("busy", ["sh", "-c", busy], stop_timeout=1)
        await sup.start()
        assert await eventually(marker.exists, HANG)
        usage = sup.status()["busy"].cgroup
        assert usage is not None
        assert usage.cpu_usec > 0 and usage.cpu_usec >= max(usage.user_usec, usage.system_usec)
        assert usage.populated and usage.processes >= 1
        assert sup.status()["busy"]["cgroup"] == sup.status()["busy"].cgroup
        if os.path.exists(os.path.join(usage.path, "memory.peak")):
            assert usage.memory_peak is not None and usage.memory_peak > 0
            assert usage.memory_current is not None
        else:
            # The memory controller is not enabled for this subtree (here: bound to
            # cgroup v1): no number is invented.
            assert usage.memory_peak is None and usage.memory_current is None


@needs_cgroups
async def test_stopped_only_once_the_cgroup_is_empty(tmp_path: Path) -> None:
    done = tmp_path / "lingerer-done"
    pidfile = tmp_path / "lingerer"
    # The main process dies of SIGTERM at once; its child takes 0.3 s to finish after
    # SIGTERM. "stopped" must wait for the child: populated 0, not the main exit.
    lingerer = (
        f"trap 'sleep 0.3; echo done > {done}; exit 0' TERM; echo $$ > {pidfile}; "
        "sleep 30 & wait"
    )
    events = []
    async with fdloop.Supervisor(cgroups=True) as sup:
        stream = sup.events()
        sup.add("linger", ["sh", "-c", f"sh -c \"{lingerer}\" & exec sleep 30"],
                stop_timeout=5)
        await sup.start()
        child_pid = await _written(pidfile)
        usage = sup.status()["linger"].cgroup
        assert usage is not None
        # Both sleeps exec'd (a shell's child signalled between its fork and its exec
        # may lose the signal: a race of the test program, not the supervisor).
        assert await eventually(lambda: _commands(usage.path).count("sleep") == 2, HANG)
        with fdloop.ProcessFD.open(child_pid) as child:
            with anyio.fail_after(HANG):
                await sup.stop("linger")
            assert done.exists(), "stop returned before the child left the cgroup"
            assert _exited(child)
        usage = sup.status()["linger"].cgroup
        assert usage is not None and not usage.populated
        while (event := await stream.next(0)) is not None:
            events.append(event.kind)
    assert events[-2:] == ["stopping", "stopped"]


@needs_cgroups
async def test_leftovers_of_an_exited_program_are_stopped_with_the_supervisor(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "leftover"
    async with fdloop.Supervisor(cgroups=True) as sup:
        root = sup.cgroup_root
        sup.add("quits", ["sh", "-c", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' &"],
                restart="never", stop_timeout=1)
        await sup.start()
        leftover_pid = await _written(pidfile)
        leftover = fdloop.ProcessFD.open(leftover_pid)
        await sup.wait()  # the program exited; its setsid child lives on in its cgroup
        assert not _exited(leftover)
        usage = sup.status()["quits"].cgroup
        assert usage is not None and usage.populated
    with leftover:
        assert _exited(leftover), "a leftover outlived the Supervisor"
    assert root is not None and not os.path.exists(root)


@needs_cgroups
async def test_tree_names_are_safe_directories() -> None:
    tree, why = CgroupTree.create()
    assert tree is not None, why
    try:
        made = [tree.program(name) for name in ("web.1", "a/b", "cgroup.procs", "../x", "web.1")]
        names = [os.path.basename(cgroup.path) for cgroup in made]
        assert names[0] == "web.1" and made[4] is made[0]
        assert len(set(names[:4])) == 4
        assert all(os.path.dirname(cgroup.path) == tree.root for cgroup in made)
    finally:
        await tree.aclose(0)
    assert not os.path.exists(tree.root)


@pytest.mark.parametrize(
    ("value", "error"), [("yes", ValueError), ("", ValueError), (1, TypeError),
                         (None, TypeError), (["auto"], TypeError)],
)
def test_bad_cgroups_argument_is_refused_naming_it(value: object, error: type) -> None:
    with pytest.raises(error, match="cgroups"):
        fdloop.Supervisor(cgroups=value)  # type: ignore[arg-type]


async def test_cgroups_true_raises_where_none_can_be_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cgroup we cannot write, simulated for the in-process check only: the real
    # unprivileged case runs below as uid 65534.
    monkeypatch.setattr("fdloop.supervisor.cgroup.support",
                        lambda: (None, "not writable (test)"))
    with pytest.raises(fdloop.UnsupportedOperation, match="cgroups=True: not writable"):
        async with fdloop.Supervisor(cgroups=True):
            pass
    async with fdloop.Supervisor(cgroups="auto") as sup:
        assert sup.cgroup_root is None
        assert sup.process_trees == "process groups (no cgroups: not writable (test))"


_UNPRIVILEGED = textwrap.dedent("""
    import os, select, sys, anyio, fdloop
    pidfile = sys.argv[1]

    async def main():
        try:
            async with fdloop.Supervisor(cgroups=True):
                pass
        except fdloop.UnsupportedOperation as exc:
            print("refused:", exc)
        async with fdloop.Supervisor(cgroups="auto") as sup:
            print("trees:", sup.process_trees, sup.cgroup_root)
            # A grandchild in the program's process group: the group stop reaches it.
            sup.add("group", ["sh", "-c", f"sh -c 'echo $$ > {pidfile}; exec sleep 30' & "
                              "exec sleep 30"], stop_timeout=2)
            await sup.start()
            with anyio.fail_after(10):
                while not os.path.exists(pidfile) or not open(pidfile).read().endswith("\\n"):
                    await anyio.sleep(0.01)
            pid = int(open(pidfile).read())
            with fdloop.ProcessFD.open(pid) as grandchild:
                await sup.stop("group")
                with anyio.fail_after(10):  # the pidfd polls readable at its exit
                    await fdloop.wait_events(grandchild, select.POLLIN)
            print("grandchild:", "ended", sup.status()["group"].cgroup)

    anyio.run(main)
""")


def test_unprivileged_supervisor_falls_back_to_process_groups() -> None:
    setpriv = "/usr/bin/setpriv"
    if os.geteuid() != 0 or not os.path.exists(setpriv):
        pytest.skip("needs root and setpriv to become uid 65534")
    become_nobody = [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(fdloop.__file__)),
         *filter(None, [os.environ.get("PYTHONPATH")])])}
    # An interpreter installed under a directory only root may enter (pyenv in /root)
    # cannot load its own libpython or standard library as another user.
    probe = subprocess.run([*become_nobody, sys.executable, "-c", "import anyio, fdloop"],
                           capture_output=True, text=True, timeout=60, check=False, env=env)
    if probe.returncode != 0:
        pytest.skip("this Python cannot run as uid 65534 here: "
                    f"{(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    # pytest's tmp_path sits under a directory only root may enter.
    with tempfile.TemporaryDirectory(prefix="fdloop-trees-") as shared:
        os.chmod(shared, 0o777)
        result = subprocess.run(
            [*become_nobody, sys.executable, "-c", _UNPRIVILEGED,
             os.path.join(shared, "grandchild")],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    why = "uid 65534" if selected_name() == "linux" else "backend cannot wait for POLLPRI"
    assert lines[0].startswith("refused: cgroups=True: ") and why in lines[0], lines
    assert lines[1].startswith("trees: process groups (no cgroups: ") and lines[1].endswith(
        " None"), lines
    assert lines[2] == "grandchild: ended None", lines


def test_fdloop_info_says_what_a_program_is() -> None:
    from fdloop.info import describe

    line = next(line for line in describe().splitlines() if line.startswith("supervise "))
    if CGROUPS:
        assert "cgroup v2 per program, under " in line, line
    else:
        assert "process groups (no cgroup: " in line, line


CLI_GRANDCHILD = "setsid sh -c 'trap \"\" TERM; echo grandchild=$$; exec sleep 30'"
CLI_TREE = f"""
[program.tree]
command = {json.dumps(["sh", "-c", CLI_GRANDCHILD + " & exec sleep 30"])}
stop_timeout = 0.3
"""


@needs_cgroups
def test_fdloop_supervise_stops_a_whole_tree_on_sigterm(tmp_path: Path) -> None:
    from .supervise_harness import Supervise

    config = tmp_path / "tree.toml"
    config.write_text(CLI_TREE)
    sup = Supervise(tmp_path, str(config))
    try:
        grandchild_pid = int(sup.wait_for(r"grandchild=(\d+)", stream="stdout")[0])
        with fdloop.ProcessFD.open(grandchild_pid) as grandchild:
            note = sup.wait_for(r"programs die with the supervisor through (.*)$")[0]
            root = note.split("cgroup.kill of ", 1)[1].split(" ", 1)[0]
            assert "(one cgroup per program inside)" in note
            assert os.path.isdir(os.path.join(root, "tree"))
            sup.signal(signal.SIGTERM)
            assert sup.finish() == 0, sup.stderr
            # Out of its session and deaf to SIGTERM, it still went with its program.
            assert _exited(grandchild), sup.stderr
        assert not os.path.exists(root), "the cgroup tree outlived the supervisor"
    finally:
        if sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
