"""A storm of real-time signals from another process, read by one SignalFD.

Run as a script in a fresh interpreter (``python signal_storm.py LOOP COUNT``): the test
process under pytest has extra threads (trio's guest-mode poller, idle worker threads)
that do not block the signals, and the kernel may hand a process-directed signal to
any such thread, where the default action of a real-time signal ends the process. A
fresh interpreter running ``asyncio.run``/``trio.run`` has exactly one thread, as an
application that creates its SignalFD before its threads does.

A sender child queues COUNT signals with sigqueue(3), cycling over SIGRTMIN..SIGRTMIN+3,
each carrying its sequence number. Our RLIMIT_SIGPENDING is lowered so that the queue
fills: sigqueue then fails with EAGAIN and the sender retries (kill(2) would not: on a
full queue it silently merges real-time signals). Prints one JSON line with what was
read; the test checks it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import textwrap

import anyio

import fdloop

SENDER = textwrap.dedent(
    """
    import ctypes, errno, os, sys, time

    class sigval(ctypes.Union):
        _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, sigval]
    target, count, first, kinds = map(int, sys.argv[1:5])
    full = 0
    for i in range(count):
        while libc.sigqueue(target, first + i % kinds, sigval(i)) != 0:
            if ctypes.get_errno() != errno.EAGAIN:
                sys.exit(os.strerror(ctypes.get_errno()))
            full += 1
            time.sleep(0.0005)
    print(full)
    """
)
KINDS = 4
SIGPENDING_LIMIT = 256
LIVENESS = 120.0
SILENCE = 10.0
SI_QUEUE = -1


async def storm(count: int) -> dict[str, object]:
    first = int(signal.SIGRTMIN)
    seen: dict[int, list[int]] = {first + k: [] for k in range(KINDS)}
    strangers: list[str] = []
    with fdloop.SignalFD(range(first, first + KINDS)) as sfd:
        argv = [sys.executable, "-c", SENDER, str(os.getpid()), str(count), str(first),
                str(KINDS)]
        async with fdloop.spawn(argv, stdout=fdloop.PIPE) as sender:
            with anyio.fail_after(LIVENESS):
                for _ in range(count):
                    with anyio.fail_after(SILENCE):  # a dead sender fails fast
                        info = await sfd.read()
                    if info.code != SI_QUEUE or info.pid != sender.pid or info.value is None:
                        strangers.append(repr(info))
                        continue
                    seen[info.signo].append(info.value)
                assert sender.stdout is not None
                backoffs = int(await sender.stdout.read())
                returncode = (await sender.wait()).returncode
        try:
            extra = repr(sfd.read_nowait())
        except BlockingIOError:
            extra = None
    return {
        "values": sorted(v for values in seen.values() for v in values),
        "in_order": all(values == sorted(values) for values in seen.values()),
        "strangers": strangers,
        "extra": extra,
        "backoffs": backoffs,
        "sender_returncode": returncode,
        "threads": len(os.listdir("/proc/self/task")),
    }


def main() -> None:
    library, count = sys.argv[1], int(sys.argv[2])
    _soft, hard = resource.getrlimit(resource.RLIMIT_SIGPENDING)
    resource.setrlimit(resource.RLIMIT_SIGPENDING, (min(SIGPENDING_LIMIT, hard), hard))
    backend, _, flavour = library.partition("+")
    options = {"use_uvloop": True} if flavour == "uvloop" else {}
    result = anyio.run(storm, count, backend=backend, backend_options=options)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
