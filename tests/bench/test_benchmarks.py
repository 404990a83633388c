"""Every benchmark contender runs at a tiny size and returns well-formed figures.

No timing is asserted: this checks that each adapter does its job (every child waited
for with exit code 0, every tick and wake-up seen) and reports every column of its
workload. Each run happens in a fresh interpreter, as in ``fdloop bench``.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import pytest

from fdloop.bench import WORKLOADS, report
from fdloop.bench.main import _print_results
from fdloop.bench.registry import load, reference_for
from fdloop.bench.runner import Outcome, WorkloadResult, collect, launch, record, run_once, settle

# One Python is enough (.ci/run runs these on 3.11 only): the module fixture starts every
# contender, the longest setup of the suite; test_cli.py's `fdloop bench` smoke run still
# runs on every Python.
pytestmark = pytest.mark.one_python

TINY = {
    "spawn": {"n": 12, "concurrency": 3},
    "spawn_live": {"n": 6, "concurrency": 3, "live": 5, "held": 4, "fds": 40},
    "idle": {"k": 5},
    "wake": {"n": 50},
    "timer": {"ticks": 30, "period_ms": 1.0},
    "signal": {"n": 50},
    "vpoll": {"n": 30},
    "channel": {"n64": 50, "n4k": 20, "n1m": 3, "rtt": 20},
}

CASES = [
    pytest.param(workload, name, id=f"{workload}-{name}")
    for workload in WORKLOADS
    for name in load(workload)[1]
]


BATCH = 4
"""Worker runs at once: the suite waits for interpreters starting, not for work."""


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str], dict[str, object]]:
    """Every contender's tiny run, a few at a time; all are finished before tests start."""
    pending = [(workload, name) for workload in WORKLOADS for name in load(workload)[1]]
    done: dict[tuple[str, str], dict[str, object]] = {}
    for start in range(0, len(pending), BATCH):
        batch = pending[start:start + BATCH]
        workers = [launch(workload, name, TINY[workload]) for workload, name in batch]
        for key, worker in zip(batch, workers, strict=True):
            done[key] = collect(worker)
    return done


def test_every_workload_has_tiny_sizes_and_contenders() -> None:
    assert set(TINY) == set(WORKLOADS)
    for workload in WORKLOADS:
        spec, contenders = load(workload)
        assert set(TINY[workload]) <= set(spec.defaults)
        assert any(name.startswith("fdloop") for name in contenders)
        assert {c.key for c in spec.columns} >= set(spec.plot)


@pytest.mark.parametrize(("workload", "name"), CASES)
def test_contender_reports_every_column(
    workload: str, name: str, results: dict[tuple[str, str], dict[str, Any]]
) -> None:
    spec, contenders = load(workload)
    result = results[workload, name]
    if "skipped" in result:
        assert contenders[name].unavailable() is not None, result
        pytest.skip(result["skipped"])
    assert "figures" in result, result
    figures = result["figures"]
    assert set(figures) == {c.key for c in spec.columns if not c.derived}
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in figures.values())
    if workload == "timer":
        assert figures["lost"] >= 0
    elif workload == "idle":
        assert figures["threads"] >= 1
        assert figures["spawn_ms"] > 0
    else:
        rate = next(c.key for c in spec.columns if c.better == "higher")
        assert figures[rate] > 0


def test_floor_and_fdloop_keep_one_thread_for_idle_children() -> None:
    for name in ("floor: posix_spawn+pidfd+epoll", "fdloop/asyncio"):
        result = run_once("idle", name, {"k": 5})
        assert result.get("figures", {}).get("threads") == 1, (name, result)


def test_unknown_contender_is_an_error_not_a_crash() -> None:
    result = run_once("wake", "no such contender", {"n": 1})
    assert "no such contender" in result["error"]


LOOPS = ("asyncio", "uvloop", "trio")
ISSUE_16 = ("issue 16.1", "issue 16.2", "issue 16.3", "issue 16.4", "issue 16.5")


@pytest.mark.parametrize("loop", LOOPS)
def test_ratios_are_to_fdloop_as_installed_on_the_same_loop(loop: str) -> None:
    """spawn has two fdloop contenders per loop; every ratio, the pure-Python one's and
    the peers', is to the default one (a run's reference once was the pure-Python one)."""
    _spec, contenders = load("spawn")
    assert reference_for(contenders[f"fdloop/{loop}"], contenders) == f"fdloop/{loop}"
    assert reference_for(contenders[f"fdloop, pure Python/{loop}"], contenders) == f"fdloop/{loop}"
    assert reference_for(contenders[f"floor: posix_spawn+pidfd+loop/{loop}"],
                         contenders) == f"fdloop/{loop}"
    peer = {"asyncio": "asyncio subprocess", "uvloop": "uvloop subprocess",
            "trio": "trio.run_process"}[loop]
    assert reference_for(contenders[peer], contenders) == f"fdloop/{loop}"
    assert reference_for(contenders["floor: posix_spawn+pidfd+epoll"],
                         contenders) == "fdloop/asyncio"


@pytest.fixture(scope="module")
def tiny_run(results: dict[tuple[str, str], dict[str, Any]]) -> list[WorkloadResult]:
    """The tiny runs put together as ``fdloop bench`` does (medians, derived figures)."""
    built = []
    for workload in WORKLOADS:
        spec, contenders = load(workload)
        outcomes = {name: Outcome(name, entry.loop) for name, entry in contenders.items()}
        for name, outcome in outcomes.items():
            record(outcome, results[workload, name])
        built.append(settle(spec, dict(TINY[workload]), outcomes, contenders))
    return built


def test_spawn_shows_fdloop_over_each_floor(tiny_run: list[WorkloadResult]) -> None:
    """The per-loop hand-written floors run beside the no-loop floor, and fdloop's rows
    carry CPU ÷ each (the numbers themselves are not judged at this size)."""
    spawn = next(r for r in tiny_run if r.spec.name == "spawn")
    for loop in LOOPS:
        assert spawn.outcomes[f"floor: posix_spawn+pidfd+loop/{loop}"].status == "ok"
        median = spawn.outcomes[f"fdloop/{loop}"].median
        assert median["cpu_vs_loop_floor"] > 0
        assert median["cpu_vs_floor"] > 0
    table = report.markdown_table(spawn)
    assert "CPU ÷ its loop's floor" in table
    assert "floor: posix_spawn+pidfd+loop/trio" in table


def test_every_issue_16_target_is_marked_for_every_loop(
    tiny_run: list[WorkloadResult], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of every workload (the default) prints each issue-16 target per loop with
    PASS or MISS (not n/a: the data is there), and its JSON holds the same."""
    checks = report.targets(tiny_run, "compiled")
    for source in ISSUE_16:
        for loop in LOOPS:
            mine = [c for c in checks if c.source == source and c.subject.endswith(loop)]
            assert mine, (source, loop)
            assert all(c.passed is not None for c in mine), mine
    env = report.environment()
    assert env["spawn_path"] != "unknown"
    _print_results(tiny_run, env)
    printed = capsys.readouterr().out
    for source in ISSUE_16:
        assert f"[{source}]" in printed
    assert "PASS" in printed or "MISS" in printed
    document = report.document(tiny_run, env, quick=True)
    saved = [t for t in document["targets"] if t["source"] in ISSUE_16]
    assert {t["source"] for t in saved} == set(ISSUE_16)
    assert all(t["passed"] in (True, False) for t in saved)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity here")
def test_the_one_cpu_phase_pins_under_sched_batch_and_restores() -> None:
    """wake's pinned phase: the calling thread and the thread it starts are on one CPU
    under SCHED_BATCH (no wake-up preemption), and both are given back afterwards."""
    from fdloop.bench.wake import _one_cpu

    allowed, policy = os.sched_getaffinity(0), os.sched_getscheduler(0)
    seen: dict[str, object] = {}

    def look() -> None:
        seen["affinity"], seen["policy"] = os.sched_getaffinity(0), os.sched_getscheduler(0)

    with _one_cpu():
        inside = os.sched_getaffinity(0), os.sched_getscheduler(0)
        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
    assert inside == ({min(allowed)}, os.SCHED_BATCH)
    assert seen == {"affinity": {min(allowed)}, "policy": os.SCHED_BATCH}
    assert (os.sched_getaffinity(0), os.sched_getscheduler(0)) == (allowed, policy)
