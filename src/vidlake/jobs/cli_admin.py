"""`vidlake compact` and `vidlake runs`: index maintenance and the history of index jobs."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from vidlake.errors import UsageError, counted
from vidlake.jobs.cli import IndexOpt, StorageOpt, app, open_store, out, plain

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Longer is "keep every version" in practice; far longer overflows timedelta (~2.7 million
# years) or Lance's "now - retention" (a Rust panic, not an exception).
MAX_RETENTION_DAYS = 36500


def parse_duration(text: str) -> timedelta:
    """A duration from "7d", "12h", "30m", "90s", "2w" or plain seconds ("0"), at most
    MAX_RETENTION_DAYS."""
    match = _DURATION.match(text.lower())
    if not match:
        raise UsageError(f"--retention {text!r} is not a duration; use e.g. 7d, 12h, 30m, 90s or 0")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_RETENTION_DAYS * 86400:
        raise UsageError(
            f"--retention {text!r} is too long: at most {MAX_RETENTION_DAYS}d (100 years)"
        )
    return timedelta(seconds=seconds)


def describe_retention(keep: timedelta) -> str:
    """What compact removed, in words: "versions older than 7 days removed"."""
    seconds = keep.total_seconds()
    if seconds <= 0:
        return "every version but the latest removed"
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    # The largest unit that counts it whole (36h stays hours); fractions of a second as given.
    unit, size = next(((u, s) for u, s in units if seconds >= s and seconds % s == 0), units[-1])
    n = seconds / size
    amount = f"{n:g}"
    return f"versions older than {amount} {unit}{'' if n == 1 else 's'} removed"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@app.command()
def compact(
    index_uri: IndexOpt,
    retention: Annotated[
        str, typer.Option(help="Keep versions younger than this (7d, 12h, 0: only the latest).")
    ] = "7d",
    delete_unverified: Annotated[
        bool,
        typer.Option(
            help="Also delete uncommitted files of killed jobs, however young; only when no "
            "index job is running on this index."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Compact every table, refresh its indexes and delete versions older than --retention."""
    import dataclasses

    from vidlake.store.maintenance import compact as compact_index

    keep = parse_duration(retention)
    store = open_store(index_uri, storage_option)
    report = compact_index(store, keep, delete_unverified=delete_unverified)
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in report], indent=2))
        return
    table = Table(title=plain(f"compacted {store.uri} ({describe_retention(keep)})"))
    for col in ("table", "fragments", "versions", "bytes", "version"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for r in report:
        table.add_row(
            plain(r.table),
            f"{r.fragments_before} → {r.fragments_after}",
            f"{r.versions_before} → {r.versions_after}",
            f"{_size(r.bytes_before)} → {_size(r.bytes_after)}",
            str(r.version_after),
        )
    out.print(table)


@app.command()
def runs(
    index_uri: IndexOpt,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """List the index jobs run on an index, newest first.

    Start, status, model, videos indexed/failed/skipped, clips, frames/s; --json: all arguments.
    """
    from vidlake.store.maintenance import list_runs

    if limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    store = open_store(index_uri, storage_option)
    rows = list_runs(store, limit).to_pylist()
    if as_json:
        for row in rows:
            for key in ("started_at", "finished_at"):
                row[key] = row[key].isoformat() if row[key] else None
            for key in ("arguments", "versions", "not_videos"):
                row[key] = json.loads(row[key]) if row.get(key) else {}
            row["segmented_concepts"] = list(row.get("segmented_concepts") or [])
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(f"no runs recorded in {store.uri}", markup=False)
        return
    table = Table(title=f"{counted(len(rows), 'run')}, newest first")
    table.add_column("run", no_wrap=True, overflow="fold")  # whole: `runs --json` finds it
    for col in ("started (UTC)", "status", "model"):
        table.add_column(col, overflow="fold")
    for col in ("indexed", "failed", "skipped", "clips", "frames/s", "wall s"):
        table.add_column(col, justify="right", overflow="fold")
    for r in rows:
        arguments = json.loads(r["arguments"]) if r["arguments"] else {}
        table.add_row(
            plain(r["run_id"]),
            r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "-",
            plain(r["status"]),
            plain(arguments.get("model") or "-"),
            str(r["n_videos_indexed"]),
            str(r["n_videos_failed"]),
            str(r["n_videos_skipped"]),
            str(r["n_clips"]),
            f"{r['frames_per_s']:.1f}",
            f"{r['wall_s']:.1f}",
        )
    out.print(table)
    from vidlake.model.checkpoint import quality_steps_off

    for r in rows:
        arguments = json.loads(r["arguments"]) if r["arguments"] else {}
        off = quality_steps_off(arguments.get("model_settings") or {})
        if off:
            out.print(
                f"run {r['run_id']}: its checkpoint turned off SAM 3's {' and '.join(off)}",
                markup=False,
            )
    by_model = _indexed_videos_by_model(store)
    if len(by_model) > 1:
        on = ", ".join(f"{m}: {counted(n, 'video')}" for m, n in by_model.items())
        out.print(
            f"indexed videos per model: {on} (a change of --model is partial: rerun the "
            "index job with the new model to finish it)",
            markup=False,
        )


def _indexed_videos_by_model(store) -> dict[str, int]:
    """model -> indexed videos on it, most first."""
    from collections import Counter

    videos = store.dataset("videos").to_table(columns=["model_id"], filter="status = 'indexed'")
    return dict(Counter(videos.column("model_id").to_pylist()).most_common())
