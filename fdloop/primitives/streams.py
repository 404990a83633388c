"""Async byte streams over pipe fds: a child's stdin, stdout and stderr.

:class:`PipeReceiveStream` (:mod:`fdloop.primitives.pipe_receive`) and
:class:`PipeSendStream` (:mod:`fdloop.primitives.pipe_send`, whose write buffer and
background flush live in :mod:`fdloop.primitives.pipe_flush`) each own one pipe end, make
it non-blocking, and wait through the running loop's poll (:mod:`fdloop._aio`): no
thread, no transport, the same code under asyncio, uvloop and trio. ``fdloop`` re-exports
the public names, and :mod:`fdloop.streams` keeps the old import path for users.

One stream, two dialects, so that code written for either library runs unchanged:

* anyio's byte streams: ``await receive()`` (``anyio.EndOfStream`` at EOF) and
  ``await send(data)`` (returns once the kernel has every byte), ``aclose()``. anyio's
  text and buffered wrappers take them.
* asyncio's StreamReader/StreamWriter: ``read()``, ``readline()``, ``readuntil()``,
  ``readexactly()`` (``b""`` or IncompleteReadError at EOF), ``async for line in
  stream``, ``at_eof()``; and ``write(data)``, a plain method that buffers, with
  ``await drain()``, ``writelines()``, ``close()``/``wait_closed()``, ``is_closing()``,
  ``can_write_eof()``/``write_eof()``.

Rules every method keeps:

* Bounded: a line search (``readline``, ``readuntil``, iteration) never holds more than
  ``limit`` bytes (default 64 KiB, as asyncio's) plus one read; past it ``readuntil``
  raises :class:`fdloop.LimitOverrunError` and ``readline`` :class:`fdloop.LineTooLongError`
  (a ValueError), exactly as asyncio does.
* A cancelled read loses nothing: bytes are moved from the fd into the stream's own
  buffer before any await, and the next read starts with them.
* One reader and one sender at a time: a second task that reads (``send()``s) while
  another is still waiting gets :class:`fdloop.BusyResourceError`; interleaving two
  readers' bytes would silently corrupt both.
* ``close()`` while a task waits wakes it with :class:`fdloop.ClosedResourceError`;
  every use after close raises it too.
* Writing after the reader has gone raises :class:`fdloop.BrokenResourceError` (from
  ``send()`` and ``drain()``), which is a BrokenPipeError (asyncio's choice) and an
  anyio.BrokenResourceError (anyio's).
"""

from __future__ import annotations

import subprocess

from .pipe_receive import DEFAULT_LIMIT, PipeReceiveStream, check_limit
from .pipe_send import PipeSendStream

__all__ = [
    "DEFAULT_LIMIT",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "PipeReceiveStream",
    "PipeSendStream",
    "check_limit",
]

PIPE = subprocess.PIPE
"""Ask ``spawn`` for a new pipe to the child's stdin/stdout/stderr."""
DEVNULL = subprocess.DEVNULL
"""Connect the child's stream to /dev/null."""
STDOUT = subprocess.STDOUT
"""For ``stderr``: send the child's stderr wherever its stdout goes."""
