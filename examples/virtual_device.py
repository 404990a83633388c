"""An in-process queue exposed as a device fd to a child that only knows select.poll.

The parent keeps a queue of jobs and drives a VirtualFD like a device driver would:
POLLIN while jobs wait, POLLPRI while an urgent one does, POLLHUP once the queue is
closed. The child (this file with ``--child FD``, given the fd through ``pass_fds``)
knows nothing of fdloop or asyncio: it polls the fd, asks for a job on its stdout when
the fd says one is there, and reads it from its stdin:

    $ python examples/virtual_device.py
    child got urgent job 2: page the on-call
    child got job 1: resize thumbnails
    child got job 3: send the newsletter
    child saw POLLHUP: queue closed, 3 jobs done
"""

from __future__ import annotations

import asyncio
import collections
import select
import sys

import fdloop


def child(fd: int) -> None:
    """The consumer: plain select.poll on the fd it was given."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    done = 0
    while True:
        ((_fd, events),) = poller.poll()
        if events & select.POLLHUP:
            print(f"child saw POLLHUP: queue closed, {done} jobs done", flush=True)
            return
        kind = "urgent" if events & select.POLLPRI else "next"
        print(kind, flush=True)  # ask the driver for a job
        job = sys.stdin.readline().strip()
        done += 1
        print(f"child got {'urgent ' if kind == 'urgent' else ''}job {job}", flush=True)


async def main() -> None:
    jobs: collections.deque[str] = collections.deque()
    urgent: collections.deque[str] = collections.deque()
    with fdloop.VirtualFD() as device:

        def show() -> None:  # the driver's rule: the fd tells what the queue holds
            device.set((select.POLLIN if jobs else 0) | (select.POLLPRI if urgent else 0))

        proc = fdloop.spawn([sys.executable, __file__, "--child", str(device.fileno())],
                            stdin=fdloop.PIPE, stdout=fdloop.PIPE, pass_fds=[device.fileno()])
        async with proc:
            assert proc.stdin is not None and proc.stdout is not None
            jobs.extend(["1: resize thumbnails", "3: send the newsletter"])
            urgent.append("2: page the on-call")
            show()
            answered = 0
            while answered < 3:
                line = (await proc.stdout.readline()).decode().strip()
                if line in ("next", "urgent"):
                    queue = urgent if line == "urgent" and urgent else (jobs or urgent)
                    job = queue.popleft()
                    show()  # before the child can poll again
                    await proc.stdin.send(job.encode() + b"\n")
                    answered += 1
                else:
                    print(line)
            print((await proc.stdout.readline()).decode().strip())
            device.set(select.POLLHUP)  # the queue is closed: brings POLLIN etc. with it
            print((await proc.stdout.readline()).decode().strip())
            await proc.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]))
    else:
        asyncio.run(main())
