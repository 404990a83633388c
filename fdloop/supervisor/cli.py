"""``fdloop supervise``: run programs from a TOML config (or one command) under a Supervisor.

Each program's stdout and stderr go into one pipe per program; the supervisor copies
every line to its own stdout as ``name | line``, names padded to the same width, a line
longer than 64 KiB in pieces of 64 KiB (see :mod:`fdloop.supervisor.output`). The
pipe lives as long as the supervisor, so a restarted instance writes into the same one
and nothing is lost between instances. Events go to stderr with a timestamp. Both are
written through the event loop and never block it: a reader that stops reading loses
lines (counted, and the count reported once it reads again), never the supervisor's
restarts or signal handling (see :mod:`fdloop.supervisor.sink`). A program whose config
names a ``log`` file writes there instead, rotated by size (:mod:`fdloop.supervisor.logfile`);
a full disk is reported once on stderr and never stops anything. A CONFIG whose name does
not end in ``.toml`` is read as a honcho/foreman Procfile, with ``-e``, ``-c`` and ``-p``
(:mod:`fdloop.supervisor.procfile`). SIGTERM and
SIGINT stop every program gracefully (a second one SIGKILLs), SIGHUP restarts them all —
all read through a SignalFD, with no Python signal handler. Programs do not outlive
even a SIGKILLed supervisor unless their config says ``die_with_supervisor = false``
(PR_SET_PDEATHSIG, and a cgroup where one can be made: :mod:`fdloop.supervisor.lifeline`).
``fdloop ctl`` controls it through a control socket (``--control PATH``, by default
``.fdloop.sock`` beside CONFIG: :mod:`fdloop.supervisor.remote`); ``--events json``
writes every stderr line as a JSON object. The options and the Config they make:
:mod:`fdloop.supervisor.arguments`.

Exit status: 0 if every program ended cleanly (exit code 0, or stopped by a signal to
the supervisor or by ``fdloop ctl shutdown``), 1 if any did not (gave up, or failed and
stays down), 2 for a bad command line or config, a control path in use (a live
supervisor there, or not a socket), or more programs than RLIMIT_NOFILE allows (nothing
is started then), 3 if stdout or stderr was closed at start (nothing started) or a write to one of
them failed (reported once on the other; this takes precedence over 0 and 1).
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import replace

import anyio
import anyio.abc

from ..errors import SupervisorConfigError
from . import pid1
from .arguments import build_parser, loop_backend, make_config, split_command
from .config import Config
from .control_socket import ControlPathTaken
from .core import Supervisor
from .events import Event, EventStream
from .lifeline import CgroupGuard, autokill_note, pdeathsig_problem
from .output import ProgramOutputs
from .remote import JSON_EVENTS, Remote, event_record, message_record, say_json, tap_outputs
from .sink import LineSink
from .startup import EXIT_OUTPUT, fd_limit_problem, fill_closed_standard_fds, say

EXIT_CLEAN = 0
EXIT_UNCLEAN = 1
EXIT_USAGE = 2
DRAIN_SECONDS = 1.0
"""After the programs are down, how long to keep copying output still in the pipes
(a grandchild that outlived its parent may hold a pipe open forever)."""
FLUSH_SECONDS = 1.0
"""At exit, how long to keep writing lines queued for a slow stdout/stderr reader (a
reader that never reads again must not hold the exit)."""


def supervise_main(argv: list[str]) -> int:
    """``fdloop supervise ARGS...``: returns the process exit status (see module doc)."""
    # SIGHUP's default action ends the process: until the Supervisor's SignalFD reads it,
    # a SIGHUP (a reload, for a user) must wait, blocked and pending, instead of killing
    # us with 129. The SignalFD then reads it, and the Supervisor applies it once it has
    # started the programs. (A SIGHUP during the interpreter's own start, before this
    # line, still ends it: no code of ours runs there.)
    hup_was_blocked = _block_sighup()
    try:
        return _supervise_main(argv)
    finally:
        _unblock_sighup(hup_was_blocked)


def _block_sighup() -> bool:
    """Block SIGHUP in this thread; whether it was blocked already."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    return signal.SIGHUP in previous


def _unblock_sighup(was_blocked: bool) -> None:
    """Give SIGHUP back as we found it. One still pending was meant for the supervisor,
    which is done: it is discarded, not delivered late to its default action."""
    if was_blocked:
        return
    while signal.SIGHUP in signal.sigpending():
        signal.sigwait({signal.SIGHUP})  # returns at once: it is pending
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _supervise_main(argv: list[str]) -> int:
    # First of all, before anything opens an fd that could land on a closed 0, 1 or 2.
    refusal = fill_closed_standard_fds()
    if refusal is not None:
        say(*refusal)
        return EXIT_OUTPUT
    pid1.prepare()  # as PID 1, a SIGTERM from now on waits for the SignalFD
    parser = build_parser()
    args_in, command = split_command(list(argv))
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        config = make_config(args, command)
    except (SupervisorConfigError, TypeError, ValueError) as exc:
        say(f"fdloop supervise: {exc}")
        return EXIT_USAGE
    problem = fd_limit_problem(len(config.programs))
    if problem is not None:
        say(problem)
        return EXIT_USAGE
    try:
        remote = _remote(args, command)
    except SupervisorConfigError as exc:
        say(f"fdloop supervise: {exc}")
        return EXIT_USAGE
    backend, options = loop_backend(args.loop)
    # asyncio.Runner and trio.run install a Python handler for SIGINT when they find
    # Python's default one. The SignalFD reads SIGINT instead, so give them SIG_DFL: no
    # Python handler is involved at all, and a Ctrl-C before the SignalFD exists simply
    # ends the process (nothing is running yet).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
    if in_main_thread:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    json_events = JSON_EVENTS.set(args.events == "json")
    try:
        return pid1.exit_status(anyio.run(
            _supervise, config, not args.no_cgroup, remote,
            backend=backend, backend_options=options,
        ))
    finally:
        JSON_EVENTS.reset(json_events)
        if remote is not None:
            remote.close()
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def _remote(args: argparse.Namespace, command: list[str]) -> Remote | None:
    """The control socket, bound now (a live one there refuses the start: exit 2)."""
    if args.no_control:
        if args.control is not None:
            raise SupervisorConfigError("give --control PATH or --no-control, not both")
        return None
    path = args.control or (None if command else Remote.default_path(args.config))
    if path is None:
        return None

    def load() -> Config:
        return make_config(args, command)

    try:
        return Remote.bind(path, None if command else load)
    except ControlPathTaken:
        raise
    except SupervisorConfigError as exc:
        if args.control is not None:
            raise
        # The default place may be read-only (a config under /etc): run without.
        say(f"fdloop supervise: {exc}; running without a control socket "
            "(give --control PATH)")
        return None


def log(message: str, sink: LineSink | None = None) -> None:
    """One timestamped line on stderr: queued on ``sink``, or printed if None."""
    if JSON_EVENTS.get():
        say_json(message_record(message), sink)
        return
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    line = f"{stamp} fdloop supervise: {message}"
    if sink is None:
        say(line)
    else:
        sink.put(line.encode(errors="replace"))


async def _log_events(
    events: EventStream, sink: LineSink, sup: Supervisor | None = None
) -> None:
    json_events = JSON_EVENTS.get()
    async for event in events:
        if json_events:
            say_json(event_record(event, sup), sink)
        else:
            log(_describe(event), sink)


def _describe(event: Event) -> str:
    text = event.describe()
    if event.kind == "signal" and event.signal is not None:
        action = "restarting every program" if event.signal.name == "SIGHUP" else "stopping"
        text += f": {action}"
    return text


async def _supervise(config: Config, cgroup: bool = True, remote: Remote | None = None) -> int:
    out = LineSink.open(sys.stdout, "stdout", "output")
    err: LineSink | None = None
    outputs: ProgramOutputs | None = None
    try:
        err = LineSink.open(sys.stderr, "stderr", "event")
        _report_failures(out, err)
        try:
            outputs = ProgramOutputs(
                config.programs, config.logs, out,
                on_problem=functools.partial(log, sink=err),
            )
        except SupervisorConfigError as exc:
            say(f"fdloop supervise: {exc}: nothing was started")
            return EXIT_USAGE
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            say(
                f"fdloop supervise: out of file descriptors for the "
                f"{len(config.programs)} programs' pipes ({exc.strerror}; RLIMIT_NOFILE or "
                "the system-wide fs.file-max): nothing was started"
            )
            return EXIT_USAGE
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(out.run)
            task_group.start_soon(err.run)
            for output in outputs:
                task_group.start_soon(output.copy_lines)
            clean = await _run_programs(
                config, outputs, task_group, err, cgroup, remote=remote, console=out)
            outputs.close_write_ends()
            with anyio.move_on_after(DRAIN_SECONDS):
                await outputs.drained()
            task_group.cancel_scope.cancel()
        # The writers are stopped (a LineSink writer is only ever cancelled where no
        # chunk is half accounted for): give the readers a last, bounded chance.
        async with anyio.create_task_group() as flushing:
            flushing.start_soon(out.flush, FLUSH_SECONDS)
            flushing.start_soon(err.flush, FLUSH_SECONDS)
    finally:
        if outputs is not None:
            outputs.close()
        if remote is not None:
            remote.close_outputs()
        out.close()
        if err is not None:
            err.close()
    if out.failure is not None or err.failure is not None:
        return EXIT_OUTPUT
    return EXIT_CLEAN if clean else EXIT_UNCLEAN


def _report_failures(out: LineSink, err: LineSink) -> None:
    """A write error on one stream is said once on the other (if that one still works)."""

    def on_out_failure(exc: OSError) -> None:
        log(f"cannot write to stdout ({exc.strerror or exc}): the programs' output is "
            "dropped from now on; exit status 3", err)

    def on_err_failure(exc: OSError) -> None:
        out.put(f"fdloop supervise: cannot write to stderr ({exc.strerror or exc}): "
                "events are dropped from now on; exit status 3".encode())

    out.on_failure = on_out_failure
    err.on_failure = on_err_failure


async def _run_programs(
    config: Config,
    outputs: ProgramOutputs,
    task_group: anyio.abc.TaskGroup,
    err: LineSink,
    cgroup: bool,
    *,
    remote: Remote | None = None,
    console: LineSink | None = None,
) -> bool:
    guard, why_not = (None, "no program asks for it")
    if not cgroup:
        why_not = "--no-cgroup"
    elif any(spec.die_with_supervisor for spec in config.programs):
        guard, why_not = CgroupGuard.create()
    try:
        # PID 1 of a pid namespace adopts every orphan in it: reap them (pid1.py).
        subreaper = config.subreaper or pid1.is_pid1()
        async with Supervisor(handle_signals=True, subreaper=subreaper) as sup:
            task_group.start_soon(_log_events, sup.events(), err, sup)
            if guard is not None:
                guard.attach(sup)  # one cgroup per program, inside the guarded one
            if pid1.is_pid1():
                log(pid1.NOTE, err)
            for spec in config.programs:
                stdout, stderr = outputs.fds(spec.name)
                sup.add_spec(replace(spec, stdout=stdout, stderr=stderr))
            log(f"supervising {', '.join(sup.names)} (pid {os.getpid()})", err)
            serving = None
            if remote is not None:
                tap_outputs(outputs, remote.taps)
                assert console is not None
                serving = await remote.serve(
                    sup, config=config, outputs=outputs, console=console,
                    task_group=task_group, log=functools.partial(log, sink=err),
                )
                log(f"control socket {remote.path} (fdloop ctl --control "
                    f"{shlex.quote(remote.path)} status)", err)
            await sup.start()
            log(_lifeline_note(config, guard, why_not), err)  # the spawns know now
            await sup.wait()
            if remote is not None and serving is not None:
                serving.cancel()  # ctl shutdown's client sees the end now
                remote.close_write_ends()
            clean = sup.all_clean()
            pid1.remember(sup.status())
    finally:
        if guard is not None:
            with anyio.CancelScope(shield=True):
                await guard.aclose()
    down = "all ended cleanly" if clean else "not all ended cleanly"
    log("every program is down; " + down, err)
    return clean


def _lifeline_note(config: Config, guard: CgroupGuard | None, why_not: str) -> str:
    """One line: how programs are kept from outliving this process."""
    kept = [spec.name for spec in config.programs if not spec.die_with_supervisor]
    problem = pdeathsig_problem()
    parts = ["PR_SET_PDEATHSIG" if problem is None else f"no PR_SET_PDEATHSIG ({problem})"]
    if guard is not None:
        parts.append(guard.describe())
    else:
        parts.append(f"no cgroup ({why_not}: grandchildren are not covered)")
    parts.append(autokill_note())
    text = "programs die with the supervisor through " + "; ".join(parts)
    if kept:
        text += f"; except {', '.join(kept)} (die_with_supervisor = false)"
    return text

