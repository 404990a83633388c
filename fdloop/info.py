"""The text of ``fdloop info``: where we run, which loops are here, what each primitive is.

This module owns the whole report (the ``fdloop info`` command only prints
:func:`describe`); it asks :mod:`fdloop.backends` which backend is in force and what it
can do, and nothing there imports this module back: cli -> info -> backends.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import select
import sys
import textwrap

from .backends import BACKENDS, Capability, capabilities, native_name, selected_name

_LOOP_LIBRARIES = ("uvloop", "trio", "anyio", "sniffio", "matplotlib")
_WIDTH = 100


def describe(backend: str | None = None) -> str:
    """A plain-text report: fdloop, kernel, Python, the loop libraries found (with
    versions), the backend, and one row per primitive of ``backend`` (default: the one in
    force) with its kernel object, native or emulated, and what it lacks.

    ValueError naming ``backend`` (or FDLOOP_BACKEND) for a name that is no backend.
    """
    name = selected_name() if backend is None else backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {name!r}")
    if backend is not None:
        chosen = "asked for"
    elif os.environ.get("FDLOOP_BACKEND", "").strip():
        chosen = "FDLOOP_BACKEND"
    else:
        chosen = "default"
    lines = [
        f"{'fdloop':<10} {_version('fdloop')}",
        f"{'kernel':<10} {platform.system()} {platform.release()} ({platform.machine()})",
        f"{'python':<10} {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable})",
        *(f"{library:<10} {_version(library)}" for library in _LOOP_LIBRARIES),
        f"{'backend':<10} {name} ({chosen}; native here: {native_name()}; "
        "FDLOOP_BACKEND=linux|kqueue overrides)",
        f"{'kqueue':<10} {_kqueue_state()}",
    ]
    if sys.platform.startswith("linux"):
        lines.append(f"{'spawn':<10} {_spawn_path()}")
    lines.append(f"{'supervise':<10} {_process_trees()}")
    lines += ["", _table(capabilities(name))]
    return "\n".join(lines)


def _process_trees() -> str:
    """What a Supervisor stops as one program here: a cgroup, or a process group."""
    from .supervisor.cgroup import describe_support

    return describe_support()


def _spawn_path() -> str:
    """The spawn line: which system call starts a child (and why not the compiled path)."""
    from .backends.linux.pidfd import reaps_natively
    from .backends.linux.spawn import _clone_spawn, spawns_with_pidfd

    if spawns_with_pidfd() and _clone_spawn is not None:
        variant = _clone_spawn.variant()
        why = "" if variant == "clone3" else " (clone3 refused here, or not built for this CPU)"
        spawn = (f"{variant}(CLONE_VM|CLONE_VFORK|CLONE_PIDFD|CLONE_FILES), compiled "
                 f"(_clone_spawn){why}")
    else:
        spawn = "posix_spawn + pidfd_open, pure Python (_clone_spawn not built)"
    reap = "compiled" if reaps_natively() else "ctypes or os.waitid"
    return f"{spawn}; reap: waitid(P_PIDFD) with rusage, {reap}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _kqueue_state() -> str:
    kqueue = getattr(select, "kqueue", None)
    if kqueue is None:
        return "not available (select.kqueue missing)"
    emulated = getattr(kqueue, "fdloop_emulated_platform", None)
    if emulated:
        return f"emulated ({emulated} rules; a test stand-in, not the kernel)"
    return f"select.kqueue ({sys.platform})"


def _table(rows: list[Capability]) -> str:
    header = f"{'primitive':<10} {'kernel object':<24} {'native':<7} missing"
    out = [header, "-" * len(header)]
    indent = " " * 43
    for row in sorted(rows, key=lambda r: r.primitive):
        native = "yes" if row.native else "emul."
        start = f"{row.primitive:<10} {row.kernel_object:<24} {native:<7}"
        if not row.missing:
            out.append(f"{start} -")
            continue
        for number, missing in enumerate(row.missing):
            wrapped = textwrap.wrap(missing, _WIDTH - len(indent) - 2) or [""]
            first = f"- {wrapped[0]}"
            out.append(f"{start if number == 0 else indent} {first}")
            out.extend(f"{indent}   {more}" for more in wrapped[1:])
    return "\n".join(out)
