"""``.env`` files as honcho and foreman read them: ``KEY=VALUE`` lines for a Procfile.

One assignment per line::

    # a comment line, and blank lines, are skipped
    DATABASE_URL=postgres://localhost/app     # unquoted: up to a " #" comment, trimmed
    export SECRET_KEY = 'literal $text\\n'     # "export " and spaces around "=" allowed
    GREETING="hello\\tworld\\n"                # double quotes: \\n \\t \\" \\\\ are escapes

``KEY`` is a shell variable name (letters, digits, ``_``, not starting with a digit).
Single quotes keep everything literally; double quotes turn ``\\n``, ``\\t``, ``\\"`` and
``\\\\`` into a newline, a tab, a quote and a backslash (any other backslash stays);
nothing is expanded (``$OTHER`` stays as written, as in honcho and foreman).

Checked against honcho 2.0.0: the same values for unquoted, double-quoted and spaced
lines. The differences: ``export KEY=...`` is read here (honcho 2.0 and foreman skip the
line); single quotes are literal, as in foreman (honcho turns ``\n`` into a newline even
there); and where honcho and foreman silently skip a line they cannot read, we refuse
it, naming the file and line number: a typo in a secret's line should not start the app
without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import SupervisorConfigError
from .config import read_text

__all__ = ["load_dotenv", "parse_dotenv"]

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\Z", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def load_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read and parse ``path``; SupervisorConfigError names the file (and line)."""
    path = Path(path)
    return parse_dotenv(read_text(path), str(path))


def content_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """``(number, line as written, stripped)`` for every line of a .env file or a
    Procfile that is neither blank nor a ``#`` comment; numbers count from 1."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, raw, line


def parse_dotenv(text: str, source: str = ".env") -> dict[str, str]:
    """The variables of a .env file's ``text``, in order (a later line wins)."""
    values: dict[str, str] = {}
    for number, raw, line in content_lines(text):
        where = f"{source}:{number}"
        match = _ASSIGNMENT.match(line)
        if match is None:
            raise SupervisorConfigError(f"{where}: expected KEY=VALUE, got {raw!r}")
        key, rest = match.groups()
        values[key] = _value(rest, where)
    return values


def _value(rest: str, where: str) -> str:
    if rest[:1] == "'":
        end = rest.find("'", 1)
        if end < 0:
            raise SupervisorConfigError(f"{where}: unterminated single quote in {rest!r}")
        value, after = rest[1:end], rest[end + 1 :]
    elif rest[:1] == '"':
        value, after = _double_quoted(rest, where)
    else:
        comment = re.search(r"\s#", rest)
        value = rest if comment is None else rest[: comment.start()]
        if "\0" in value:
            raise SupervisorConfigError(f"{where}: NUL character in the value")
        return value.strip()
    after = after.strip()
    if after and not after.startswith("#"):
        raise SupervisorConfigError(
            f"{where}: unexpected {after!r} after the quoted value (quote the whole value)"
        )
    if "\0" in value:
        raise SupervisorConfigError(f"{where}: NUL character in the value")
    return value


def _double_quoted(rest: str, where: str) -> tuple[str, str]:
    out: list[str] = []
    index = 1
    while index < len(rest):
        char = rest[index]
        if char == '"':
            return "".join(out), rest[index + 1 :]
        if char == "\\" and index + 1 < len(rest):
            following = rest[index + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        out.append(char)
        index += 1
    raise SupervisorConfigError(f"{where}: unterminated double quote in {rest!r}")
