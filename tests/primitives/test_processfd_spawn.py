"""spawn's arguments in more shapes: PATH from env, bytes and path-like argv, threads."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop import spawn

from .process_helpers import process_backend_only  # noqa: F401  (autouse)


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_program_is_found_on_the_childs_path(tmp_path: Path) -> None:
    _script(tmp_path, "fdloop-probe", "exit 21")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    async with spawn(["fdloop-probe"], env=env) as proc:
        assert (await proc.wait()).returncode == 21
    with pytest.raises(FileNotFoundError):
        spawn(["fdloop-probe"])  # not on our own PATH


async def test_non_executable_on_path_is_a_permission_error(tmp_path: Path) -> None:
    (tmp_path / "fdloop-plain").write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(PermissionError):
        spawn(["fdloop-plain"], env={"PATH": str(tmp_path)})


async def test_bytes_and_pathlike_argv(tmp_path: Path) -> None:
    script = _script(tmp_path, "args", 'printf "%s|" "$@"')
    async with spawn([script, b"b\xffytes", Path("p")], stdout=fdloop.PIPE) as proc:
        assert proc.stdout is not None
        assert await proc.stdout.read() == b"b\xffytes|p|"
        await proc.wait()
    async with spawn(script) as proc:  # a lone program, like subprocess
        assert (await proc.wait()).returncode == 0


async def test_bytes_env() -> None:
    async with spawn(["sh", "-c", 'echo "$X"'], env={b"X": b"\xfe1", b"PATH": b"/usr/bin:/bin"},
                     stdout=fdloop.PIPE) as proc:
        assert proc.stdout is not None
        assert await proc.stdout.read() == b"\xfe1\n"
        await proc.wait()


async def test_spawned_in_a_worker_thread_awaited_in_the_loop() -> None:
    proc = await anyio.to_thread.run_sync(lambda: spawn(["sh", "-c", "exit 12"]))
    async with proc:
        assert (await proc.wait()).returncode == 12


def test_spawned_outside_any_loop_awaited_in_one_later() -> None:
    proc = spawn(["sh", "-c", "sleep 0.1; exit 13"])

    async def main() -> int | None:
        async with proc:
            return (await proc.wait()).returncode

    assert anyio.run(main) == 13


async def test_pass_fds_reach_the_child_by_number() -> None:
    read_end, write_end = os.pipe()
    try:
        async with spawn([sys.executable, "-c",
                          f"import os; os.write({write_end}, b'through')"],
                         pass_fds=[write_end]) as proc:
            assert (await proc.wait()).returncode == 0
        assert os.read(read_end, 100) == b"through"
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_the_short_paths_build_the_request_the_keyword_path_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``spawn(argv)`` and the usual-options branch build their SpawnRequest by position
    (to save binding keywords per child); the keyword-built one is the reference, so a
    field added to SpawnRequest cannot shift theirs unnoticed."""
    from fdloop.primitives import spawn as spawn_module

    requests = []
    real_start = spawn_module._start

    def recording(request: object, *args: object, **kwargs: object) -> fdloop.ProcessFD:
        requests.append(request)
        return real_start(request, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(spawn_module, "_start", recording)
    for options in ({}, {"cwd": None}, {"umask": 0o022}):
        with spawn(["true"], **options) as proc:  # type: ignore[arg-type]
            assert await proc.wait() == 0
    argv_only, usual, by_keyword = requests
    assert argv_only == usual
    assert usual._replace(umask=0o022) == by_keyword
