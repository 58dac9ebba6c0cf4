"""`vidlake query`, `stats`, `sql`, `info`, `reindex`, `export` and `preview`: thin layers
over vidlake.query."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vidlake.errors import UsageError, counted
from vidlake.jobs.cli import (
    IndexOpt,
    StorageOpt,
    app,
    err,
    failure_line,
    open_store,
    out,
    plain,
)

AsOfOpt = Annotated[
    int | None,
    typer.Option(
        "--as-of",
        help="Read the index as it was at this version (the videos table's; see `info`).",
    ),
]
VideoOpt = Annotated[
    list[str] | None,
    typer.Option("--video", help="Only videos whose URI or file name matches this glob."),
]
BetweenOpt = Annotated[
    tuple[float, float] | None,
    typer.Option("--between", help="START END seconds: objects visible in this time range."),
]
MinScoreOpt = Annotated[float, typer.Option(help="Only clips whose best object scores this.")]
# How `Query` names its arguments in the CLI's messages: the flags that set them.
FLAGS = {
    "min_score": "--min-score",
    "min_presence": "--min-presence",
    "limit": "--limit",
    "videos": "--video",
    "between": "--between",
    "min_count": "--min-count",
    "with_concepts": "--with",
    "same_frame": "--same-frame",
    "order_by": "--order",
    "then": "--then",
    "within": "--within",
    "min_duration": "--min-duration",
    "min_area": "--min-area",
    "region": "--region",
    "phrase": "PHRASE",
}
# The columns `query` shows in its table, per kind of hit (Query.kind): (header, column).
SHOWN = {
    "clips": [
        ("video", "video_uri"),
        ("start s", "start_s"),
        ("end s", "end_s"),
        ("objects", "n_objects"),
        ("best score", "max_score"),
        ("concept", "concept"),
        ("clip", "clip_id"),
    ],
    "tracks": [
        ("video", "video_uri"),
        ("start s", "start_s"),
        ("end s", "end_s"),
        ("duration s", "duration_s"),
        ("largest area", "max_area"),
        ("best score", "max_score"),
        ("concept", "concept"),
        ("track", "track_id"),
    ],
    "sequences": [
        ("video", "video_uri"),
        ("tracks", "concepts"),
        ("starts s", "starts_s"),
        ("ends s", "ends_s"),
        ("score", "max_score"),
        ("track ids", "track_ids"),
    ],
    "frames": [
        ("video", "video_uri"),
        ("most at once", "n_objects"),
        ("first s", "start_s"),
        ("last s", "end_s"),
        ("times s", "times_s"),
    ],
}
WHAT = {"clips": "clip", "tracks": "track", "sequences": "sequence", "frames": "video"}


def _open(index_uri: str, storage_option: list[str] | None, as_of: int | None = None):
    from vidlake.query.engine import ConceptIndex

    if as_of is not None and as_of < 1:
        raise UsageError(f"--as-of must be a version >= 1, got {as_of}")
    return ConceptIndex(open_store(index_uri, storage_option), as_of=as_of)


def _not_indexed(engine, concept: str, candidates) -> str:
    """What a phrase nobody indexed gets: the line that says so, with its nearest concepts."""
    if not candidates:
        if not engine.concepts_table().num_rows and not engine.vocabulary():
            at = f" at version {engine.as_of}" if engine.as_of is not None else ""
            return f"{concept!r} is not indexed: the index{at} has no concepts at all"
        return f"{concept!r} is not indexed, and no indexed concept is near it"
    near = ", ".join(
        f"{c.concept} (similarity {c.similarity:.2f}"
        f"{', words match' if c.text_match else ''}, {counted(c.n_clips, 'clip')})"
        for c in candidates
    )
    return f"{concept!r} is not indexed; nearest indexed concepts: {near}"


def _far_from_every_concept(engine, concept: str) -> str:
    """What a phrase with no indexed concept near it gets: the nearest (under the floor) and
    the `vidlake index` command that adds it to the index."""
    from vidlake.query.commands import add_concept_command
    from vidlake.query.text import CANDIDATE_MIN_SIMILARITY

    nearest = engine.candidates(concept, n=1)
    if not nearest and not engine.concepts_table().num_rows and not engine.vocabulary():
        return _not_indexed(engine, concept, [])
    near = (
        f" (nearest: {nearest[0].concept}, similarity {nearest[0].similarity:.2f}, under "
        f"{CANDIDATE_MIN_SIMILARITY:.2f}): no candidate clips"
        if nearest
        else ": no candidate clips"
    )
    command = add_concept_command(engine.store, concept)
    return (
        f"{concept!r} is not indexed and no indexed concept is near it{near}; "
        f"index it with: {command}"
    )


def _cell(value) -> str:
    """A value as a table or CSV cell: seconds and scores to 2-3 decimals, lists joined."""
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else ""
    return str(value)


def _print_rows(
    hits,
    match: str,
    title: str,
    as_json: bool,
    as_csv: bool,
    limit: int | None = None,
    kind: str = "clips",
) -> None:
    """HITS (an Arrow table of clips) with a `match` column, as JSON, CSV or a table.

    HITS may hold one row over LIMIT (asked for so): only LIMIT rows are printed, and a note
    says that more match (on stderr with JSON or CSV, which stdout keeps parseable).
    """
    more = limit is not None and hits.num_rows > limit
    if more:
        hits = hits.slice(0, limit)
    rows = [{**r, "match": match} for r in hits.to_pylist()]
    if as_json:
        print(json.dumps(rows, indent=2))
    elif as_csv:
        # The header even without rows: a reader of the CSV gets its columns either way.
        fields = [*hits.column_names, "match"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        # List columns (a sequence's tracks, a video's times) as JSON arrays.
        writer.writerows(
            {k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows
        )
    elif rows:
        out.print(_table(rows, title, kind))
    if more:
        note = err if (as_json or as_csv) else out
        note.print(f"showing the first {limit} of more; raise --limit", markup=False)


def _table(rows: list[dict], title: str, kind: str = "clips") -> Table:
    # Cells are Text: names and phrases are the user's, never markup. Names wrap rather than
    # being cut; the clip or track id is never wrapped (`preview` takes a clip id), unless the
    # terminal is too narrow for the table at all, where it folds rather than losing characters.
    table = Table(title=plain(title))
    columns = SHOWN[kind]
    for header, column in columns:
        if column.endswith("_id"):
            table.add_column(header, no_wrap=True, overflow="fold")
        else:
            table.add_column(header, overflow="fold")
    for r in rows:
        cells = []
        for _, column in columns:
            value = r[column]
            if column == "video_uri":
                value = Path(value).name
            elif column in ("max_score", "max_area") and isinstance(value, float):
                value = f"{value:.3f}"
            elif column in ("start_s", "end_s", "duration_s") and isinstance(value, float):
                value = f"{value:.2f}"
            cells.append(plain(_cell(value)))
        table.add_row(*cells)
    return table


@app.command()
def query(
    phrase: Annotated[str, typer.Argument(help="The concept to look for, e.g. 'red umbrella'.")],
    index_uri: IndexOpt,
    min_score: MinScoreOpt = 0.0,
    min_presence: Annotated[float, typer.Option(help="Only clips with this presence score.")] = 0.0,
    video: VideoOpt = None,
    between: BetweenOpt = None,
    min_count: Annotated[int, typer.Option(help="Only clips with at least N such objects.")] = 1,
    with_: Annotated[
        list[str] | None,
        typer.Option("--with", help="Another phrase that must appear in the same clip."),
    ] = None,
    same_frame: Annotated[
        bool,
        typer.Option(
            "--same-frame",
            help="--with phrases in one sampled frame; without --with, --min-count objects on "
            "one frame anywhere in the video (hits: videos, with the times).",
        ),
    ] = False,
    then: Annotated[
        list[str] | None,
        typer.Option(
            "--then",
            help="A phrase whose track starts within --within seconds after the previous "
            "phrase's track starts (repeat for a sequence); hits are the tracks' sequences.",
        ),
    ] = None,
    within: Annotated[
        float | None, typer.Option(help="Seconds between one track's start and the next's.")
    ] = None,
    min_duration: Annotated[
        float | None,
        typer.Option(help="Only tracks visible this many seconds (first to last frame)."),
    ] = None,
    min_area: Annotated[
        float | None,
        typer.Option(help="Only tracks whose mask covers this share of the frame (0..1) once."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            help="x0,y0,x1,y1 (0..1 of width, height): only tracks whose box centre is "
            "inside on some frame."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many hits.")] = 100,
    order: Annotated[str, typer.Option(help="Order by 'score' (best first) or 'time'.")] = "score",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of rows.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV rows.")] = False,
    as_of: AsOfOpt = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="For a phrase not indexed: run the model with it on the candidate clips "
            "and add what it finds to the index.",
        ),
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Model for --verify (default: the one the index used).")
    ] = None,
    max_clips: Annotated[int, typer.Option(help="--verify checks at most this many clips.")] = 100,
    device: Annotated[str, typer.Option(help="Device for --verify.")] = "auto",
    address: Annotated[str | None, typer.Option(help="Ray cluster for --verify.")] = None,
    storage_option: StorageOpt = None,
) -> None:
    """Find the clips where a concept appears; a phrase nobody indexed gives candidates.

    Candidates (clips of the nearest indexed concepts) get every filter a phrase's hits get,
    --with and --same-frame included. --then/--within, --min-duration, --min-area, --region
    and --same-frame without --with ask about tracks across the video instead of clips.
    """
    from vidlake.query.engine import make_query, normalize_phrase
    from vidlake.query.options import parse_region

    if as_json and as_csv:
        raise UsageError("--json and --csv are exclusive")
    if verify and as_of is not None:
        raise UsageError("--verify writes to the index; it cannot run with --as-of")
    if max_clips < 1:
        raise UsageError(f"--max-clips must be >= 1, got {max_clips}")
    concept = normalize_phrase(phrase, "PHRASE")
    q = make_query(
        concept,
        min_score=min_score,
        min_presence=min_presence,
        limit=limit,
        videos=tuple(video or ()),
        between=between,
        min_count=min_count,
        with_concepts=tuple(with_ or ()),
        same_frame=same_frame,
        order_by=order,
        then=tuple(then or ()),
        within=within,
        min_duration=min_duration,
        min_area=min_area,
        region=None if region is None else parse_region(region),
        names=FLAGS,
    )
    # One row more than printed: it tells a result cut at --limit from one that ends there.
    one_more = dataclasses.replace(q, limit=limit + 1)
    engine = _open(index_uri, storage_option, as_of)
    engine.check_with_concepts(q)  # before any candidate search or --verify run
    for other in q.then:
        engine.check_indexed(other, "--then")
    if q.kind != "clips" and not verify:
        engine.check_indexed(concept, "PHRASE", tracks=True)
    note = err if (as_json or as_csv) else out
    result = None
    if not engine.is_indexed(concept):
        from vidlake.query.text import CANDIDATE_MIN_SIMILARITY

        # Candidate clips answer only for concepts near the phrase; --verify checks the
        # phrase itself on the nearest concepts' clips, however near.
        floor = -1.0 if verify else CANDIDATE_MIN_SIMILARITY
        candidates = engine.candidates(concept, min_similarity=floor)
        if not candidates and not verify:
            note.print(_far_from_every_concept(engine, concept), markup=False, soft_wrap=True)
            _print_rows(engine.candidate_clips([]), "candidate", "", as_json, as_csv)
            return
        note.print(_not_indexed(engine, concept, candidates), markup=False, soft_wrap=True)
        if not verify:
            clips = engine.candidate_clips(candidates, query=one_more)
            if candidates and not (as_json or as_csv):
                note.print(
                    "their clips are candidates; --verify checks them with the model", markup=False
                )
            shown = min(clips.num_rows, limit)
            _print_rows(
                clips,
                "candidate",
                f"{counted(shown, 'candidate clip')} for {concept!r}",
                as_json,
                as_csv,
                limit,
            )
            return
        result = engine.verify(
            concept,
            candidates=candidates,
            max_clips=max_clips,
            model=model,
            device=device,
            address=address,
        )
        checked = (
            f"{concept!r} with {result.model_id} on "
            f"{counted(result.n_clips_checked, 'candidate clip')}: "
            f"found in {result.n_clips_found}"
        )
        if not result.n_clips_checked:
            note.print(
                f"no candidate clip of {concept!r} left to check; not recorded as verified",
                markup=False,
                soft_wrap=True,
            )
        elif result.failures:
            recorded = "" if result.recorded else "; not recorded as verified: --verify retries"
            note.print(
                f"checked {checked}, {len(result.failures)} failed{recorded}",
                markup=False,
                soft_wrap=True,
            )
        else:
            note.print(f"verified {checked}; added to the index", markup=False, soft_wrap=True)
        for clip, error in result.failures:
            err.print(failure_line(clip, error), soft_wrap=True)
    elif verify:
        note.print(f"{concept!r} is indexed: a lookup, nothing to verify", markup=False)
    hits = engine.run(one_more)
    verified = engine.verified()
    if concept in verified:
        note.print(
            f"{concept!r} was verified at query time on "
            f"{counted(verified[concept], 'candidate clip')}, not indexed over every clip",
            markup=False,
            soft_wrap=True,
        )
    what = WHAT[q.kind]
    models = engine.hit_models(hits.slice(0, limit)) if "video_id" in hits.column_names else {}
    if len(models) > 1:
        # A change of --model is partial: the hits' scores are not on one scale.
        mixed = ", ".join(f"{m} ({counted(n, what)})" for m, n in models.items())
        note.print(
            f"these hits mix {len(models)} models: {mixed}; rerun the index job with the new "
            "--model to finish the migration",
            markup=False,
            soft_wrap=True,
        )
    if not hits.num_rows and not (as_json or as_csv):
        out.print(f"no {what}s with {concept!r}", markup=False)
    shown = min(hits.num_rows, limit)
    title = f"{counted(shown, what)} with {concept!r}"
    _print_rows(hits, "hit", title, as_json, as_csv, limit, q.kind)
    if result is not None and result.failures:
        raise typer.Exit(1)


@app.command()
def stats(
    phrase: Annotated[str, typer.Argument(help="The concept, e.g. 'red umbrella'.")],
    index_uri: IndexOpt,
    min_score: Annotated[float, typer.Option(help="Only tracks whose best score is this.")] = 0.0,
    video: VideoOpt = None,
    between: BetweenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_of: AsOfOpt = None,
    storage_option: StorageOpt = None,
) -> None:
    """Screen time of a concept per video: seconds on screen, first and last appearance,
    tracks, most objects on one frame; and the totals."""
    from vidlake.query.engine import make_query, normalize_phrase

    concept = normalize_phrase(phrase, "PHRASE")
    # Checked as `query` checks them, named by these flags.
    make_query(
        concept, min_score=min_score, videos=tuple(video or ()), between=between, names=FLAGS
    )
    engine = _open(index_uri, storage_option, as_of)
    result = engine.stats(concept, min_score=min_score, videos=tuple(video or ()), between=between)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    if not result.n_videos:
        out.print(f"no tracks of {concept!r}", markup=False)
        return
    table = Table(title=plain(f"{concept!r} in {counted(result.n_videos, 'video')}"))
    for header in ("video", "screen time s", "first s", "last s", "tracks", "most at once"):
        table.add_column(header, overflow="fold")
    for r in result.videos.to_pylist():
        table.add_row(
            plain(Path(r["video_uri"]).name),
            f"{r['screen_time_s']:.2f}",
            f"{r['first_s']:.2f}",
            f"{r['last_s']:.2f}",
            str(r["n_tracks"]),
            str(r["max_at_once"]),
        )
    table.add_row(
        plain("total"),
        f"{result.screen_time_s:.2f}",
        "",
        "",
        str(result.n_tracks),
        str(result.max_at_once),
    )
    out.print(table)


@app.command()
def sql(
    statement: Annotated[
        str,
        typer.Argument(
            help="A DuckDB SQL statement over the tables videos, clips, masklets, "
            "concept_hits, tracks, runs, concepts (committed rows only)."
        ),
    ],
    index_uri: IndexOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of rows.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV rows.")] = False,
    as_of: AsOfOpt = None,
    storage_option: StorageOpt = None,
) -> None:
    """Run SQL (DuckDB) over the index's committed rows."""
    if as_json and as_csv:
        raise UsageError("--json and --csv are exclusive")
    engine = _open(index_uri, storage_option, as_of)
    result = engine.sql(statement)
    rows = result.to_pylist()
    if as_json:
        print(json.dumps(rows, indent=2, default=_json_default))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=result.column_names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {
                k: json.dumps(v, default=_json_default) if isinstance(v, list | dict) else v
                for k, v in r.items()
            }
            for r in rows
        )
    else:
        table = Table(title=plain(counted(len(rows), "row")))
        for name in result.column_names:
            table.add_column(plain(name), overflow="fold")
        for r in rows:
            table.add_row(*(plain(_cell(v)) for v in r.values()))
        out.print(table)


def _json_default(value):
    """JSON of what SQL may return besides numbers and strings: bytes, times, decimals."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


@app.command()
def info(
    index_uri: IndexOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_of: AsOfOpt = None,
    storage_option: StorageOpt = None,
) -> None:
    """Show an index: rows and version per table, failed videos, the vocabulary."""
    import dataclasses

    engine = _open(index_uri, storage_option, as_of)
    details = engine.info()
    if as_json:
        print(json.dumps(dataclasses.asdict(details), indent=2))
        return
    out.print(f"index {details.uri} version {details.version}", markup=False)
    table = Table(title="tables")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("version", justify="right")
    for name, n in details.counts.items():
        table.add_row(plain(name), str(n), str(details.versions[name]))
    out.print(table)
    on_models = ", ".join(
        f"{m} ({counted(n, 'video')})" for m, n in details.videos_by_model.items()
    )
    partial = "; a change of --model is partial" if len(details.videos_by_model) > 1 else ""
    out.print(f"models: {on_models or ', '.join(details.models) or '-'}{partial}", markup=False)
    if details.not_videos:
        from vidlake.operators.probe import not_videos_note

        note = not_videos_note(details.not_videos)
        out.print(f"last index job: {note} (by extension)", markup=False)
    from vidlake.model.checkpoint import quality_steps_off
    from vidlake.store.maintenance import model_settings

    for model, settings in model_settings(engine.store).items():
        shown = ", ".join(f"{k} {v}" for k, v in settings.items())
        off = quality_steps_off(settings)
        note = f" (turns off {' and '.join(off)})" if off else ""
        out.print(f"{model} runs with: {shown}{note}", markup=False, soft_wrap=True)
    vocab = ", ".join(f"{c} ({counted(n, 'clip')})" for c, n in details.vocabulary.items())
    out.print(f"vocabulary: {vocab or '-'}", markup=False)
    if details.verified:
        # Clips where it was found, of the candidate clips checked (what `query` reports).
        checked = engine.verified()
        verified = ", ".join(
            f"{c} (found in {counted(n, 'clip')} of {checked.get(c, 0)} checked)"
            for c, n in details.verified.items()
        )
        out.print(f"verified at query time: {verified}", markup=False)
    for uri, error in details.failed:
        out.print(failure_line(uri, error), soft_wrap=True)


@app.command()
def reindex(index_uri: IndexOpt, storage_option: StorageOpt = None) -> None:
    """Rebuild the query indexes: concept lookups, full-text and embeddings of concept names."""
    from vidlake.query.indexes import refresh_indexes

    store = open_store(index_uri, storage_option)
    refresh_indexes(store)
    out.print(f"rebuilt the query indexes of {store.uri}", markup=False)


@app.command()
def export(
    phrase: Annotated[str, typer.Argument(help="The concept whose hits to export.")],
    index_uri: IndexOpt,
    out_path: Annotated[
        str,
        typer.Option(
            "--out",
            help="The JSON file (coco, ytvis) or the new or empty folder (yolo, cvat, mots) "
            "to write: a path or an s3:// URI.",
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="coco (COCO RLE), ytvis (YouTube-VIS), yolo (Ultralytics YOLO segmentation), "
            "cvat (CVAT for video 1.1) or mots (MOTChallenge MOTS).",
        ),
    ] = "coco",
    min_score: MinScoreOpt = 0.0,
    video: VideoOpt = None,
    between: BetweenOpt = None,
    limit: Annotated[int | None, typer.Option(help="At most this many clips.")] = None,
    as_of: AsOfOpt = None,
    storage_option: StorageOpt = None,
) -> None:
    """Write the masks of a concept's hits as COCO RLE or YouTube-VIS JSON, or as a YOLO, CVAT
    or MOTS dataset folder with the hits' frames."""
    from vidlake.query.engine import Query, normalize_phrase
    from vidlake.query.export import FORMATS, export_hits, prepare_output, write_json
    from vidlake.query.export_datasets import DATASET_FORMATS, prepare_folder, write_dataset

    formats = (*FORMATS, *DATASET_FORMATS)
    if fmt not in formats:
        raise UsageError(f"--format must be one of {', '.join(formats)}, got {fmt!r}")
    concept = normalize_phrase(phrase)
    q = Query(
        phrase=concept,
        min_score=min_score,
        videos=tuple(video or ()),
        between=between,
        limit=limit,
        names=FLAGS,
    )
    engine = _open(index_uri, storage_option, as_of)
    if not engine.is_indexed(concept):
        # An empty file would read as "indexed, found nowhere"; candidates are not hits.
        candidates = engine.candidates(concept)
        message = _not_indexed(engine, concept, candidates)
        if engine.candidate_clips(candidates, limit=1).num_rows:
            message += "; `vidlake query --verify` can add it"
        raise UsageError(message)
    options = engine.store.storage_options
    if fmt in DATASET_FORMATS:
        prepare_folder(out_path, options)
    else:
        prepare_output(out_path, options)
    hits = engine.run(q)
    if fmt in DATASET_FORMATS:
        n = write_dataset(engine, hits, fmt, out_path, [concept])
    else:
        data = export_hits(engine, hits, fmt, [concept])  # type: ignore[arg-type]
        write_json(data, out_path, options)
        n = len(data["annotations"])
    if not hits.num_rows:
        err.print(
            f"note: no hits of {concept!r} match; {out_path} is an empty {fmt} dataset",
            markup=False,
            soft_wrap=True,
        )
    out.print(
        f"wrote {counted(n, 'annotation')} of {counted(hits.num_rows, 'clip')} to {out_path}",
        markup=False,
    )


@app.command()
def preview(
    clip_id: Annotated[str, typer.Argument(help="A clip id (from `vidlake query`).")],
    index_uri: IndexOpt,
    out_path: Annotated[
        str,
        typer.Option("--out", help="FILE.gif, FILE.mp4 or FILE.png (a path or s3://bucket/key)."),
    ],
    concept: Annotated[
        list[str] | None, typer.Option("--concept", help="Draw only this concept.")
    ] = None,
    as_of: AsOfOpt = None,
    storage_option: StorageOpt = None,
) -> None:
    """Draw a clip's masks, boxes and labels over its frames."""
    from vidlake.query.engine import normalize_phrase
    from vidlake.query.preview import write_preview

    engine = _open(index_uri, storage_option, as_of)
    concepts = [normalize_phrase(c, "--concept") for c in concept] if concept else None
    path = write_preview(engine, clip_id, out_path, concepts)
    out.print(f"wrote {path}", markup=False)
