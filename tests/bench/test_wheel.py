"""The wheel installs the ``fdloop`` package alone (issue 14: no top-level ``benchmarks``).

Builds the wheel from a copy of the source (so the shared checkout gets no ``build/`` or
``*.egg-info`` of ours) with the interpreter's own setuptools and no index, then lists
what it would put into site-packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md")
"""What the build reads besides the package itself."""

def _can_build_wheels() -> bool:
    """setuptools 70.1+ builds wheels itself; older ones need the ``wheel`` package.

    ``pip install '.[test]'`` brings a new enough setuptools, so CI always builds. Asked
    of the installed metadata: importing setuptools here would patch distutils for the
    rest of the session."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) >= (70, 1):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _build_wheel(work: Path) -> Path:
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "fdloop", source / "fdloop",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    out = work / "wheel"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0 and "No module named pip" in done.stderr:
        pytest.skip("this interpreter has no pip to build a wheel with")
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("fdloop-*.whl")
    return wheel


def test_wheel_holds_only_the_fdloop_package(tmp_path: Path) -> None:
    if os.environ.get("FDLOOP_BACKEND") == "kqueue":
        pytest.skip("the wheel does not depend on the backend: the other passes build it")
    if not _can_build_wheels():
        pytest.skip("no setuptools>=70.1 (or wheel) here: pip install '.[test]' brings one")
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        dist_info = {name.split("/")[0] for name in names if ".dist-info/" in name}
        assert len(dist_info) == 1, dist_info
        (meta,) = dist_info
        entry_points = wheel.read(f"{meta}/entry_points.txt").decode()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"fdloop", meta}, sorted(tops)
    for wanted in ("fdloop/__init__.py", "fdloop/py.typed", "fdloop/cli.py",
                   "fdloop/bench/__init__.py", "fdloop/bench/main.py", "fdloop/bench/worker.py",
                   "fdloop/primitives/streams.py", "fdloop/streams.py"):
        assert wanted in names, wanted
    assert not [name for name in names if name.startswith(("benchmarks/", "tests/"))]
    assert "fdloop = fdloop.cli:main" in entry_points
