"""Commits finished videos to the index from the driver: many videos per commit when
commits are slow, so that committing never becomes the job's serial bottleneck.

A commit is one Lance transaction per table: the videos' fragments appended to `clips`,
`masklets` and `concept_hits`, their stitched track ids merged into `masklets`, their `tracks`
rows (one per stitched track, made by the driver from the stitching) appended, and last
their `videos` rows (the commit markers readers trust). Each video is still all or nothing;
grouping only decides how many finished videos wait for the next commit, and a killed job
redoes those.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pyarrow as pa

from vidlake.store.tables import PER_VIDEO_TABLES, IndexStore

# At most this share of the driver's time goes to commits: after a commit that took d
# seconds, the next waits until d * (1 - share) / share have passed (4 d here). Local commits
# take ~20-50 ms, so videos are committed one by one as they finish; on object storage, where
# a commit takes 0.15-0.3 s (an S3 endpoint on loopback; more across a network), finished
# videos are grouped instead of queueing behind the driver.
COMMIT_SHARE = 0.2
# The key indexes commits look rows up by are updated after this many fragments appended.
FRAGMENTS_PER_INDEX_UPDATE = 64


class VideoCommitter:
    """Collects finished videos and commits them, rate-limited to `max_share` of the time."""

    def __init__(
        self,
        store: IndexStore,
        max_share: float = COMMIT_SHARE,
        clock: Callable[[], float] = time.monotonic,
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        """ON_COMMIT: called with each commit's seconds (the job's commit-latency metric)."""
        self.store = store
        self.max_share = max_share
        self.clock = clock
        self.on_commit = on_commit
        self.fragments: dict[str, list[bytes]] = defaultdict(list)
        self.tracks: dict[str, str] = {}
        self.track_rows: list[pa.Table] = []
        self.rows: list[dict] = []
        self.n_commits = 0
        self.commit_s = 0.0  # seconds spent committing, summed
        self._last_end = -float("inf")
        self._last_s = 0.0
        self._unindexed = 0  # fragments appended since the key indexes were last updated

    def add(
        self,
        row: dict,
        fragments: dict[str, list[bytes]] | None = None,
        tracks: dict[str, str] | None = None,
        track_rows: pa.Table | None = None,
    ) -> None:
        """Queues a finished video: its `videos` row, fragments (table -> pickled fragment
        lists from `write_fragments`), stitched track ids (masklet_id -> track_id) and its
        `tracks` rows."""
        for table, blobs in (fragments or {}).items():
            self.fragments[table].extend(blobs)
        self.tracks.update(tracks or {})
        if track_rows is not None and track_rows.num_rows:
            self.track_rows.append(track_rows)
        self.rows.append(row)

    @property
    def pending(self) -> int:
        """Videos queued and not committed yet."""
        return len(self.rows)

    def due(self) -> bool:
        """Whether a commit now keeps commits within their share of the driver's time."""
        wait = self._last_s * (1 - self.max_share) / self.max_share
        return bool(self.rows) and self.clock() - self._last_end >= wait

    def maybe_commit(self) -> None:
        if self.due():
            self.commit()

    def commit(self) -> None:
        """Commits every queued video (its rows in each table, its `videos` row last)."""
        if not self.rows:
            return
        start = self.clock()
        store = self.store
        for table in PER_VIDEO_TABLES:
            n = store.commit_fragments(table, self.fragments.pop(table, []))
            if table == "masklets":
                self._unindexed += n
        store.set_track_ids(self.tracks)
        self.tracks.clear()
        if self.track_rows:
            store.append_rows("tracks", pa.concat_tables(self.track_rows))
            self.track_rows.clear()
        store.upsert_videos(self.rows)
        self.rows.clear()
        if self._unindexed >= FRAGMENTS_PER_INDEX_UPDATE or self.n_commits == 0:
            store.update_key_indexes()
            self._unindexed = 0
        self.n_commits += 1
        self._last_end = self.clock()
        self._last_s = self._last_end - start
        self.commit_s += self._last_s
        if self.on_commit is not None:
            self.on_commit(self._last_s)
