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

from vidlake.errors import UsageError, VidlakeError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Index video archives by concept with SAM 3, and query them.",
)
model_app = typer.Typer(no_args_is_help=True, help="Model utilities.")
app.add_typer(model_app, name="model")

out = Console()
err = Console(stderr=True)

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
    try:
        app()
    except VidlakeError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
