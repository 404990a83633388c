"""The shared ring of ``fdloop.Channel``: its layout, its protocol, and how it is checked.

This module owns the bytes both processes share; :mod:`.channel` owns the ends that use
them. It is written so that a C program can be the peer.

Files
-----
An end is four fds, ``fds()`` in this order:

0. a memfd (never hugetlb: a sealed hugetlb file can still fault when the huge page
   pool runs dry), sealed with ``F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL``, of size
   ``HEADER_SIZE + capacity``, mapped ``MAP_SHARED`` by both sides;
1. the *data* doorbell: an eventfd (counter mode) the sender writes 1 to;
2. the *room* doorbell: an eventfd (counter mode) the receiver writes 1 to;
3. this end's half of an AF_UNIX stream socketpair (the sender's half for a sender).

Layout
------
All words are unsigned 64-bit little-endian, at 8-aligned byte offsets of the memfd::

    0    MAGIC          b"fdlchan1" (0x316e616863646c66)        written once, by the creator
    8    VERSION        1
    16   HEADER_SIZE    4096; the data area starts here
    24   CAPACITY       size of the data area in bytes: a multiple of 8, at least 64
    64   WRITE_INDEX    bytes the sender has published, ever        written by the sender
    72   SENDER_WAITS   0, or the READ_INDEX the sender sleeps for  written by the sender
    128  READ_INDEX     bytes the receiver has given back, ever     written by the receiver
    136  RECEIVER_WAITS 0, or the WRITE_INDEX the receiver sleeps for  (the receiver)
    144  SENDER_COPIES  announced sender copies minus closed ones, as the receiver has
                        counted the markers so far (starts at 1)    written by the receiver

Indices only grow (2**64 bytes is 58 years at 10 GB/s) and are multiples of 8; a byte
at index ``i`` lives at data offset ``i % CAPACITY``. ``0 <= WRITE_INDEX - READ_INDEX <=
CAPACITY`` always. The sender's and the receiver's words are on different cache lines.

Records
-------
The data area is a sequence of records, each starting 8-aligned with a length word L:

* ``L <= CAPACITY - 8``: a message of L bytes follows the word, then zero to seven
  padding bytes, so the record takes ``8 + round_up(L, 8)`` bytes. A record never wraps.
* ``L == 2**64 - 1`` (SKIP): the rest of the data area up to its end is unused; the next
  record starts at offset 0. The sender writes it when a record does not fit before the
  end, so the largest message is ``CAPACITY - 8`` bytes.

Protocol
--------
One sender and one receiver process use the ring at a time (spare copies of an end are
for handing it over). To send, the sender waits until ``record size <= CAPACITY -
(WRITE_INDEX - READ_INDEX)``, writes the record, publishes the new WRITE_INDEX with one
aligned 8-byte store, executes a full fence, then reads RECEIVER_WAITS: if it is non-zero
and at most the new WRITE_INDEX, it writes 1 to the data doorbell. The receiver reads
WRITE_INDEX, reads the records below it, gives their space back by publishing READ_INDEX
(one store), fences, and rings the room doorbell the same way if ``0 < SENDER_WAITS <=
READ_INDEX``.

A side that finds nothing to do sleeps like this: store the peer index it needs into its
WAITS word; full fence; read the peer's index again, and if it has not got there, wait
until its doorbell or its socket is readable; then drain the doorbell, store 0 into its
WAITS word and look again. Extra rings are harmless (a C peer may always ring).

What this assumes of the CPU (x86-64, total store order), and why it is enough:

* an aligned 8-byte store or load from Python (a ``memoryview.cast("Q")`` element) is
  one machine move, so a peer never sees half an index;
* stores become visible in program order and loads happen in program order, so a
  receiver that sees a WRITE_INDEX also sees the record bytes written before it, and a
  sender that sees a READ_INDEX knows the receiver has finished reading below it; no
  fence is needed for that, and the doorbell write (a system call taking a kernel lock)
  orders everything before it for a peer that wakes from it;
* the one reordering TSO allows — a store passing a later load of another word — is the
  classic lost wake-up (each side reads the other's stale word; nobody rings). Both
  sides therefore fence between their store and their load of the other's word. Python
  has no fence instruction: fdloop acquires and releases an uncontended lock there, whose
  ``lock``-prefixed instructions are full fences on x86. A C peer uses
  ``atomic_thread_fence(memory_order_seq_cst)`` (``mfence``).

Other CPUs (ARM64, POWER, RISC-V) reorder more, and plain Python stores cannot be made
to publish in order there: ``channel()`` and ``from_fds()`` refuse them.

Ends and the sockets: the channel is over when the *last* copy of an end's socket is
closed (the other side's socket hangs up: EOF). The sender's socket carries one-byte
markers to the receiver: ``O`` each time a copy is rebuilt from fds in a process, ``C``
each time such a copy (or the creator's) is closed. At EOF, SENDER_COPIES == 0 means
every copy was closed (a clean end: EndOfStream once the queued records are read); more
means some copy died without closing (BrokenResourceError). Anything else on a socket,
or a header word outside the rules above, is a ChannelCorruptedError.
"""

from __future__ import annotations

from ..errors import ChannelCorruptedError, NotThisKindOfFD

MAGIC = int.from_bytes(b"fdlchan1", "little")
VERSION = 1
HEADER_SIZE = 4096
MIN_CAPACITY = 64
MAX_CAPACITY = 1 << 40
SKIP = 2**64 - 1
RECORD_HEADER = 8

# Word numbers (byte offset // 8) in the header.
W_MAGIC, W_VERSION, W_HEADER_SIZE, W_CAPACITY = 0, 1, 2, 3
W_WRITE_INDEX, W_SENDER_WAITS = 8, 9
W_READ_INDEX, W_RECEIVER_WAITS, W_SENDER_COPIES = 16, 17, 18
HEADER_WORDS = HEADER_SIZE // 8


def record_size(length: int) -> int:
    """Bytes a message of ``length`` bytes takes in the ring (length word, padding)."""
    return RECORD_HEADER + ((length + 7) & ~7)


def init_header(words: memoryview, capacity: int) -> None:
    """Write a fresh header (the creator does this before anyone else sees the ring)."""
    words[W_VERSION] = VERSION
    words[W_HEADER_SIZE] = HEADER_SIZE
    words[W_CAPACITY] = capacity
    words[W_SENDER_COPIES] = 1
    words[W_MAGIC] = MAGIC


def check_header(raw: bytes, file_size: int) -> int:
    """The capacity of a ring whose first ``HEADER_SIZE`` bytes are ``raw``; NotThisKindOfFD
    naming the first thing that is wrong."""
    if len(raw) < HEADER_SIZE:
        raise NotThisKindOfFD(f"fds[0]: the memfd holds {file_size} bytes, fewer than a "
                              f"Channel header ({HEADER_SIZE})")
    words = memoryview(raw).cast("Q")
    if words[W_MAGIC] != MAGIC:
        raise NotThisKindOfFD(f"fds[0]: the memfd does not start with a Channel header "
                              f"(magic {raw[:8]!r}, expected {MAGIC.to_bytes(8, 'little')!r})")
    if words[W_VERSION] != VERSION:
        raise NotThisKindOfFD(f"fds[0]: Channel ring version {words[W_VERSION]}, this "
                              f"fdloop speaks version {VERSION}")
    if words[W_HEADER_SIZE] != HEADER_SIZE:
        raise NotThisKindOfFD(f"fds[0]: header size {words[W_HEADER_SIZE]}, expected "
                              f"{HEADER_SIZE}")
    capacity = words[W_CAPACITY]
    if capacity % 8 or not MIN_CAPACITY <= capacity <= MAX_CAPACITY:
        raise NotThisKindOfFD(f"fds[0]: capacity {capacity} in the header is not a multiple"
                              f" of 8 between {MIN_CAPACITY} and {MAX_CAPACITY}")
    if file_size != HEADER_SIZE + capacity:
        raise NotThisKindOfFD(f"fds[0]: the memfd holds {file_size} bytes but its header "
                              f"says {HEADER_SIZE} + {capacity}")
    write, read = words[W_WRITE_INDEX], words[W_READ_INDEX]
    if write % 8 or read % 8 or not 0 <= write - read <= capacity:
        raise NotThisKindOfFD(f"fds[0]: inconsistent indices in the header (write {write}, "
                              f"read {read}, capacity {capacity})")
    return capacity


def corrupted(what: str) -> ChannelCorruptedError:
    """The error an end raises (and keeps raising) once the peer broke the protocol."""
    return ChannelCorruptedError(f"Channel ring corrupted by the peer: {what}; this end "
                                 "is unusable")
