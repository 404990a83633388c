"""Every ```python block in README.md runs as written, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_example_runs(number: int) -> None:
    code = BLOCKS[number]
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", code],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"README example {number} failed:\n{code}\n{result.stderr}"
    expected = re.findall(r"print\(.*\)\s+# (.+)", code)
    for line in expected:
        assert line.strip() in result.stdout, f"example {number} should print {line!r}"
