"""Turns workload results into markdown tables, target checks and a JSON document.

Every figure is shown with its ratio to fdloop on the same loop (the floor, which has
no loop, is compared with fdloop on asyncio): ``1234 (0.85x)`` means 0.85 times
fdloop's figure. The ratio is plain division; the column header says whether higher or
lower is better.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

from .registry import load, reference_for
from .runner import Outcome, WorkloadResult

LIBRARIES = ("fdloop", "uvloop", "trio", "anyio", "sniffio", "matplotlib")


def spawn_path() -> str:
    """Which spawn path fdloop takes here: the compiled extension or the Python one
    (``fdloop info`` says the same); ``"unknown"`` if the backend does not say."""
    for module_name in ("fdloop.backends.linux.spawn", "fdloop.backends.posix.spawn"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        compiled = getattr(module, "spawns_with_pidfd", None)
        if compiled is not None:
            if not compiled():
                return "pure Python (posix_spawn)"
            variant = getattr(module._clone_spawn, "variant", lambda: "clone")()
            return f"compiled ({variant}, CLONE_PIDFD)"
    return "unknown"


def environment() -> dict[str, Any]:
    """Date, kernel, Python, CPU and library versions, for the report's header."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "spawn_path": spawn_path(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu,
        "libraries": versions,
    }


def ratios(result: WorkloadResult) -> dict[str, dict[str, float | None]]:
    """Per contender, per figure with a ratio column: value ÷ fdloop's on the same loop."""
    medians = {name: o.median for name, o in result.outcomes.items() if o.status == "ok"}
    ran = {name: result.contenders[name] for name in medians}
    table: dict[str, dict[str, float | None]] = {}
    for name, median in medians.items():
        reference = reference_for(result.contenders[name], ran)
        row: dict[str, float | None] = {}
        for column in result.spec.columns:
            if not column.ratio:
                continue
            base = medians[reference].get(column.key) if reference else None
            value = median.get(column.key)
            row[column.key] = value / base if value is not None and base else None
        table[name] = row
    return table


def _number(value: float, digits: int) -> str:
    if abs(value) >= 10000 and digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown_table(result: WorkloadResult) -> str:
    """The workload's table: a row per contender, ``value (ratiox)`` per figure."""
    spec = result.spec
    shown = ", ".join(f"{k}={v}" for k, v in result.params.items())
    arrows = {"higher": " ↑", "lower": " ↓", "": ""}
    header = ["contender", *(c.label + arrows[c.better] for c in spec.columns)]
    lines = [
        f"### {spec.name}: {spec.title} ({shown}; medians)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(spec.columns)) + "|",
    ]
    table = ratios(result)
    for name, outcome in result.outcomes.items():
        if outcome.status != "ok":
            continue
        cells = [name]
        for column in spec.columns:
            value = outcome.median.get(column.key)
            if value is None:
                cells.append("—")
                continue
            cell = _number(value, column.digits)
            ratio = table[name].get(column.key)
            if column.ratio and ratio is not None and not result.contenders[name].baseline:
                cell += f" ({ratio:.2f}x)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    others = [o for o in result.outcomes.values() if o.status != "ok"]
    if others:
        lines.append("")
        lines.extend(f"- {o.name}: {o.status} — {o.reason}" for o in others)
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One of the project's stated performance targets, checked against a run."""

    workload: str
    subject: str
    text: str
    value: float | None
    limit: float
    passed: bool | None
    """None when the run has no data for it (a contender missing or not run)."""
    source: str = ""
    """Where the target was set, e.g. ``"issue 16.2"``; empty for older standing checks."""

    def line(self) -> str:
        mark = {True: "PASS", False: "MISS", None: "n/a "}[self.passed]
        shown = "no data" if self.value is None else f"{self.value:.3g}"
        where = f"[{self.source}] " if self.source else ""
        return f"- {mark} {where}{self.workload} · {self.subject}: {self.text} — got {shown}"


def _median(results: dict[str, WorkloadResult], workload: str, name: str, key: str) -> float | None:
    result = results.get(workload)
    if result is None:
        return None
    outcome = result.outcomes.get(name)
    if outcome is None or outcome.status != "ok":
        return None
    return outcome.median.get(key)


def _quotient(results: dict[str, WorkloadResult], workload: str, key: str,
              top: str, bottom: str) -> float | None:
    mine = _median(results, workload, top, key)
    base = _median(results, workload, bottom, key)
    return mine / base if mine is not None and base else None


SPAWN_FLOOR = "floor: posix_spawn+pidfd+epoll"
PURE_SPAWN = "fdloop, pure Python"
"""fdloop/bench/spawn.py's PURE: fdloop without its compiled extension."""
FLOOR_LIMITS = {"asyncio": 1.25, "uvloop": 1.25, "trio": 1.35}
"""Issue 16.3: fdloop's parent CPU per child ÷ the no-loop floor's, per loop."""


def targets(all_results: list[WorkloadResult], spawn_path: str = "") -> list[Target]:
    """The targets for fdloop on each loop, each marked pass, miss or n/a.

    Issue 16's five (spawn cost independent of open fds; CPU per child within 1.05x of
    the hand-written floor on the same loop and within 1.25x/1.35x of the no-loop
    floor; under 0.6 KiB of fdloop's own memory per live child; EventFD wake-ups at
    least 1.3x the loop's own cross-thread call with both threads on one CPU) beside
    the standing checks. ``spawn_path`` (from :func:`environment`) is named in 16.3,
    whose limits are for the compiled path.
    """
    results = {r.spec.name: r for r in all_results}
    checks: list[Target] = []

    def check(where: tuple[str, str], text: str, value: float | None, limit: float,
              passed: bool, *, source: str = "") -> None:
        """``where`` is (workload, subject); n/a when there is no value."""
        checks.append(Target(*where, text, value, limit,
                             passed if value is not None else None, source))

    for loop in ("asyncio", "uvloop", "trio"):
        me = f"fdloop/{loop}"
        if "spawn" in results:
            value = _quotient(results, "spawn", "children_per_s", me, SPAWN_FLOOR)
            check(("spawn", me), "children/s ≥ 0.9x the no-loop floor's", value, 0.9,
                  value is not None and value >= 0.9)
            pure = f"{PURE_SPAWN}/{loop}"  # (16.2 is about the pure-Python path)
            value = _median(results, "spawn", pure, "cpu_vs_loop_floor")
            check(("spawn", pure),
                  f"parent CPU per child ≤ 1.05x the hand-written floor on {loop}",
                  value, 1.05, value is not None and value <= 1.05, source="issue 16.2")
            limit = FLOOR_LIMITS[loop]
            value = _median(results, "spawn", me, "cpu_vs_floor")
            path = f" (spawn path here: {spawn_path})" if spawn_path else ""
            check(("spawn", me), f"parent CPU per child ≤ {limit}x the no-loop floor{path}",
                  value, limit, value is not None and value <= limit, source="issue 16.3")
        if "spawn_live" in results:
            fds = results["spawn_live"].params.get("fds")
            for key, what in (("held_growth", "parent held"), ("held_cpu_growth", "parent CPU")):
                value = _median(results, "spawn_live", me, key)
                check(("spawn_live", me), f"{what} per spawn with {fds} open fds ≤ 1.15x none",
                      value, 1.15, value is not None and value <= 1.15, source="issue 16.1")
        if "idle" in results:
            k = results["idle"].params.get("k")
            value = _median(results, "idle", me, "threads")
            check(("idle", me), f"{k} live children with 1 thread in total", value, 1,
                  value == 1)
            value = _median(results, "idle", me, "own_kib_per_child")
            check(("idle", me), "own memory < 0.6 KiB per live child", value, 0.6,
                  value is not None and value < 0.6, source="issue 16.4")
        if "wake" in results:
            other = "TrioToken.run_sync_soon" if loop == "trio" else f"call_soon_threadsafe/{loop}"
            mine = f"fdloop EventFD/{loop}"
            value = _quotient(results, "wake", "wakeups_per_s", mine, other)
            check(("wake", f"EventFD/{loop}"), f"wake-ups/s ≥ {other}'s, unpinned (ratio)",
                  value, 1.0, value is not None and value >= 1.0)
            value = _quotient(results, "wake", "pinned_wakeups_per_s", mine, other)
            check(("wake", f"EventFD/{loop}"),
                  f"wake-ups/s ≥ 1.3x {other}'s on one CPU, SCHED_BATCH (ratio)", value, 1.3,
                  value is not None and value >= 1.3, source="issue 16.5")
        if "timer" in results:
            ticks = results["timer"].params.get("ticks")
            name = f"fdloop TimerFD/{loop}"
            value = _median(results, "timer", name, "lost")
            check(("timer", name), f"0 lost ticks after {ticks}", value, 0, value == 0)
            value = _median(results, "timer", name, "drift_ms")
            check(("timer", name), f"|drift| < 1 ms after {ticks} ticks (ms)", value, 1.0,
                  value is not None and abs(value) < 1.0)
    order = {name: index for index, name in enumerate(results)}
    return sorted(checks, key=lambda t: order.get(t.workload, len(order)))


def document(all_results: list[WorkloadResult], env: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Everything as one JSON-ready dictionary (medians, every run, ratios, targets)."""
    workloads: dict[str, Any] = {}
    for result in all_results:
        table = ratios(result)
        workloads[result.spec.name] = {
            "title": result.spec.title,
            "elapsed_s": round(result.elapsed_s, 1),
            "params": result.params,
            "columns": [
                {"key": c.key, "label": c.label, "better": c.better} for c in result.spec.columns
            ],
            "contenders": {
                name: {
                    "loop": o.loop,
                    "status": o.status,
                    "reason": o.reason,
                    "median": o.median,
                    "ratio_to_fdloop": table.get(name, {}),
                    "reference": reference_for(
                        result.contenders[name], {n: result.contenders[n] for n in table}
                    ),
                    "runs": o.runs,
                }
                for name, o in result.outcomes.items()
            },
        }
    return {
        "environment": env,
        "quick": quick,
        "argv": sys.argv[1:],
        "workloads": workloads,
        "targets": [t.__dict__ for t in targets(all_results, env.get("spawn_path", ""))],
    }


def results_from_document(doc: dict[str, Any]) -> list[WorkloadResult]:
    """Rebuild the results of a run from its JSON document (``fdloop bench --from-json``)."""
    results = []
    for name, saved in doc["workloads"].items():
        spec, contenders = load(name)
        outcomes = {}
        for contender_name, entry in saved["contenders"].items():
            if contender_name not in contenders:
                continue  # a contender this version no longer has
            outcome = Outcome(contender_name, entry["loop"], entry["status"], entry["reason"],
                              entry["runs"])
            measured = set(entry["runs"][0]) if entry["runs"] else set()
            outcome.derived = {k: v for k, v in entry["median"].items() if k not in measured}
            outcomes[contender_name] = outcome
        results.append(WorkloadResult(spec, saved["params"], outcomes, contenders,
                                      saved.get("elapsed_s", 0.0)))
    return results


def header(env: dict[str, Any]) -> str:
    """One line saying where and when the figures were taken."""
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v)
    load = env.get("load_average") or [0.0]
    return (f"{env['date']} · {env['kernel']} · {env['python']} · {env['cpus']} CPUs "
            f"({env['cpu'] or 'unknown CPU'}, load {load[0]:.1f} at start) · {libs}")
