"""Run as a script inside a private pid namespace (see test_spawn_identity.py).

Pid pressure as in the hardening issue: SIGCHLD at SIG_IGN, so the kernel reaps every
child at exit; a tiny pid_max, so pids come round again within milliseconds; one thread
keeps starting long-lived sleepers while the event loop starts short-lived ``true``
children and closes each handle at once (kill-on-close: SIGKILL and reap). A handle that
names the wrong process shows up as a sleeper killed by someone else's close.

Usage: ``python pid_pressure.py LIBRARY SPAWN_PATH SPAWNS``: runs until SPAWNS children in
all were started (or a minute passed); prints one JSON line.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import anyio

import fdloop
from fdloop.backends.linux import spawn as linux_spawn

SLEEPERS = 40


def _stale_registrations() -> list[int]:
    """fds asyncio's selector believes registered that its epoll no longer has (a number
    closed under the loop): the next fd given such a number would never wake the loop."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        return []
    selector = getattr(loop, "_selector", None)
    if selector is None:  # uvloop: no Python-side table to go stale
        return []
    with open(f"/proc/self/fdinfo/{selector.fileno()}") as info:
        kernel = {int(line.split()[1]) for line in info if line.startswith("tfd:")}
    return sorted(set(selector.get_map()) - kernel)


def main() -> None:
    library, path, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if path == "posix_spawn":
        linux_spawn._clone_spawn = None
    with open("/proc/sys/kernel/pid_max", "w") as pid_max:  # this namespace's own
        pid_max.write("400")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sleepers: list[fdloop.ProcessFD] = []
    stop = threading.Event()

    counts: dict[str, object] = {
        "short": 0, "refused": 0, "wrong_status": 0, "sleepers_started": 0, "stale": [],
    }

    def keep_starting_sleepers() -> None:
        while not stop.is_set():
            if len(sleepers) < SLEEPERS:
                sleepers.append(fdloop.spawn(["sleep", "60"]))
                counts["sleepers_started"] += 1
            else:  # let one go the proper way, so that sleeper pids come round too
                sleepers.pop(0).close()

    async def run_short_children() -> None:
        deadline = time.monotonic() + 60
        while counts["short"] + counts["sleepers_started"] < wanted:
            if time.monotonic() > deadline:
                break
            try:
                proc = fdloop.spawn(["true"])
            except ChildProcessError:  # the fallback refusing a pid it cannot prove
                counts["refused"] += 1
                continue
            if counts["short"] % 2:
                proc.close()  # SIGKILL at once, reap or hand to the reaper
            else:
                async with proc:
                    status = await proc.wait()
                    if status.known and status.returncode != 0:
                        counts["wrong_status"] += 1
            counts["short"] += 1
        counts["stale"] = _stale_registrations()

    thread = threading.Thread(target=keep_starting_sleepers)
    thread.start()
    try:
        anyio.run(run_short_children, backend=library.split("+")[0],
                  backend_options={"use_uvloop": True} if library == "asyncio+uvloop" else {})
    finally:
        stop.set()
        thread.join()
    # A sleeper that is no longer running was signalled through another child's handle.
    dead = [proc.pid for proc in sleepers if proc.poll() is not None]
    for proc in sleepers:
        proc.close()
    print(json.dumps({**counts, "sleepers": len(sleepers), "killed_sleepers": dead}))


if __name__ == "__main__":
    main()
