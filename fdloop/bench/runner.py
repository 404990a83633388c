"""Runs contenders in fresh interpreters, repeats them, and keeps medians.

Repeats are interleaved (every contender once, then every contender again, ...) so a
burst of noise on a shared machine spreads over all contenders instead of landing on
one. A contender whose library is missing is reported as skipped after its first
attempt; one that fails is reported with its error and the others carry on.
"""

from __future__ import annotations

import json
import os
import site
import statistics
import subprocess
import sys
import time
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
    elapsed_s: float = 0.0


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


def launch(workload: str, contender: str, params: dict[str, Any]) -> subprocess.Popen[str]:
    """Start one worker run in a fresh interpreter (see :func:`collect`)."""
    env = dict(os.environ)
    package_root = Path(__file__).resolve().parents[2]  # holds fdloop/ (bench/ is inside)
    site_dirs = {Path(d).resolve() for d in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_root not in site_dirs:
        # A source checkout (editable or not installed): make sure the worker finds
        # this very copy. An installed one sits in site-packages, which every worker
        # searches anyway — and putting site-packages first would shadow PYTHONPATH.
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(package_root), env.get("PYTHONPATH")])
        )
    worker_params = {key: value for key, value in params.items() if key != "repeats"}
    return subprocess.Popen(
        [sys.executable, "-m", f"{__package__}.worker", workload, contender,
         json.dumps(worker_params)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )


def collect(worker: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a launched worker and return its ``RESULT`` dictionary."""
    try:
        stdout, stderr = worker.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate()
        return {"error": f"no result within {RUN_TIMEOUT:.0f} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER):])
            return result
    tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"worker exited with {worker.returncode}: {tail}"}


def run_once(workload: str, contender: str, params: dict[str, Any]) -> dict[str, Any]:
    """One worker run in a fresh interpreter; returns its ``RESULT`` dictionary."""
    return collect(launch(workload, contender, params))


def settle(
    spec: Workload,
    params: dict[str, Any],
    outcomes: dict[str, Outcome],
    contenders: dict[str, Contender],
    elapsed_s: float = 0.0,
) -> WorkloadResult:
    """A workload's result once every run is in: adds the figures that several
    contenders' medians give (``Workload.derive``, e.g. fdloop ÷ a floor)."""
    if spec.derive is not None:
        medians = {n: o.median for n, o in outcomes.items() if o.status == "ok"}
        for name, extra in spec.derive(medians, contenders).items():
            outcomes[name].derived = extra
    return WorkloadResult(spec, params, outcomes, contenders, elapsed_s)


def record(outcome: Outcome, result: dict[str, Any]) -> bool:
    """File one run's result; False when the contender is out (skipped or failed)."""
    if "figures" in result:
        outcome.runs.append(result["figures"])
        return True
    outcome.status = "skipped" if "skipped" in result else "failed"
    outcome.reason = str(result.get("skipped") or result.get("error"))
    return False


def run_workloads(
    planned: Planned,
    progress: Progress | None = None,
    *,
    serial: bool = False,
) -> list[WorkloadResult]:
    """Run every planned workload, its contenders interleaved over the repeats.

    Contenders of a workload marked ``side_by_side`` run at the same time (unless
    ``serial``): one pass of them takes as long as the slowest, not the sum.
    """
    if progress is None:
        progress = Progress(sum(p["repeats"] * len(c) for _s, p, c in planned))
    results = []
    for spec, params, contenders in planned:
        began = time.monotonic()
        outcomes = {name: Outcome(name, entry.loop) for name, entry in contenders.items()}
        repeats = int(params["repeats"])
        for attempt in range(repeats):
            active = [name for name, outcome in outcomes.items() if outcome.status == "ok"]
            if spec.side_by_side and not serial:
                progress.step(f"{spec.name} · {len(active)} contenders side by side "
                              f"({attempt + 1}/{repeats})")
                workers = {name: launch(spec.name, name, params) for name in active}
                for name, worker in workers.items():
                    progress.advance()
                    if not record(outcomes[name], collect(worker)):
                        progress.shrink(repeats - attempt - 1)
                continue
            for name in active:
                progress.step(f"{spec.name} · {name} ({attempt + 1}/{repeats})")
                result = run_once(spec.name, name, params)
                progress.advance()
                if not record(outcomes[name], result):
                    progress.shrink(repeats - attempt - 1)
        elapsed = time.monotonic() - began
        results.append(settle(spec, params, outcomes, contenders, elapsed))
    progress.finish()
    return results
