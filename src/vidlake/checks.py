"""Checks of argument values the Python API takes as given: a UsageError naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from vidlake.errors import UsageError


def whole(name: str, value: object) -> int:
    """VALUE if it is an int (not a bool, not a float, even 5.0); UsageError naming NAME."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def real(name: str, value: object) -> float:
    """VALUE as a finite float if it is a number (not a bool or a string); UsageError else."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def strings(name: str, value: object) -> tuple[str, ...]:
    """VALUE as a tuple of strings: one string, or a sequence of them; UsageError else."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{name} must be a string or a list of strings, got {value!r}")
    return tuple(value)


def in_order(start: float, end: float, start_name: str, end_name: str) -> None:
    """UsageError when START is after END, each named as the caller's interface names it
    (`between start`/`end` in Python, `start_s`/`end_s` over HTTP)."""
    if start > end:
        raise UsageError(f"{start_name} {start} is after {end_name} {end}")
