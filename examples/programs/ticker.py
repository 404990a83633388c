"""A long-running program: prints a tick every second until SIGTERM, then says goodbye."""

import signal
import sys
import time


def goodbye(signo: int, _frame: object) -> None:
    print(f"got {signal.Signals(signo).name}, shutting down cleanly", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, goodbye)
signal.signal(signal.SIGINT, goodbye)
count = 0
while True:
    count += 1
    print(f"tick {count}", flush=True)
    time.sleep(1)
