"""Entry points shaped like other libraries' process calls, over fdloop's ProcessFD.

* :mod:`fdloop.compat.asyncio` — ``create_subprocess_exec``/``create_subprocess_shell``
  returning an object with ``asyncio.subprocess.Process``'s API;
* :mod:`fdloop.compat.trio` — ``open_process``/``run_process`` with trio's signatures.

Existing code moves by changing one import. What stays different is fdloop's contract,
stated in each module's docstring; the largest is kill-on-close: a process object that
is closed (or garbage-collected) while its child runs ends the child.

The submodules are imported on demand (``import fdloop.compat.trio`` needs trio).
"""
