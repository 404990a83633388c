"""Print a line each time memory pressure crosses a threshold: a PSI trigger, awaited with
fdloop.wait_events through the event loop (no thread, no polling).

A PSI trigger is ``/proc/pressure/<resource>`` opened read-write with a line
``some|full <stall µs> <window µs>`` written to it; the kernel then raises POLLPRI each
time tasks stalled on the resource for that long within a window (at most once per
window). Without CAP_SYS_RESOURCE the window must be a multiple of 2 s.

    $ python examples/memory_pressure.py                  # 150 ms of stall in 2 s
    $ python examples/memory_pressure.py --resource cpu --count 1
    cpu pressure: some 150 ms stalled within 2 s (some avg10=...)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select

import fdloop


async def watch(resource: str, kind: str, stall_ms: int, window_s: int, count: int) -> None:
    path = f"/proc/pressure/{resource}"
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # The kernel overwrites the last byte written with NUL: send our own.
        os.write(fd, f"{kind} {stall_ms * 1000} {window_s * 1_000_000}\0".encode())
        seen = 0
        async for events in fdloop.watch_events(fd, select.POLLPRI):
            if events & select.POLLERR:
                raise SystemExit(f"{path}: the trigger is gone (POLLERR)")
            with open(path) as current:
                some = current.readline().strip()
            print(f"{resource} pressure: {kind} {stall_ms} ms stalled within {window_s} s "
                  f"({some})", flush=True)
            seen += 1
            if seen == count:
                return
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resource", choices=("memory", "cpu", "io"), default="memory")
    parser.add_argument("--kind", choices=("some", "full"), default="some")
    parser.add_argument("--stall-ms", type=int, default=150)
    parser.add_argument("--window-s", type=int, default=2)
    parser.add_argument("--count", type=int, default=0, help="stop after N (0: never)")
    args = parser.parse_args()
    try:
        asyncio.run(watch(args.resource, args.kind, args.stall_ms, args.window_s,
                          args.count))
    except OSError as error:
        raise SystemExit(f"/proc/pressure/{args.resource}: {error.strerror} (PSI needs "
                         "Linux 5.2+ with CONFIG_PSI, and a window that is a multiple "
                         "of 2 s without CAP_SYS_RESOURCE)") from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
