"""MemFD against real memfds: file I/O, mappings, seals, passing to other processes.

Everything here goes through the public API, so the same tests hold for any backend that
provides MemFD. Seal tests are skipped where ``capabilities()`` says seals are missing
(macOS); Linux-only facts (/proc names, reopening through /proc, hugetlbfs) say so.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable

import anyio
import pytest

import fdloop
from fdloop import backends

# conftest runs every test here once per backend (FDLOOP_BACKEND picks one), so which
# backend is in force is asked at run time, never at import.


@pytest.fixture(autouse=True)
def _backend_has_memfd(request: pytest.FixtureRequest) -> None:
    if "fdloop_backend" in request.fixturenames:
        request.getfixturevalue("fdloop_backend")  # the backend is selected first
    if not hasattr(backends.current(), "memfd"):
        pytest.skip(f"the {backends.selected_name()} backend does not provide MemFD yet")


def _linux() -> bool:
    return backends.selected_name() == "linux"


@pytest.fixture
def linux_only() -> None:
    if not _linux():
        pytest.skip("a Linux memfd fact")


def _missing() -> tuple[str, ...]:
    for capability in fdloop.capabilities():
        if capability.primitive == "MemFD":
            return capability.missing
    raise AssertionError("capabilities() does not list MemFD")


def _has_seals() -> bool:
    return not any("seal" in missing for missing in _missing())


@pytest.fixture
def needs_seals() -> None:
    if not _has_seals():
        pytest.skip("this backend has no file seals")


def _contents(memfd: fdloop.MemFD) -> bytes:
    return memfd.pread(memfd.size, 0)


# -- creating, reading, writing -------------------------------------------------------


@pytest.mark.usefixtures("linux_only")
def test_proc_shows_the_memfd_name() -> None:
    with fdloop.MemFD("my region", 100) as memfd:
        assert os.readlink(f"/proc/self/fd/{memfd.fileno()}") == "/memfd:my region (deleted)"
        assert memfd.name == "my region"
        assert memfd.size == 100
        assert os.get_inheritable(memfd.fileno()) is False  # MFD_CLOEXEC


def test_new_memfd_is_zero_filled_and_empty_by_default() -> None:
    with fdloop.MemFD() as empty, fdloop.MemFD(size=10) as sized:
        assert (empty.name, empty.size, empty.read()) == ("fdloop", 0, b"")
        assert sized.read() == b"\0" * 10


def test_write_read_seek_tell_behave_like_a_file() -> None:
    with fdloop.MemFD() as memfd:
        assert memfd.write(b"hello ") == 6
        assert memfd.write(bytearray(b"world")) == 5
        assert (memfd.tell(), memfd.size) == (11, 11)
        assert memfd.read() == b""
        assert memfd.seek(0) == 0
        assert memfd.read(5) == b"hello"
        assert memfd.read() == b" world"
        assert memfd.seek(-5, os.SEEK_END) == 6
        assert memfd.read(100) == b"world"
        assert memfd.seek(-11, os.SEEK_CUR) == 0
        assert memfd.seek(20) == 20
        memfd.write(memoryview(b"!"))  # past the end: the gap reads as zeros
        assert _contents(memfd) == b"hello world" + b"\0" * 9 + b"!"


def test_pread_pwrite_leave_the_position_alone() -> None:
    with fdloop.MemFD(size=8) as memfd:
        memfd.seek(3)
        assert memfd.pwrite(b"abcdef", 6) == 6
        assert memfd.size == 12
        assert memfd.pread(4, 6) == b"abcd"
        assert memfd.pread(100, 10) == b"ef"
        assert memfd.pread(5, 1000) == b""
        assert memfd.tell() == 3


def test_write_accepts_any_contiguous_buffer() -> None:
    import array

    with fdloop.MemFD() as memfd:
        memfd.write(array.array("H", [1, 2]))
        assert _contents(memfd) == array.array("H", [1, 2]).tobytes()


def test_truncate_grows_with_zeros_and_shrinks() -> None:
    with fdloop.MemFD() as memfd:
        memfd.write(b"abcdef")
        assert memfd.truncate(3) == 3
        assert _contents(memfd) == b"abc"
        assert memfd.truncate(5) == 5
        assert _contents(memfd) == b"abc\0\0"
        memfd.seek(4)
        assert memfd.truncate() == 4  # like a file: at the position, which stays put
        assert (_contents(memfd), memfd.tell()) == (b"abc\0", 4)


def test_mmap_shares_bytes_with_the_fd_and_its_dups() -> None:
    with fdloop.MemFD(size=8192) as memfd, memfd.dup() as other:
        mapping = memfd.mmap()
        try:
            assert len(mapping) == 8192
            mapping[:5] = b"hello"
            assert other.pread(5, 0) == b"hello"
            other.pwrite(b"HE", 0)
            assert mapping[:5] == b"HEllo"
        finally:
            mapping.close()
        tail = memfd.mmap(offset=4096, writable=False)
        try:
            assert len(tail) == 4096
            with pytest.raises(TypeError):
                tail[0] = 1  # a read-only mapping refuses writes
        finally:
            tail.close()
        part = memfd.mmap(5)
        try:
            assert part[:] == b"HEllo"
        finally:
            part.close()


def test_a_mapping_keeps_the_memory_after_the_memfd_is_closed() -> None:
    memfd = fdloop.MemFD.from_bytes(b"still here", seal=False)
    mapping = memfd.mmap()
    memfd.close()
    try:
        assert mapping[:] == b"still here"
        mapping[:5] = b"STILL"
        assert mapping[:] == b"STILL here"
    finally:
        mapping.close()


def test_mmap_range_is_checked() -> None:
    with fdloop.MemFD() as memfd:
        with pytest.raises(ValueError, match="truncate"):
            memfd.mmap()
        memfd.truncate(4096)
        with pytest.raises(ValueError, match="length 8192"):
            memfd.mmap(8192)
        with pytest.raises(ValueError, match="offset must be a multiple"):
            memfd.mmap(1, offset=1)
        with pytest.raises(ValueError, match="length"):
            memfd.mmap(0)
        with pytest.raises(ValueError, match="offset 4096"):
            memfd.mmap(offset=4096)


# -- seals ------------------------------------------------------------------------------


def test_seal_constants_have_the_fcntl_values() -> None:
    assert [fdloop.SEAL_SEAL, fdloop.SEAL_SHRINK, fdloop.SEAL_GROW, fdloop.SEAL_WRITE,
            fdloop.SEAL_FUTURE_WRITE] == [1, 2, 4, 8, 0x10]
    assert isinstance(fdloop.SEAL_WRITE | fdloop.SEAL_GROW, fdloop.Seal)
    if _linux():
        import fcntl

        assert fdloop.SEAL_WRITE == fcntl.F_SEAL_WRITE
        assert fdloop.SEAL_SEAL == fcntl.F_SEAL_SEAL


@pytest.mark.usefixtures("needs_seals")
def test_seal_shrink_refuses_shrinking_only() -> None:
    with fdloop.MemFD(size=10) as memfd:
        assert memfd.seal(fdloop.SEAL_SHRINK) == fdloop.SEAL_SHRINK
        with pytest.raises(PermissionError, match="SEAL_SHRINK"):
            memfd.truncate(5)
        assert memfd.size == 10
        memfd.truncate(20)
        memfd.write(b"more")
        assert memfd.size == 20


@pytest.mark.usefixtures("needs_seals")
def test_seal_grow_refuses_growing_and_writes_past_the_end_without_partial_writes() -> None:
    with fdloop.MemFD.from_bytes(b"x" * 5000, seal=False) as memfd:
        memfd.seal(fdloop.SEAL_GROW)
        with pytest.raises(PermissionError, match="SEAL_GROW"):
            memfd.truncate(5001)
        # The kernel would write the first page and stop; MemFD must change nothing.
        with pytest.raises(PermissionError, match="past its end"):
            memfd.pwrite(b"y" * 6000, 0)
        with pytest.raises(PermissionError):
            memfd.seek(4000)
            memfd.write(b"z" * 1001)
        assert (memfd.size, memfd.tell()) == (5000, 4000)
        assert _contents(memfd) == b"x" * 5000
        memfd.write(b"z" * 1000)  # up to the end is fine
        memfd.truncate(10)  # and so is shrinking
        assert _contents(memfd) == b"x" * 10


@pytest.mark.usefixtures("needs_seals")
def test_seal_write_refuses_every_kind_of_write() -> None:
    with fdloop.MemFD.from_bytes(b"frozen", seal=False) as memfd:
        memfd.seal(fdloop.SEAL_WRITE)
        for attempt in (lambda: memfd.write(b"X"), lambda: memfd.pwrite(b"X", 0),
                        lambda: memfd.pwrite(b"X", 100), memfd.mmap):
            with pytest.raises(PermissionError, match="SEAL_WRITE"):
                attempt()
        assert (_contents(memfd), memfd.tell()) == (b"frozen", 0)
        view = memfd.mmap(writable=False)  # reading through a mapping is still fine
        try:
            assert view[:] == b"frozen"
        finally:
            view.close()


@pytest.mark.usefixtures("needs_seals")
def test_seal_write_waits_for_writable_mappings_to_close() -> None:
    with fdloop.MemFD(size=4096) as memfd:
        mapping = memfd.mmap()
        try:
            with pytest.raises(fdloop.SealBusyError, match="mapping") as caught:
                memfd.seal(fdloop.SEAL_WRITE, fdloop.SEAL_SHRINK)
            assert isinstance(caught.value, PermissionError)
            assert caught.value.errno == errno.EBUSY
            assert memfd.seals == 0  # neither seal was added
            mapping[0] = 7
        finally:
            mapping.close()
        assert memfd.seal(fdloop.SEAL_WRITE) == fdloop.SEAL_WRITE
        assert memfd.pread(1, 0) == b"\x07"


@pytest.mark.usefixtures("needs_seals")
def test_a_read_only_mapping_does_not_block_seal_write() -> None:
    with fdloop.MemFD.from_bytes(b"data", seal=False) as memfd:
        view = memfd.mmap(writable=False)
        try:
            memfd.seal(fdloop.SEAL_WRITE)
            assert view[:4] == b"data"
        finally:
            view.close()


@pytest.mark.usefixtures("needs_seals")
def test_seal_future_write_keeps_existing_mappings_but_refuses_new_writes() -> None:
    with fdloop.MemFD(size=4096) as memfd:
        mapping = memfd.mmap()
        try:
            memfd.seal(fdloop.SEAL_FUTURE_WRITE)
            mapping[:3] = b"old"  # the mapping that existed keeps working
            assert memfd.pread(3, 0) == b"old"
            with pytest.raises(PermissionError, match="SEAL_FUTURE_WRITE"):
                memfd.pwrite(b"new", 0)
            with pytest.raises(PermissionError, match="SEAL_FUTURE_WRITE"):
                memfd.mmap()
            assert memfd.pread(3, 0) == b"old"
        finally:
            mapping.close()


@pytest.mark.usefixtures("needs_seals")
def test_seal_seal_ends_sealing_and_seals_accumulate() -> None:
    with fdloop.MemFD() as memfd:
        memfd.seal(fdloop.SEAL_GROW)
        assert memfd.seal(fdloop.SEAL_SHRINK | fdloop.SEAL_SEAL) == (
            fdloop.SEAL_GROW | fdloop.SEAL_SHRINK | fdloop.SEAL_SEAL)
        with pytest.raises(PermissionError, match="SEAL_SEAL"):
            memfd.seal(fdloop.SEAL_WRITE)
        assert memfd.seals == fdloop.SEAL_GROW | fdloop.SEAL_SHRINK | fdloop.SEAL_SEAL


@pytest.mark.usefixtures("needs_seals")
def test_without_allow_sealing_nothing_can_be_sealed() -> None:
    with fdloop.MemFD(size=3, allow_sealing=False) as memfd:
        assert memfd.seals == fdloop.SEAL_SEAL
        with pytest.raises(PermissionError, match="without allow_sealing"):
            memfd.seal(fdloop.SEAL_WRITE)
        assert memfd.seals == fdloop.SEAL_SEAL
        memfd.pwrite(b"ok", 0)  # and it stays writable
        assert memfd.pread(2, 0) == b"ok"


@pytest.mark.usefixtures("needs_seals")
def test_seals_bind_dups_and_fds_reopened_through_proc() -> None:
    with fdloop.MemFD.from_bytes(b"abc", seal=False) as memfd, memfd.dup() as dup:
        memfd.seal(fdloop.SEAL_WRITE)
        assert dup.seals == fdloop.SEAL_WRITE
        with pytest.raises(PermissionError):
            dup.write(b"X")
        if _linux():
            reopened = os.open(f"/proc/self/fd/{memfd.fileno()}", os.O_RDWR)
            with fdloop.MemFD.from_fd(reopened) as again:
                assert again.seals == fdloop.SEAL_WRITE
                with pytest.raises(PermissionError):
                    again.pwrite(b"X", 0)
                dup.seal(fdloop.SEAL_GROW)  # sealing through one fd shows on all
                assert again.seals == fdloop.SEAL_WRITE | fdloop.SEAL_GROW
        assert _contents(memfd) == b"abc"


@pytest.mark.usefixtures("needs_seals")
def test_from_bytes_makes_a_sealed_blob_at_position_zero() -> None:
    with fdloop.MemFD.from_bytes(b"payload", name="blob") as memfd:
        assert memfd.name == "blob"
        assert memfd.seals == (fdloop.SEAL_SHRINK | fdloop.SEAL_GROW | fdloop.SEAL_WRITE
                               | fdloop.SEAL_SEAL)
        assert memfd.read() == b"payload"
        with pytest.raises(PermissionError):
            memfd.truncate(0)
    with fdloop.MemFD.from_bytes(memoryview(b""), seal=False) as empty:
        assert (empty.size, empty.seals) == (0, 0)


# -- ownership --------------------------------------------------------------------------


def test_from_fd_refuses_a_plain_file() -> None:
    """(A pipe, a closed fd and a non-int, and the detach round trip: test_contract.py.)"""
    with tempfile.TemporaryFile() as plain:
        with pytest.raises(fdloop.NotThisKindOfFD):
            fdloop.MemFD.from_fd(plain.fileno())
        os.fstat(plain.fileno())  # a refused fd is left open for its owner


@pytest.mark.usefixtures("linux_only")
def test_a_read_only_fd_reads_but_refuses_writes_clearly() -> None:
    with fdloop.MemFD.from_bytes(b"ro", seal=False) as memfd:
        fd = os.open(f"/proc/self/fd/{memfd.fileno()}", os.O_RDONLY)
        with fdloop.MemFD.from_fd(fd) as reader:
            assert reader.read() == b"ro"
            with pytest.raises(OSError, match="read-only") as caught:
                reader.pwrite(b"x", 0)
            assert not isinstance(caught.value, PermissionError)  # not a seal
            with pytest.raises(OSError, match="read-only"):
                reader.mmap()
        assert _contents(memfd) == b"ro"


def test_dup_shares_memory_and_position_but_not_the_fd() -> None:
    with fdloop.MemFD() as memfd, memfd.dup() as other:
        assert other.fileno() != memfd.fileno()
        assert other.name == memfd.name
        memfd.write(b"abc")
        assert other.tell() == 3
        memfd.close()
        assert other.pread(3, 0) == b"abc"  # the memory lives while any fd does


def _every_operation(m: fdloop.MemFD) -> list[Callable[[], object]]:
    return [m.fileno, lambda: m.size, lambda: m.seals, m.read, lambda: m.write(b"x"),
            lambda: m.pread(1, 0), lambda: m.pwrite(b"x", 0), lambda: m.truncate(1),
            lambda: m.seek(0), m.tell, m.mmap, lambda: m.seal(fdloop.SEAL_GROW), m.dup,
            m.detach]


async def test_closed_or_detached_memfd_refuses_everything() -> None:
    closed = fdloop.MemFD("gone")
    closed.close()
    closed.close()
    await closed.aclose()
    detached = fdloop.MemFD("away")
    fd = detached.detach()
    os.close(fd)
    for memfd in (closed, detached):
        assert memfd.closed
        assert repr(memfd) == f"<fdloop.MemFD closed, name={memfd.name!r}>"
        calls = _every_operation(memfd)
        for call in calls:
            with pytest.raises(fdloop.ClosedResourceError):
                call()
        with pytest.raises(fdloop.ClosedResourceError):
            with memfd:
                pass
        with pytest.raises(fdloop.ClosedResourceError):
            async with memfd:
                pass


def test_repr_shows_name_size_and_seals() -> None:
    with fdloop.MemFD("shown", 42) as memfd:
        fd = memfd.fileno()
        assert repr(memfd) == f"<fdloop.MemFD fd={fd}, name='shown', size=42, seals=none>"
        if _has_seals():
            memfd.seal(fdloop.SEAL_GROW, fdloop.SEAL_WRITE)
            assert repr(memfd).endswith("size=42, seals=SEAL_GROW|SEAL_WRITE>")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"name": 5}, TypeError, "name must be a str"),
        ({"name": b"bytes"}, TypeError, "name must be a str"),
        ({"name": "a\0b"}, ValueError, "name must not contain NUL"),
        ({"name": "x" * 250}, ValueError, "name must be at most 249 bytes"),
        ({"name": "é" * 125}, ValueError, "name must be at most 249 bytes"),
        ({"name": "\ud800"}, ValueError, "name cannot be encoded"),
        ({"size": -1}, ValueError, "size must be >= 0"),
        ({"size": 2**63}, ValueError, "size must be <="),
        ({"size": 1.0}, TypeError, "size must be an int"),
        ({"size": True}, TypeError, "size must be an int"),
        ({"size": "1"}, TypeError, "size must be an int"),
        ({"allow_sealing": 1}, TypeError, "allow_sealing must be a bool"),
        ({"hugetlb": None}, TypeError, "hugetlb must be a bool"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs: dict[str, object],
                                             error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        fdloop.MemFD(**kwargs)  # type: ignore[arg-type]


def test_longest_name_is_accepted() -> None:
    with fdloop.MemFD("x" * 249) as memfd:
        assert memfd.name == "x" * 249


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda m: m.write("text"), TypeError, "data must be bytes-like.*not str"),
        (lambda m: m.write(None), TypeError, "data must be bytes-like"),
        (lambda m: m.write(7), TypeError, "data must be bytes-like"),
        (lambda m: m.write(memoryview(b"abcd")[::2]), ValueError, "data must be a contiguous"),
        (lambda m: m.pwrite([1], 0), TypeError, "data must be bytes-like"),
        (lambda m: m.pwrite(b"x", -1), ValueError, "offset must be >= 0"),
        (lambda m: m.pwrite(b"x", 2**63 - 1), ValueError, "offset must be <="),
        (lambda m: m.pwrite(b"x", 1.5), TypeError, "offset must be an int"),
        (lambda m: m.pread(-1, 0), ValueError, "n must be >= 0"),
        (lambda m: m.pread(1, False), TypeError, "offset must be an int"),
        (lambda m: m.read(-2), ValueError, "n must be >= -1"),
        (lambda m: m.read("1"), TypeError, "n must be an int"),
        (lambda m: m.truncate(-1), ValueError, "size must be >= 0"),
        (lambda m: m.truncate(2**64), ValueError, "size must be <="),
        (lambda m: m.truncate("1"), TypeError, "size must be an int"),
        (lambda m: m.seek(-1), ValueError, "offset must be >= 0"),
        (lambda m: m.seek(0, 7), ValueError, "whence"),
        (lambda m: m.seek(-10, os.SEEK_CUR), ValueError, "before the start"),
        (lambda m: m.mmap(-1), ValueError, "length must be >= 1"),
        (lambda m: m.mmap(writable=1), TypeError, "writable must be a bool"),
        (lambda m: m.mmap(offset=-4096), ValueError, "offset must be >= 0"),
        (lambda m: m.seal(), TypeError, "at least one seal"),
        (lambda m: m.seal(0x40), ValueError, "seals: 64 is not"),
        (lambda m: m.seal(0), ValueError, "seals: 0 is not"),
        (lambda m: m.seal(-1), ValueError, "seals: -1 is not"),
        (lambda m: m.seal(fdloop.SEAL_GROW, 0x100), ValueError, "seals: 256"),
        (lambda m: m.seal(True), TypeError, "seals must be an int"),
        (lambda m: m.seal("SEAL_WRITE"), TypeError, "seals must be an int"),
        (lambda m: fdloop.MemFD.from_bytes("text"),  # type: ignore[arg-type]
         TypeError, "data must be bytes-like"),
        (lambda m: fdloop.MemFD.from_bytes(b"x", seal=None),  # type: ignore[arg-type]
         TypeError, "seal must be a bool"),
        (lambda m: fdloop.MemFD.from_bytes(b"x", name="a\0"), ValueError, "name"),
    ],
)
def test_bad_arguments_are_named_and_change_nothing(call, error, words) -> None:  # type: ignore[no-untyped-def]
    with fdloop.MemFD.from_bytes(b"untouched", seal=False) as memfd:
        memfd.seek(3)
        with pytest.raises(error, match=words):
            call(memfd)
        assert (_contents(memfd), memfd.tell(), memfd.size) == (b"untouched", 3, 9)
        if _has_seals():
            assert memfd.seals == 0


# -- huge pages ---------------------------------------------------------------------------


def _free_huge_pages() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


@pytest.mark.usefixtures("linux_only")
def test_hugetlb_either_works_or_says_why() -> None:
    """Huge pages are reserved at mmap() time; this machine may have none."""
    try:
        memfd = fdloop.MemFD("huge", hugetlb=True)
    except OSError as exc:  # a kernel without hugetlbfs
        assert "hugetlb" in str(exc)
        return
    with memfd:
        assert memfd.hugetlb
        assert "hugetlb" in repr(memfd)
        page = os.fstat(memfd.fileno()).st_blksize
        assert page > 4096
        with pytest.raises(ValueError, match="multiple of the huge page size"):
            memfd.truncate(page + 1)
        memfd.truncate(page)
        with pytest.raises(fdloop.UnsupportedOperation, match="mmap"):
            memfd.write(b"x")
        assert memfd.pread(1, 0) == b"\0"
        if any("hugetlb" in missing for missing in _missing()):
            assert _free_huge_pages() == 0  # capabilities() warned about exactly this
        if _free_huge_pages() == 0:
            with pytest.raises(OSError, match="HugePages_Free is 0") as caught:
                memfd.mmap()
            assert caught.value.errno == errno.ENOMEM
        else:
            mapping = memfd.mmap()
            try:
                mapping[:4] = b"huge"
                assert memfd.pread(4, 0) == b"huge"
            finally:
                mapping.close()
        assert memfd.size == page


# -- across processes -----------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, socket, sys
    import fdloop

    how, arg = sys.argv[1], int(sys.argv[2])
    if how == "socket":
        with socket.socket(fileno=arg) as sock:
            _, fds, _, _ = socket.recv_fds(sock, 16, 1)
        fd = fds[0]
    else:
        fd = arg
    report = {}
    with fdloop.MemFD.from_fd(fd) as memfd:
        report["name"] = memfd.name
        report["seals"] = int(memfd.seals)
        mapping = memfd.mmap(writable=False)
        report["seen"] = mapping[:].decode()
        mapping.close()
        try:
            mapping = memfd.mmap()
        except PermissionError as exc:
            report["mapped"] = False
            report["refusal"] = str(exc)
        else:
            mapping[:5] = b"child"  # through the child's own mapping
            mapping.close()
            report["mapped"] = True
        try:
            memfd.pwrite(b" was here", 5)
            report["wrote"] = True
        except PermissionError:
            report["wrote"] = False
    print(json.dumps(report))
""")


def _run_child(how: str, arg: int, pass_fds: tuple[int, ...]) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", CHILD, how, str(arg)], pass_fds=pass_fds,
                            capture_output=True, text=True, timeout=60, check=True)
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_child_sees_and_changes_the_same_memory_via_pass_fds() -> None:
    with fdloop.MemFD.from_bytes(b"parent says hi", seal=False, name="shared") as memfd:
        report = _run_child("fd", memfd.fileno(), (memfd.fileno(),))
        assert report == {"name": "shared", "seals": 0, "seen": "parent says hi",
                          "mapped": True, "wrote": True}
        assert _contents(memfd) == b"child was here"


@pytest.mark.usefixtures("needs_seals")
def test_seals_hold_in_a_process_that_received_the_fd_over_a_socket() -> None:
    with fdloop.MemFD.from_bytes(b"read me, do not change me", name="sealed") as memfd:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX)
        with parent_end, child_end:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, "socket", str(child_end.fileno())],
                pass_fds=(child_end.fileno(),), stdout=subprocess.PIPE, text=True,
            )
            with child:
                socket.send_fds(parent_end, [b"memfd"], [memfd.fileno()])
                output, _ = child.communicate(timeout=60)
            assert child.returncode == 0
        report = json.loads(output)
        assert report["seen"] == "read me, do not change me"
        assert report["seals"] == int(memfd.seals)
        assert (report["wrote"], report["mapped"]) == (False, False)
        assert "SEAL_WRITE" in report["refusal"]
        assert _contents(memfd) == b"read me, do not change me"


# -- inside the event loops -------------------------------------------------------------------


async def test_tasks_share_a_memfd_and_signal_through_an_eventfd() -> None:
    """A producer fills the shared memory and pokes an EventFD; the consumer awaits it."""
    messages = [b"one", b"two!", b"three"]
    received: list[bytes] = []
    async with fdloop.MemFD("mailbox", 4096) as memfd, fdloop.EventFD() as ready, \
            fdloop.EventFD() as consumed:

        async def consumer() -> None:
            for _ in messages:
                length = await ready.read()
                received.append(memfd.pread(length, 0))
                consumed.write()

        mapping = memfd.mmap()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                for message in messages:
                    mapping[: len(message)] = message
                    ready.write(len(message))
                    assert await consumed.read() == 1
        finally:
            mapping.close()
    assert received == messages
    assert memfd.closed


async def test_aclose_and_async_context_manager() -> None:
    memfd = fdloop.MemFD.from_bytes(b"async", seal=_has_seals())
    async with memfd:
        assert memfd.read() == b"async"
    assert memfd.closed
    other = fdloop.MemFD()
    await other.aclose()
    await other.aclose()
    assert other.closed
