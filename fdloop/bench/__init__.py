"""Side-by-side benchmarks: fdloop against the stdlib, uvloop, trio, anyio and a raw floor.

Each workload module (``spawn``, ``spawn_live``, ``idle``, ``wake``, ``timer``,
``signals``, ``vpoll``, ``channel``) declares one :class:`~fdloop.bench.registry.Workload`
and one small function per contender, registered with
:func:`~fdloop.bench.registry.contender`. :mod:`fdloop.bench.runner` runs every contender
of a workload in its own fresh interpreter (:mod:`fdloop.bench.worker`) so that resource
usage, threads and RSS belong to that contender alone, repeats the runs, and keeps the
median of each figure. :mod:`fdloop.bench.main` is ``fdloop bench``; the targets it
marks PASS/MISS are :func:`fdloop.bench.report.targets`.

The package ships in the wheel (``pip install fdloop`` installs nothing but ``fdloop``);
the contenders on other libraries need those installed (``fdloop[uvloop,trio,plot]``).
"""

WORKLOADS = ("spawn", "spawn_live", "idle", "wake", "timer", "signal", "vpoll", "channel")
"""Workload names in the order ``fdloop bench`` runs them."""

MODULES = {"spawn": "spawn", "spawn_live": "spawn_live", "idle": "idle", "wake": "wake",
           "timer": "timer", "signal": "signals", "vpoll": "vpoll", "channel": "channel"}
"""Workload name -> module in this package (``signals`` so as not to read like the stdlib)."""
