"""What a workload and a contender are, and the registry that maps names to functions.

A contender is one function. Its ``loop`` says how the worker runs it: an ``async def``
under ``"asyncio"``, ``"uvloop"`` or ``"trio"``, or a plain function when ``loop`` is None
(the no-framework floor). Registering one function for several loops gives one contender
per loop, named ``<name>/<loop>``.

Each contender's figures are divided by those of fdloop *on the same loop* (see
:func:`reference_for`), so a ratio above 1 means "more than fdloop" for that column.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LOOP_MODULES = {"asyncio": "asyncio", "uvloop": "uvloop", "trio": "trio"}
"""Loop name -> the module that must import for a contender on that loop to run."""

Metrics = dict[str, float]
Params = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One figure in a workload's table."""

    key: str
    label: str
    better: str = "higher"
    """``"higher"``, ``"lower"`` or ``""`` (no direction, e.g. a count)."""
    digits: int = 0
    ratio: bool = True
    """Whether the table shows this figure's ratio to fdloop."""
    derived: bool = False
    """Computed from several contenders' medians (by ``Workload.derive``), not by a run."""


Derive = Callable[[dict[str, Metrics], Mapping[str, "Contender"]], dict[str, Metrics]]


@dataclass(frozen=True)
class Workload:
    """A benchmark: its parameters (defaults and ``--quick``), its columns, its summary."""

    name: str
    title: str
    defaults: Mapping[str, Any]
    quick: Mapping[str, Any]
    columns: Sequence[Column]
    summarize: Callable[[dict[str, Any], Params], Metrics]
    """Turns one run's raw result (from the contender + the probe) into figures."""
    plot: Sequence[str] = ()
    """Column keys drawn in the PNG chart."""
    derive: Derive | None = None
    """Given every contender's medians, returns extra figures per contender name."""
    side_by_side: bool = False
    """Run all contenders at once (for workloads that mostly sleep, like 1 ms ticks)."""


@dataclass(frozen=True)
class Contender:
    """One way of doing a workload, run in its own interpreter."""

    workload: str
    name: str
    loop: str | None
    function: Callable[..., Any]
    needs: tuple[str, ...] = field(default=())
    """Modules (or ``module:attribute``) that must import for this contender to run."""
    only_if: Callable[[], str | None] | None = None
    """Returns a reason to skip on this interpreter, or None to run."""
    baseline: bool = False
    """A measuring aid (e.g. the harness alone), shown without ratios and not charted."""

    def unavailable(self) -> str | None:
        """Why this contender cannot run here (a missing library, ...), or None."""
        wanted = list(self.needs)
        if self.loop in LOOP_MODULES:
            wanted.insert(0, LOOP_MODULES[self.loop])
        for need in wanted:
            module_name, _, attribute = need.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name != module_name.partition(".")[0]:
                    raise  # installed but broken: a failure to report, not a skip
                return f"{module_name} is not installed"
            if attribute and not hasattr(module, attribute):
                return f"{module_name}.{attribute} does not exist in this version"
        if self.only_if is not None:
            return self.only_if()
        return None


WORKLOAD_SPECS: dict[str, Workload] = {}
CONTENDERS: dict[str, dict[str, Contender]] = {}


def workload(spec: Workload) -> Workload:
    """Register a workload's description; returns it."""
    WORKLOAD_SPECS[spec.name] = spec
    CONTENDERS.setdefault(spec.name, {})
    return spec


def contender(
    workload_name: str,
    name: str,
    *,
    loops: Sequence[str | None] = ("asyncio",),
    needs: Sequence[str] = (),
    only_if: Callable[[], str | None] | None = None,
    baseline: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``function`` as contender ``name`` (one per loop if several)."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        table = CONTENDERS.setdefault(workload_name, {})
        for loop in loops:
            full = f"{name}/{loop}" if len(loops) > 1 else name
            if full in table:
                raise ValueError(f"{workload_name}: contender {full!r} registered twice")
            table[full] = Contender(
                workload_name, full, loop, function, tuple(needs), only_if, baseline
            )
        return function

    return register


def load(workload_name: str) -> tuple[Workload, dict[str, Contender]]:
    """Import a workload's module (registering it) and return its spec and contenders."""
    from . import MODULES

    if workload_name not in MODULES:
        raise ValueError(f"unknown workload {workload_name!r}; expected one of {list(MODULES)}")
    importlib.import_module(f"{__package__}.{MODULES[workload_name]}")
    return WORKLOAD_SPECS[workload_name], CONTENDERS[workload_name]


def reference_for(contender_: Contender, ran: Mapping[str, Contender]) -> str | None:
    """The fdloop contender this one is compared with: fdloop on the same loop.

    Where a workload has several fdloop contenders on one loop (spawn's default path and
    its pure-Python one), the first registered, fdloop as installed, is the reference for
    all of them. Contenders without a loop (the floor) and loops fdloop does not run on
    are compared with fdloop on asyncio. None if no fdloop contender ran.
    """
    ours: dict[str | None, str] = {}
    for name, ran_contender in ran.items():
        if name.startswith("fdloop"):
            ours.setdefault(ran_contender.loop, name)
    return ours.get(contender_.loop) or ours.get("asyncio")
