"""The text of ``fdloop info``: where we run, which loops are here, what each primitive is.

Kept apart from backend selection so that the table format can grow without touching
``fdloop.backends``; :func:`fdloop.backends.describe` is the entry point.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import select
import sys
import textwrap

from . import BACKENDS, Capability, capabilities, native_name, selected_name

_LOOP_LIBRARIES = ("uvloop", "trio", "anyio", "sniffio")
_WIDTH = 100


def describe(backend: str | None = None) -> str:
    """A plain-text report: fdloop, kernel, Python, loop libraries, and one row per
    primitive of ``backend`` (default: the one in force) with what it lacks."""
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
        f"fdloop {_version('fdloop')}",
        f"kernel   {platform.system()} {platform.release()} ({platform.machine()})",
        f"python   {platform.python_implementation()} {platform.python_version()}",
        f"loops    {', '.join(_loops())}",
        f"backend  {name} ({chosen}; native here: {native_name()})",
        f"kqueue   {_kqueue_state()}",
        "",
        _table(capabilities(name)),
    ]
    return "\n".join(lines)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _loops() -> list[str]:
    found = ["asyncio (stdlib)"]
    for library in _LOOP_LIBRARIES:
        version = _version(library)
        found.append(f"{library} {version}" if version != "not installed" else
                     f"{library} (not installed)")
    return found


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
