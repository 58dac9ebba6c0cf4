"""The `vidlake` command line: a thin layer over the Python API.

User errors (VidlakeError) print one line and exit 2; `index` exits 1 when some videos failed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vidlake.config import DEFAULT_MODEL, IndexConfig, parse_concepts
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


def _progress_reporter(progress: Progress):
    tasks: dict[str, int] = {}

    def report(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            label = {"probe": "probing videos", "segment": "segmenting clips"}.get(phase, phase)
            tasks[phase] = progress.add_task(label, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    return report


@app.command()
def index(
    sources: Annotated[list[str], typer.Argument(help="Video files, folders, globs or manifests.")],
    index_uri: IndexOpt,
    concepts: Annotated[
        str, typer.Option("--concepts", "-c", help="Comma-separated noun phrases.")
    ],
    model: Annotated[
        str, typer.Option(help="SAM 3 checkpoint: hub id, local folder or s3:// URI.")
    ] = DEFAULT_MODEL,
    clip_seconds: Annotated[float, typer.Option(help="Clip length in seconds.")] = 10.0,
    fps: Annotated[float, typer.Option(help="Frames per second sampled for the model.")] = 6.0,
    overlap: Annotated[float, typer.Option(help="Seconds shared by consecutive clips.")] = 1.0,
    max_side: Annotated[
        int, typer.Option(help="Decode frames with the longer side at most this (0: native).")
    ] = 1008,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: an embedded local Ray.")
    ] = None,
    actors: Annotated[
        int | None, typer.Option(help="Segment actors (default: one per GPU, or 1).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    storage_option: StorageOpt = None,
) -> None:
    """Index videos: find, segment and track every concept in every clip."""
    from vidlake.pipeline.index_job import run_index

    config = IndexConfig(
        sources=tuple(sources),
        index_uri=index_uri,
        concepts=parse_concepts(concepts),
        model=model,
        clip_seconds=clip_seconds,
        fps=fps,
        overlap_s=overlap,
        max_side=max_side or None,
        address=address,
        num_actors=actors,
        device=device,
        storage_options=parse_storage_options(storage_option),
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        summary = run_index(config, progress=_progress_reporter(progress))
    for uri, error in summary.failures:
        err.print(f"[red]failed[/red] {uri}: {error}", highlight=False, soft_wrap=True)
    out.print(
        f"indexed {summary.n_indexed} videos, failed {summary.n_failed}, "
        f"skipped {summary.n_skipped} already indexed; {summary.n_clips} clips, "
        f"{summary.n_masklets} masklets, {summary.n_frames} frames in {summary.wall_s:.1f} s "
        f"({summary.frames_per_s:.1f} frames/s)",
        highlight=False,
    )
    raise typer.Exit(1 if summary.n_failed else 0)


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


@model_app.command("tiny")
def model_tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the tiny model into.")],
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
) -> None:
    """Write a tiny random SAM 3 for tests and offline demos (its detections are random)."""
    from vidlake.model.tiny import build_tiny_sam3

    path = build_tiny_sam3(out_dir, seed=seed)
    out.print(f"wrote a tiny random SAM 3 to {path} (use --model {path})", highlight=False)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Argument(help="Working folder for the demo.")] = Path(
        "vidlake-demo"
    ),
) -> None:
    """Run the whole path offline: sample videos, a tiny SAM 3, an index, a query."""
    from vidlake.jobs.demo import run_demo

    run_demo(out_dir, out)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except VidlakeError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
