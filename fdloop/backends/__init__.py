"""Choosing a backend, and saying what each one can do.

A backend is a module exposing one factory per primitive (``eventfd``, ``timerfd``, ...)
and a ``capabilities()`` list. The native backend of the running platform is used unless
``FDLOOP_BACKEND=linux|kqueue`` says otherwise; the variable is read on every call, so a
test (or a user) can switch between backends without re-importing anything.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType

BACKENDS = ("linux", "kqueue")


@dataclass(frozen=True)
class Capability:
    """How one primitive is provided by one backend."""

    primitive: str
    backend: str
    native: bool
    """True when a kernel object does the work; False when fdloop emulates it."""
    kernel_object: str
    """What the pollable fd is, e.g. ``eventfd`` or ``kqueue (EVFILT_USER)``."""
    missing: tuple[str, ...] = field(default=())
    """What the DESIGN contract asks for that this backend cannot provide here."""


def native_name() -> str:
    """The backend a platform uses by default."""
    return "linux" if sys.platform.startswith("linux") else "kqueue"


def selected_name() -> str:
    """The backend in force now: ``FDLOOP_BACKEND`` if set, else the native one."""
    name = os.environ.get("FDLOOP_BACKEND", "").strip().lower() or native_name()
    if name not in BACKENDS:
        raise ValueError(f"FDLOOP_BACKEND={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def current() -> ModuleType:
    """The backend module in force now."""
    return importlib.import_module(f"{__name__}.{selected_name()}")


def capabilities(backend: str | None = None) -> list[Capability]:
    """Per primitive: the backend, native or emulated, and what is missing.

    ``backend`` is ``"linux"``, ``"kqueue"`` or None (the one in force); anything else
    raises TypeError/ValueError naming it.
    """
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, not {type(backend).__name__}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    module = current() if backend is None else importlib.import_module(f"{__name__}.{backend}")
    result: list[Capability] = module.capabilities()
    return result


def describe(backend: str | None = None) -> str:
    """The text ``fdloop info`` prints: fdloop, kernel, Python, the loop libraries found
    (with versions), and per primitive of ``backend`` (default: the one in force) its
    kernel object, native or emulated, and what is missing."""
    from .info import describe as describe_backend

    return describe_backend(backend)
