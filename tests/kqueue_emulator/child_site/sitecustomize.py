"""Puts the kqueue emulator into child Pythons started by a kqueue test run on Linux.

tests/conftest.py adds this directory to PYTHONPATH and sets
FDLOOP_KQUEUE_EMULATE_CHILDREN to the platform the emulator imitates, so a test that runs
fdloop in a fresh interpreter (interpreter-exit cleanup, pid reuse, thread counts)
exercises the same backend as the test itself. Without that variable this file does
nothing; where ``select.kqueue`` is real the emulator steps aside anyway.
"""

import os
import sys

_platform = os.environ.get("FDLOOP_KQUEUE_EMULATE_CHILDREN")
if _platform:
    # The checkout's root, four levels up (tests/kqueue_emulator/child_site/this file),
    # so that ``tests.kqueue_emulator`` imports; taken off sys.path again at once.
    _here = os.path.abspath(__file__)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(_here)))))
    try:
        from tests import kqueue_emulator

        def _set(target: object, name: str, value: object, raising: bool = False) -> None:
            setattr(target, name, value)

        kqueue_emulator.install(_set, _platform)
    finally:
        del sys.path[0]
