"""Entry points shaped like other libraries' process calls, over fdloop's ProcessFD.

* :mod:`fdloop.compat.asyncio` — ``create_subprocess_exec``/``create_subprocess_shell``
  returning an object with ``asyncio.subprocess.Process``'s API;
* :mod:`fdloop.compat.trio` — ``open_process``/``run_process`` with trio's signatures.

Existing code moves by changing one import. What stays different is fdloop's contract,
stated in each module's docstring; the largest is kill-on-close: a process object that
is closed (or garbage-collected) while its child runs ends the child.

The submodules are imported on demand (``import fdloop.compat.trio`` needs trio).
"""

from __future__ import annotations

from ..primitives.processfd import ProcessFD


class QuietProcessFD(ProcessFD):
    """The ProcessFD of a compat Process: garbage-collected once its child has exited, it
    closes without a ResourceWarning (asyncio and trio code never closes a Process, and
    need not). A running child still gets ProcessFD's finalizer: a ResourceWarning and
    SIGKILL (kill-on-close).

    The ProcessFD's own finalizer decides, not the compat wrapper's: when both are
    collected in one reference cycle (a stored traceback that holds a frame that holds
    the wrapper) their finalizers run in no set order.
    """

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and not handle.closed and self.returncode is not None:
            self._finalize()  # exited (and now reaped): release without the warning
            return
        super().__del__()


def quiet_when_exited(proc: ProcessFD) -> ProcessFD:
    """Make ``proc`` (just spawned, ours alone) a :class:`QuietProcessFD` and return it.

    ``fdloop.spawn`` always makes a ProcessFD; the subclass adds only a finalizer and no
    state, so switching the class of the new object is exact.
    """
    proc.__class__ = QuietProcessFD
    return proc
