"""The optional compiled spawn path (fdloop/backends/linux/_clone_spawn.c).

Everything else is declared in pyproject.toml. The extension is built on Linux only and
is optional: without a C compiler the install still succeeds and fdloop spawns through
posix_spawn instead (``fdloop info`` says which path is active).
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    extensions.append(
        Extension(
            "fdloop.backends.linux._clone_spawn",
            ["fdloop/backends/linux/_clone_spawn.c", "fdloop/backends/linux/_child.c",
             "fdloop/backends/linux/_clone3.c", "fdloop/backends/linux/_ready_set.c"],
            depends=["fdloop/backends/linux/_clone_spawn.h"],
            optional=True,
        )
    )

setup(ext_modules=extensions)
