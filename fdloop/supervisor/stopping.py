"""Stopping one program's instance: its stop signal, the grace period, SIGKILL, its tree.

What :meth:`ProgramRunner._stop_now <fdloop.supervisor.runner.ProgramRunner>` does once it
has taken the instance over from the lifecycle task: ``stop_signal`` through the process
fd (never a recycled pid), up to ``stop_timeout`` for the exit, then SIGKILL, and always
a reap. With a cgroup the whole tree goes the same way (cgroup.kill for the SIGKILL) and
the stop ends only once the cgroup is empty. A second SIGTERM/SIGINT to the supervisor
sets ``Shared.hurry``, which cuts every grace period short.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

if TYPE_CHECKING:
    from ..primitives.exitstatus import ExitStatus
    from ..primitives.processfd import ProcessFD
    from .cgroup import ProgramCgroup
    from .program import ProgramSpec
    from .shared import Shared

_T = TypeVar("_T")


async def terminate(
    proc: ProcessFD, spec: ProgramSpec, shared: Shared, cgroup: ProgramCgroup | None
) -> ExitStatus:
    """stop_signal, up to stop_timeout (less if hurried), SIGKILL; always reaps and
    closes ``proc``. With ``cgroup``, its whole tree, until the cgroup is empty.

    Raises ForkedCopy (through ``shared.check_owner``) if this process was forked
    meanwhile: the instance is the parent's then.
    """
    began = time.monotonic()
    try:
        proc.send_signal(spec.stop_signal)
        if cgroup is not None:
            cgroup.signal_all(spec.stop_signal, skip=proc.pid)
        status = await wait_or_hurry(proc.wait, spec.stop_timeout, shared.hurry)
        if status is None:
            shared.check_owner()  # forked meanwhile: the process is not ours
            if cgroup is not None:
                cgroup.kill()
            proc.kill()
            status = await proc.wait()
        if cgroup is not None:
            await stop_tree(cgroup, spec, shared.hurry, began, signalled=True)
        return status
    finally:
        shared.managed.pop(proc.pid, None)
        if not shared.forked():
            await proc.aclose()


async def stop_tree(
    cgroup: ProgramCgroup, spec: ProgramSpec, hurry: anyio.Event | None, began: float,
    *, signalled: bool = False,
) -> None:
    """End what is left in the cgroup: stop_signal (unless ``signalled``), the rest
    of stop_timeout since ``began`` (less if hurried), cgroup.kill; wait until empty."""
    if not signalled:
        cgroup.signal_all(spec.stop_signal)
    left = max(0.0, began + spec.stop_timeout - time.monotonic())

    async def emptied() -> bool:
        await cgroup.wait_empty()
        return True

    if await wait_or_hurry(emptied, left, hurry) is None:
        await cgroup.kill_and_wait()


async def wait_or_hurry(
    waiting: Callable[[], Awaitable[_T]], timeout: float, hurry: anyio.Event | None
) -> _T | None:
    """``await waiting()``, given up after ``timeout`` or once ``hurry`` is set (then None)."""
    result: list[_T] = []
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as task_group:

            async def on_hurry() -> None:
                await (hurry.wait() if hurry is not None else anyio.sleep_forever())
                task_group.cancel_scope.cancel()

            task_group.start_soon(on_hurry)
            result.append(await waiting())
            task_group.cancel_scope.cancel()
    return result[0] if result else None
