"""Parsing and checking of the time and track options of a query (then/within, min_duration,
min_area, region, same_frame over a whole video): one place for the CLI, the Python API and
the HTTP routes, each error naming the option as the caller's interface names it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vidlake.checks import real
from vidlake.errors import UsageError

if TYPE_CHECKING:
    from vidlake.query.engine import Query

Region = tuple[float, float, float, float]


def parse_region(text: str, name: str = "--region") -> Region:
    """'x0,y0,x1,y1' (fractions of the frame's width and height) as four floats; UsageError."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 4:
        raise UsageError(f"{name} must be x0,y0,x1,y1 (four numbers from 0 to 1), got {text!r}")
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise UsageError(
            f"{name} must be x0,y0,x1,y1 (four numbers from 0 to 1), got {text!r}"
        ) from None


def check_region(value: object, name: str) -> Region:
    """VALUE as (x0, y0, x1, y1) within 0..1 with x0 <= x1 and y0 <= y1; UsageError naming NAME."""
    if isinstance(value, str):
        value = parse_region(value, name)
    if not isinstance(value, Sequence) or len(value) != 4:
        raise UsageError(f"{name} must be (x0, y0, x1, y1) from 0 to 1, got {value!r}")
    x0, y0, x1, y1 = (real(name, v) for v in value)
    if not all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        raise UsageError(
            f"{name} {x0:g},{y0:g},{x1:g},{y1:g} is outside the frame: each value must be "
            "from 0 to 1 (fractions of the width and height)"
        )
    if x0 > x1 or y0 > y1:
        raise UsageError(f"{name} {x0:g},{y0:g},{x1:g},{y1:g} must have x0 <= x1 and y0 <= y1")
    return (x0, y0, x1, y1)


def _non_negative(query: Query, argument: str, what: str) -> None:
    value = getattr(query, argument)
    if value is None:
        return
    value = real(query.name(argument), value)
    if value < 0:
        raise UsageError(f"{query.name(argument)} must be >= 0 {what}, got {value:g}")
    object.__setattr__(query, argument, value)


def check_track_options(query: Query) -> None:
    """Checks (and normalises in place) QUERY's time and track options and how they combine."""
    name = query.name
    _non_negative(query, "within", "seconds")
    _non_negative(query, "min_duration", "seconds")
    if query.min_area is not None:
        area = real(name("min_area"), query.min_area)
        if not 0.0 <= area <= 1.0:
            raise UsageError(
                f"{name('min_area')} must be from 0 to 1 (a share of the frame), got {area:g}"
            )
        object.__setattr__(query, "min_area", area)
    if query.region is not None:
        object.__setattr__(query, "region", check_region(query.region, name("region")))
    if query.within is not None and not query.then:
        raise UsageError(f"{name('within')} needs {name('then')}, the phrase that follows")
    if query.then and query.within is None:
        raise UsageError(f"{name('then')} needs {name('within')} SECONDS")
    track_options = [
        name(a)
        for a in ("then", "min_duration", "min_area", "region")
        if getattr(query, a) not in (None, ())
    ]
    if query.with_concepts and (track_options or (query.same_frame and query.then)):
        raise UsageError(
            f"{name('with_concepts')} finds clips; it cannot be combined with "
            f"{', '.join(track_options)} (tracks across the video)"
        )
    if query.then and query.same_frame:
        raise UsageError(f"{name('same_frame')} cannot be combined with {name('then')}")
    if query.min_count > 1 and query.kind in ("tracks", "sequences"):
        raise UsageError(
            f"{name('min_count')} counts objects in a clip, or with {name('same_frame')} in one "
            f"frame; it cannot be combined with {', '.join(track_options)}"
        )
