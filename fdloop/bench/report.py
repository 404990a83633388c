"""Turns workload results into markdown tables, target checks and a JSON document.

Every figure is shown with its ratio to fdloop on the same loop (the floor, which has
no loop, is compared with fdloop on asyncio): ``1234 (0.85x)`` means 0.85 times
fdloop's figure. The ratio is plain division; the column header says whether higher or
lower is better.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

from .registry import load, reference_for
from .runner import Outcome, WorkloadResult

LIBRARIES = ("fdloop", "uvloop", "trio", "anyio", "sniffio", "matplotlib")


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

    def line(self) -> str:
        mark = {True: "PASS", False: "MISS", None: "n/a "}[self.passed]
        shown = "no data" if self.value is None else f"{self.value:.3g}"
        return f"- {mark} {self.workload} · {self.subject}: {self.text} — got {shown}"


def _median(results: dict[str, WorkloadResult], workload: str, name: str, key: str) -> float | None:
    result = results.get(workload)
    if result is None:
        return None
    outcome = result.outcomes.get(name)
    if outcome is None or outcome.status != "ok":
        return None
    return outcome.median.get(key)


def targets(all_results: list[WorkloadResult]) -> list[Target]:
    """The issue's targets for fdloop on each loop, each marked pass, miss or n/a."""
    results = {r.spec.name: r for r in all_results}
    checks: list[Target] = []

    def check(*args: Any) -> None:
        """(workload, subject, text, value, limit, passed) -> one Target (n/a if no value)."""
        workload, subject, text, value, limit, passed = args
        checks.append(Target(workload, subject, text, value, limit,
                             passed if value is not None else None))

    floor = "floor: posix_spawn+pidfd+epoll"
    for loop in ("asyncio", "uvloop", "trio"):
        me = f"fdloop/{loop}"
        if "spawn" in results:
            mine = _median(results, "spawn", me, "children_per_s")
            base = _median(results, "spawn", floor, "children_per_s")
            value = mine / base if mine is not None and base else None
            check("spawn", me, "children/s ≥ 0.9x the floor's", value, 0.9,
                  value is not None and value >= 0.9)
            mine = _median(results, "spawn", me, "cpu_us_per_child")
            base = _median(results, "spawn", floor, "cpu_us_per_child")
            value = mine / base if mine is not None and base else None
            check("spawn", me, "parent CPU per child ≤ 1.25x the floor's", value, 1.25,
                  value is not None and value <= 1.25)
        if "idle" in results:
            k = results["idle"].params.get("k")
            value = _median(results, "idle", me, "threads")
            check("idle", me, f"{k} live children with 1 thread in total", value, 1,
                  value == 1)
            value = _median(results, "idle", me, "own_kib_per_child")
            check("idle", me, "own memory < 3 KiB per child", value, 3.0,
                  value is not None and value < 3.0)
        if "wake" in results:
            other = "TrioToken.run_sync_soon" if loop == "trio" else f"call_soon_threadsafe/{loop}"
            mine = _median(results, "wake", f"fdloop EventFD/{loop}", "wakeups_per_s")
            base = _median(results, "wake", other, "wakeups_per_s")
            value = mine / base if mine is not None and base else None
            check("wake", f"EventFD/{loop}", f"wake-ups/s ≥ {other}'s (ratio)", value, 1.0,
                  value is not None and value >= 1.0)
        if "timer" in results:
            ticks = results["timer"].params.get("ticks")
            name = f"fdloop TimerFD/{loop}"
            value = _median(results, "timer", name, "lost")
            check("timer", name, f"0 lost ticks after {ticks}", value, 0, value == 0)
            value = _median(results, "timer", name, "drift_ms")
            check("timer", name, f"|drift| < 1 ms after {ticks} ticks (ms)", value, 1.0,
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
        "targets": [t.__dict__ for t in targets(all_results)],
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
