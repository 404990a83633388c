"""spawn()'s subprocess-style options, each seen from inside a real child.

``/proc/self/status`` shows the child's uid, gid, supplementary groups, umask and ignored
signals; the child prints its own process group. Run on both spawn paths (clone and
posix_spawn) and both backends; the credential options need the clone path and say so
elsewhere.
"""

from __future__ import annotations

import fcntl
import inspect
import os
import pathlib
import signal
import sys

import anyio
import pytest

import fdloop
from fdloop import PIPE, spawn

CLONE_ONLY = ("user", "group", "extra_groups", "umask")


async def _output(*args: object, **kwargs: object) -> bytes:
    async with spawn(*args, stdout=PIPE, **kwargs) as proc:  # type: ignore[arg-type]
        assert proc.stdout is not None
        with anyio.fail_after(30):
            output = b"".join([chunk async for chunk in proc.stdout])
            status = await proc.wait()
    assert status.returncode == 0, output
    return output


def _status_field(status_text: bytes, name: str) -> str:
    for line in status_text.decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/self/status")


async def test_shell_runs_a_command_string(spawn_path: str) -> None:
    assert await _output("echo $((6 * 7)) \"$0\"", shell=True) == b"42 /bin/sh\n"


@pytest.mark.parametrize("on", [1, "yes"])
async def test_shell_takes_any_true_value_as_popen_does(on: object) -> None:
    # (CPython's own test_subprocess passes shell=1)
    assert await _output("echo $((6 * 7))", shell=on) == b"42\n"


async def test_start_new_session_takes_any_true_value_as_popen_does() -> None:
    code = "import os; print(os.getsid(0) == os.getpid())"
    assert await _output([sys.executable, "-c", code], start_new_session=1) == b"True\n"
    assert await _output([sys.executable, "-c", code], start_new_session=0) == b"False\n"


async def test_shell_sequence_gives_the_shell_its_arguments(spawn_path: str) -> None:
    assert await _output(['echo "$0-$1"', "zero", "one"], shell=True) == b"zero-one\n"


async def test_shell_with_executable_uses_that_shell(spawn_path: str) -> None:
    assert await _output("echo $0", shell=True, executable="/bin/bash") == b"/bin/bash\n"


async def test_executable_runs_in_place_of_argv0(spawn_path: str) -> None:
    assert await _output(["custom-name", "-c", "echo $0"], executable="/bin/sh") == (
        b"custom-name\n"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid/gid/groups needs root")
async def test_user_group_and_extra_groups(spawn_path: str) -> None:
    kwargs = {"user": "nobody", "group": 65534, "extra_groups": [65534, 100]}
    if spawn_path != "clone":
        with pytest.raises(fdloop.UnsupportedOperation, match="user, group, extra_groups"):
            spawn(["cat", "/proc/self/status"], **kwargs)  # type: ignore[arg-type]
        return
    status = await _output(["cat", "/proc/self/status"], **kwargs)
    assert _status_field(status, "Uid").split() == ["65534"] * 4
    assert _status_field(status, "Gid").split() == ["65534"] * 4
    assert sorted(_status_field(status, "Groups").split()) == ["100", "65534"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing groups needs root")
async def test_empty_extra_groups_drops_every_supplementary_group(spawn_path: str) -> None:
    if spawn_path != "clone":
        pytest.skip("extra_groups needs the clone path (tested above)")
    status = await _output(["cat", "/proc/self/status"], extra_groups=[])
    assert _status_field(status, "Groups") == ""


async def test_umask(spawn_path: str) -> None:
    if spawn_path != "clone":
        with pytest.raises(fdloop.UnsupportedOperation, match="umask"):
            spawn(["true"], umask=0o027)
        return
    status = await _output(["cat", "/proc/self/status"], umask=0o027)
    assert _status_field(status, "Umask") == "0027"


@pytest.mark.parametrize("negative", [-1, -5])
async def test_a_negative_umask_leaves_the_umask_alone(spawn_path: str, negative: int) -> None:
    # Popen's docs: only a umask that "is not negative" is set in the child (so this
    # needs no clone path either).
    ours = os.umask(0o022)
    os.umask(ours)
    status = await _output(["cat", "/proc/self/status"], umask=negative)
    assert _status_field(status, "Umask") == f"{ours:04o}"


async def test_process_group_zero_makes_the_child_a_group_leader(spawn_path: str) -> None:
    code = "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getsid(os.getppid()))"
    assert await _output([sys.executable, "-c", code], process_group=0) == b"True True\n"


async def test_process_group_zero_is_signalled_as_a_group(spawn_path: str) -> None:
    # The leader's own group, so terminate() reaches a grandchild too (as with a session).
    script = "sleep 60 & echo $!; wait"
    async with spawn(["sh", "-c", script], process_group=0, stdout=PIPE) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            grandchild = int(await proc.stdout.readline())
        with fdloop.ProcessFD.open(grandchild) as sleeper:
            proc.terminate()
            with anyio.fail_after(30):
                status = await proc.wait()
                assert status.returncode == -signal.SIGTERM
                # It exits (reaped by init, or known only as "exited" until then).
                gone = await sleeper.wait()
            assert not gone.known or gone.returncode == -signal.SIGTERM


@pytest.mark.parametrize("off", [False, 0, None])
async def test_close_fds_false_passes_inheritable_fds(spawn_path: str, off: object) -> None:
    # (any false value, as Popen's `if close_fds`)
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        code = f"import os; os.write({write_end}, b'inherited')"
        await _output([sys.executable, "-c", code], close_fds=off)
        assert os.read(read_end, 100) == b"inherited"
        async with spawn([sys.executable, "-c", code], stderr=fdloop.DEVNULL) as proc:
            with anyio.fail_after(30):
                status = await proc.wait()
        assert status.returncode == 1  # by default it is not inherited: EBADF
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("restore", [True, False])
async def test_restore_signals(restore: bool, spawn_path: str) -> None:
    status = await _output(["cat", "/proc/self/status"], restore_signals=restore)
    ignored = int(_status_field(status, "SigIgn"), 16)
    sigpipe_ignored = bool(ignored & (1 << (signal.SIGPIPE - 1)))
    assert sigpipe_ignored is (not restore)


async def test_pipesize(spawn_path: str) -> None:
    async with spawn(["sleep", "30"], stdout=PIPE, pipesize=1 << 20) as proc:
        assert proc.stdout is not None
        assert fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ) == 1 << 20


def test_preexec_fn_is_refused_with_the_reason_and_the_alternatives() -> None:
    with pytest.raises(TypeError, match="preexec_fn") as caught:
        spawn(["true"], preexec_fn=os.setsid)
    for alternative in ("start_new_session", "process_group", "user", "umask"):
        assert alternative in str(caught.value)


@pytest.mark.parametrize(("kwargs", "error", "named"), [
    ({"user": "fdloop-no-such-user"}, KeyError, "user"),  # (Popen: pwd's KeyError)
    ({"user": -2}, ValueError, "user"),
    ({"user": -1}, ValueError, "user"),  # (Popen: ValueError below 0, OverflowError above)
    ({"user": 2**64}, OverflowError, "user"),
    ({"user": 2**32 - 1}, OverflowError, "user"),  # ((uid_t)-1: "no change" to the kernel)
    ({"group": -1}, ValueError, "group"),
    ({"group": 2**64}, OverflowError, "group"),
    ({"extra_groups": [-1]}, ValueError, "extra_groups"),
    ({"extra_groups": [2**64]}, ValueError, "extra_groups"),
    ({"group": "fdloop-no-such-group"}, KeyError, "group"),
    ({"extra_groups": ["fdloop-no-such-group"]}, KeyError, "extra_groups"),
    ({"extra_groups": "wheel"}, TypeError, "extra_groups"),
    ({"extra_groups": [1.5]}, TypeError, "extra_groups"),
    ({"umask": 0o1000}, ValueError, "umask"),
    ({"umask": "022"}, TypeError, "umask"),
    ({"process_group": -1}, ValueError, "process_group"),
    ({"pipesize": 0}, ValueError, "pipesize"),
    ({"executable": ""}, ValueError, "executable"),
    ({"daemon": 1}, TypeError, "daemon"),  # (fdloop's own flags take a bool only)
    ({"die_with_parent": "yes"}, TypeError, "die_with_parent"),
])
def test_bad_option_values_are_named(kwargs: dict[str, object], error: type, named: str) -> None:
    with pytest.raises(error, match=named):
        spawn(["true"], **kwargs)  # type: ignore[arg-type]


def test_an_unknown_user_or_group_is_a_key_error_and_a_value_error() -> None:
    # subprocess.Popen's lookup raises KeyError (pwd, grp); ours is that and a ValueError.
    for kwargs in ({"user": "fdloop-no-such-user"}, {"group": "fdloop-no-such-group"},
                   {"extra_groups": ["fdloop-no-such-group"]}):
        with pytest.raises(fdloop.UnknownUserOrGroup) as caught:
            spawn(["true"], **kwargs)
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
        assert str(caught.value).startswith(next(iter(kwargs)))  # named, without quotes


def test_shell_needs_a_command() -> None:
    with pytest.raises(TypeError, match="shell=True"):
        spawn(42, shell=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path-like argv is not allowed with shell=True"):
        spawn(pathlib.Path("/bin/true"), shell=True)  # (Popen refuses a path too)


async def test_limit_bounds_the_line_search_of_piped_output() -> None:
    code = "print('x' * 300); print('short')"
    async with spawn([sys.executable, "-c", code], stdout=PIPE, stderr=PIPE,
                     limit=100) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.limit == proc.stderr.limit == 100
        with anyio.fail_after(30):
            with pytest.raises(fdloop.LimitOverrunError):
                await proc.stdout.readuntil(b"\n")
            await proc.wait()


def test_bad_limit_is_named() -> None:
    with pytest.raises(ValueError, match="limit"):
        spawn(["true"], stdout=PIPE, limit=0)


def test_spawn_shows_its_full_signature_and_names_itself_in_errors() -> None:
    # spawn(argv) alone takes a shorter path than a call with options (spawn.py): both
    # must look like the one documented function.
    params = inspect.signature(spawn).parameters
    assert list(params)[:2] == ["argv", "stdin"] and "cgroup" in params
    assert params["stdin"].kind is inspect.Parameter.KEYWORD_ONLY
    assert spawn.__name__ == "spawn" and "Start ``argv``" in (spawn.__doc__ or "")
    with pytest.raises(TypeError, match=r"spawn\(\) got an unexpected keyword argument 'bog'"):
        spawn(["true"], bog=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"spawn\(\) missing 1 required positional argument"):
        spawn()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"spawn\(\) takes 1 positional argument but 2"):
        spawn(["true"], None)  # type: ignore[misc]


# The child's own SIGPIPE disposition, as its exit code: 0 at SIG_DFL, 1 ignored (the
# SigIgn mask of /proc/self/status, bit 12; sed inherits the shell's dispositions).
_SIGPIPE_IGNORED = 'exit $(( (0x$(sed -n "s/^SigIgn:\\t//p" /proc/self/status) >> 12) & 1 ))'


@pytest.mark.parametrize("argv", [["sh", "-c", _SIGPIPE_IGNORED], ("sh", "-c", _SIGPIPE_IGNORED),
                                  [b"sh", b"-c", _SIGPIPE_IGNORED.encode()]])
async def test_argv_alone_starts_the_child_as_the_defaults_say(
    spawn_path: str, argv: list[object]
) -> None:
    # Python ignores SIGPIPE; a child started with no option at all gets it back at
    # SIG_DFL (restore_signals=True), on the short path (list/tuple of str) and the
    # full one (bytes) alike, and the handle kills on close and names what was given.
    assert signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN
    with spawn(argv) as proc:  # type: ignore[arg-type]
        assert proc.args is argv and not proc.daemon
        with anyio.fail_after(30):
            assert (await proc.wait()).returncode == 0
    with spawn(argv, restore_signals=False) as proc:  # type: ignore[arg-type]
        with anyio.fail_after(30):
            assert (await proc.wait()).returncode == 1
