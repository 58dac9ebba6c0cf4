"""Index maintenance: compaction, index refresh, cleanup of old versions, and the run history.

Every index job appends a few fragments per clip and a version per commit, so an index that
is updated nightly grows thousands of small files and versions. `compact` rewrites each
table's fragments into few large ones, folds new rows into the existing indexes, and deletes
versions (and the files only they reference) older than a retention window: queries pinned to
a version (`--as-of`) keep working for that long.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa
from fsspec.core import url_to_fs

from vidlake.store.object_store import fsspec_options
from vidlake.store.schema import TABLES
from vidlake.store.tables import IndexStore, table_uri

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class TableCompaction:
    """What `compact` did to one table; bytes are everything stored under the table's folder."""

    table: str
    fragments_before: int
    fragments_after: int
    versions_before: int
    versions_after: int
    bytes_before: int
    bytes_after: int
    version_after: int
    files_removed: int


def compact(
    store: IndexStore,
    retention: timedelta = DEFAULT_RETENTION,
    *,
    delete_unverified: bool = False,
) -> list[TableCompaction]:
    """Compacts every table, refreshes its indexes, deletes versions older than RETENTION.

    delete_unverified also deletes data files no version references however young they are:
    the fragments a killed index job wrote but never committed. Lance otherwise keeps such
    files for 7 days, since they look like those of a job still writing; so pass it only
    when no index job is running on this index (a running job's fragments would be lost).
    Tagged versions are kept whatever their age.
    """
    if retention < timedelta(0):
        raise ValueError(f"retention must be >= 0, got {retention}")
    report = []
    for table in TABLES:
        try:
            ds = store.dataset(table)
        except (ValueError, OSError, FileNotFoundError):
            continue  # a table this index predates (the next index job creates it)
        fragments_before = len(ds.get_fragments())
        versions_before = len(ds.versions())
        bytes_before = _stored_bytes(store, table)

        metrics = ds.optimize.compact_files()
        ds = store.dataset(table)
        if ds.describe_indices():
            ds.optimize.optimize_indices()
            ds = store.dataset(table)
        stats = ds.cleanup_old_versions(
            older_than=retention,
            delete_unverified=delete_unverified,
            error_if_tagged_old_versions=False,
        )
        ds = store.dataset(table)
        log.info(
            "%s: %d fragments compacted into %d; %d old versions removed (%d bytes)",
            table,
            metrics.fragments_removed,
            metrics.fragments_added,
            stats.old_versions,
            stats.bytes_removed,
        )
        report.append(
            TableCompaction(
                table=table,
                fragments_before=fragments_before,
                fragments_after=len(ds.get_fragments()),
                versions_before=versions_before,
                versions_after=len(ds.versions()),
                bytes_before=bytes_before,
                bytes_after=_stored_bytes(store, table),
                version_after=ds.version,
                files_removed=stats.data_files_removed
                + stats.index_files_removed
                + stats.deletion_files_removed
                + stats.transaction_files_removed,
            )
        )
    return report


def _stored_bytes(store: IndexStore, table: str) -> int:
    """Bytes of every file under the table's folder: all versions, indexes and strays."""
    uri = table_uri(store.uri, table)
    fs, path = url_to_fs(uri, **fsspec_options(uri, store.storage_options))
    fs.invalidate_cache()  # s3fs caches listings; cleanup has just deleted files under path
    return sum(int(info.get("size") or 0) for info in fs.find(path, detail=True).values())


def list_runs(store: IndexStore, limit: int | None = None) -> pa.Table:
    """The `runs` table, newest run first (at most LIMIT rows)."""
    runs = store.dataset("runs").to_table()
    runs = runs.sort_by([("started_at", "descending"), ("run_id", "ascending")])
    return runs.slice(0, limit) if limit is not None else runs


def model_settings(store: IndexStore) -> dict[str, dict]:
    """{model: the decision settings its newest run ran with} (SAM 3's thresholds, NMS,
    hotstart, hole area, recorded by the index job); models whose runs recorded none are left
    out."""
    found: dict[str, dict] = {}
    for row in list_runs(store).select(["arguments"]).to_pylist():
        arguments = json.loads(row["arguments"]) if row["arguments"] else {}
        model, settings = arguments.get("model"), arguments.get("model_settings")
        if model and settings and model not in found:
            found[model] = settings
    return found
