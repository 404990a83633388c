"""Every benchmark contender runs at a tiny size and returns well-formed figures.

No timing is asserted: this checks that each adapter does its job (every child waited
for with exit code 0, every tick and wake-up seen) and reports every column of its
workload. Each run happens in a fresh interpreter, as in ``fdloop bench``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from fdloop.bench import WORKLOADS
from fdloop.bench.registry import load
from fdloop.bench.runner import collect, launch, run_once

TINY = {
    "spawn": {"n": 12, "concurrency": 3},
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
