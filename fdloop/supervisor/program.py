"""What one supervised program is: its validated options, and its restart policy.

:func:`make_spec` is the single place where a program's options are checked, both for
``Supervisor.add()`` and for ``fdloop supervise CONFIG.toml``. Every check names the
option it refuses through ``where(option)`` — ``"restart"`` for ``add()``,
``"program.web.restart"`` for a config file — and runs before anything is created.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .. import _validate

RestartPolicy = Literal["on-failure", "always", "never"]
ReadyMode = Literal["none", "notify", "fd", "exit"]
READY_MODES: tuple[str, ...] = ("none", "notify", "exit", "fd:N")
RESTART_POLICIES: tuple[str, ...] = ("on-failure", "always", "never")

DEFAULT_BACKOFF = (0.5, 30.0)
"""Seconds before the first restart, and the most a doubled delay may grow to."""
DEFAULT_STOP_TIMEOUT = 10.0
HEALTHY_RUN_MINIMUM = 1.0
"""A run at least this long (and at least the backoff maximum) resets the backoff."""


@dataclass(frozen=True)
class ProgramSpec:
    """A program's fixed settings, already validated."""

    name: str
    argv: tuple[str, ...]
    restart: RestartPolicy = "on-failure"
    backoff: tuple[float, float] = DEFAULT_BACKOFF
    max_restarts: int | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    env: Mapping[str, str] | None = field(default=None, hash=False)
    cwd: str | None = None
    stdout: int | None = None
    stderr: int | None = None
    die_with_supervisor: bool = True
    """Guard the program so that it cannot outlive a killed supervisor (lifeline.py)."""
    ready: ReadyMode = "none"
    """How the program says it is ready (see readiness.py); "none": once it runs."""
    ready_fd: int | None = None
    """For ``ready = "fd:N"``: N, the fd the program writes a newline to when ready."""
    ready_timeout: float | None = None
    """Seconds a start may take to become ready; beyond, it is a failed start."""
    watchdog: float | None = None
    """Seconds between WATCHDOG=1 pings that the program promises (``ready="notify"``)."""
    depends_on: tuple[str, ...] = ()
    """Programs that must be ready before this one starts (and stop after it)."""
    pass_fds: tuple[int, ...] = field(default=(), compare=False)
    """Set per start by the supervisor (the fd:N pipe), never by users."""

    def restart_delay(self, streak: int) -> float:
        """Seconds to wait before restart number ``streak + 1`` of a failing streak."""
        initial, maximum = self.backoff
        # 2**streak overflows a float long after the delay reached its maximum.
        return min(maximum, initial * 2.0 ** min(streak, 64))

    @property
    def healthy_after(self) -> float:
        """A run lasting this long ends a failing streak (delay back to initial)."""
        return max(HEALTHY_RUN_MINIMUM, self.backoff[1])

    def child_env(self) -> dict[str, str] | None:
        """The environment for the child: ours with ``env`` laid over it, or None."""
        if self.env is None:
            return None
        return {**os.environ, **self.env}


def _plain(option: str) -> str:
    return option


def option_flag(option: str) -> str:
    """``where`` for options given on the command line: ``stop_timeout`` -> ``--stop-timeout``."""
    return "--" + option.replace("_", "-")


def make_spec(
    name: object,
    argv: object,
    *,
    restart: object = "on-failure",
    backoff: object = DEFAULT_BACKOFF,
    max_restarts: object = None,
    stop_signal: object = signal.SIGTERM,
    stop_timeout: object = DEFAULT_STOP_TIMEOUT,
    env: object = None,
    cwd: object = None,
    stdout: object = None,
    stderr: object = None,
    die_with_supervisor: object = True,
    ready: object = "none",
    ready_timeout: object = None,
    watchdog: object = None,
    depends_on: object = (),
    where: Callable[[str], str] = _plain,
) -> ProgramSpec:
    """Check every option and return the spec; TypeError/ValueError name the option."""
    mode, ready_fd = ready_mode(where("ready"), ready)
    if mode == "notify" and not sys.platform.startswith("linux"):
        from ..errors import UnsupportedOperation

        raise UnsupportedOperation(
            f"{where('ready')}: \"notify\" needs Linux (SCM_CREDENTIALS and SCM_PIDFD "
            "name the sender); use \"fd:N\" here"
        )
    watchdog_seconds = optional_seconds(where("watchdog"), watchdog)
    if watchdog_seconds is not None and mode != "notify":
        raise ValueError(
            f"{where('watchdog')}: a watchdog needs ready = \"notify\" (the pings are "
            f"WATCHDOG=1 messages on $NOTIFY_SOCKET), not ready = {ready!r}"
        )
    return ProgramSpec(
        name=program_name(where("name"), name),
        argv=command(where("argv"), argv),
        restart=restart_policy(where("restart"), restart),
        backoff=backoff_pair(where("backoff"), backoff),
        max_restarts=(
            None if max_restarts is None
            else _validate.integer(where("max_restarts"), max_restarts, low=0)
        ),
        stop_signal=signal_number(where("stop_signal"), stop_signal),
        stop_timeout=_validate.seconds(where("stop_timeout"), stop_timeout),
        env=environment(where("env"), env),
        cwd=directory(where("cwd"), cwd),
        stdout=output_fd(where("stdout"), stdout),
        stderr=output_fd(where("stderr"), stderr),
        die_with_supervisor=flag(where("die_with_supervisor"), die_with_supervisor),
        ready=mode,
        ready_fd=ready_fd,
        ready_timeout=optional_seconds(where("ready_timeout"), ready_timeout),
        watchdog=watchdog_seconds,
        depends_on=dependency_names(where("depends_on"), depends_on, name),
    )


def ready_mode(option: str, value: object) -> tuple[ReadyMode, int | None]:
    """``"none"``, ``"notify"``, ``"exit"`` or ``"fd:N"`` (N >= 3) as (mode, N or None)."""
    if not isinstance(value, str):
        raise TypeError(
            f"{option} must be a str ({', '.join(READY_MODES)}), not {type(value).__name__}"
        )
    if value in ("none", "notify", "exit"):
        return value, None  # type: ignore[return-value]
    prefix, colon, number = value.partition(":")
    if prefix == "fd" and colon:
        if not number.isdigit() or not number.isascii():
            raise ValueError(f"{option}: {value!r}: N in fd:N must be a decimal fd number")
        fd = int(number)
        if not 3 <= fd <= 1023:
            raise ValueError(
                f"{option}: {value!r}: N must be 3-1023 (fds 0-2 are the program's stdio)"
            )
        return "fd", fd
    raise ValueError(f"{option} must be one of {', '.join(READY_MODES)}, not {value!r}")


def optional_seconds(option: str, value: object) -> float | None:
    """None, or a positive number of seconds."""
    if value is None:
        return None
    return _validate.seconds(option, value, allow_zero=False)


def dependency_names(option: str, value: object, own_name: object) -> tuple[str, ...]:
    """A list of program names (checked to exist, and for cycles, by depends.py)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            f"{option} must be a list of program names, not {type(value).__name__}"
        )
    names: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"{option}[{index}] must be a str, not {type(item).__name__}")
        if not item:
            raise ValueError(f"{option}[{index}] must be a program name, not ''")
        if item == own_name:
            raise ValueError(f"{option}: {item!r} cannot depend on itself")
        if item in names:
            raise ValueError(f"{option}: {item!r} is listed twice")
        names.append(item)
    return tuple(names)


def flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{option} must be true or false, not {value!r}")
    return value


def program_name(option: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{option} must be a str, not {type(value).__name__}")
    if not value or not value.isprintable() or value != value.strip():
        raise ValueError(
            f"{option} must be a non-empty printable name without surrounding spaces, "
            f"got {value!r}"
        )
    return value


def command(option: str, value: object) -> tuple[str, ...]:
    """A list of strings, or one string split the way a POSIX shell would (shlex)."""
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{option}: cannot split {value!r} into words: {exc}") from None
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        parts = []
        for index, item in enumerate(value):
            part = os.fspath(item) if isinstance(item, os.PathLike) else item
            if not isinstance(part, str):
                raise TypeError(
                    f"{option}[{index}] must be a str, not {type(part).__name__}"
                )
            parts.append(part)
    else:
        raise TypeError(f"{option} must be a list of str or a str, not {type(value).__name__}")
    if not parts or not parts[0]:
        raise ValueError(f"{option} must name a program to run, got {value!r}")
    if any("\0" in part for part in parts):
        raise ValueError(f"{option} must not contain NUL characters")
    return tuple(parts)


def restart_policy(option: str, value: object) -> RestartPolicy:
    if isinstance(value, str):
        value = value.replace("_", "-")
    policy = _validate.one_of(option, value, RESTART_POLICIES)
    if policy == "always":
        return "always"
    return "never" if policy == "never" else "on-failure"


def backoff_pair(option: str, value: object) -> tuple[float, float]:
    """``(initial, maximum)`` seconds; a single number means a fixed delay."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        delay = _validate.seconds(option, value)
        return (delay, delay)
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != 2:
        raise TypeError(
            f"{option} must be (initial, maximum) seconds, not {value!r}"
        )
    initial = _validate.seconds(f"{option}[0] (initial)", value[0])
    maximum = _validate.seconds(f"{option}[1] (maximum)", value[1])
    if maximum < initial:
        raise ValueError(f"{option}: maximum {maximum} is less than initial {initial}")
    return (initial, maximum)


def signal_number(option: str, value: object) -> signal.Signals:
    """A signal given as a number, a ``signal.Signals`` or a name (``"SIGINT"``, ``"INT"``)."""
    if isinstance(value, str):
        wanted = value.strip().upper()
        if not wanted.startswith("SIG"):
            wanted = "SIG" + wanted
        try:
            return signal.Signals[wanted]
        except KeyError:
            raise ValueError(f"{option}: no signal called {value!r}") from None
    number = _validate.integer(option, value, low=1)
    try:
        return signal.Signals(number)
    except ValueError:
        raise ValueError(f"{option}: {number} is not a signal number here") from None


def environment(option: str, value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{option} must be a mapping of str to str, not {type(value).__name__}")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(
                f"{option}[{key!r}]: keys and values must be str, "
                f"not {type(key).__name__} = {type(item).__name__}"
            )
        if not key or "=" in key or "\0" in key or "\0" in item:
            raise ValueError(f"{option}: {key!r} is not a valid environment variable")
        result[key] = item
    return result


def directory(option: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{option} must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{option} must be a str path, not bytes")
    if not os.path.isdir(path):
        raise ValueError(f"{option}: {path!r} is not an existing directory")
    return path


def output_fd(option: str, value: object) -> int | None:
    """None (inherit), DEVNULL (-3), STDOUT (-2, stderr only) or an open fd."""
    if value is None:
        return None
    number = _validate.integer(option, value, low=-3)
    if number == -1:
        raise ValueError(f"{option}: PIPE is not supported; pass a pipe's write end instead")
    if number >= 0:
        try:
            os.fstat(number)
        except OSError:
            raise ValueError(f"{option}: fd {number} is not open") from None
    return number
