"""The `vidlake` command line: a thin layer over the Python API.

User errors (VidlakeError) print one line and exit 2; `index` exits 1 when some videos failed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from vidlake.errors import UsageError, VidlakeError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Index video archives by concept with SAM 3, and query them.",
)
model_app = typer.Typer(no_args_is_help=True, help="Model utilities.")
app.add_typer(model_app, name="model")

# Wider than any line we print: piped output is never wrapped or cut at Rich's 80 columns.
UNWRAPPED_WIDTH = 100_000


def make_console(stderr: bool = False) -> Console:
    """A console for CLI output: no emoji codes, no highlighting, and when not on a terminal,
    long lines (clip ids, URIs, tables) printed whole.

    Markup stays on for our own styles, so user text (phrases, names, URIs, errors) must go
    through `plain` or be printed with markup=False; `:x:` and `[/]` in it stay literal.
    """
    console = Console(stderr=stderr, emoji=False, highlight=False)
    if not console.is_terminal:
        console.width = UNWRAPPED_WIDTH
        console.soft_wrap = True
    return console


def plain(text: object, style: str = "") -> Text:
    """TEXT as a Rich Text, never read as markup or emoji codes."""
    return Text(str(text), style=style)


def failure_line(subject: str, error: str) -> Text:
    """`failed SUBJECT: ERROR`, the word in red, the user's text literal."""
    return Text.assemble(("failed", "red"), f" {subject}: {error}")


out = make_console()
err = make_console(stderr=True)

IndexOpt = Annotated[
    str, typer.Option("--index", "-i", help="Index URI: a folder or s3://bucket/path.")
]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option("--storage-option", help="Object-store option KEY=VALUE (repeatable)."),
]


def parse_storage_options(items: list[str] | None) -> dict[str, str]:
    opts = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option {item!r} is not KEY=VALUE")
        opts[key.strip()] = value
    return opts


def open_store(index_uri: str, storage_option: list[str] | None):
    """The IndexStore at INDEX_URI for a reading command.

    An s3:// index is checked first as `index` checks it (store.object_store.preflight: one
    list request), so missing credentials, an unreachable endpoint or a missing bucket are
    said as such rather than as "not a vidlake index".
    """
    from vidlake.store.object_store import preflight
    from vidlake.store.tables import IndexStore

    options = parse_storage_options(storage_option) or None
    preflight(index_uri, (), options)
    return IndexStore.open(index_uri, options)


def _register_commands() -> None:
    """Imports the modules that add their commands to `app` (one module per area)."""
    from vidlake.jobs import cli_admin, cli_index, cli_query, cli_serve  # noqa: F401


def main() -> None:
    _register_commands()
    # The handler's level too: libraries that set their own logger to INFO (pylance: "Final
    # create_index rust time" on every index) would otherwise print through it.
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", handlers=[stderr]
    )
    # The hub client logs every retry of an unreachable checkpoint; the one-line error says it.
    # (An env default, because huggingface_hub sets its log level when it is first imported.)
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    # transformers' "Loading weights" and "Writing model shards" bars, also in the embedded
    # Ray's actors (they inherit this environment), where Ray forwards them as garbled lines.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from vidlake.config import cli_option_names

    try:
        with cli_option_names():  # errors name --clip-seconds, not the API's clip_seconds
            app()
    except VidlakeError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
