"""Shared test harness.

* Every ``async def`` test runs on asyncio, uvloop and trio through anyio's own pytest
  plugin (``anyio_mode = "auto"`` in pyproject.toml; ``anyio_backend`` is parametrized
  here).
* Around every test, an autouse fixture fails the test if it left an fd open in
  ``/proc/self/fd`` or a child process (running or zombie) behind.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .leaks import children_of, open_fds
from .supervisor.supervise_harness import Supervise

ANYIO_BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


def _fdloop_backends() -> list[str]:
    chosen = os.environ.get("FDLOOP_BACKEND", "").strip().lower()
    return [chosen] if chosen else ["linux", "kqueue"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test under tests/primitives/ runs on each backend (FDLOOP_BACKEND picks one),
    except in a module marked ``single_backend``."""
    if (
        "fdloop_backend" in metafunc.fixturenames
        and "primitives" in metafunc.definition.path.parts
        and metafunc.definition.get_closest_marker("single_backend") is None
    ):
        metafunc.parametrize("fdloop_backend", _fdloop_backends(), indirect=True)


@pytest.fixture(autouse=True)
def fdloop_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Select the backend for this test; for kqueue on Linux, install the kqueue emulator
    (imitating macOS, or FDLOOP_KQUEUE_EMULATE=freebsd), which steps aside where
    ``select.kqueue`` is real."""
    name: str = getattr(request, "param", None) or os.environ.get(
        "FDLOOP_BACKEND", ""
    ).strip().lower() or "linux"
    if getattr(request, "param", None):
        monkeypatch.setenv("FDLOOP_BACKEND", name)
    if name == "kqueue":
        _emulate_kqueue(monkeypatch.setattr, monkeypatch.setenv)
    return name


def _emulate_kqueue(setattr_: Any, setenv: Callable[[str, str], None]) -> None:
    """Put the kqueue emulator into ``select`` (only where the real one is missing), for
    this process and for every child Python (tests/kqueue_emulator/child_site/)."""
    from . import kqueue_emulator

    platform = os.environ.get("FDLOOP_KQUEUE_EMULATE", "darwin")
    if kqueue_emulator.install(setattr_, platform):
        site = os.path.join(os.path.dirname(kqueue_emulator.__file__), "child_site")
        path = os.environ.get("PYTHONPATH", "")
        if site not in path.split(os.pathsep):
            setenv("PYTHONPATH", site + (os.pathsep + path if path else ""))
        setenv("FDLOOP_KQUEUE_EMULATE_CHILDREN", platform)


def pytest_configure(config: pytest.Config) -> None:
    """Register the harness's own marker. With FDLOOP_BACKEND=kqueue for the whole run,
    put the emulator in place before any fixture of any scope (a module-scoped one may
    start child Pythons, as the benchmark smoke tests do), not only inside each test.

    A suite started as a background job of a shell without job control inherits SIGINT
    and SIGQUIT ignored (POSIX: asynchronous lists), and so would every child the tests
    start: the tests that end a child with either would see it live on (19 failures,
    none of them fdloop's). Both get their defaults back here: what is tested is
    fdloop, not how the suite was launched."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    config.addinivalue_line(
        "markers",
        "single_backend: a module under tests/primitives/ that runs on the FDLOOP_BACKEND in"
        " force only (default linux) instead of on each backend",
    )
    if os.environ.get("FDLOOP_BACKEND", "").strip().lower() == "kqueue":
        def setattr_(target: object, name: str, value: object, raising: bool = True) -> None:
            setattr(target, name, value)

        _emulate_kqueue(setattr_, os.environ.__setitem__)


@pytest.fixture(params=["clone", "posix_spawn"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a Linux spawn test on both ways of starting a child: the compiled
    clone(CLONE_PIDFD) path and the pure-Python fallback (posix_spawn + pidfd_open,
    reaped through ctypes, the ready set collecting in Python), as
    ``fdloop.backends.linux.python_only()`` sets it, undone after the test."""
    from fdloop.backends.linux import pidfd as linux_pidfd
    from fdloop.backends.linux import readyset as linux_readyset
    from fdloop.backends.linux import spawn as linux_spawn

    if request.param == "posix_spawn":
        monkeypatch.setattr(linux_spawn, "_clone_spawn", None)
        monkeypatch.setattr(linux_pidfd, "_native_reap", None)
        monkeypatch.setattr(linux_pidfd, "_waitid", linux_pidfd._python_waitid)
        monkeypatch.setattr(linux_readyset, "_arm", None)
        monkeypatch.setattr(linux_readyset, "_collect", None)
    elif linux_spawn._clone_spawn is None:
        pytest.skip("the _clone_spawn extension is not built (no C compiler at install)")
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sigchld_ignored() -> Iterator[None]:
    """SIGCHLD set to SIG_IGN: the kernel reaps every child by itself at exit."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


LEAK_GRACE_SECONDS = 2.0


def pytest_sessionstart(session: pytest.Session) -> None:
    """Create what loop libraries keep for the whole process before any fd is counted.

    libuv opens a process-wide signal pipe with its first loop and never closes it; it
    would otherwise be blamed on whichever test happens to start uvloop first.
    """
    try:
        import uvloop
    except ImportError:
        return
    uvloop.new_event_loop().close()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything alive once collection is done (every imported module, every test
    item: some 125,000 objects) to the collector's permanent generation.

    The leak check after each test runs a full ``gc.collect()``, which otherwise walks
    all of them every time: about 90 ms a test, a third of the suite's time. What a test
    creates is still collected; only what outlives every test is left out.

    Hypothesis is imported first if no test module has done so: importing it runs its
    plugins, and trio's hands it a Random, which Hypothesis checks with
    ``gc.get_referrers`` (blind to frozen objects) and would warn about.
    """
    with contextlib.suppress(ImportError):
        import hypothesis  # noqa: F401
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def no_leaked_fds_or_children(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves an fd or a child process (even a zombie) behind."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    fds_before = open_fds()
    # The pid is taken now: a test that monkeypatches os.getpid must not make this
    # fixture treat (and kill) some other process's children as leaks.
    me = os.getpid()
    children_before = {pid for pid, _state in children_of(me)}
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        gc.collect()
        new_fds = open_fds() - fds_before
        new_children = {c for c in children_of(me) if c[0] not in children_before}
        if not (new_fds or new_children) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    problems = []
    if new_fds:
        described = {fd: _describe_fd(fd) for fd in sorted(new_fds)}
        problems.append(f"leaked fds: {described}")
    if new_children:
        problems.append(f"leaked child processes (pid, state): {sorted(new_children)}")
        for pid, _state in new_children:
            _kill_and_reap(pid)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def _describe_fd(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass


@pytest.fixture
def started() -> Iterator[list[Supervise]]:
    """The ``fdloop supervise`` processes a test starts; any left running are killed."""
    running: list[Supervise] = []
    yield running
    for sup in running:
        if sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
