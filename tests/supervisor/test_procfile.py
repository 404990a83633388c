"""Procfiles and .env files (honcho's and foreman's formats), concurrency, PORT, numprocs.

The children print what they were given (``$PORT``, a .env variable, their instance
name), so every value is checked from a real process: through the library on asyncio,
uvloop and trio, and through ``fdloop supervise Procfile`` as a user runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fdloop
from fdloop.errors import SupervisorConfigError
from fdloop.supervisor.cli import supervise_main
from fdloop.supervisor.config import parse_config
from fdloop.supervisor.dotenv import parse_dotenv
from fdloop.supervisor.procfile import load_procfile, parse_concurrency, parse_procfile

from .supervise_harness import run_to_end, write

SAY = 'echo "$FDLOOP_PROCESS_NAME port=$PORT greeting=$GREETING"'
PROCFILE = f"""# an app
web: {SAY}

release: echo should-not-run
worker:    {SAY} worker\r
"""


def _app(tmp_path: Path, dotenv: str | None = "GREETING=hello\n") -> Path:
    procfile = tmp_path / "Procfile"
    procfile.write_text(PROCFILE)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return procfile


# -- the library ------------------------------------------------------------------------------


def test_procfile_lines_as_honcho_and_foreman_read_them() -> None:
    text = "# comment\n\nweb: bundle exec rails s -p $PORT\r\nworker_2:python -m w\n  \n"
    assert parse_procfile(text) == {
        "web": "bundle exec rails s -p $PORT", "worker_2": "python -m w",
    }
    assert parse_procfile("a-b: run") == {"a-b": "run"}


def test_dotenv_syntax() -> None:
    text = (
        "# comment\n"
        "\n"
        "PLAIN=some value   # trailing comment\n"
        "export EXPORTED = yes\n"
        "SINGLE='lit $HOME \\n' # c\n"
        'DOUBLE="a\\tb\\nc \\"q\\" \\\\ \\x"\n'
        "EMPTY=\n"
        "HASH=a#b\n"
        "PLAIN=later wins\n"
    )
    assert parse_dotenv(text) == {
        "PLAIN": "later wins",
        "EXPORTED": "yes",
        "SINGLE": "lit $HOME \\n",
        "DOUBLE": 'a\tb\nc "q" \\ \\x',
        "EMPTY": "",
        "HASH": "a#b",
    }


def test_concurrency_and_ports_as_foreman_assigns_them(tmp_path: Path) -> None:
    config = load_procfile(
        _app(tmp_path), concurrency=parse_concurrency("web=3, worker=2,release=0")
    )
    got = {spec.name: (spec.env or {})["PORT"] for spec in config.programs}
    # release takes its +100 slot though it runs no instance
    assert got == {"web.1": "5000", "web.2": "5001", "web.3": "5002",
                   "worker.1": "5200", "worker.2": "5201"}
    spec = config.programs[0]
    assert spec.argv == ("/bin/sh", "-c", SAY) and spec.cwd == str(tmp_path)
    assert spec.env == {"GREETING": "hello", "PORT": "5000", "FDLOOP_PROCESS_NAME": "web.1"}
    every = load_procfile(_app(tmp_path), concurrency={"all": 2, "release": 0}, port=7000)
    assert [spec.name for spec in every.programs] == ["web.1", "web.2", "worker.1", "worker.2"]
    assert (every.programs[2].env or {})["PORT"] == "7200"


def test_the_base_port_comes_from_p_then_dotenv_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def first_port(**kwargs: object) -> str:
        config = load_procfile(tmp_path / "Procfile", **kwargs)  # type: ignore[arg-type]
        return (config.programs[0].env or {})["PORT"]

    _app(tmp_path, "PORT=8000\n")
    monkeypatch.setenv("PORT", "9000")
    assert first_port(port=6000) == "6000"
    assert first_port() == "8000"
    (tmp_path / ".env").unlink()
    assert first_port() == "9000"
    monkeypatch.delenv("PORT")
    assert first_port() == "5000"


async def test_a_procfile_run_by_the_supervisor_library(tmp_path: Path) -> None:
    """The specs load_procfile makes, run by fdloop.Supervisor; the children report back."""
    config = load_procfile(_app(tmp_path), concurrency={"web": 2, "release": 0})
    report = tmp_path / "report"
    with open(report, "wb") as sink:
        async with fdloop.Supervisor() as sup:
            for spec in config.programs:
                sup.add(spec.name, spec.argv, env=spec.env, cwd=spec.cwd, restart="never",
                        stdout=sink.fileno())
            await sup.start()
            await sup.wait()
            assert sup.all_clean()
    assert sorted(report.read_text().splitlines()) == [
        "web.1 port=5000 greeting=hello",
        "web.2 port=5001 greeting=hello",
        "worker.1 port=5200 greeting=hello worker",
    ]


# -- the command ------------------------------------------------------------------------------


def test_supervise_procfile_with_dotenv_and_concurrency(tmp_path: Path) -> None:
    procfile = _app(tmp_path)
    code, out, err = run_to_end(
        tmp_path, "--restart", "never", "-c", "web=3,worker=2,release=0", str(procfile)
    )
    assert code == 0, err
    assert sorted(out.splitlines()) == [
        "web.1    | web.1 port=5000 greeting=hello",
        "web.2    | web.2 port=5001 greeting=hello",
        "web.3    | web.3 port=5002 greeting=hello",
        "worker.1 | worker.1 port=5200 greeting=hello worker",
        "worker.2 | worker.2 port=5201 greeting=hello worker",
    ]
    assert "should-not-run" not in out


def test_e_replaces_the_default_dotenv_and_p_sets_the_base(tmp_path: Path) -> None:
    procfile = _app(tmp_path, "GREETING=from-default\n")
    (tmp_path / "one.env").write_text("GREETING=one\nPORT=1000\n")
    (tmp_path / "two.env").write_text("export GREETING='two'\n")
    (tmp_path / "three.env").write_text("GREETING='three words'\n")
    code, out, err = run_to_end(
        tmp_path, "--restart", "never", "-c", "release=0", "-e", "one.env,two.env",
        "-e", "three.env", "-p", "6000", str(procfile),
    )
    assert code == 0, err
    assert sorted(out.splitlines()) == [
        "web.1    | web.1 port=6000 greeting=three words",
        "worker.1 | worker.1 port=6200 greeting=three words worker",
    ]
    # Without -p, the base is PORT from the -e files.
    config = load_procfile(procfile, env_files=[tmp_path / "one.env"])
    assert (config.programs[0].env or {})["PORT"] == "1000"


def test_numprocs_in_toml_and_a_shared_log(tmp_path: Path) -> None:
    config = write(tmp_path, """
[program.web]
command = ["sh", "-c", "echo \\"I am $FDLOOP_PROCESS_NAME\\""]
restart = "never"
numprocs = 3

[program.job]
command = ["sh", "-c", "echo \\"job $FDLOOP_PROCESS_NAME\\""]
restart = "never"
numprocs = 2
log = "jobs.log"

[program.one]
command = ["sh", "-c", "echo \\"one [$FDLOOP_PROCESS_NAME]\\""]
restart = "never"
""")
    code, out, err = run_to_end(tmp_path, str(config))
    assert code == 0, err
    assert sorted(out.splitlines()) == [
        "one   | one []", "web.1 | I am web.1", "web.2 | I am web.2", "web.3 | I am web.3",
    ]
    assert sorted((tmp_path / "jobs.log").read_text().splitlines()) == [
        "job.1 | job job.1", "job.2 | job job.2",
    ]


def test_depending_on_a_numprocs_program_means_every_instance() -> None:
    config = parse_config({"program": {
        "web": {"command": "true", "numprocs": 2},
        "lb": {"command": "true", "depends_on": ["web"]},
        "probe": {"command": "true", "depends_on": ["web.2", "lb"]},
    }})
    assert [(spec.name, spec.depends_on) for spec in config.programs] == [
        ("web.1", ()), ("web.2", ()), ("lb", ("web.1", "web.2")), ("probe", ("web.2", "lb")),
    ]
    with pytest.raises(SupervisorConfigError, match=r"web\.3"):
        parse_config({"program": {
            "web": {"command": "true", "numprocs": 2},
            "lb": {"command": "true", "depends_on": ["web.3"]},
        }})


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web run", "Procfile:1: expected 'NAME: COMMAND'"),
        ("# ok\nweb:\n", "Procfile:2: expected 'NAME: COMMAND'"),
        ("we b: run", "Procfile:1: expected"),
        ("web: a\nweb: b", "Procfile:2: process type 'web' given twice"),
        ("web: a\0b", "Procfile:1: NUL character"),
    ],
)
def test_bad_procfile_lines(text: str, message: str) -> None:
    with pytest.raises(SupervisorConfigError, match=re.escape(message)):
        parse_procfile(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NOEQUALS", ".env:1: expected KEY=VALUE"),
        ("\n1KEY=x", ".env:2: expected KEY=VALUE"),
        ("KEY-X=1", ".env:1: expected KEY=VALUE"),
        ("KEY='open", ".env:1: unterminated single quote"),
        ('KEY="open', ".env:1: unterminated double quote"),
        ("KEY='a' b", ".env:1: unexpected 'b' after the quoted value"),
        ("export KEY", ".env:1: expected KEY=VALUE"),
    ],
)
def test_bad_dotenv_lines(text: str, message: str) -> None:
    with pytest.raises(SupervisorConfigError, match=re.escape(message)):
        parse_dotenv(text)


@pytest.mark.parametrize(
    "text", ["web", "web=x", "web=-1", "=3", "web=1,,worker=2", "web=1.5", ""]
)
def test_bad_concurrency_syntax(text: str) -> None:
    with pytest.raises(SupervisorConfigError, match="-c/--concurrency: expected TYPE=N"):
        parse_concurrency(text)
    with pytest.raises(SupervisorConfigError, match="given twice"):
        parse_concurrency("web=1,web=2")


def test_bad_procfile_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    procfile = _app(tmp_path)
    cases: list[tuple[dict[str, object], str]] = [
        ({"concurrency": {"db": 1}}, "-c/--concurrency: no process type 'db'"),
        ({"concurrency": {"all": 0}}, "every process type has 0 instances"),
        ({"env_files": [tmp_path / "absent.env"]}, "absent.env: cannot read"),
        ({"port": 0}, "-p/--port must be a port number 1-65535, got '0'"),
        ({"port": 65400}, "gives ports up to 65600, past 65535"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SupervisorConfigError, match=re.escape(message)):
            load_procfile(procfile, **kwargs)  # type: ignore[arg-type]
    (tmp_path / ".env").write_text("PORT=http\n")
    with pytest.raises(SupervisorConfigError, match=r"PORT in the \.env file must be a port"):
        load_procfile(procfile)
    (tmp_path / ".env").write_text("GREETING='unclosed\n")
    with pytest.raises(SupervisorConfigError, match=r"\.env:1: unterminated single quote"):
        load_procfile(procfile)
    (tmp_path / ".env").unlink()
    monkeypatch.setenv("PORT", "-5")
    with pytest.raises(SupervisorConfigError, match="PORT in the environment must be"):
        load_procfile(procfile)
    empty = tmp_path / "Empty"
    empty.write_text("# nothing\n")
    with pytest.raises(SupervisorConfigError, match="no process types"):
        load_procfile(empty)
    with pytest.raises(SupervisorConfigError, match="cannot read"):
        load_procfile(tmp_path)  # a directory
    binary = tmp_path / "Binary"
    binary.write_bytes(b"web: \xff\n")
    with pytest.raises(SupervisorConfigError, match="not UTF-8"):
        load_procfile(binary)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Absent"], "Absent: cannot read"),
        (["-c", "web", "Procfile"], "-c/--concurrency: expected TYPE=N"),
        (["-c", "db=2", "Procfile"], "no process type 'db'"),
        (["-e", "bad.env", "Procfile"], "bad.env:2: expected KEY=VALUE"),
        (["-e", "", "Procfile"], "-e/--env: an empty file name"),
        (["-p", "x", "Procfile"], "-p/--port: invalid int value"),
        (["-c", "web=2", "app.toml"], "apply only to a Procfile"),
    ],
)
def test_bad_procfile_command_lines_start_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    args: list[str], message: str,
) -> None:
    """In this process (each is refused before anything runs): a subprocess per case
    would cost a second of CI each; test_an_unreadable_procfile runs the real command."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Procfile").write_text("web: touch STARTED\n")
    (tmp_path / "bad.env").write_text("OK=1\nnot an assignment\n")
    (tmp_path / "app.toml").write_text("[program.web]\ncommand = ['touch', 'STARTED']\n")
    assert supervise_main(args) == 2
    out, err = capfd.readouterr()
    assert message in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "STARTED").exists()


def test_an_unreadable_procfile(tmp_path: Path) -> None:
    """A Procfile we may not read (as root, permissions do not stop us: a directory
    named Procfile does), and a bad -c, through the real command."""
    (tmp_path / "Procfile").mkdir()
    code, out, err = run_to_end(tmp_path, "Procfile")
    assert code == 2 and "Procfile: cannot read: Is a directory" in err and out == ""
    (tmp_path / "Procfile").rmdir()
    (tmp_path / "Procfile").write_text("web: touch STARTED\n")
    code, out, err = run_to_end(tmp_path, "-c", "web=two", "Procfile")
    assert code == 2 and "-c/--concurrency: expected TYPE=N" in err and out == ""
    assert not (tmp_path / "STARTED").exists()
