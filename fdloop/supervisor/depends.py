"""``depends_on``: the order programs start and stop in.

A program starts once every program it depends on is *ready* (readiness.py: for
``ready="none"`` that is as soon as it runs; ``"exit"`` programs once they exited 0).
Starting a program starts what it depends on first. A shutdown (and ``stop()`` of all
programs) stops dependants before what they depend on: each program's stop waits until
every program that depends on it is down (a second SIGTERM/SIGINT cuts that wait short).

:func:`check_graph` is run wherever programs are configured (``Supervisor.add``,
``Supervisor.__aenter__``, config files) so that an unknown name or a cycle is an error
that names the programs before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from .program import ProgramSpec

if TYPE_CHECKING:
    from .runner import ProgramRunner


def _plain(name: str) -> str:
    return f"{name}.depends_on"


def check_graph(
    specs: Iterable[ProgramSpec], *, complete: bool = True,
    where: Callable[[str], str] = _plain,
) -> None:
    """Raise ValueError for a dependency on an unknown program (if ``complete``: all
    programs are known) or for a cycle, naming the programs; ``where(name)`` is how a
    program's ``depends_on`` option is called in the message."""
    by_name = {spec.name: spec for spec in specs}
    if complete:
        for spec in by_name.values():
            for needed in spec.depends_on:
                if needed not in by_name:
                    known = ", ".join(repr(name) for name in by_name)
                    raise ValueError(
                        f"{where(spec.name)}: no program called {needed!r} "
                        f"(programs: {known})"
                    )
    cycle = find_cycle(by_name)
    if cycle is not None:
        raise ValueError(
            f"{where(cycle[0])}: a dependency cycle: {' -> '.join(cycle)}"
        )


def find_cycle(by_name: Mapping[str, ProgramSpec]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]``, or None (depth-first, names unknown skipped)."""
    done: set[str] = set()
    for root in by_name:
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, index = stack.pop()
            if index == 0:
                path.append(name)
                on_path.add(name)
            needs = [n for n in by_name[name].depends_on if n in by_name]
            if index < len(needs):
                stack.append((name, index + 1))
                following = needs[index]
                if following in on_path:
                    return [*path[path.index(following):], following]
                if following not in done:
                    stack.append((following, 0))
                continue
            path.pop()
            on_path.discard(name)
            done.add(name)
    return None


def with_dependencies(names: Iterable[str], by_name: Mapping[str, ProgramSpec]) -> list[str]:
    """``names`` and everything they depend on, each after its dependencies."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in by_name:
            return
        seen.add(name)
        for needed in by_name[name].depends_on:
            visit(needed)
        order.append(name)

    for name in names:
        visit(name)
    return order


def dependants(name: str, by_name: Mapping[str, ProgramSpec]) -> list[str]:
    """The programs that list ``name`` in their ``depends_on``."""
    return [spec.name for spec in by_name.values() if name in spec.depends_on]


async def await_dependencies(program: ProgramRunner) -> bool:
    """True once every ``depends_on`` program of ``program`` is ready (and idle: no
    request queued or under way for it); False to drop its
    start: shutting down, a later request queued for it, or a dependency down for good
    and not ready (recorded then as a failed start, with an ``exited`` event naming it).
    """
    shared = program.shared
    try:
        while True:
            needed = [shared.programs[name] for name in program.spec.depends_on
                      if name in shared.programs]
            # Ready, and no request (a stop, a restart) queued or under way for it: a
            # dependency about to be restarted is not ready for a new instance of ours.
            if all(other.readiness.ready and other.idle for other in needed):
                return True
            if shared.closing or program.has_requests:
                return False
            down = next((p for p in needed if p.is_down() and not p.readiness.ready), None)
            if down is not None:
                program.dependency_failed(
                    f"dependency {down.spec.name!r} is {down.state} and not ready"
                )
                return False
            if not program.awaiting_dependencies:  # a reload stops waiting for us now
                program.awaiting_dependencies = True
                shared.notify()
            await shared.wait_change()
    finally:
        program.awaiting_dependencies = False


async def await_dependants(program: ProgramRunner) -> None:
    """Until every program that depends on ``program`` is down (or we are hurried)."""
    shared = program.shared
    hurry = shared.hurry
    while hurry is None or not hurry.is_set():
        name = program.spec.name
        if not any(
            name in other.spec.depends_on and not other.is_stopped()
            for other in shared.programs.values()
        ):
            return
        await shared.wait_change()
