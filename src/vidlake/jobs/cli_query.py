"""`vidlake query` and `vidlake info`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vidlake.jobs.cli import IndexOpt, StorageOpt, app, out, parse_storage_options


@app.command()
def query(
    phrase: Annotated[str, typer.Argument(help="The concept to look for, e.g. 'red umbrella'.")],
    index_uri: IndexOpt,
    min_score: Annotated[
        float, typer.Option(help="Only clips whose best object scores this.")
    ] = 0.0,
    min_presence: Annotated[float, typer.Option(help="Only clips with this presence score.")] = 0.0,
    limit: Annotated[int, typer.Option(help="At most this many clips.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Find the clips where a concept appears."""
    import vidlake

    engine = vidlake.open(index_uri, parse_storage_options(storage_option) or None)
    hits = engine.search(phrase, min_score=min_score, min_presence=min_presence, limit=limit)
    rows = hits.to_pylist()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(f"no clips with {phrase!r}", highlight=False)
        if phrase.strip().lower() not in engine.vocabulary():
            near = engine.suggestions(phrase)
            hint = f"; did you mean: {', '.join(near)}" if near else ""
            out.print(f"{phrase!r} is not in this index's vocabulary{hint}", highlight=False)
        return
    table = Table(title=f"{len(rows)} clips with {phrase!r}")
    for col in ("video", "start s", "end s", "objects", "best score", "clip"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            Path(r["video_uri"]).name,
            f"{r['start_s']:.2f}",
            f"{r['end_s']:.2f}",
            str(r["n_objects"]),
            f"{r['max_score']:.3f}",
            r["clip_id"],
        )
    out.print(table)


@app.command()
def info(
    index_uri: IndexOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Show an index: rows per table, failed videos, the vocabulary."""
    import dataclasses

    import vidlake

    details = vidlake.open(index_uri, parse_storage_options(storage_option) or None).info()
    if as_json:
        print(json.dumps(dataclasses.asdict(details), indent=2))
        return
    out.print(f"index {details.uri}", highlight=False)
    table = Table(title="tables")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("version", justify="right")
    for name, n in details.counts.items():
        table.add_row(name, str(n), str(details.versions[name]))
    out.print(table)
    out.print(f"models: {', '.join(details.models) or '-'}", highlight=False)
    vocab = ", ".join(f"{c} ({n} clips)" for c, n in details.vocabulary.items())
    out.print(f"vocabulary: {vocab or '-'}", highlight=False)
    for uri, error in details.failed:
        out.print(f"[red]failed[/red] {uri}: {error}", highlight=False, soft_wrap=True)
