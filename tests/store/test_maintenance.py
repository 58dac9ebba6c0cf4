"""Compaction, version cleanup and the run history on a local index (no Ray)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

from vidlake.jobs.cli_admin import parse_duration
from vidlake.store.maintenance import compact, list_runs
from vidlake.store.schema import TABLES, now_utc
from vidlake.store.tables import IndexStore, write_fragments


def run_row(run_id: str, n_indexed: int) -> dict:
    return {
        "run_id": run_id, "started_at": now_utc(), "finished_at": now_utc(),
        "status": "completed", "arguments": "{}", "versions": "{}",
        "n_videos_indexed": n_indexed, "n_videos_failed": 0, "n_videos_skipped": 0,
        "n_clips": 0, "n_masklets": 0, "n_frames": 0, "frames_per_s": 0.0, "wall_s": 1.0,
    }  # fmt: skip


@pytest.fixture
def store(tmp_path) -> IndexStore:
    store = IndexStore.create(str(tmp_path / "idx"))
    for i in range(5):
        store.append_run(run_row(f"run{i}", i))
    return store


def test_compact_merges_fragments_and_drops_old_versions(store):
    report = {r.table: r for r in compact(store, timedelta(0))}
    assert set(report) == set(TABLES)
    runs = report["runs"]
    assert (runs.fragments_before, runs.fragments_after) == (5, 1)
    assert runs.versions_before == 6 and runs.versions_after == 1
    assert runs.bytes_after < runs.bytes_before
    assert store.dataset("runs").count_rows() == 5
    assert [r["run_id"] for r in list_runs(store).to_pylist()] == [f"run{i}" for i in range(5)][
        ::-1
    ]
    assert len(list_runs(store, limit=2)) == 2


def test_retention_keeps_recent_versions(store):
    report = {r.table: r for r in compact(store, timedelta(days=7))}
    assert report["runs"].fragments_after == 1
    assert report["runs"].versions_after > report["runs"].versions_before  # + compaction
    assert store.dataset("runs", version=2).count_rows() == 1  # still readable as of v2


def test_delete_unverified_removes_fragments_of_killed_jobs(store):
    table = pa.Table.from_pylist([run_row("orphan", 0)], schema=TABLES["runs"])
    write_fragments(store.uri, {"runs": table})  # written, never committed: a killed job's
    kept = {r.table: r for r in compact(store, timedelta(0))}["runs"]
    cleaned = {r.table: r for r in compact(store, timedelta(0), delete_unverified=True)}["runs"]
    assert cleaned.bytes_after < kept.bytes_after
    assert store.dataset("runs").count_rows() == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("0", timedelta(0)),
     ("90s", timedelta(seconds=90)), ("2w", timedelta(weeks=2)), ("1.5h", timedelta(minutes=90))],
)  # fmt: skip
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_parse_duration_rejects_garbage():
    from vidlake.errors import UsageError

    with pytest.raises(UsageError, match="not a duration"):
        parse_duration("a week")


@pytest.mark.parametrize("text", ["1000000000d", "36501d", "999999999999w", "3153600001"])
def test_parse_duration_refuses_a_retention_past_100_years(text):
    from vidlake.errors import UsageError

    with pytest.raises(UsageError, match=r"too long: at most 36500d \(100 years\)"):
        parse_duration(text)


def test_the_longest_retention_compacts_and_keeps_every_version(store):
    # Far longer than this, Lance's "now - retention" panics in Rust (not an exception).
    keep = parse_duration("36500d")
    assert keep == timedelta(days=36500)
    runs = {r.table: r for r in compact(store, keep)}["runs"]
    assert runs.versions_after > runs.versions_before  # none removed, compaction added
