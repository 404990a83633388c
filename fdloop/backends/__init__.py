"""The one place a backend is chosen: ``current()`` gives a typed :class:`Backend`.

A backend is one object per ``FDLOOP_BACKEND`` value (``linux`` or ``kqueue``; unset or
empty: the platform's native one) whose methods make the per-primitive objects of
:mod:`.contract`. The variable is read on every call, so a test (or a user) can switch
backends between calls; the object for each value is built once and kept, so a call
costs one environment read and one dict lookup. Nothing else in fdloop asks which
backend or which OS is in force.

What the backends share (posix_spawn, pipes, shm files, fd limits, signal masks) is in
:mod:`.posix`; :mod:`.linux` and :mod:`.kqueue` hold only what is theirs. The text of
``fdloop info`` is :mod:`fdloop.info`'s, which reads this module (never the other way).
"""

from __future__ import annotations

import os
import sys
import threading

from .contract import Backend, Capability

__all__ = ["BACKENDS", "Backend", "Capability", "capabilities", "current", "native_name",
           "selected_name"]

BACKENDS = ("linux", "kqueue")
_VARIABLE = "FDLOOP_BACKEND"

_chosen: dict[str | None, Backend] = {}
"""The backend per raw FDLOOP_BACKEND value (None: unset), built on first use."""
_building = threading.Lock()


def native_name() -> str:
    """The backend a platform uses by default."""
    return "linux" if sys.platform.startswith("linux") else "kqueue"


def selected_name() -> str:
    """The backend in force now: ``FDLOOP_BACKEND`` if set, else the native one.

    Raises ValueError naming the variable for a value that is no backend.
    """
    return _name_for(os.environ.get(_VARIABLE))


def current() -> Backend:
    """The backend in force now (ValueError for a bad ``FDLOOP_BACKEND``)."""
    raw = os.environ.get(_VARIABLE)
    backend = _chosen.get(raw)
    if backend is None:
        backend = _build(raw)
    return backend


def capabilities(backend: str | None = None) -> list[Capability]:
    """Per primitive: the backend, native or emulated, and what is missing.

    ``backend`` is ``"linux"``, ``"kqueue"`` or None (the one in force); anything else
    raises TypeError/ValueError naming it.
    """
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, not {type(backend).__name__}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    return (current() if backend is None else _build(backend)).capabilities()


def _name_for(raw: str | None) -> str:
    name = (raw or "").strip().lower() or native_name()
    if name not in BACKENDS:
        raise ValueError(f"{_VARIABLE}={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def _build(raw: str | None) -> Backend:
    # A lock, so that two threads starting at once share one backend object (a backend
    # keeps per-process state, e.g. which kernel calls it has probed).
    with _building:
        backend = _chosen.get(raw)
        if backend is None:
            name = _name_for(raw)
            backend = next((b for b in _chosen.values() if b.name == name), None)
            if backend is None:
                backend = _make(name)
            _chosen[raw] = backend
        return backend


def _make(name: str) -> Backend:
    """The backend object for ``name``: the platform choice, made here and only here."""
    if name == "linux":
        from .linux import LinuxBackend

        return LinuxBackend()
    from .kqueue import KqueueBackend

    if native_name() == "linux":
        # kqueue's rules over the test emulator on a Linux host: children are still
        # started the Linux way (the kqueue backend then watches them by pid).
        from .linux.spawn import spawn_child

        return KqueueBackend(start_child=spawn_child)
    return KqueueBackend()
