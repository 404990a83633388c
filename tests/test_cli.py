"""The ``fdloop`` command through its real entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fdloop

ENTRY = [sys.executable, "-c", "import sys; from fdloop.cli import main; sys.exit(main())"]


def fdloop_command(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args], capture_output=True, text=True, timeout=300, check=False, cwd=cwd
    )


def test_info_lists_kernel_python_libraries_and_every_primitive() -> None:
    done = fdloop_command("info")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("kernel") for line in lines)
    assert any(line.startswith("python") for line in lines)
    for library in ("uvloop", "trio", "anyio"):
        assert any(line.startswith(library) for line in lines), library
    for capability in fdloop.capabilities():
        assert any(line.startswith(capability.primitive) for line in lines), capability


def test_no_command_prints_usage_and_fails() -> None:
    done = fdloop_command()
    assert done.returncode == 2
    assert "info" in done.stdout and "bench" in done.stdout


def test_bench_quick_one_workload_writes_tables_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = fdloop_command(
        "bench", "--quick", "wake", "--param", "n=40", "--json", str(out), "--no-plot",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "### wake" in done.stdout
    assert "| fdloop EventFD/asyncio |" in done.stdout
    assert "(1.00x)" in done.stdout  # fdloop's own ratio to itself
    assert "done" in done.stderr  # the progress bar finished
    document = json.loads(out.read_text())
    assert set(document["workloads"]) == {"wake"}
    wake = document["workloads"]["wake"]
    assert wake["params"]["n"] == 40
    ours = wake["contenders"]["fdloop EventFD/asyncio"]
    assert ours["status"] == "ok"
    assert ours["ratio_to_fdloop"]["wakeups_per_s"] == 1.0
    assert len(ours["runs"]) == 1
    other = wake["contenders"]["call_soon_threadsafe/asyncio"]
    assert other["reference"] == "fdloop EventFD/asyncio" or other["reference"] is None
    assert document["environment"]["kernel"]
    assert any(t["workload"] == "wake" for t in document["targets"])

    replay = fdloop_command("bench", "--from-json", str(out), "--no-plot", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table
    assert [line for line in replay.stdout.splitlines() if line.startswith("|")] == table


def test_bench_draws_the_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "chart.png"
    done = fdloop_command(
        "bench", "--quick", "signal", "-p", "n=20", "--plot", str(chart), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "fdloop-bench.json").exists()  # the default JSON path


def test_bench_without_matplotlib_still_prints_tables(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['matplotlib'] = None; from fdloop.cli import main; "
    done = subprocess.run(
        [sys.executable, "-c", hide + "sys.exit(main())", "bench", "--quick", "signal",
         "-p", "n=20"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "### signal" in done.stdout
    assert "pip install 'fdloop[plot]'" in done.stdout
    assert not (tmp_path / "fdloop-bench.png").exists()


def test_bench_lists_contenders_of_a_missing_library_as_skipped(tmp_path: Path) -> None:
    # A stand-in that imports like a library that is not installed, for every worker.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "uvloop.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvloop'\", name='uvloop')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(hidden), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [*ENTRY, "bench", "--quick", "signal", "-p", "n=20", "--no-plot"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "- fdloop SignalFD/uvloop: skipped — uvloop is not installed" in done.stdout
    assert "- add_signal_handler/uvloop: skipped — uvloop is not installed" in done.stdout
    assert "| fdloop SignalFD/asyncio |" in done.stdout
    saved = json.loads((tmp_path / "fdloop-bench.json").read_text())
    assert saved["workloads"]["signal"]["contenders"]["fdloop SignalFD/uvloop"]["status"] == (
        "skipped"
    )


def test_bench_rejects_unknown_workload_and_parameter(tmp_path: Path) -> None:
    done = fdloop_command("bench", "nonsense", cwd=tmp_path)
    assert done.returncode == 2
    assert "nonsense" in done.stderr
    done = fdloop_command("bench", "wake", "--param", "bogus=1", cwd=tmp_path)
    assert done.returncode == 2
    assert "bogus" in done.stderr
    assert not list(tmp_path.iterdir())


def test_supervise_hands_its_arguments_over() -> None:
    done = fdloop_command("supervise", "--help")
    assert done.returncode == 0, done.stderr
    assert "supervise" in done.stdout
