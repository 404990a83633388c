"""What a worker measures around a contender: CPU, wall time, threads, memory.

A contender calls :meth:`Probe.start` right before its measured part and
:meth:`Probe.stop` right after (the shared drivers in the workload modules do it), so
interpreter start-up and imports never count. CPU time is ``getrusage(RUSAGE_SELF)``
user + system: every thread of the process, which is the point — a helper thread's work
is the parent's cost too.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def thread_count() -> int:
    """OS threads of this process right now (every kind, not only Python's)."""
    return len(os.listdir("/proc/self/task"))


def rss_kib() -> int:
    """Resident memory of this process right now, in KiB."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Probe:
    """Brackets the measured part of one run and samples threads/RSS on request."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.peak_threads = thread_count()
        self.peak_rss_kib = rss_kib()
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self._running = False

    def start(self) -> None:
        """Start the clocks (wall and CPU)."""
        self._running = True
        self._cpu0 = _cpu_seconds()
        self._wall0 = time.perf_counter()

    def stop(self) -> None:
        """Stop the clocks; a second call does nothing."""
        if self._running:
            self.wall_s = time.perf_counter() - self._wall0
            self.cpu_s = _cpu_seconds() - self._cpu0
            self._running = False

    def sample(self) -> None:
        """Record the thread count and RSS now if they are the highest seen."""
        self.peak_threads = max(self.peak_threads, thread_count())
        self.peak_rss_kib = max(self.peak_rss_kib, rss_kib())

    def figures(self) -> dict[str, Any]:
        """What the probe saw, merged into the run's raw result."""
        self.sample()
        return {
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
            "peak_threads": self.peak_threads,
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` fall (nearest rank); 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(
    event: str, rate_key: str, cpu_key: str
) -> Callable[[dict[str, Any], Mapping[str, Any]], dict[str, float]]:
    """A workload's ``summarize`` for ``n`` timed round trips of one ``event``.

    The raw result holds one latency per round trip (``latencies``, seconds) beside the
    probe's wall and CPU time; the summary is the rate, p50/p99 in µs and CPU µs per
    event. A run that saw another count than ``n`` is an error, not a number.
    """

    def summarize(raw: dict[str, Any], params: Mapping[str, Any]) -> dict[str, float]:
        n = params["n"]
        latencies: list[float] = raw["latencies"]
        if len(latencies) != n:
            raise RuntimeError(f"expected {n} {event}, saw {len(latencies)}")
        return {
            rate_key: n / raw["wall_s"],
            "p50_us": percentile(latencies, 0.50) * 1e6,
            "p99_us": percentile(latencies, 0.99) * 1e6,
            cpu_key: raw["cpu_s"] / n * 1e6,
        }

    return summarize
