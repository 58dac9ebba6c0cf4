"""Instance-level method overrides on a transformers model.

What `batched_tracker` and `batched_detector` install: one model instance gets the batched
method, the class and every other instance keep upstream's.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def override(obj: Any, name: str, function: Callable) -> None:
    """obj.NAME becomes FUNCTION bound to obj, on this instance only."""
    setattr(obj, name, types.MethodType(function, obj))


def restore(obj: Any, name: str) -> None:
    """obj.NAME is the class's again (the instance's override, if any, dropped)."""
    obj.__dict__.pop(name, None)


@contextlib.contextmanager
def overridden(obj: Any, name: str, enable: Callable[[], T]) -> Iterator[T]:
    """Calls ENABLE (which overrides obj.NAME) and yields what it returns; after the block,
    obj.NAME is what it was before: the class's method or an earlier override."""
    previous = obj.__dict__.get(name)
    result = enable()
    try:
        yield result
    finally:
        if previous is None:
            restore(obj, name)
        else:
            setattr(obj, name, previous)
