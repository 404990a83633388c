"""Runs contenders in fresh interpreters, repeats them, and keeps medians.

Repeats are interleaved (every contender once, then every contender again, ...) so a
burst of noise on a shared machine spreads over all contenders instead of landing on
one. A contender whose library is missing is reported as skipped after its first
attempt; one that fails is reported with its error and the others carry on.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .registry import Contender, Metrics, Workload, load
from .worker import MARKER

RUN_TIMEOUT = 300.0
"""Seconds one worker run may take before it counts as failed (a hang, not a result)."""


@dataclass
class Outcome:
    """What one contender of one workload produced over all its repeats."""

    name: str
    loop: str | None
    status: str = "ok"
    """``"ok"``, ``"skipped"`` or ``"failed"``."""
    reason: str = ""
    runs: list[Metrics] = field(default_factory=list)
    derived: Metrics = field(default_factory=dict)
    """Figures computed from several contenders' medians (see ``Workload.derive``)."""

    @property
    def median(self) -> Metrics:
        """Per figure, the median over the repeats (plus the derived figures)."""
        if not self.runs:
            return {}
        medians = {key: statistics.median(run[key] for run in self.runs) for key in self.runs[0]}
        return {**medians, **self.derived}


@dataclass
class WorkloadResult:
    """All contenders of one workload, side by side."""

    spec: Workload
    params: dict[str, Any]
    outcomes: dict[str, Outcome]
    contenders: dict[str, Contender]


class Progress:
    """A plain text progress bar on stderr (one line per step when not a terminal)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.live = stream.isatty()

    def shrink(self, by: int) -> None:
        """Fewer steps than planned (a contender was skipped or failed)."""
        self.total = max(self.done, self.total - by, 1)

    def step(self, label: str) -> None:
        """Show that ``label`` is starting."""
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"[{bar}] {self.done}/{self.total} {label}"
        if self.live:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1

    def finish(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{'#' * self.WIDTH}] {self.done}/{self.done} done\n")
        self.stream.flush()


Planned = list[tuple[Workload, dict[str, Any], dict[str, Contender]]]


def plan(workloads: list[str], quick: bool, overrides: dict[str, Any]) -> Planned:
    """Load each workload and settle its parameters (defaults or quick, then overrides).

    ``overrides`` maps ``name`` (every workload that has it) or ``workload.name`` to a
    value. Unknown names raise ValueError.
    """
    result = []
    used: set[str] = set()
    for name in workloads:
        spec, contenders = load(name)
        params = dict(spec.quick if quick else spec.defaults)
        for key, value in overrides.items():
            scope, _, param = key.rpartition(".")
            if (scope in ("", name)) and param in params:
                params[param] = value
                used.add(key)
        result.append((spec, params, contenders))
    unused = set(overrides) - used
    if unused:
        raise ValueError(f"--param: no selected workload has {', '.join(sorted(unused))}")
    return result


def run_once(workload: str, contender: str, params: dict[str, Any]) -> dict[str, Any]:
    """One worker run in a fresh interpreter; returns its ``RESULT`` dictionary."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    worker_params = {key: value for key, value in params.items() if key != "repeats"}
    try:
        finished = subprocess.run(
            [sys.executable, "-m", f"{__package__}.worker", workload, contender,
             json.dumps(worker_params)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
            timeout=RUN_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {RUN_TIMEOUT:.0f} s"}
    for line in reversed(finished.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER):])
            return result
    tail = (finished.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"worker exited with {finished.returncode}: {tail}"}


def run_workloads(
    planned: Planned,
    progress: Progress | None = None,
) -> list[WorkloadResult]:
    """Run every planned workload, its contenders interleaved over the repeats."""
    if progress is None:
        progress = Progress(sum(p["repeats"] * len(c) for _s, p, c in planned))
    results = []
    for spec, params, contenders in planned:
        outcomes = {name: Outcome(name, entry.loop) for name, entry in contenders.items()}
        repeats = int(params["repeats"])
        for attempt in range(repeats):
            for name, outcome in outcomes.items():
                if outcome.status != "ok":
                    continue
                progress.step(f"{spec.name} · {name} ({attempt + 1}/{repeats})")
                result = run_once(spec.name, name, params)
                progress.advance()
                if "figures" in result:
                    outcome.runs.append(result["figures"])
                    continue
                outcome.status = "skipped" if "skipped" in result else "failed"
                outcome.reason = str(result.get("skipped") or result.get("error"))
                progress.shrink(repeats - attempt - 1)
        if spec.derive is not None:
            medians = {n: o.median for n, o in outcomes.items() if o.status == "ok"}
            for name, extra in spec.derive(medians, contenders).items():
                outcomes[name].derived = extra
        results.append(WorkloadResult(spec, params, outcomes, contenders))
    progress.finish()
    return results
