"""``fdloop bench``: run the workloads, print one table per workload, save JSON and PNG."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import WORKLOADS, plot, report
from .runner import WorkloadResult, plan, run_workloads


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _override(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE or WORKLOAD.NAME=VALUE, got {text!r}"
        )
    return name.strip(), _value(value.strip())


def parser() -> argparse.ArgumentParser:
    """The ``fdloop bench`` command line."""
    p = argparse.ArgumentParser(
        prog="fdloop bench",
        description="Side-by-side benchmarks of fdloop against asyncio, uvloop, trio, anyio "
        "and a no-framework floor. Each contender runs in a fresh interpreter; figures are "
        "medians of repeats, each with its ratio to fdloop on the same loop.",
    )
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD", choices=[[], *WORKLOADS],
                   help=f"which to run (default: all of {', '.join(WORKLOADS)})")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (about 20 s)")
    p.add_argument("--json", type=Path, default=Path("fdloop-bench.json"), metavar="FILE",
                   help="where to write every figure as JSON (default: %(default)s)")
    p.add_argument("--plot", type=Path, default=Path("fdloop-bench.png"), metavar="FILE.png",
                   help="where to draw the bar chart (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the chart")
    p.add_argument("--param", "-p", action="append", type=_override, default=[],
                   metavar="[WORKLOAD.]NAME=VALUE",
                   help="override a size, e.g. -p spawn.n=5000 or -p repeats=5 (repeatable)")
    p.add_argument("--serial", action="store_true",
                   help="run timer contenders one after the other, not side by side")
    p.add_argument("--list", action="store_true", help="list workloads, parameters, contenders")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="run nothing: print the tables and draw the chart of a saved run")
    return p


def _list(workloads: list[str]) -> None:
    for spec, params, contenders in plan(workloads, False, {}):
        quick = ", ".join(f"{k}={v}" for k, v in spec.quick.items())
        print(f"{spec.name}: {spec.title}")
        print(f"  defaults: {', '.join(f'{k}={v}' for k, v in params.items())}; --quick: {quick}")
        for name, entry in contenders.items():
            reason = entry.unavailable()
            print(f"  - {name}" + (f"  [skipped here: {reason}]" if reason else ""))


def _print_results(results: list[WorkloadResult], env: dict[str, Any]) -> None:
    for result in results:
        print()
        print(report.markdown_table(result))
    print()
    print("ratios: each figure ÷ fdloop's on the same loop (the floor ÷ fdloop/asyncio)")
    checks = report.targets(results, env.get("spawn_path", ""))
    if checks:
        print("\ntargets:")
        for check in checks:
            print(check.line())


def _chart(args: argparse.Namespace, results: list[WorkloadResult], env: dict[str, Any]) -> None:
    if args.no_plot:
        return
    if not plot.available():
        print(f"no chart: matplotlib is not installed ({plot.INSTALL_HINT})")
    elif plot.draw(results, args.plot, report.header(env)):
        print(f"chart: {args.plot}")


def _replay(args: argparse.Namespace) -> int:
    """``--from-json``: the tables and chart of a saved run, nothing measured."""
    document = json.loads(args.from_json.read_text())
    env = document["environment"]
    results = report.results_from_document(document)
    wanted = set(args.workloads)
    if wanted:
        results = [r for r in results if r.spec.name in wanted]
    print(f"fdloop bench (saved run {args.from_json}): {report.header(env)}")
    _print_results(results, env)
    _chart(args, results, env)
    return 0


def bench_main(argv: list[str]) -> int:
    """Entry point of ``fdloop bench``; returns the exit status."""
    args = parser().parse_args(argv)
    workloads = list(dict.fromkeys(args.workloads)) or list(WORKLOADS)
    if args.list:
        _list(workloads)
        return 0
    if args.from_json is not None:
        return _replay(args)
    try:
        planned = plan(workloads, args.quick, dict(args.param))
    except ValueError as error:
        print(f"fdloop bench: {error}", file=sys.stderr)
        return 2
    env = report.environment()
    print(f"fdloop bench{' --quick' if args.quick else ''}: {report.header(env)}", flush=True)
    side = [s.name for s, _p, _c in planned if s.side_by_side and not args.serial]
    if side:
        print(f"({', '.join(side)}: contenders run side by side; --serial runs them one by one)")
    began = time.monotonic()
    results = run_workloads(planned, serial=args.serial)
    elapsed = time.monotonic() - began
    _print_results(results, env)
    document = report.document(results, env, args.quick)
    document["elapsed_s"] = round(elapsed, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nJSON: {args.json} · took {elapsed:.0f} s")
    _chart(args, results, env)
    failed = [o for r in results for o in r.outcomes.values() if o.status == "failed"]
    return 1 if failed else 0
