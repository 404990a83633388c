"""A program that crashes on its first two attempts, then works and exits cleanly.

It counts its attempts in a file named after its parent (the supervisor), so every
restarted instance knows how many came before it.
"""

import os
import sys
import tempfile
import time

counter = os.path.join(tempfile.gettempdir(), f"fdloop-flaky-{os.getppid()}")
try:
    with open(counter) as f:
        attempt = int(f.read()) + 1
except (OSError, ValueError):
    attempt = 1
with open(counter, "w") as f:
    f.write(str(attempt))

print(f"attempt {attempt}: connecting to the database...", flush=True)
time.sleep(0.3)
if attempt < 3:
    print(f"attempt {attempt}: connection refused, crashing", file=sys.stderr, flush=True)
    sys.exit(1)
print(f"attempt {attempt}: connected; work done", flush=True)
os.remove(counter)
