"""Every ```python block in README.md runs as written, in a fresh interpreter.

The outputs the README shows (``# expected`` comments) are the Linux backend's, so the
examples run on it whatever FDLOOP_BACKEND the suite was given; where Linux's fds do not
exist the examples are skipped (the kqueue backend's differences are in the README's own
table and in ``fdloop info``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="README shows Linux output")
@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_example_runs(number: int) -> None:
    code = BLOCKS[number]
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", code],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "FDLOOP_BACKEND": "linux"},
    )
    assert result.returncode == 0, f"README example {number} failed:\n{code}\n{result.stderr}"
    expected = re.findall(r"print\(.*\)\s+# (.+)", code)
    for line in expected:
        assert line.strip() in result.stdout, f"example {number} should print {line!r}"
