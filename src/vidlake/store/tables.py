"""The index on disk or object storage: one Lance dataset per table, appends, commits, indexes.

Writes follow one rule: a video's clips, masklets and concept hits are committed before its
`videos` row, and readers only trust rows whose video has an `indexed` row. A crash between
the two leaves orphan rows that no query sees and that the next job deletes first.
"""

from __future__ import annotations

import logging
import pickle
import posixpath
from collections.abc import Iterable
from pathlib import Path

import lance
import pyarrow as pa
import pyarrow.compute as pc

from vidlake.errors import IndexNotFoundError, UsageError, VidlakeError
from vidlake.records import VideoSource
from vidlake.store.object_store import check_uri, lance_options
from vidlake.store.schema import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    STATUS_FAILED,
    STATUS_INDEXED,
    TABLES,
    masklet_summaries,
    track_table,
)

log = logging.getLogger(__name__)

DATA_STORAGE_VERSION = "stable"  # Lance's current file format, never the legacy v1 one
# The tables whose fragments write tasks write per clip batch, and every table holding rows
# of a video (deleted with it, invisible without its commit marker).
PER_VIDEO_TABLES = ("clips", "masklets", "concept_hits", "presence")
VIDEO_ROW_TABLES = (*PER_VIDEO_TABLES, "tracks")
COMPACT_FRAGMENTS_OVER = 64
# The keys commits merge_insert on: stitched track ids into masklets, commit markers into
# videos (see IndexStore.update_key_indexes).
KEY_INDEXES = {"masklets": "masklet_id", "videos": "video_id"}


def normalize_uri(uri: str) -> str:
    """The index URI with local paths made absolute (Ray workers run in other directories).

    A scheme with one slash ("s3:/bucket/idx") is a UsageError, not a local folder.
    """
    check_uri(uri)
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(uri).expanduser().resolve())


def table_uri(index_uri: str, table: str) -> str:
    return posixpath.join(index_uri, f"{table}.lance")


def write_fragments(
    index_uri: str, tables: dict[str, pa.Table], storage_options: dict | None = None
) -> dict[str, bytes]:
    """Writes each non-empty table's rows as new, uncommitted fragments; returns them pickled.

    Runs on Ray workers: the data files land in the table's folder but stay invisible until
    `IndexStore.commit_fragments` commits them. Fragments of a killed job are never committed
    and are removed by compaction's cleanup.
    """
    from lance_ray.fragment import write_fragment

    out: dict[str, bytes] = {}
    for name, table in tables.items():
        if table.num_rows == 0:
            continue
        written = write_fragment(
            [table],
            table_uri(index_uri, name),
            schema=TABLES[name],
            data_storage_version=DATA_STORAGE_VERSION,
            storage_options=storage_options,
        )
        out[name] = pickle.dumps([fragment for fragment, _ in written])
    return out


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


class IndexStore:
    """The tables of one index. Open with `IndexStore.open` (read) or `IndexStore.create`."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = normalize_uri(uri)
        # Lance's keys, with the AWS variables filled in (see store/object_store.py).
        self.storage_options = lance_options(storage_options) or None

    @classmethod
    def open(cls, uri: str, storage_options: dict | None = None) -> IndexStore:
        """An existing index; IndexNotFoundError if URI holds none, VidlakeError if too new."""
        store = cls(uri, storage_options)
        try:
            videos = store.dataset("videos")
        except (ValueError, OSError, FileNotFoundError) as exc:
            local = "://" not in store.uri and not Path(store.uri).exists()
            why = "no such folder" if local else "no videos table"
            raise IndexNotFoundError(
                f"{uri}: not a vidlake index ({why}); create one with `vidlake index`"
            ) from exc
        store._check_version(videos.schema)
        return store

    @classmethod
    def create(cls, uri: str, storage_options: dict | None = None) -> IndexStore:
        """The index at URI, with any missing table created empty."""
        store = cls(uri, storage_options)
        if "://" not in store.uri:
            folder = Path(store.uri)
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"index {uri} is a file; an index is a folder or an s3:// prefix")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the index folder {uri}: {exc.strerror}") from exc
        store.ensure_tracks()  # an index older than the tracks table: built from its masklets
        for name, schema in TABLES.items():
            try:
                ds = store.dataset(name)
            except (ValueError, OSError, FileNotFoundError):
                try:
                    lance.write_dataset(
                        schema.empty_table(),
                        table_uri(store.uri, name),
                        mode="create",
                        data_storage_version=DATA_STORAGE_VERSION,
                        storage_options=store.storage_options,
                    )
                    continue
                except (ValueError, OSError) as exc:
                    # Another job created it between our check and our create: use theirs.
                    log.debug("table %s appeared concurrently: %s", name, exc)
                    ds = store.dataset(name)
            store._check_version(ds.schema)
            store._add_missing_columns(name, ds)
        return store

    def _add_missing_columns(self, table: str, ds: lance.LanceDataset) -> None:
        """Adds the columns TABLE's schema gained since DS was created, all null: schema
        changes are additive, so an index written by an older vidlake stays usable."""
        missing = [f for f in TABLES[table] if f.name not in ds.schema.names]
        if not missing:
            return
        try:
            ds.add_columns(missing)
        except (OSError, RuntimeError, ValueError) as exc:
            # Another job added them between our read and our commit: theirs will do.
            if any(f.name not in self.dataset(table).schema.names for f in missing):
                raise VidlakeError(f"cannot add columns to {table} of {self.uri}: {exc}") from exc

    def has_table(self, table: str) -> bool:
        try:
            self.dataset(table)
        except (ValueError, OSError, FileNotFoundError):
            return False
        return True

    def ensure_tracks(self, videos_per_pass: int = 1000) -> int:
        """Builds the `tracks` table from the masklets if the index has none; the tracks made.

        The migration of an index written before the table existed (its masklets carry the
        stitched track ids already). Reads the masklets of VIDEOS_PER_PASS committed videos at
        a time, and creates the table in one commit at the end, so a killed migration leaves
        no table and is redone.
        """
        if self.has_table("tracks") or not self.has_table("masklets"):
            return 0  # a new index gets its empty tables from `create`
        video_ids = sorted(set(self.indexed_video_ids().to_pylist()))
        columns = ["masklet_id", "clip_id", "video_id", "track_id", "concept", "score"]
        columns += ["presence", "first_s", "last_s", "frame_idx", "boxes", "masks"]
        clip_columns = ["clip_id", "video_uri", "frame_times_s", "width", "height"]
        parts = [TABLES["tracks"].empty_table()]
        for start in range(0, len(video_ids), videos_per_pass):
            where = f"video_id IN ({_sql_list(video_ids[start : start + videos_per_pass])})"
            masklets = self.dataset("masklets").to_table(columns=columns, filter=where)
            if masklets.num_rows:
                clips = self.dataset("clips").to_table(columns=clip_columns, filter=where)
                parts.append(track_table(masklet_summaries(masklets, clips)))
        tracks = pa.concat_tables(parts)
        try:
            lance.write_dataset(
                tracks,
                table_uri(self.uri, "tracks"),
                mode="create",
                data_storage_version=DATA_STORAGE_VERSION,
                storage_options=self.storage_options,
            )
        except (ValueError, OSError) as exc:  # another job migrated it meanwhile: theirs stays
            log.debug("tracks table appeared concurrently: %s", exc)
            return 0
        log.info("built the tracks table from the masklets: %d tracks", tracks.num_rows)
        return tracks.num_rows

    def _check_version(self, schema: pa.Schema) -> None:
        found = int((schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"0"))
        if found == 0:
            raise IndexNotFoundError(
                f"{self.uri}: not a vidlake index (tables lack vidlake metadata)"
            )
        if found > SCHEMA_VERSION:
            raise VidlakeError(
                f"{self.uri}: index schema version {found} is newer than this vidlake supports "
                f"({SCHEMA_VERSION}); upgrade vidlake"
            )

    def dataset(self, table: str, version: int | None = None) -> lance.LanceDataset:
        return lance.dataset(
            table_uri(self.uri, table), version=version, storage_options=self.storage_options
        )

    # ---- writes -------------------------------------------------------------------------

    def commit_fragments(self, table: str, pickled: list[bytes]) -> int:
        """Commits fragments written by `write_fragments` as one Append to TABLE; returns how
        many fragments that was."""
        fragments = [f for blob in pickled for f in pickle.loads(blob)]
        if not fragments:
            return 0
        ds = self.dataset(table)
        lance.LanceDataset.commit(
            ds.uri,
            lance.LanceOperation.Append(fragments),
            read_version=ds.version,
            storage_options=self.storage_options,
        )
        return len(fragments)

    def upsert_videos(self, rows: list[dict]) -> None:
        """Writes `videos` rows (commit markers), replacing earlier rows of the same video_id."""
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=TABLES["videos"])
        (
            self.dataset("videos")
            .merge_insert("video_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(table)
        )

    def set_track_ids(self, track_ids: dict[str, str]) -> None:
        """Sets masklets' track_id (masklet_id -> track_id), as clip stitching decided them."""
        if not track_ids:
            return
        table = pa.table(
            {
                "masklet_id": pa.array(list(track_ids), pa.string()),
                "track_id": pa.array(list(track_ids.values()), pa.string()),
            }
        )
        self.dataset("masklets").merge_insert("masklet_id").when_matched_update_all().execute(table)

    def append_rows(self, table: str, rows: pa.Table) -> None:
        """Appends ROWS to TABLE as one commit (the driver's small per-video tables)."""
        lance.write_dataset(
            rows.cast(TABLES[table]),
            table_uri(self.uri, table),
            mode="append",
            data_storage_version=DATA_STORAGE_VERSION,
            storage_options=self.storage_options,
        )

    def append_run(self, row: dict) -> None:
        lance.write_dataset(
            pa.Table.from_pylist([row], schema=TABLES["runs"]),
            table_uri(self.uri, "runs"),
            mode="append",
            storage_options=self.storage_options,
        )

    def delete_failed(self, sources: Iterable[VideoSource]) -> int:
        """Deletes the failed rows of exactly these SOURCES (same id and fingerprint); how many.

        For the placeholder rows of sources that could not be listed in an earlier run (a
        missing path, an empty folder): once a source lists videos, those are indexed under
        their own ids, and the placeholder would stay among `info`'s failures for good.
        """
        by_id = {s.video_id: s.fingerprint for s in sources}
        if not by_id:
            return 0
        rows = self.dataset("videos").to_table(
            columns=["video_id", "fingerprint"],
            filter=f"status = '{STATUS_FAILED}' AND video_id IN ({_sql_list(by_id)})",
        )
        stale = [
            r["video_id"] for r in rows.to_pylist() if by_id[r["video_id"]] == r["fingerprint"]
        ]
        self.delete_videos(stale)
        return len(stale)

    def delete_videos(self, video_ids: Iterable[str], include_video_rows: bool = True) -> None:
        """Deletes every row of these videos (the `videos` row first, so none is half-visible)."""
        ids = sorted(set(video_ids))
        if not ids:
            return
        for start in range(0, len(ids), 500):
            where = f"video_id IN ({_sql_list(ids[start : start + 500])})"
            tables = (("videos",) if include_video_rows else ()) + VIDEO_ROW_TABLES
            for table in tables:
                self.dataset(table).delete(where)

    def delete_concepts(self, concepts_of: dict[str, list[str]]) -> int:
        """Deletes the `masklets`, `concept_hits`, `presence` and `tracks` rows of these
        concepts of these videos
        (video_id -> concept names); their clips and other concepts stay. Returns how many
        videos had any. Such rows are rare (verified at query time, or left by a killed job):
        the videos that have some are found first, with one read per table by concept (an
        index lookup in `concept_hits`), so growing a large archive's vocabulary costs no
        delete per video."""
        wanted = {(v, c) for v, names in concepts_of.items() for c in names}
        if not wanted:
            return 0
        concepts = sorted({c for _, c in wanted})
        found: dict[str, set[str]] = {}
        for table in ("concept_hits", "masklets", "presence"):
            if not self.has_table(table):
                continue
            rows = self.dataset(table).to_table(
                columns=["video_id", "concept"], filter=f"concept IN ({_sql_list(concepts)})"
            )
            for v, c in zip(
                rows.column("video_id").to_pylist(), rows.column("concept").to_pylist(), strict=True
            ):
                if (v, c) in wanted:
                    found.setdefault(v, set()).add(c)
        by_concepts: dict[tuple[str, ...], list[str]] = {}
        for video_id, names in found.items():
            by_concepts.setdefault(tuple(sorted(names)), []).append(video_id)
        for names, ids in by_concepts.items():
            for start in range(0, len(ids), 500):
                where = (
                    f"video_id IN ({_sql_list(ids[start : start + 500])}) "
                    f"AND concept IN ({_sql_list(names)})"
                )
                # The index first: hits go first.
                for table in ("concept_hits", "masklets", "presence", "tracks"):
                    if self.has_table(table):
                        self.dataset(table).delete(where)
        return len(found)

    def next_object_ids(self, video_ids: Iterable[str]) -> dict[str, int]:
        """video_id -> one more than the largest `object_id` of its masklets (0 if none):
        where the object ids of concepts added to the video start, so that their masklet
        and track ids (derived from clip and object id) never collide with existing ones."""
        ids = sorted(set(video_ids))
        out = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), 500):
            rows = self.dataset("masklets").to_table(
                columns=["video_id", "object_id"],
                filter=f"video_id IN ({_sql_list(ids[start : start + 500])})",
            )
            if rows.num_rows:
                top = rows.group_by("video_id").aggregate([("object_id", "max")])
                for r in top.to_pylist():
                    out[r["video_id"]] = int(r["object_id_max"]) + 1
        return out

    def video_rows(self, video_ids: Iterable[str]) -> list[dict]:
        """The whole `videos` rows of these ids (to upsert back changed)."""
        ids = sorted(set(video_ids))
        rows: list[dict] = []
        for start in range(0, len(ids), 500):
            rows += (
                self.dataset("videos")
                .to_table(filter=f"video_id IN ({_sql_list(ids[start : start + 500])})")
                .to_pylist()
            )
        return rows

    def delete_orphans(self, only: Iterable[str] | None = None) -> int:
        """Deletes clip-level rows of videos without an `indexed` row (left by a killed job).

        only: restrict to these video ids (what a job is about to redo); None: every video,
        safe only when no other job is writing the index.
        """
        indexed = set(self.indexed_video_ids().to_pylist())
        present = set()
        for table in VIDEO_ROW_TABLES:
            col = self.dataset(table).to_table(columns=["video_id"]).column("video_id")
            present.update(pc.unique(col).to_pylist())
        orphans = present - indexed
        if only is not None:
            orphans &= set(only)
        if orphans:
            log.info("deleting rows of %d videos left half-written by an earlier job", len(orphans))
            self.delete_videos(orphans, include_video_rows=False)
        return len(orphans)

    def prune_videos(self, keep: set[str]) -> int:
        """Deletes every video (and its rows) whose id is not in KEEP; returns how many."""
        ids = set(self.videos(columns=["video_id"]).column("video_id").to_pylist())
        gone = ids - keep
        self.delete_videos(gone)
        return len(gone)

    def update_key_indexes(self) -> None:
        """Brings the BTREEs that writes look rows up by (`KEY_INDEXES`) up to date.

        merge_insert joins on its key through the index and scans only fragments the index
        does not cover: without this, a job's every commit scanned every row it had written
        (at 1,000 videos, stitched track ids took 1 s a video). Creates a missing index, else
        adds new fragments to it (`optimize_indices`: ~0.2 s at 1M rows, so call it every
        few dozen fragments, not every commit). An optimisation only: a concurrent job's
        commit may win the race, and the next call catches up.
        """
        for table, column in KEY_INDEXES.items():
            ds = self.dataset(table)
            name = f"{column}_idx"
            try:
                if name in {i.name for i in ds.describe_indices()}:
                    ds.optimize.optimize_indices(index_names=[name])
                elif ds.count_rows() > 0:
                    ds.create_scalar_index(column, "BTREE", replace=True)
            except (OSError, RuntimeError, ValueError) as exc:
                log.debug("updating index %s of %s failed: %s", name, table, exc)

    def build_indexes(self) -> None:
        """Scalar indexes for the lookups queries make (rebuilt so they cover new fragments)."""
        for table in ("concept_hits", "tracks"):
            ds = self.dataset(table)
            if ds.count_rows() > 0:
                ds.create_scalar_index("concept", "BITMAP", replace=True)
        for table, column in (("clips", "clip_id"), ("masklets", "clip_id"), *KEY_INDEXES.items()):
            ds = self.dataset(table)
            if ds.count_rows() > 0:
                ds.create_scalar_index(column, "BTREE", replace=True)

    def compact_if_fragmented(self) -> list[str]:
        """Compacts tables with many small fragments (one per clip is what jobs leave)."""
        compacted = []
        for table in VIDEO_ROW_TABLES + ("videos", "runs"):
            ds = self.dataset(table)
            if len(ds.get_fragments()) > COMPACT_FRAGMENTS_OVER:
                ds.optimize.compact_files()
                compacted.append(table)
        return compacted

    # ---- reads --------------------------------------------------------------------------

    def videos(self, columns: list[str] | None = None) -> pa.Table:
        return self.dataset("videos").to_table(columns=columns)

    def indexed_video_ids(self) -> pa.Array:
        t = self.dataset("videos").to_table(
            columns=["video_id"], filter=f"status = '{STATUS_INDEXED}'"
        )
        return t.column("video_id").combine_chunks()

    def counts(self) -> dict[str, int]:
        return {name: self.dataset(name).count_rows() for name in TABLES}

    def versions(self) -> dict[str, int]:
        return {name: self.dataset(name).version for name in TABLES}
