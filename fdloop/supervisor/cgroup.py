"""Whole process trees: one cgroup v2 directory per supervised program.

A program that forks, daemonizes or calls ``setsid`` leaves its process group, but never
its cgroup: a child is born in its parent's cgroup and only someone with write access to
cgroupfs can move it out. So where this process may create cgroups under its own (root
here; a delegated subtree under systemd), a Supervisor with ``cgroups=True``/``"auto"``
makes ``fdloop-supervise-PID[-N]/`` there and one child directory per program, and each
instance starts in its program's directory: straight into it where the compiled clone3
path starts children (``spawn(cgroup=)``, CLONE_INTO_CGROUP), else by moving itself in
before it execs the program (the ``/bin/sh`` wrapper of
:func:`fdloop.backends.linux.pdeathsig.guarded_argv`, one more exec; the pid never
changes). :func:`start_method` says which. Then:

* stop signals every process of the tree (``stop_signal``, each through a pidfd opened
  and then checked to be still in the cgroup, so a recycled pid is never hit), and after
  ``stop_timeout`` writes ``cgroup.kill``, which SIGKILLs the whole tree at once;
* a program counts as stopped only once its cgroup is empty: ``cgroup.events`` says
  ``populated 0``. The kernel raises POLLPRI on that file when it changes, and
  :func:`fdloop.wait_events` waits for it in the loop's poll — no polling;
* ``status()`` reads ``cpu.stat`` (always there) and ``memory.peak``/``memory.current``
  (only where the memory controller is enabled for the subtree; None otherwise).

Elsewhere — no cgroup v2, a cgroup we cannot write, the kqueue backend (it cannot wait
for POLLPRI) — programs run in process groups of their own, as before, and
:func:`support` says why.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import select
import signal
import sys
from dataclasses import dataclass

import anyio

KILL_GRACE = 5.0
"""After cgroup.kill, how long to wait for the tree to be empty (a SIGKILLed process in
uninterruptible sleep takes its time)."""

_CONTROLLER_PREFIXES = ("cgroup", "cpu", "cpuset", "memory", "io", "pids", "hugetlb",
                        "rdma", "misc")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_serial = itertools.count(1)


def own_cgroup_dir() -> tuple[str | None, str]:
    """This process's cgroup v2 directory, or None and why there is none."""
    try:
        with open("/proc/self/cgroup") as listing:
            lines = listing.read().splitlines()
        with open("/proc/self/mountinfo") as mounts:
            mountinfo = mounts.read().splitlines()
    except OSError as exc:
        return None, f"cannot read /proc: {exc.strerror}"
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None, "no cgroup v2 hierarchy for this process"
    for line in mountinfo:
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            fields = before.split()
            root, mount_point = fields[3], fields[4]
            if relative.startswith(root.rstrip("/") + "/") or relative == root:
                inside = relative[len(root.rstrip("/")):]
                return mount_point + inside.rstrip("/"), ""
    return None, "cgroup v2 is not mounted where this process can see it"


def support() -> tuple[str | None, str]:
    """Where per-program cgroups can be made (this process's cgroup directory), or
    (None, why not). Creates nothing: :meth:`CgroupTree.create` still may fail."""
    if not sys.platform.startswith("linux"):
        return None, f"cgroups are Linux-only (this is {sys.platform})"
    from ..backends import selected_name

    if selected_name() != "linux":
        return None, (f"the {selected_name()} backend cannot wait for POLLPRI on "
                      "cgroup.events")
    parent, why = own_cgroup_dir()
    if parent is None:
        return None, why
    if not os.access(parent, os.W_OK):
        return None, f"{parent} is not writable by uid {os.geteuid()}"
    return parent, ""


_wrapper_fallback: list[str] = []


def direct_start_problem() -> str | None:
    """None where programs can be started straight into their cgroup (the linux
    backend's compiled clone3 path: CLONE_INTO_CGROUP), else why the wrapper is used."""
    from ..backends import selected_name
    from ..backends.linux import spawn as linux_spawn

    if _wrapper_fallback:
        return _wrapper_fallback[0]
    if selected_name() != "linux":
        return f"the {selected_name()} backend has no CLONE_INTO_CGROUP"
    native = linux_spawn._clone_spawn
    if native is None:
        return "posix_spawn path (the _clone_spawn extension is not built)"
    if native.variant() != "clone3":
        return "clone(2) path: clone3 is refused here or not built for this CPU"
    return None


def note_wrapper_fallback(why: str) -> None:
    """Remember that clone3 refused a start into a cgroup: later starts use the wrapper."""
    if not _wrapper_fallback:
        _wrapper_fallback.append(why)


def start_method() -> str:
    """How programs get into their cgroups here, in a few words."""
    why = direct_start_problem()
    if why is None:
        return "started in it by clone3 (CLONE_INTO_CGROUP)"
    return f"joined by a /bin/sh wrapper ({why})"


def describe_support() -> str:
    """One line for ``fdloop info``: what a Supervisor stops and accounts as a program."""
    parent, why = support()
    if parent is None:
        return f"process groups (no cgroup: {why})"
    return (f"cgroup v2 per program, under {parent} (cgroup.kill, populated 0, cpu.stat; "
            f"{start_method()})")


@dataclass(frozen=True)
class CgroupUsage:
    """What one program's cgroup has used, as ``ProgramStatus.cgroup`` reports it."""

    path: str
    populated: bool
    """Whether any process of the program's tree is alive."""
    processes: int
    cpu_usec: int
    """CPU time of the whole tree, user plus system, in microseconds (cpu.stat)."""
    user_usec: int
    system_usec: int
    memory_peak: int | None
    """Bytes (memory.peak); None where the memory controller is not enabled here."""
    memory_current: int | None


class ProgramCgroup:
    """One program's cgroup directory: its tree's members, usage, kill and emptiness."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.path, name)) as file:
                return file.read()
        except OSError:
            return None

    def pids(self) -> list[int]:
        """Pids of the processes in the cgroup now (empty if it is gone)."""
        return [int(word) for word in (self._read("cgroup.procs") or "").split()]

    def populated(self) -> bool:
        return "populated 1" in (self._read("cgroup.events") or "").splitlines()

    def usage(self) -> CgroupUsage:
        """A snapshot of cpu.stat and memory.peak/current (missing files: 0 or None)."""
        cpu = dict(line.split(" ", 1) for line in (self._read("cpu.stat") or "").splitlines()
                   if " " in line)

        def number(name: str) -> int | None:
            text = self._read(name)
            return int(text) if text is not None and text.strip().isdigit() else None

        return CgroupUsage(
            path=self.path, populated=self.populated(), processes=len(self.pids()),
            cpu_usec=int(cpu.get("usage_usec", 0)), user_usec=int(cpu.get("user_usec", 0)),
            system_usec=int(cpu.get("system_usec", 0)),
            memory_peak=number("memory.peak"), memory_current=number("memory.current"),
        )

    def signal_all(self, signo: int, skip: int | None = None) -> int:
        """Send ``signo`` to every process in the cgroup but ``skip``; return how many.

        Each pid is pinned by a pidfd first and then checked to be listed still: a pid
        that exited and was recycled between the listing and the pidfd is left alone
        (the pidfd names the new process, which is not in our cgroup).
        """
        from ..primitives.processfd import ProcessFD

        sent = 0
        for pid in self.pids():
            if pid == skip:
                continue
            try:
                handle = ProcessFD.open(pid)
            except OSError:  # gone already; or out of fds: cgroup.kill still ends it
                continue
            with handle:
                if pid not in self.pids():
                    continue
                try:
                    handle.send_signal(signo, group=False)
                except PermissionError:
                    # A set-user-ID member: kill(2) refuses us, cgroup.kill does not.
                    continue
                sent += 1
        return sent

    def kill(self) -> None:
        """SIGKILL every process in the cgroup and its descendants (cgroup.kill)."""
        with contextlib.suppress(FileNotFoundError), open(
            os.path.join(self.path, "cgroup.kill"), "w"
        ) as file:
            file.write("1")

    async def wait_empty(self) -> None:
        """Wait until no process is left in the cgroup (``populated 0``); returns at
        once if the directory is gone.

        The kernel raises POLLPRI on cgroup.events when it changes after our last read,
        so a change between the read and the poll is not lost.
        """
        from ..primitives.events import wait_events

        try:
            fd = os.open(os.path.join(self.path, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            while b"populated 1" in os.pread(fd, 4096, 0).splitlines():
                await wait_events(fd, select.POLLPRI)
        finally:
            os.close(fd)

    async def empty_within(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the cgroup to be empty; whether it is."""
        with anyio.move_on_after(timeout):
            await self.wait_empty()
        return not self.populated()

    async def kill_and_wait(self) -> None:
        """cgroup.kill, then wait (up to KILL_GRACE) for the tree to be gone."""
        if self.populated():
            self.kill()
            await self.empty_within(KILL_GRACE)

    def remove(self) -> None:
        """rmdir the cgroup (it must be empty; a missing one is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.path)


class CgroupTree:
    """``fdloop-supervise-PID[-N]/``: one Supervisor's programs, a cgroup each."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._programs: dict[str, ProgramCgroup] = {}

    @classmethod
    def create(cls, name: str | None = None) -> tuple[CgroupTree | None, str]:
        """Make the root directory under our own cgroup; (None, why not) where we cannot.

        ``name`` defaults to ``fdloop-supervise-PID`` for the first tree of this process,
        with ``-N`` after it for later ones; ``.N`` is added to a name already taken.
        """
        parent, why = support()
        if parent is None:
            return None, why
        if name is None:
            serial = next(_serial)
            name = f"fdloop-supervise-{os.getpid()}" + ("" if serial == 1 else f"-{serial}")
        # Taken already: another pid namespace's PID 1 (every container's init is pid
        # 1), or what a SIGKILLed supervisor of a recycled pid left.
        for attempt in itertools.count(1):
            root = os.path.join(parent, name if attempt == 1 else f"{name}.{attempt}")
            try:
                os.mkdir(root)
                break
            except FileExistsError:
                if attempt < 100:
                    continue
                return None, f"cannot create {root}: 100 names taken"
            except OSError as exc:
                return None, f"cannot create {root}: {exc.strerror}"
        if not os.path.exists(os.path.join(root, "cgroup.kill")):
            os.rmdir(root)
            return None, f"{root} has no cgroup.kill (Linux 5.14+)"
        # The memory controller gives memory.peak; enabling it may fail (not in the
        # parent's subtree_control, or bound to cgroup v1): usage then says None.
        with contextlib.suppress(OSError), open(
            os.path.join(root, "cgroup.subtree_control"), "w"
        ) as control:
            control.write("+memory")
        return cls(root), ""

    def program(self, name: str) -> ProgramCgroup:
        """The program's cgroup, made on first use (named after it where that is safe)."""
        cgroup = self._programs.get(name)
        if cgroup is None:
            prefix = name.split(".", maxsplit=1)[0]
            safe = _SAFE_NAME.fullmatch(name) and prefix not in _CONTROLLER_PREFIXES
            base = name if safe else "program"
            taken = {os.path.basename(known.path) for known in self._programs.values()}
            directory = base
            for index in itertools.count(2):
                if directory not in taken and not os.path.exists(
                    os.path.join(self.root, directory)
                ):
                    break
                directory = f"{base}-{index}"
            path = os.path.join(self.root, directory)
            os.mkdir(path)
            cgroup = self._programs[name] = ProgramCgroup(path)
        return cgroup

    def known(self, name: str) -> ProgramCgroup | None:
        return self._programs.get(name)

    def forget(self, name: str) -> None:
        """rmdir the cgroup of a program that is gone for good (removed from the
        Supervisor, so its directory does not pile up over reloads); one still holding
        a process stays (rmdir fails: EBUSY) and goes with the tree."""
        cgroup = self._programs.get(name)
        if cgroup is None:
            return
        try:
            cgroup.remove()
        except OSError:
            return
        del self._programs[name]

    async def aclose(self, timeout: float) -> None:
        """End what is left in every program's cgroup and remove the tree.

        What is left (leftovers of a program that exited on its own, say) gets SIGTERM,
        up to ``timeout`` seconds, then cgroup.kill on the whole tree; then every
        directory is removed.
        """
        cgroups = list(self._programs.values())
        for cgroup in cgroups:
            cgroup.signal_all(signal.SIGTERM)
        with anyio.move_on_after(timeout):
            for cgroup in cgroups:
                await cgroup.wait_empty()
        root = ProgramCgroup(self.root)
        await root.kill_and_wait()
        for cgroup in cgroups:
            with contextlib.suppress(OSError):
                cgroup.remove()
        with contextlib.suppress(OSError):
            root.remove()
