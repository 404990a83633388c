"""The backend seam: one typed Backend per FDLOOP_BACKEND value, chosen in one place.

Checked here: ``fdloop.backends.current()`` follows the variable call by call and keeps
one object per backend; every backend object has every method of the ``Backend``
Protocol; ``fdloop.spawn`` and ``ProcessFD.open`` go through the backend in force; and
the layout rules of fdloop/backends/ (kqueue/ never imports linux/, posix/ imports
neither, only kqueue/platform.py reads ``sys.platform`` inside kqueue/, no import cycle
between the seam and ``fdloop info``), read from the source with ``ast``.
"""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import fdloop
from fdloop import backends
from fdloop.backends.contract import Backend

from ..conftest import _emulate_kqueue

BACKENDS_DIR = Path(backends.__file__).parent


def _protocol_methods() -> list[str]:
    return sorted(name for name, value in vars(Backend).items()
                  if not name.startswith("_") and callable(value))


def test_current_follows_the_variable_and_keeps_one_object_per_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FDLOOP_BACKEND", "linux")
    linux = backends.current()
    assert linux.name == "linux" and backends.current() is linux
    monkeypatch.setenv("FDLOOP_BACKEND", "kqueue")
    kqueue = backends.current()
    assert kqueue.name == "kqueue" and kqueue is not linux
    # Spelt otherwise, or unset on Linux (the native backend): the same objects.
    monkeypatch.setenv("FDLOOP_BACKEND", " Linux ")
    assert backends.current() is linux
    monkeypatch.setenv("FDLOOP_BACKEND", "KQUEUE")
    assert backends.current() is kqueue
    monkeypatch.delenv("FDLOOP_BACKEND")
    assert backends.current().name == backends.native_name()


def test_a_bad_value_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FDLOOP_BACKEND", "epoll")
    with pytest.raises(ValueError, match=r"FDLOOP_BACKEND='epoll'.*linux, kqueue"):
        backends.current()
    with pytest.raises(ValueError, match="FDLOOP_BACKEND"):
        fdloop.EventFD()


@pytest.mark.parametrize("name", backends.BACKENDS)
def test_every_backend_has_every_method_of_the_protocol(name: str) -> None:
    methods = _protocol_methods()
    assert {"eventfd", "spawn_process", "process_open", "memfd", "capabilities"} <= set(methods)
    backend = backends._build(name)
    assert backend.name == name
    missing = [method for method in methods if not callable(getattr(backend, method, None))]
    assert not missing, f"the {name} backend lacks {missing}"
    assert {row.backend for row in backend.capabilities()} == {name}


@pytest.fixture
def kqueue_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FDLOOP_BACKEND", "kqueue")
    _emulate_kqueue(monkeypatch.setattr, monkeypatch.setenv)
    yield


@pytest.mark.parametrize("name", backends.BACKENDS)
async def test_spawn_and_open_go_through_the_backend_in_force(
    name: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if name == "kqueue":
        request.getfixturevalue("kqueue_here")
    else:
        monkeypatch.setenv("FDLOOP_BACKEND", "linux")
    kind = {"linux": "LinuxPidFD", "kqueue": "KqueueProcessFD"}[name]
    async with fdloop.spawn(["sleep", "30"]) as proc:
        assert type(proc._handle).__name__ == kind
        with fdloop.ProcessFD.open(proc.pid) as watcher:
            assert type(watcher._handle).__name__ == kind
            assert not watcher._handle.is_child
        proc.send_signal(signal.SIGKILL)
        assert (await proc.wait()).returncode == -signal.SIGKILL


def _header_counts(text: str) -> tuple[int, int, int]:
    lines = text.splitlines()
    return (sum(line.split()[:1] == ["fdloop"] for line in lines),
            sum(line.startswith("primitive ") for line in lines),
            sum(line.startswith("backend ") for line in lines))


def test_info_prints_its_header_once() -> None:
    text = subprocess.run([sys.executable, "-m", "fdloop", "info"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    assert _header_counts(text) == (1, 1, 1), text


@pytest.mark.parametrize("name", backends.BACKENDS)
def test_info_prints_once_on_each_backend(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fdloop.cli import main

    monkeypatch.setenv("FDLOOP_BACKEND", name)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert _header_counts(text) == (1, 1, 1), text
    assert f"backend    {name} (FDLOOP_BACKEND" in text


# -- the layout, read from the source --------------------------------------------------


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports (module level and inside functions), absolute."""
    # The package a relative import starts from: the module's own (for __init__.py,
    # the package itself).
    base_parts = list(path.relative_to(BACKENDS_DIR.parent.parent).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = base_parts[: len(base_parts) - node.level + 1] if node.level else []
            module = ".".join([*parts, *(node.module.split(".") if node.module else [])])
            found += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return found


def _modules(subdir: str) -> list[Path]:
    return sorted((BACKENDS_DIR / subdir).rglob("*.py"))


def test_kqueue_imports_nothing_of_linux_and_posix_neither() -> None:
    offending = {
        str(path.relative_to(BACKENDS_DIR)): sorted(
            name for name in _imports(path)
            if name.startswith(("fdloop.backends.linux", "fdloop.backends.kqueue"))
            and not name.startswith(f"fdloop.backends.{path.relative_to(BACKENDS_DIR).parts[0]}")
        )
        for path in [*_modules("kqueue"), *_modules("posix"), *_modules("linux")]
    }
    assert {where: names for where, names in offending.items() if names} == {}


def test_inside_kqueue_only_platform_py_reads_sys_platform() -> None:
    readers = []
    for path in _modules("kqueue"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "platform"
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                readers.append(f"{path.name}:{node.lineno}")
    assert readers and all(where.startswith("platform.py:") for where in readers), readers


def test_the_seam_and_info_do_not_import_each_other_back() -> None:
    seam = _imports(BACKENDS_DIR / "__init__.py")
    assert not [name for name in seam if "info" in name.split(".")]
    assert "fdloop.backends" in _imports(BACKENDS_DIR.parent / "info.py")
    # The backends below the seam never import it back (their shared types are in
    # contract.py): the only arrow between them points down.
    upward = {
        str(path.relative_to(BACKENDS_DIR)): [
            name for name in _imports(path)
            if name in ("fdloop.backends", "fdloop.backends.Capability", "fdloop.backends.current")
        ]
        for path in [*_modules("linux"), *_modules("kqueue"), *_modules("posix")]
    }
    assert {where: names for where, names in upward.items() if names} == {}
