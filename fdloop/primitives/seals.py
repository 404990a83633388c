"""File seals: the ``Seal`` flags MemFD takes and reports, and how they are written out.

The values are fcntl(2)'s F_SEAL_* bits, which Linux and FreeBSD share, so a backend
passes them to the kernel unchanged.
"""

from __future__ import annotations

import enum


class Seal(enum.IntFlag):
    """File seals, with their fcntl(2) names and values (FreeBSD uses the same bits)."""

    SEAL_SEAL = 0x1
    """No more seals can be added."""
    SEAL_SHRINK = 0x2
    """The size cannot go down."""
    SEAL_GROW = 0x4
    """The size cannot go up (writes past the end are refused too)."""
    SEAL_WRITE = 0x8
    """The contents cannot change: no write, no new writable shared mapping."""
    SEAL_FUTURE_WRITE = 0x10
    """Like SEAL_WRITE, but writable mappings that already exist keep working."""
    SEAL_EXEC = 0x20
    """The execute bits cannot change (Linux 6.3+)."""


SEAL_SEAL = Seal.SEAL_SEAL
SEAL_SHRINK = Seal.SEAL_SHRINK
SEAL_GROW = Seal.SEAL_GROW
SEAL_WRITE = Seal.SEAL_WRITE
SEAL_FUTURE_WRITE = Seal.SEAL_FUTURE_WRITE
SEAL_EXEC = Seal.SEAL_EXEC

# Plain ints for the hot paths: arithmetic on IntFlag members costs a microsecond each.
SEAL_BIT, SHRINK_BIT, GROW_BIT = int(SEAL_SEAL), int(SEAL_SHRINK), int(SEAL_GROW)
NO_WRITES_BITS = int(SEAL_WRITE | SEAL_FUTURE_WRITE)
"""Either of these refuses new writes."""
FROZEN_BITS = int(SEAL_SEAL | SEAL_SHRINK | SEAL_GROW | SEAL_WRITE)
"""What ``MemFD.from_bytes`` seals with."""
ALL_BITS = sum(member.value for member in Seal)


def describe_seals(seals: int) -> str:
    """``SEAL_GROW|SEAL_WRITE`` style text for a seal set; ``none`` for 0."""
    names = [member.name or "" for member in Seal if seals & member]
    unknown = seals & ~ALL_BITS
    if unknown:
        names.append(hex(unknown))
    return "|".join(names) or "none"

