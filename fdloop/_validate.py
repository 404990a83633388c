"""Argument checks shared by every public entry point.

Each check raises TypeError or ValueError whose message starts with the argument's name,
before anything is created or changed, so that a failed call has no effect.
"""

from __future__ import annotations

import math
import numbers


def integer(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high]; bools are refused (they are ints by accident)."""
    if type(value) is int:  # the common case, without the costlier ABC check
        number = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    else:
        number = int(value)
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {number}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {number}")
    return number


def seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    """A finite, non-negative duration in seconds (int or float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {number}")
    return number


def timeout(name: str, value: object) -> float | None:
    """A timeout in seconds, None for none: None and +inf both mean "no limit", as they
    do for subprocess's timeouts and trio's deadlines; otherwise as :func:`seconds`."""
    if value is None or (isinstance(value, float) and value == math.inf):
        return None
    return seconds(name, value)


def one_of(name: str, value: object, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
