"""The one exception family for user errors: the CLI prints the message in one line and exits 2."""

from __future__ import annotations


class VidlakeError(Exception):
    """A user error whose message says what to do (bad option, missing index, bad checkpoint)."""


class UsageError(VidlakeError):
    """A bad option or argument value."""


class IndexNotFoundError(VidlakeError):
    """The index URI does not hold a vidlake index."""


class CheckpointError(VidlakeError):
    """A SAM 3 checkpoint is missing, gated, unreachable or not a SAM 3 video checkpoint."""


class VideoError(VidlakeError):
    """A video cannot be read (missing, not a video, truncated, zero frames).

    Inside the index job this is data, not a crash: the video gets a failed row with this message.
    """


def one_line(exc: BaseException, limit: int = 300) -> str:
    """EXC's message on one line and at most LIMIT characters (its type's name if it has none):
    for a library's exception quoted inside a VidlakeError's message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def counted(n: int, noun: str) -> str:
    """'1 clip', '2 clips': N and NOUN, plural unless N is 1 (for counts in messages)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class EmptySourceError(UsageError):
    """A folder, glob, prefix or manifest that exists but names no video: nothing to index."""
