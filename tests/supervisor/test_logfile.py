"""Log files: rotation at the byte limit, separate stdout/stderr, timestamps, a full disk.

The library half drives :class:`fdloop.supervisor.logfile.LogFile` directly and through
a real child's pipe (:class:`~fdloop.supervisor.output.ProgramOutput`, on asyncio,
uvloop and trio); the command half runs ``fdloop supervise`` with ``log`` keys. The full
disk is a small tmpfs, nearly filled, mounted in a private mount namespace
(``unshare -m``), so nothing outside the test sees it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import fdloop
from fdloop.supervisor.config import parse_config
from fdloop.supervisor.logfile import LogFile, timestamp
from fdloop.supervisor.output import ProgramOutput

from .supervise_harness import Supervise, run_to_end, supervise_command, write

PY = sys.executable
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} "


def _files(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in sorted(directory.iterdir())}


# -- the library: LogFile ------------------------------------------------------------------


async def test_rotation_at_the_byte_limit_from_a_real_pipe(tmp_path: Path) -> None:
    """45 lines of 10 bytes, 100 bytes a file, 3 backups: exactly 10 lines per file, the
    oldest 10 lines gone, nothing past PATH.3."""
    log = LogFile(tmp_path / "app.log", max_bytes=100, backups=3)
    output = ProgramOutput("app", 3, log, prefixed=False)
    try:
        script = "import sys\nfor i in range(45): sys.stdout.write(f'{i:09d}\\n')"
        async with fdloop.spawn([PY, "-c", script], stdout=output.write_fd) as proc:
            output.close_write_end()
            async with anyio.create_task_group() as group:
                group.start_soon(output.copy_lines)
                assert (await proc.wait()).returncode == 0
    finally:
        output.close()
        log.close()
    assert _files(tmp_path) == {"app.log": 50, "app.log.1": 100, "app.log.2": 100,
                                "app.log.3": 100}
    lines = [f"{i:09d}\n" for i in range(45)]
    assert (tmp_path / "app.log.3").read_text() == "".join(lines[10:20])
    assert (tmp_path / "app.log.2").read_text() == "".join(lines[20:30])
    assert (tmp_path / "app.log.1").read_text() == "".join(lines[30:40])
    assert (tmp_path / "app.log").read_text() == "".join(lines[40:45])


def test_an_existing_file_is_appended_to_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"x" * 95)
    with_log = LogFile(path, max_bytes=100, backups=1)
    try:
        assert with_log.size == 95
        with_log.put(b"12345")  # 95 + 6 > 100: rotate first
        with_log.put(b"1234")
    finally:
        with_log.close()
    assert (tmp_path / "app.log.1").read_bytes() == b"x" * 95
    assert path.read_bytes() == b"12345\n1234\n"


def test_a_line_longer_than_the_limit_is_cut_across_files(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    log = LogFile(path, max_bytes=100, backups=5)
    try:
        log.put(b"a" * 250)
    finally:
        log.close()
    assert _files(tmp_path) == {"app.log": 51, "app.log.1": 100, "app.log.2": 100}
    whole = b"".join((tmp_path / name).read_bytes() for name in ("app.log.2", "app.log.1"))
    assert whole + path.read_bytes() == b"a" * 250 + b"\n"


def test_no_backups_starts_the_file_again_and_zero_never_rotates(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    empties = LogFile(tmp_path / "a" / "x.log", max_bytes=10, backups=0)
    never = LogFile(tmp_path / "b" / "x.log", max_bytes=0, backups=3)
    try:
        for word in (b"first", b"second", b"third"):
            empties.put(word)
            never.put(word * 100)
    finally:
        empties.close()
        never.close()
    assert _files(tmp_path / "a") == {"x.log": 6}
    assert (tmp_path / "a" / "x.log").read_bytes() == b"third\n"
    assert _files(tmp_path / "b") == {"x.log": 1603}


def test_timestamps_start_every_line(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    log = LogFile(path, timestamps=True)
    try:
        log.put(b"one\n")
        log.put(b"two")
    finally:
        log.close()
    lines = path.read_text().splitlines()
    assert [re.sub(STAMP, "", line, count=1) for line in lines] == ["one", "two"]
    assert all(re.match(STAMP, line) for line in lines)
    assert re.fullmatch(STAMP, timestamp(0.5).decode())


def test_a_refused_rotation_keeps_the_lines_and_is_reported_once(tmp_path: Path) -> None:
    """An immutable directory (chattr +i) refuses the renames but not writes to the open
    file: the log grows past its limit, nothing is dropped, one report; once renames work
    again, the next try (max_bytes later) rotates and says so."""
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr")
    directory = tmp_path / "logs"
    directory.mkdir()
    problems: list[str] = []
    log = LogFile(directory / "app.log", max_bytes=100, backups=2, on_problem=problems.append)
    try:
        if subprocess.run(["chattr", "+i", str(directory)], check=False).returncode:
            pytest.skip("this file system has no immutable attribute")
        try:
            for number in range(30):  # 300 bytes: two failed tries (at 100 and 200)
                log.put(f"{number:09d}".encode())
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        assert log.dropped == 0 and log.failure is None
        assert len(problems) == 1 and "cannot rotate log" in problems[0], problems
        assert _files(directory) == {"app.log": 300}
        for number in range(30, 40):  # the next try is due at 300 bytes
            log.put(f"{number:09d}".encode())
    finally:
        log.close()
    assert problems[1:] == [f"rotating log {str(directory / 'app.log')!r} again"]
    assert _files(directory) == {"app.log": 100, "app.log.1": 300}
    assert (directory / "app.log").read_text() == "".join(
        f"{number:09d}\n" for number in range(30, 40)
    )


def test_a_fifo_in_the_files_place_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "app.log")
    with pytest.raises(OSError, match=r"not a regular file|No such device"):  # ENXIO: no reader
        LogFile(tmp_path / "app.log")


# -- the command: log keys ------------------------------------------------------------------


def test_separate_stdout_and_stderr_logs_and_the_console(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    config = write(tmp_path, """
[program.both]
command = ["sh", "-c", "echo out-both; echo err-both >&2"]
restart = "never"
log = "logs/both.log"

[program.split]
command = ["sh", "-c", "echo out-split; echo err-split >&2"]
restart = "never"
log = "logs/split.out"
stderr_log = "logs/split.err"
log_timestamps = true

[program.errfile]
command = ["sh", "-c", "echo out-console; echo err-file >&2"]
restart = "never"
stderr_log = "logs/errfile.err"
""")
    code, out, err = run_to_end(tmp_path, str(config))
    assert code == 0, err
    logs = tmp_path / "logs"
    assert sorted((logs / "both.log").read_text().splitlines()) == ["err-both", "out-both"]
    assert re.fullmatch(STAMP + "out-split\n", (logs / "split.out").read_text())
    assert re.fullmatch(STAMP + "err-split\n", (logs / "split.err").read_text())
    assert (logs / "errfile.err").read_text() == "err-file\n"
    assert out == "errfile | out-console\n"  # nothing of the logged streams on stdout


def test_a_full_disk_is_reported_once_and_writing_resumes(
    tmp_path: Path, started: list[Supervise]
) -> None:
    """A 1 MiB tmpfs with 16 KiB left: the program prints 200 KB into its log. One report;
    the supervisor goes on (another program's line reaches the console while the disk is
    still full); once the filler file is gone, lines get through again after a note of
    how many were lost. (The filler is far larger than the 64 KiB pipe the supervisor may
    still be copying when it goes: the disk cannot fill up a second time.)"""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    go, go_on = tmp_path / "go", tmp_path / "go-on"
    chatty = (
        "import os, sys, time\n"
        "for i in range(2000): print(f'{i:05d} ' + 'x' * 94)\n"
        "sys.stdout.flush()\n"
        # Until the supervisor has read the whole pipe (FIONREAD: bytes unread in it).
        "import fcntl, struct, termios\n"
        "while struct.unpack('i', fcntl.ioctl(1, termios.FIONREAD, bytes(4)))[0]:\n"
        "    time.sleep(0.01)\n"
        f"while not os.path.exists({str(go_on)!r}): time.sleep(0.01)\n"
        f"os.remove({str(mnt / 'filler')!r})\n"
        "print('after-space', flush=True)\n"
        "time.sleep(60)\n"
    )
    witness = (
        "import os, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "print('still-here', flush=True)\n"
        "time.sleep(60)\n"
    )
    config = write(tmp_path, f"""
[program.chatty]
command = [{PY!r}, "-c", {chatty!r}]
log = "mnt/chatty.log"
log_max_bytes = 0

[program.witness]
command = [{PY!r}, "-c", {witness!r}]
""")
    script = (
        'mount -t tmpfs -o size=1m fdloop-test "$1" && '
        'head -c 1032192 /dev/zero > "$1/filler" && shift && exec "$@"'
    )
    sup = _InNamespace(
        tmp_path, ["unshare", "-m", "sh", "-c", script, "sh", str(mnt),
                   *supervise_command(str(config))],
    )
    started.append(sup)
    sup.wait_for(r"cannot write to log '.*chatty\.log' \(No space left on device\)")
    go.touch()
    sup.wait_for(r"^witness \| still-here", stream="stdout")  # the disk is still full
    go_on.touch()
    sup.wait_for(r"writing to log '.*chatty\.log' again \(\d+ lines dropped\)")
    inside = Path(f"/proc/{sup.proc.pid}/root") / str(mnt).lstrip("/") / "chatty.log"
    text = inside.read_text()
    assert not (mnt / "chatty.log").exists()  # the tmpfs is the namespace's alone
    sup.signal(signal.SIGTERM)
    assert sup.finish() == 0, sup.stderr
    assert len(re.findall("cannot write to log", sup.stderr)) == 1, sup.stderr
    assert text.startswith("00000 " + "x" * 94 + "\n")
    # Lines the supervisor still had in hand when space came back may follow the note.
    dropped = re.search(r"fdloop supervise: (\d+) lines dropped \(No space left on device\)"
                        r"\n(?:\d{5} x{94}\n)*after-space\n\Z", text)
    assert dropped is not None, text[-300:]
    assert text.count("lines dropped") == 1
    kept = text.count("x" * 94 + "\n")
    assert 0 < kept < 2000 and kept + int(dropped.group(1)) == 2000


class _InNamespace(Supervise):
    """Supervise started by an arbitrary command line (here: unshare, then exec)."""

    def __init__(self, tmp_path: Path, argv: list[str]) -> None:
        self.out_path = tmp_path / "stdout.txt"
        self.err_path = tmp_path / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("log = 5", "program.web.log must be a path (a str), not int"),
        ("log = ''", "program.web.log must name a file"),
        ("log = 'dir/'", "program.web.log must name a file"),
        ("log = 'absent/web.log'", "program.web.log: directory"),
        ("log = '.'", "is a directory, not a file"),
        ("log = 'fifo'", "exists and is not a regular file"),
        ("stderr_log = ['a']", "program.web.stderr_log must be a path (a str), not list"),
        ("log = 'w.log'\nlog_max_bytes = '1M'", "program.web.log_max_bytes must be an int"),
        ("log = 'w.log'\nlog_max_bytes = -1", "program.web.log_max_bytes must be >= 0"),
        ("log = 'w.log'\nlog_max_bytes = true", "program.web.log_max_bytes must be an int"),
        ("log = 'w.log'\nlog_backups = 1.5", "program.web.log_backups must be an int"),
        ("log = 'w.log'\nlog_backups = -1", "program.web.log_backups must be >= 0"),
        ("log = 'w.log'\nlog_backups = 101", "program.web.log_backups must be <= 100"),
        ("log = 'w.log'\nlog_timestamps = 'yes'", "program.web.log_timestamps must be true"),
        ("log_max_bytes = 10", "need log or stderr_log"),
        ("log_timestamps = true", "need log or stderr_log"),
        ("numprocs = 0", "program.web.numprocs must be >= 1"),
        ("numprocs = '2'", "program.web.numprocs must be an int"),
        ("numprocs = true", "program.web.numprocs must be an int"),
        ("numprocs = 1001", "program.web.numprocs must be <= 1000"),
    ],
)
def test_bad_log_and_numprocs_keys_are_refused(tmp_path: Path, key: str, message: str) -> None:
    from fdloop.supervisor.config import tomllib  # (tomli before Python 3.11)

    os.mkfifo(tmp_path / "fifo")
    data = tomllib.loads(f"[program.web]\ncommand = 'true'\n{key}\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_config(data, base_dir=tmp_path)


def test_a_bad_log_key_starts_nothing(tmp_path: Path) -> None:
    config = write(tmp_path, "[program.web]\ncommand = ['touch', 'STARTED']\n"
                             "log = 'absent/web.log'\n")
    code, out, err = run_to_end(tmp_path, str(config))
    assert code == 2 and "program.web.log: directory" in err and out == ""
    assert "Traceback" not in err
    assert not (tmp_path / "STARTED").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_bytes": "1M"}, TypeError, "max_bytes must be an int"),
        ({"max_bytes": -1}, ValueError, "max_bytes must be >= 0"),
        ({"backups": 2.0}, TypeError, "backups must be an int"),
        ({"backups": -1}, ValueError, "backups must be >= 0"),
        ({"timestamps": 1}, TypeError, "timestamps must be a bool"),
    ],
)
def test_bad_logfile_arguments_create_nothing(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LogFile(tmp_path / "app.log", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "app.log").exists()
    with pytest.raises(FileNotFoundError):
        LogFile(tmp_path / "absent" / "app.log")
