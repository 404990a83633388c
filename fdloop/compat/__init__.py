"""Entry points shaped like other libraries' process calls, over fdloop's ProcessFD.

* :mod:`fdloop.compat.asyncio` — ``create_subprocess_exec``/``create_subprocess_shell``
  returning an object with ``asyncio.subprocess.Process``'s API;
* :mod:`fdloop.compat.trio` — ``open_process``/``run_process`` with trio's signatures;
* :mod:`fdloop.compat.anyio` — ``open_process``/``run_process`` with anyio's signatures
  and defaults (on asyncio and trio), returning fdloop's ProcessFD.

Existing code moves by changing one import. What stays different is fdloop's contract,
stated in each module's docstring; the largest is kill-on-close: a process object that
is closed (or garbage-collected) while its child runs ends the child.

The submodules are imported on demand (``import fdloop.compat.trio`` needs trio).
"""

from __future__ import annotations

from typing import TypeVar

from ..primitives.processfd import ProcessFD

_Wrapper = TypeVar("_Wrapper", bound="ProcessWrapper")


class QuietProcessFD(ProcessFD):
    """The ProcessFD of a compat Process: garbage-collected once its child has exited, it
    closes without a ResourceWarning, and so do the streams it holds (asyncio and trio
    code never closes a Process, and need not). A running child still gets ProcessFD's
    finalizer: a ResourceWarning and SIGKILL (kill-on-close).

    The ProcessFD's own finalizer decides, not the compat wrapper's: when both are
    collected in one reference cycle (a stored traceback that holds a frame that holds
    the wrapper) their finalizers run in no set order.
    """

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.closed:
            # run_process started as a task closed the handle and left the caller's
            # streams open (trio's rule): they go with it, quietly, as trio's do.
            for stream in (self.stdin, self.stdout, self.stderr):
                if stream is not None:
                    stream._finalize()
            return
        if handle is not None and self.returncode is not None:
            self._finalize()  # exited (and now reaped): release without the warning
            return
        super().__del__()


class ProcessWrapper:
    """What both compat Processes do the same way over their ``processfd``: the exit
    status as a plain int, signals, and kill-on-close when closed or left."""

    processfd: ProcessFD

    @property
    def returncode(self) -> int | None:
        """The exit code (``-N`` for signal N), or None while it runs; always current
        (reading it polls)."""
        return self.processfd.returncode

    async def wait(self) -> int:
        """Wait for the exit; the returncode as a plain int, as asyncio's and trio's (an
        unknown status is ``ExitStatus.UNKNOWN_INT``; ``processfd.status`` has the full
        ExitStatus)."""
        return int(await self.processfd.wait())

    def send_signal(self, signal: int) -> None:
        """Send ``signal`` (a no-op once the child has exited)."""
        self.processfd.send_signal(signal)

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.processfd.terminate()

    def kill(self) -> None:
        """Send SIGKILL."""
        self.processfd.kill()

    async def aclose(self) -> None:
        """End a running child (kill-on-close), reap it, close the pipes."""
        await self.processfd.aclose()

    async def __aenter__(self: _Wrapper) -> _Wrapper:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def quiet_when_exited(proc: ProcessFD) -> ProcessFD:
    """Make ``proc`` (just spawned, ours alone) a :class:`QuietProcessFD` and return it.

    ``fdloop.spawn`` always makes a ProcessFD; the subclass adds only a finalizer and no
    state, so switching the class of the new object is exact.
    """
    proc.__class__ = QuietProcessFD
    return proc
