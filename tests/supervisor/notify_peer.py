"""A supervised program for the readiness tests: it runs its argv words in order.

``send:TEXT`` sends TEXT (``|`` stands for a newline) to ``$NOTIFY_SOCKET`` as
sd_notify(3) describes; ``sleep:S``; ``wait:PATH`` waits until PATH exists; ``fd:N``
writes a newline to fd N; ``close:N`` closes fd N; ``env:PATH`` writes NOTIFY_SOCKET,
WATCHDOG_USEC, WATCHDOG_PID and the pid to PATH (atomically, by rename); ``ping:S:K``
sends WATCHDOG=1 K times, S seconds apart; ``fork`` forks: the parent sends
MAINPID=<child> and sleeps, the child runs the rest; ``daemonize`` forks: the parent
sends MAINPID=<child> and exits 0 at once, the child runs the rest; ``flood:K`` sends
K datagrams STATUS=0 ... STATUS=K-1; ``term-exits-0`` makes SIGTERM a clean exit;
``exit:N`` exits N. After the last word it sleeps until killed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time


def send(text: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.replace("|", "\n").encode(), address)


def hand_over() -> bool:
    """Fork; the parent sends MAINPID=<child> and returns True; the child returns False
    once that datagram is sent (before, its own messages would rightly be ignored)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        send(f"MAINPID={child}")
        os.write(write_end, b"sent")
        return True
    os.read(read_end, 4)
    return False


def main(words: list[str]) -> None:
    for word in words:
        action, _, argument = word.partition(":")
        if action == "send":
            send(argument)
        elif action == "sleep":
            time.sleep(float(argument))
        elif action == "flood":
            for index in range(int(argument)):
                send(f"STATUS={index}")
        elif action == "wait":
            while not os.path.exists(argument):
                time.sleep(0.01)
        elif action == "fd":
            os.write(int(argument), b"\n")
        elif action == "close":
            os.close(int(argument))
        elif action == "env":
            facts = [os.environ.get(key, "-") for key in
                     ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")]
            with open(argument + ".tmp", "w") as out:
                out.write("\n".join([*facts, str(os.getpid())]))
            os.rename(argument + ".tmp", argument)
        elif action == "ping":
            interval, count = argument.split(":")
            for _ in range(int(count)):
                send("WATCHDOG=1")
                time.sleep(float(interval))
        elif action == "fork":
            if hand_over():
                os.wait()
                time.sleep(1000)
        elif action == "daemonize":
            if hand_over():
                os._exit(0)
        elif action == "term-exits-0":
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        elif action == "exit":
            sys.exit(int(argument))
        else:
            raise SystemExit(f"notify_peer: unknown word {word!r}")
    time.sleep(1000)


if __name__ == "__main__":
    main(sys.argv[1:])
