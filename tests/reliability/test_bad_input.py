"""Bad input to every public entry point: a clear exception naming the problem, no change.

One table, one row per bad call. Each row says which public name it exercises (a test
checks that every class and function in ``fdloop.__all__`` has rows), what it does to a
fresh set of objects, the exception type and a pattern its message must match (the
argument's name, or what is wrong with the fd), and — where the object outlives the
failure — a check that it is unchanged and still usable. The autouse fixture then checks
that no fd and no process was left behind by any failed call.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import fdloop
from fdloop import STDOUT, EventFD, MemFD, ProcessFD, SignalFD, TimerFD, spawn

NAN, INF = math.nan, math.inf
FAR = 1000.0


class Kit:
    """Fresh objects for one row, and everything to close afterwards."""

    def __init__(self) -> None:
        self.efd = EventFD(3)
        self.timer = TimerFD()
        self.timer.set(FAR)  # armed: a refused set() must leave this setting alone
        self.memfd = MemFD("kit", 16)
        self.pipe_r, self.pipe_w = os.pipe()
        self.file_fd = os.open(__file__, os.O_RDONLY | os.O_CLOEXEC)
        self.closed_fd = os.open(os.devnull, os.O_RDONLY)
        os.close(self.closed_fd)
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.limit = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._procs: list[ProcessFD] = []
        self.detached: list[Any] = []

    def proc(self) -> ProcessFD:
        proc = spawn(["sleep", "60"])
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for obj in (self.efd, self.timer, self.memfd, *self._procs, *self.detached):
            obj.close()
        for fd in (self.pipe_r, self.pipe_w, self.file_fd):
            os.close(fd)


@dataclass
class Row:
    covers: str
    call: Callable[[Kit], object]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str
    still: Callable[[Kit], object] = field(default=lambda kit: None)


def efd_unchanged(kit: Kit) -> None:
    kit.efd.write(1)
    assert kit.efd.read_nowait() == 4  # initval 3, plus the 1 just written


def timer_unchanged(kit: Kit) -> None:
    remaining, interval = kit.timer.get()
    assert FAR - 60 < remaining <= FAR and interval == 0


def memfd_unchanged(kit: Kit) -> None:
    assert kit.memfd.size == 16 and kit.memfd.pread(16, 0) == bytes(16)


def mask_unchanged(kit: Kit) -> None:
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == kit.mask


def fd_still_open(fd_name: str) -> Callable[[Kit], None]:
    def check(kit: Kit) -> None:
        os.fstat(getattr(kit, fd_name))  # a refused from_fd must not close (or own) it

    return check


def limit_unchanged(kit: Kit) -> None:
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == kit.limit


def closed(obj_name: str) -> Callable[[Kit], Any]:
    def get(kit: Kit) -> Any:
        obj = getattr(kit, obj_name)
        obj.close()
        obj.close()  # double close: a no-op
        return obj

    return get


def detached(obj_name: str) -> Callable[[Kit], Any]:
    def get(kit: Kit) -> Any:
        obj = getattr(kit, obj_name)
        # The fd goes back into a new object to be closed: on the kqueue backend (and its
        # emulator) a plain os.close would skip state kept beside the fd.
        kit.detached.append(type(obj).from_fd(obj.detach()))
        return obj

    return get


CLOSED = fdloop.ClosedResourceError
WRONG_KIND = fdloop.NotThisKindOfFD
FROM_FD_ROWS = [
    # (class, an fd of another kind held by the kit)
    ("EventFD", "pipe_r"), ("TimerFD", "pipe_r"), ("SignalFD", "pipe_r"),
    ("ProcessFD", "pipe_r"), ("MemFD", "file_fd"), ("MemFD", "pipe_r"),
]

ROWS: dict[str, Row] = {
    # -- EventFD ---------------------------------------------------------------------------
    "EventFD initval str": Row("EventFD", lambda k: EventFD("1"), TypeError, "initval"),
    "EventFD initval bool": Row("EventFD", lambda k: EventFD(True), TypeError, "initval"),
    "EventFD initval float": Row("EventFD", lambda k: EventFD(1.0), TypeError, "initval"),
    "EventFD initval negative": Row("EventFD", lambda k: EventFD(-1), ValueError, "initval"),
    "EventFD initval huge": Row("EventFD", lambda k: EventFD(2**32), ValueError, "initval"),
    "EventFD semaphore int": Row(
        "EventFD", lambda k: EventFD(semaphore=1), TypeError, "semaphore"
    ),
    "write str": Row("EventFD", lambda k: k.efd.write("1"), TypeError, "n", efd_unchanged),
    "write nan": Row("EventFD", lambda k: k.efd.write(NAN), TypeError, "n", efd_unchanged),
    "write negative": Row("EventFD", lambda k: k.efd.write(-1), ValueError, "n", efd_unchanged),
    "write 2**64": Row("EventFD", lambda k: k.efd.write(2**64), ValueError, "n", efd_unchanged),
    "write overflow": Row(
        "EventFD", lambda k: k.efd.write(2**64 - 3), fdloop.CounterOverflowError, "2",
        efd_unchanged,
    ),
    "write closed": Row("EventFD", lambda k: closed("efd")(k).write(1), CLOSED, "closed"),
    "read_nowait closed": Row("EventFD", lambda k: closed("efd")(k).read_nowait(), CLOSED, ""),
    "EventFD fileno closed": Row("EventFD", lambda k: closed("efd")(k).fileno(), CLOSED, ""),
    "EventFD dup closed": Row("EventFD", lambda k: closed("efd")(k).dup(), CLOSED, "closed"),
    "EventFD detach twice": Row("EventFD", lambda k: detached("efd")(k).detach(), CLOSED, ""),
    "write detached": Row("EventFD", lambda k: detached("efd")(k).write(1), CLOSED, "closed"),
    # -- TimerFD ---------------------------------------------------------------------------
    "TimerFD clock unknown": Row("TimerFD", lambda k: TimerFD("utc"), ValueError, "clock"),
    "TimerFD clock int": Row("TimerFD", lambda k: TimerFD(1), TypeError, "clock"),
    "set negative": Row("TimerFD", lambda k: k.timer.set(-1), ValueError, "after", timer_unchanged),
    "set nan": Row("TimerFD", lambda k: k.timer.set(NAN), ValueError, "after", timer_unchanged),
    "set inf": Row("TimerFD", lambda k: k.timer.set(INF), ValueError, "after", timer_unchanged),
    "set huge int": Row(
        "TimerFD", lambda k: k.timer.set(10**30), ValueError, "after", timer_unchanged
    ),
    "set str": Row("TimerFD", lambda k: k.timer.set("1"), TypeError, "after", timer_unchanged),
    "set bool": Row("TimerFD", lambda k: k.timer.set(True), TypeError, "after", timer_unchanged),
    "set interval negative": Row(
        "TimerFD", lambda k: k.timer.set(1, -1), ValueError, "interval", timer_unchanged
    ),
    "set interval nan": Row(
        "TimerFD", lambda k: k.timer.set(1, NAN), ValueError, "interval", timer_unchanged
    ),
    "set absolute int": Row(
        "TimerFD", lambda k: k.timer.set(1, absolute=1), TypeError, "absolute",
        timer_unchanged,
    ),
    "set cancel_on_set monotonic": Row(
        "TimerFD", lambda k: k.timer.set(1, absolute=True, cancel_on_set=True), ValueError,
        "cancel_on_set", timer_unchanged,
    ),
    "set closed": Row("TimerFD", lambda k: closed("timer")(k).set(1), CLOSED, "closed"),
    "get closed": Row("TimerFD", lambda k: closed("timer")(k).get(), CLOSED, "closed"),
    "disarm detached": Row("TimerFD", lambda k: detached("timer")(k).disarm(), CLOSED, ""),
    # -- SignalFD --------------------------------------------------------------------------
    "SignalFD empty": Row(
        "SignalFD", lambda k: SignalFD([]), ValueError, "signals", mask_unchanged
    ),
    "SignalFD int": Row("SignalFD", lambda k: SignalFD(10), TypeError, "signals", mask_unchanged),
    "SignalFD str": Row(
        "SignalFD", lambda k: SignalFD("SIGUSR1"), TypeError, "signals", mask_unchanged
    ),
    "SignalFD item str": Row(
        "SignalFD", lambda k: SignalFD(["SIGUSR1"]), TypeError, "signals", mask_unchanged
    ),
    "SignalFD item bool": Row(
        "SignalFD", lambda k: SignalFD([True]), TypeError, "signals", mask_unchanged
    ),
    "SignalFD zero": Row(
        "SignalFD", lambda k: SignalFD([0]), ValueError, "signals", mask_unchanged
    ),
    "SignalFD past NSIG": Row(
        "SignalFD", lambda k: SignalFD([signal.SIGUSR1, signal.NSIG]), ValueError, "signals",
        mask_unchanged,
    ),
    "SignalFD SIGKILL": Row(
        "SignalFD", lambda k: SignalFD([signal.SIGUSR1, signal.SIGKILL]), ValueError, "SIGKILL",
        mask_unchanged,
    ),
    "SignalFD SIGSTOP": Row(
        "SignalFD", lambda k: SignalFD([signal.SIGSTOP]), ValueError, "SIGSTOP", mask_unchanged
    ),
    "SignalFD libc reserved": Row(
        "SignalFD", lambda k: SignalFD([32]), ValueError, "reserved", mask_unchanged
    ),
    # -- MemFD -----------------------------------------------------------------------------
    "MemFD name int": Row("MemFD", lambda k: MemFD(1), TypeError, "name"),
    "MemFD name NUL": Row("MemFD", lambda k: MemFD("a\0b"), ValueError, "name"),
    "MemFD name long": Row("MemFD", lambda k: MemFD("x" * 250), ValueError, "name"),
    "MemFD size negative": Row("MemFD", lambda k: MemFD("m", -1), ValueError, "size"),
    "MemFD size huge": Row("MemFD", lambda k: MemFD("m", 2**63), ValueError, "size"),
    "MemFD size float": Row("MemFD", lambda k: MemFD("m", 1.0), TypeError, "size"),
    "MemFD allow_sealing int": Row(
        "MemFD", lambda k: MemFD(allow_sealing=1), TypeError, "allow_sealing"
    ),
    "MemFD from_bytes str": Row("MemFD", lambda k: MemFD.from_bytes("x"), TypeError, "data"),
    "pwrite str": Row(
        "MemFD", lambda k: k.memfd.pwrite("abc", 0), TypeError, "data", memfd_unchanged
    ),
    "pwrite negative offset": Row(
        "MemFD", lambda k: k.memfd.pwrite(b"abc", -1), ValueError, "offset", memfd_unchanged
    ),
    "pread negative": Row(
        "MemFD", lambda k: k.memfd.pread(-1, 0), ValueError, "n", memfd_unchanged
    ),
    "truncate negative": Row(
        "MemFD", lambda k: k.memfd.truncate(-1), ValueError, "size", memfd_unchanged
    ),
    "seal str": Row("MemFD", lambda k: k.memfd.seal("write"), TypeError, "seal", memfd_unchanged),
    "seal unknown bit": Row(
        "MemFD", lambda k: k.memfd.seal(0x4000), ValueError, "seal", memfd_unchanged
    ),
    "MemFD read closed": Row("MemFD", lambda k: closed("memfd")(k).read(), CLOSED, "closed"),
    # -- ProcessFD and spawn ---------------------------------------------------------------
    "ProcessFD direct": Row("ProcessFD", lambda k: ProcessFD(), TypeError, "spawn"),
    "open zero": Row("ProcessFD", lambda k: ProcessFD.open(0), ValueError, "pid"),
    "open negative": Row("ProcessFD", lambda k: ProcessFD.open(-1), ValueError, "pid"),
    "open str": Row("ProcessFD", lambda k: ProcessFD.open("1"), TypeError, "pid"),
    "open bool": Row("ProcessFD", lambda k: ProcessFD.open(True), TypeError, "pid"),
    "open no such pid": Row(
        "ProcessFD", lambda k: ProcessFD.open(2**22 + 1), ProcessLookupError, ""
    ),
    "send_signal bad number": Row(
        "ProcessFD", lambda k: k.proc().send_signal(999), ValueError, "sig"
    ),
    "send_signal negative": Row("ProcessFD", lambda k: k.proc().send_signal(-1), ValueError, "sig"),
    "send_signal str": Row("ProcessFD", lambda k: k.proc().send_signal("TERM"), TypeError, "sig"),
    "kill closed": Row("ProcessFD", lambda k: _closed_proc(k).kill(), CLOSED, "closed"),
    "spawn argv empty": Row("spawn", lambda k: spawn([]), ValueError, "argv"),
    "spawn argv int": Row("spawn", lambda k: spawn(1), TypeError, "argv"),
    "spawn argv item int": Row("spawn", lambda k: spawn(["true", 1]), TypeError, "argv"),
    "spawn argv NUL": Row("spawn", lambda k: spawn(["tr\0ue"]), ValueError, "argv"),
    "spawn stdin STDOUT": Row(
        "spawn", lambda k: spawn(["true"], stdin=STDOUT), ValueError, "stdin"
    ),
    "spawn stdout negative": Row(
        "spawn", lambda k: spawn(["true"], stdout=-5), ValueError, "stdout"
    ),
    "spawn stdout str": Row("spawn", lambda k: spawn(["true"], stdout="x"), TypeError, "stdout"),
    "spawn stdout closed fd": Row(
        "spawn", lambda k: spawn(["true"], stdout=k.closed_fd), OSError, "stdout|fd|Bad file"
    ),
    "spawn env key": Row("spawn", lambda k: spawn(["true"], env={"A=B": "1"}), ValueError, "env"),
    "spawn env list": Row("spawn", lambda k: spawn(["true"], env=[("A", "1")]), TypeError, "env"),
    "spawn pass_fds low": Row(
        "spawn", lambda k: spawn(["true"], pass_fds=[1]), ValueError, "pass_fds"
    ),
    "spawn pass_fds str": Row(
        "spawn", lambda k: spawn(["true"], pass_fds="3"), TypeError, "pass_fds"
    ),
    "spawn pass_fds closed fd": Row(
        "spawn", lambda k: spawn(["true"], pass_fds=[k.closed_fd]), OSError, "pass_fds|fd|Bad file"
    ),
    "spawn kill_signal 0": Row(
        "spawn", lambda k: spawn(["true"], kill_signal=0), ValueError, "kill_signal"
    ),
    "spawn kill_signal 999": Row(
        "spawn", lambda k: spawn(["true"], kill_signal=999), ValueError, "kill_signal"
    ),
    "spawn kill_timeout nan": Row(
        "spawn", lambda k: spawn(["true"], kill_timeout=NAN), ValueError, "kill_timeout"
    ),
    "spawn kill_timeout negative": Row(
        "spawn", lambda k: spawn(["true"], kill_timeout=-1), ValueError, "kill_timeout"
    ),
    "spawn daemon int": Row("spawn", lambda k: spawn(["true"], daemon=1), TypeError, "daemon"),
    "spawn die_with_parent str": Row(
        "spawn", lambda k: spawn(["true"], die_with_parent="yes"), TypeError, "die_with_parent"
    ),
    "spawn missing program": Row(
        "spawn", lambda k: spawn(["no-such-program-fdloop"]), FileNotFoundError,
        "no-such-program-fdloop",
    ),
    "spawn missing cwd": Row(
        "spawn", lambda k: spawn(["true"], cwd="/no/such/dir"), FileNotFoundError, "/no/such/dir"
    ),
    # -- streams ---------------------------------------------------------------------------
    "PipeReceiveStream regular file": Row(
        "PipeReceiveStream", lambda k: fdloop.PipeReceiveStream(k.file_fd), WRONG_KIND, "pipe",
        fd_still_open("file_fd"),
    ),
    "PipeReceiveStream closed fd": Row(
        "PipeReceiveStream", lambda k: fdloop.PipeReceiveStream(k.closed_fd), OSError, ""
    ),
    "PipeSendStream str": Row(
        "PipeSendStream", lambda k: fdloop.PipeSendStream("1"), TypeError, "fd"
    ),
    "PipeSendStream negative": Row(
        "PipeSendStream", lambda k: fdloop.PipeSendStream(-1), (ValueError, OSError), ""
    ),
    # -- process-wide helpers --------------------------------------------------------------
    "raise_fd_limit str": Row(
        "raise_fd_limit", lambda k: fdloop.raise_fd_limit("1"), TypeError, "n", limit_unchanged
    ),
    "raise_fd_limit negative": Row(
        "raise_fd_limit", lambda k: fdloop.raise_fd_limit(-1), ValueError, "n", limit_unchanged
    ),
    "raise_fd_limit bool": Row(
        "raise_fd_limit", lambda k: fdloop.raise_fd_limit(True), TypeError, "n", limit_unchanged
    ),
    "capabilities unknown backend": Row(
        "capabilities", lambda k: fdloop.capabilities("windows"), ValueError, "backend"
    ),
    "Supervisor flag int": Row(
        "Supervisor", lambda k: fdloop.Supervisor(subreaper=1), TypeError, "subreaper"
    ),
    "Supervisor add restart": Row(
        "Supervisor", lambda k: fdloop.Supervisor().add("p", ["true"], restart="sometimes"),
        ValueError, "restart",
    ),
    "Supervisor add stop_timeout": Row(
        "Supervisor", lambda k: fdloop.Supervisor().add("p", ["true"], stop_timeout=NAN),
        ValueError, "stop_timeout",
    ),
}

for cls_name, fd_name in FROM_FD_ROWS:
    ROWS[f"{cls_name}.from_fd {fd_name}"] = Row(
        cls_name, lambda k, c=cls_name, f=fd_name: getattr(fdloop, c).from_fd(getattr(k, f)),
        WRONG_KIND, "not", fd_still_open(fd_name),
    )
for cls_name in ("EventFD", "TimerFD", "SignalFD", "MemFD", "ProcessFD"):
    ROWS[f"{cls_name}.from_fd closed fd"] = Row(
        cls_name, lambda k, c=cls_name: getattr(fdloop, c).from_fd(k.closed_fd), OSError,
        "not open",
    )
    ROWS[f"{cls_name}.from_fd -1"] = Row(
        cls_name, lambda k, c=cls_name: getattr(fdloop, c).from_fd(-1), ValueError, "fd"
    )
    ROWS[f"{cls_name}.from_fd bool"] = Row(
        cls_name, lambda k, c=cls_name: getattr(fdloop, c).from_fd(True), TypeError, "fd"
    )
    ROWS[f"{cls_name}.from_fd str"] = Row(
        cls_name, lambda k, c=cls_name: getattr(fdloop, c).from_fd("3"), TypeError, "fd"
    )
ROWS["VirtualFD events str"] = Row(
    "VirtualFD", lambda k: fdloop.VirtualFD("1"), TypeError, "events"  # type: ignore[arg-type]
)
ROWS["VirtualFD events unknown bit"] = Row(
    "VirtualFD", lambda k: fdloop.VirtualFD(1 << 30), ValueError, "events"
)
ROWS["VirtualFD events negative"] = Row(
    "VirtualFD", lambda k: fdloop.VirtualFD(-1), ValueError, "events"
)
ROWS["channel capacity str"] = Row(
    "channel", lambda k: fdloop.channel("64"), TypeError, "capacity"  # type: ignore[arg-type]
)
ROWS["channel capacity too small"] = Row(
    "channel", lambda k: fdloop.channel(capacity=0), ValueError, "capacity"
)
for _end in ("ChannelReceiver", "ChannelSender"):
    ROWS[f"{_end}.from_fds str"] = Row(
        _end, lambda k, end=_end: getattr(fdloop, end).from_fds("1234"), TypeError, "fds"
    )
    ROWS[f"{_end}.from_fds two fds"] = Row(
        _end, lambda k, end=_end: getattr(fdloop, end).from_fds((k.pipe_r, k.pipe_r)),
        ValueError, "four fds",
    )
    ROWS[f"{_end}.from_fds one fd four times"] = Row(
        _end, lambda k, end=_end: getattr(fdloop, end).from_fds((k.pipe_r,) * 4),
        ValueError, "different", fd_still_open("pipe_r"),
    )
    ROWS[f"{_end}.from_fds not a memfd"] = Row(
        _end, lambda k, end=_end: getattr(fdloop, end).from_fds(
            (k.pipe_r, k.pipe_w, k.file_fd, k.efd.fileno())),
        # (the kqueue backend refuses to build any Channel: its EventFD cannot be passed)
        (WRONG_KIND, fdloop.UnsupportedOperation), "memfd|kqueue", fd_still_open("pipe_r"),
    )
ROWS["notify_closing str"] = Row(
    "notify_closing", lambda k: fdloop.notify_closing("3"), TypeError,  # type: ignore[arg-type]
    "fd_or_object",
)
ROWS["notify_closing negative"] = Row(
    "notify_closing", lambda k: fdloop.notify_closing(-1), ValueError, "fd_or_object"
)
# Where an eventfd or a timer is itself a kqueue (the kqueue backend), the kind cannot be
# told apart; that backend refuses foreign kqueues with UnsupportedOperation instead.
OTHER_KIND = (WRONG_KIND, fdloop.UnsupportedOperation)
ROWS["TimerFD.from_fd eventfd"] = Row(
    "TimerFD", lambda k: TimerFD.from_fd(k.efd.fileno()), OTHER_KIND, "not|only adopt",
    efd_unchanged,
)
ROWS["EventFD.from_fd timerfd"] = Row(
    "EventFD", lambda k: EventFD.from_fd(k.timer.fileno()), OTHER_KIND, "not|only adopt",
    timer_unchanged,
)
ROWS["MemFD.from_fd eventfd"] = Row(
    "MemFD", lambda k: MemFD.from_fd(k.efd.fileno()), WRONG_KIND, "not", efd_unchanged
)


def _closed_proc(kit: Kit) -> ProcessFD:
    proc = kit.proc()
    proc.close()  # SIGKILL; the reaper takes the child
    return proc


def check_row(name: str, row: Row) -> str | None:
    """Run one row on a fresh kit; None if it behaved, else what went wrong."""
    kit = Kit()
    try:
        try:
            row.call(kit)
        except row.error as exc:
            message = str(exc)
            if not message.strip():
                return "an empty message says nothing"
            if row.match and not re.search(row.match, message):
                return f"{type(exc).__name__}({message!r}) does not name {row.match!r}"
        except BaseException as exc:  # the wrong kind of refusal
            return f"raised {type(exc).__name__}({exc}) instead of {row.error}"
        else:
            return f"accepted: {row.error} expected"
        try:
            row.still(kit)
        except BaseException as exc:
            return f"changed something or left it unusable: {type(exc).__name__}({exc})"
        return None
    finally:
        kit.close()


@pytest.mark.parametrize("covers", sorted({row.covers for row in ROWS.values()}))
def test_bad_input_is_refused_clearly_and_changes_nothing(covers: str) -> None:
    # One test per public name (the leak check after each test costs a /proc scan); each
    # row still runs on fresh objects and is reported by name.
    rows = {name: row for name, row in ROWS.items() if row.covers == covers}
    problems = {name: problem for name, row in rows.items() if (problem := check_row(name, row))}
    assert problems == {}, f"{len(problems)} of {len(rows)} rows misbehaved"


PUBLIC_VALUE_TYPES = {
    # Plain values and result records: made by fdloop, not from user input.
    "Capability", "CompletedProcess", "ExitStatus", "ResourceUsage", "Seal", "SignalInfo",
    # async: their rows are in test_bad_input_to_async_entry_points
    "run", "call", "check_call", "check_output", "wait_events", "watch_events",
}


def test_every_public_class_and_function_has_bad_input_rows() -> None:
    covered = {row.covers for row in ROWS.values()}
    needing = {
        name for name in fdloop.__all__
        if ((inspect.isclass(obj := getattr(fdloop, name)) and not issubclass(obj, BaseException))
            or inspect.isfunction(obj))
    } - PUBLIC_VALUE_TYPES
    assert needing - covered == set(), "public names without bad-input rows"


async def test_bad_input_to_async_entry_points() -> None:
    with pytest.raises(ValueError, match="argv"):
        await fdloop.run([])
    with pytest.raises(ValueError, match="argv"):
        await fdloop.call([])
    with pytest.raises(ValueError, match="timeout"):
        await fdloop.check_output(["true"], timeout=-1)
    with pytest.raises(TypeError, match="input"):
        await fdloop.check_call(["true"], input="text")
    with pytest.raises(TypeError, match="fd_or_object"):
        await fdloop.wait_events("0", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="events"):
        await fdloop.wait_events(0, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="events"):
        await fdloop.wait_events(0, 0)
    with pytest.raises(TypeError, match="events"):
        async for _ in fdloop.watch_events(0, "1"):  # type: ignore[arg-type]
            break
    with pytest.raises(ValueError, match="timeout"):
        await fdloop.run(["true"], timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        await fdloop.run(["true"], timeout=NAN)
    with pytest.raises(TypeError, match="input"):
        await fdloop.run(["true"], input="text")
    with EventFD() as efd:
        pass
    with pytest.raises(fdloop.ClosedResourceError):
        await efd.read()
    timer = TimerFD()
    timer.close()
    with pytest.raises(fdloop.ClosedResourceError):
        await timer.wait()
    proc = spawn(["sleep", "60"])
    proc.close()
    with pytest.raises(fdloop.ClosedResourceError):
        await proc.wait()
    proc.close()  # double close of a process handle: a no-op
