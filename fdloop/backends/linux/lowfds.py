"""A few fd numbers near the bottom of our table, kept for what a spawned child needs.

The compiled spawn path starts its child sharing our fd table (CLONE_FILES), and the
child's first step keeps a private copy of only the fds below one number
(``close_range(keep_below, ~0U, CLOSE_RANGE_UNSHARE)``): the parent, suspended until the
child execs, then waits the same whether it has 10 fds open or 10,000. That number must
lie above every fd the child still needs — its stdio sources and ``pass_fds`` sources —
and those are often the newest, hence highest, fds: a pipe made for this very child in a
process with 4,000 fds open is fd 4,003. So the first spawn (while the table is still
small, as it is in most programs then) reserves :data:`SLOTS` low numbers here, each
holding a placeholder (one memfd of our own, whose inode identifies it); a later spawn
copies its high sources into the slots for the duration of the clone, then puts the
placeholder back, which drops its reference to the source again.

A slot is used only after ``fstat`` shows our placeholder still in it: a program that
closed fds it did not own (``os.closerange``) and opened others in their place gets its
fds left alone, and the spawn copies the whole table instead, as before. One lock covers
the slots (spawns that use them run one at a time; others do not take it); a forked
child starts with the lock free and every slot back on the placeholder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

SLOTS = 4
"""How many low fd numbers are reserved: three stdio sources and one passed fd."""
WORTH_IT = 256
"""A child needing only fds below this copies them outright (a few µs at most)."""


class LowSlots:
    """The reserved numbers; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._placeholder = -1
        self._inode = (0, 0)
        self._slots: list[int] = []
        self._broken = False

    def numbers(self) -> tuple[int, ...]:
        """The fds held here (the placeholder and the slots); () until first needed."""
        if self._placeholder < 0:
            return ()
        return (self._placeholder, *self._slots)

    @contextmanager
    def lend(self, sources: Sequence[int]) -> Iterator[dict[int, int] | None]:
        """Copy each of ``sources`` at or above :data:`WORTH_IT` into a free slot while
        the block runs; yields ``{source: slot}``, or None when slots cannot serve (too
        many sources, a slot no longer ours, or no low numbers to be had)."""
        high = sorted({fd for fd in sources if fd >= WORTH_IT})
        if self._broken or len(high) > SLOTS or not (high or self._placeholder < 0):
            yield None
            return
        with self._lock:
            lent = self._lend(high)
            try:
                yield lent
            finally:
                if lent:
                    for slot in lent.values():
                        os.dup2(self._placeholder, slot, inheritable=False)

    def _lend(self, high: list[int]) -> dict[int, int] | None:
        if self._placeholder < 0 and not self._reserve():
            return None
        if not high:
            return None
        lent: dict[int, int] = {}
        for source, slot in zip(high, self._slots, strict=False):
            try:
                st = os.fstat(slot)
            except OSError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != self._inode:
                self._broken = True  # someone closed or replaced it: leave it to them
                for taken in lent.values():
                    os.dup2(self._placeholder, taken, inheritable=False)
                return None
            os.dup2(source, slot, inheritable=False)
            lent[source] = slot
        return lent

    def _reserve(self) -> bool:
        placeholder = os.memfd_create("fdloop-spawn-slot", os.MFD_CLOEXEC)
        slots = []
        try:
            for _ in range(SLOTS):
                slots.append(os.dup(placeholder))  # the lowest free numbers, O_CLOEXEC
        except OSError:
            for fd in (placeholder, *slots):
                os.close(fd)
            self._broken = True
            return False
        if max(slots) >= WORTH_IT:  # no low numbers left: they would not help
            for fd in (placeholder, *slots):
                os.close(fd)
            self._broken = True
            return False
        st = os.fstat(placeholder)
        self._inode = (st.st_dev, st.st_ino)
        self._slots = slots
        self._placeholder = placeholder
        return True

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._placeholder >= 0 and not self._broken:
            for slot in self._slots:
                try:
                    os.dup2(self._placeholder, slot, inheritable=False)
                except OSError:
                    self._broken = True


LOW_SLOTS = LowSlots()
os.register_at_fork(after_in_child=LOW_SLOTS._after_fork)
