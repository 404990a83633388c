"""One contender, one run, one fresh interpreter: ``python -m fdloop.bench.worker``.

Arguments: workload name, contender name, parameters as JSON. The last line on stdout
is ``RESULT <json>``: the workload's figures, ``{"skipped": reason}`` when a library is
missing, or ``{"error": message}``.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback
from typing import Any

from .probe import Probe
from .registry import load
from .tasks import run_on

MARKER = "RESULT "


def run(workload_name: str, contender_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one contender once here and return its figures (or why it did not run)."""
    spec, contenders = load(workload_name)
    entry = contenders.get(contender_name)
    if entry is None:
        return {"error": f"no contender {contender_name!r} in {workload_name}"}
    reason = entry.unavailable()
    if reason is not None:
        return {"skipped": reason}
    # 1,000 live children may each hold an fd; the soft limit can be lower than that.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    probe = Probe(params)
    raw = run_on(entry.loop, entry.function, probe)
    raw.update(probe.figures())
    return {"figures": spec.summarize(raw, params)}


def main() -> int:
    workload_name, contender_name, params_json = sys.argv[1:4]
    try:
        result = run(workload_name, contender_name, json.loads(params_json))
    except BaseException as error:  # reported to the runner, which keeps going
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
