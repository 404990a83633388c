"""The emulated kernel event queue: CPython's ``select.kqueue`` API over an epoll set.

Part of the kqueue emulator (see tests/kqueue_emulator/__init__.py for what it is, which
man pages it follows, and how it steps aside where the real kqueue exists). A knote's
source fd is in the epoll set only while the knote is enabled, so the kqueue fd polls
readable exactly while ``control()`` would return an event.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import os
import select
import sys
import threading
import time
import weakref
from collections.abc import Iterable

from .filters import (
    EV_DISPATCH,
    EV_RECEIPT,
    EVFILT_USER,
    KQ_EV_ADD,
    KQ_EV_DELETE,
    KQ_EV_DISABLE,
    KQ_EV_ENABLE,
    KQ_EV_ERROR,
    KQ_EV_ONESHOT,
    KQ_FILTER_PROC,
    KQ_FILTER_READ,
    KQ_FILTER_SIGNAL,
    KQ_FILTER_TIMER,
    KQ_FILTER_WRITE,
    _Knote,
    _ProcKnote,
    _ReadKnote,
    _TimerKnote,
    _UserKnote,
    _WriteKnote,
    kevent,
)
from .signals import _HUB, _SignalKnote


class kqueue:
    """An emulated kernel event queue; the API of CPython's ``select.kqueue``."""

    fdloop_emulated_platform = "freebsd"
    """Which man page to follow: ``"freebsd"`` or ``"darwin"``."""

    def __init__(self) -> None:
        self._setup(select.epoll())

    @classmethod
    def fromfd(cls, fd: int) -> kqueue:
        """Wrap an fd. Emulation limit: knotes live in the Python object that created
        them, so a second object made from a duplicate fd sees none of them."""
        self = cls.__new__(cls)
        self._setup(select.epoll.fromfd(fd))
        try:
            self._bad_fd = os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[eventpoll]"
        except OSError:
            self._bad_fd = True
        return self

    def _setup(self, epoll: select.epoll) -> None:
        self._epoll = epoll
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._knotes: dict[tuple[int, int], _Knote] = {}
        # epoll member fd -> (mask, edge-triggered) of each enabled knote that uses it
        self._watched: dict[int, list[tuple[int, bool]]] = {}
        self._signal_knotes = 0
        self._bad_fd = False
        _live.add(self)

    # -- CPython's kqueue API -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._epoll.closed

    def fileno(self) -> int:
        if self._epoll.closed:
            raise ValueError("I/O operation on closed kqueue object")
        return self._epoll.fileno()

    def close(self) -> None:
        with self._lock:
            if self._epoll.closed:
                return
            if os.getpid() != self._pid:
                # "The queue is not inherited by a child created with fork(2)": a child
                # has no queue to change. Its copies of the Linux fds are dropped, but no
                # source leaves the epoll set, which is the parent's too.
                for knote in list(self._knotes.values()):
                    knote.close()
                self._knotes.clear()
                self._epoll.close()
                return
            for knote in list(self._knotes.values()):
                self._drop(knote)
            self._epoll.close()

    def __del__(self) -> None:
        """Close when the object dies, at the moment CPython's ``select.kqueue`` would.

        The real one closes its fd in ``tp_dealloc`` (CPython Modules/selectmodule.c:
        ``kqueue_queue_Type_slots`` has ``Py_tp_dealloc`` and no ``Py_tp_finalize``, and
        the type is not tracked by the collector). When it dies with a reference cycle,
        the collector first runs *every* finalizer of the garbage (a coroutine's
        ``finally``, an ``async with`` exit, a resource's ``__del__``), and only then
        deallocates, so those finalizers still find the kqueue open. A Python
        ``__del__`` is one of those finalizers, run in no set order: closing here would
        pull the kqueue away from code the real one serves. So inside a collection the
        close waits (the object is kept alive) until the collection has ended, and
        happens then only if no finalizer took the kqueue back into use (resurrected
        it): the real one is not deallocated then either.
        """
        if _collection.running:
            _collection.closing_later.append(self)
            return
        with contextlib.suppress(Exception):
            self.close()

    def control(
        self, changelist: Iterable[kevent] | None, max_events: int,
        timeout: float | None = None,
    ) -> list[kevent]:
        """Apply ``changelist``, then wait up to ``timeout`` for at most ``max_events``.

        kqueue(2): "All changes contained in the changelist are applied before any
        pending events are read from the queue." "If an error occurs while processing an
        element of the changelist and there is enough room in the eventlist, then the
        event will be placed in the eventlist with EV_ERROR set in flags and the system
        error in data. Otherwise, -1 will be returned, and errno will be set". EV_RECEIPT:
        "When passed as input, it forces EV_ERROR to always be returned. When a filter is
        successfully added the data field will be zero." As in FreeBSD's kern_kevent, a
        call that placed any EV_ERROR entry returns those entries without collecting
        events. "The queue is not inherited by a child created with fork(2)": used from
        another process, it fails with EBADF.
        """
        self.fileno()
        if max_events < 0:
            raise ValueError(f"Length of eventlist must be 0 or positive, got {max_events}")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be positive or None")
        if os.getpid() != self._pid:
            raise OSError(errno.EBADF, "kqueue is not inherited across fork")
        if self._bad_fd:  # "EBADF The specified descriptor is invalid."
            raise OSError(errno.EBADF, "not a kqueue")
        results: list[kevent] = []
        with self._lock:
            for change in changelist or ():
                if not isinstance(change, kevent):
                    raise TypeError("changelist must be an iterable of select.kevent objects")
                code = 0
                try:
                    self._apply(change)
                except OSError as error:
                    code = error.errno or errno.EINVAL
                if code or change.flags & EV_RECEIPT:
                    if len(results) >= max_events:
                        if code:
                            raise OSError(code, os.strerror(code))
                        return results
                    results.append(kevent(change.ident, change.filter, KQ_EV_ERROR,
                                          change.fflags, code, change.udata))
        if results or max_events == 0:
            return results
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                events = self._collect(max_events)
            if events:
                return events
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            self._poll_sources(-1 if remaining is None else remaining)

    # -- changes --------------------------------------------------------------------------

    def _apply(self, change: kevent) -> None:
        key = (change.ident, change.filter)
        knote = self._knotes.get(key)
        if knote is None:
            if not change.flags & KQ_EV_ADD:
                raise OSError(errno.ENOENT, "event not found")
            if change.flags & KQ_EV_DELETE:
                raise OSError(errno.ENOENT, "event not found")
            knote = self._filter_class(change.filter)(self, change)
            self._knotes[key] = knote
            self._watch(knote)
        elif change.flags & KQ_EV_DELETE:
            self._drop(knote)
            return
        elif change.flags & KQ_EV_ADD:
            knote.modify(change)
        else:
            knote.touch(change)
        if change.flags & KQ_EV_DISABLE:
            self._set_enabled(knote, False)
        elif change.flags & (KQ_EV_ENABLE | KQ_EV_ADD):
            self._set_enabled(knote, True)

    def _filter_class(self, filter_: int) -> type[_Knote]:
        classes: dict[int, type[_Knote]] = {
            KQ_FILTER_READ: _ReadKnote,
            KQ_FILTER_WRITE: _WriteKnote,
            KQ_FILTER_TIMER: _TimerKnote,
            KQ_FILTER_SIGNAL: _SignalKnote,
            KQ_FILTER_PROC: _ProcKnote,
            EVFILT_USER[self.fdloop_emulated_platform]: _UserKnote,
        }
        if filter_ not in classes:
            raise OSError(errno.EINVAL, f"filter {filter_} is not emulated")
        return classes[filter_]

    def _set_enabled(self, knote: _Knote, enabled: bool) -> None:
        """EV_ENABLE: "Permit kevent() to return the event if it is triggered."
        EV_DISABLE: "Disable the event so kevent() will not return it. The filter itself
        is not disabled." A disabled knote's source leaves the epoll set, so the kqueue
        fd is not readable for it, while its state keeps accumulating."""
        if knote.enabled != enabled:
            knote.enabled = enabled
            if enabled:
                self._watch(knote)
            else:
                self._unwatch(knote)

    def _watch(self, knote: _Knote) -> None:
        fds = [knote.source] if knote.source is not None else []
        if isinstance(knote, _SignalKnote):
            self._signal_knotes += 1
            if self._signal_knotes == 1:
                fds.append(_HUB.fd)
        for fd in fds:
            users = self._watched.setdefault(fd, [])
            users.append((knote.epoll_mask, knote.edge))
            self._set_epoll_mask(fd, users, new=len(users) == 1)

    def _unwatch(self, knote: _Knote) -> None:
        fds = [knote.source] if knote.source is not None else []
        if isinstance(knote, _SignalKnote):
            self._signal_knotes -= 1
            if self._signal_knotes == 0:
                fds.append(_HUB.fd)
        for fd in fds:
            users = self._watched[fd]
            users.remove((knote.epoll_mask, knote.edge))
            if users:
                self._set_epoll_mask(fd, users, new=False)
            else:
                del self._watched[fd]
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)

    def _set_epoll_mask(self, fd: int, users: list[tuple[int, bool]], new: bool) -> None:
        """One epoll registration per fd serves every knote on it (EVFILT_READ and
        EVFILT_WRITE on one socket): the union of their masks, edge-triggered only if
        all of them are."""
        mask = 0
        for knote_mask, _edge in users:
            mask |= knote_mask
        if all(edge for _mask, edge in users):
            mask |= select.EPOLLET
        if new:
            self._epoll.register(fd, mask)
        else:
            self._epoll.modify(fd, mask)

    def _drop(self, knote: _Knote) -> None:
        """EV_DELETE: "Removes the event from the kqueue.\""""
        if knote.enabled:
            self._unwatch(knote)
        self._knotes.pop((knote.ident, knote.filter), None)
        knote.close()

    # -- collecting events ----------------------------------------------------------------

    def _poll_sources(self, timeout: float) -> set[int]:
        """Wait for a source; return the ready ones, and remember edges of edge-triggered
        ones (epoll reports those only once)."""
        ready = {fd for fd, _mask in self._epoll.poll(timeout, len(self._watched) + 1)}
        if ready:
            with self._lock:
                for knote in self._knotes.values():
                    if knote.edge and knote.source in ready:
                        knote.fired = True
        return ready

    def _collect(self, max_events: int) -> list[kevent]:
        """Report enabled knotes whose condition holds (FreeBSD kqueue_scan).

        Only knotes whose Linux fd is ready are asked (plus edges seen earlier and the
        signal knotes, whose hub is shared), so a scan costs what is ready, not what is
        registered — as a real kqueue's does.
        """
        ready = self._poll_sources(0)
        events: list[kevent] = []
        for knote in list(self._knotes.values()):
            if len(events) >= max_events:
                break
            if not knote.enabled or (
                knote.source not in ready and not knote.fired
                and not isinstance(knote, _SignalKnote)
            ):
                continue
            event = knote.poll()
            if event is None:
                continue
            events.append(event)
            knote.reported()
            if event.flags & KQ_EV_ONESHOT:
                # EV_ONESHOT: "After the user retrieves the event from the kqueue, it is
                # deleted."
                self._drop(knote)
            elif knote.flags & EV_DISPATCH:
                # EV_DISPATCH: "Disable the event source immediately after delivery".
                self._set_enabled(knote, False)
        return events


class kqueue_darwin(kqueue):
    """The same emulator following the macOS kevent(2) page."""

    fdloop_emulated_platform = "darwin"


class _Collection:
    """Whether the cyclic garbage collector is running, and the kqueues that died in a
    collection, to be closed once nothing but this list refers to them."""

    def __init__(self) -> None:
        self.running = False
        self.closing_later: list[kqueue] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        self.running = phase == "start"
        if phase != "stop" or not self.closing_later:
            return
        resurrected = []
        for queue in self.closing_later:
            # Three references: the list's, the loop variable's, getrefcount's argument.
            if sys.getrefcount(queue) > 3:
                resurrected.append(queue)  # in use again: checked after each collection
            else:
                with contextlib.suppress(Exception):
                    queue.close()
        self.closing_later = resurrected


_collection = _Collection()
gc.callbacks.append(_collection)


_live: weakref.WeakSet[kqueue] = weakref.WeakSet()


def _not_inherited() -> None:
    """In a forked child, stop each kqueue's fd number from naming the parent's queue.

    kqueue(2): "The queue is not inherited by a child created with fork(2)" (FreeBSD's
    fdcopy() leaves the slot empty; FreeBSD 14's kqueuex(KQUEUE_CPONFORK) is the opt-in
    exception). The emulated queue is an epoll fd, which a fork does copy, and a host loop
    in the child (asyncio's selector, libuv) that drops the kqueue fd from its own epoll
    set would then drop the *parent's* registration too: epoll keys a registration by
    open file and fd number, and both are shared. So the child's copy is replaced here by
    /dev/null. Emulation limit: the number stays open (on /dev/null) rather than empty, so
    that the Python object's later close() cannot close an fd the child opened since.
    """
    placeholder = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for queue in list(_live):
            if not queue._epoll.closed:
                os.dup2(placeholder, queue._epoll.fileno(), inheritable=False)
    finally:
        os.close(placeholder)


os.register_at_fork(after_in_child=_not_inherited)
