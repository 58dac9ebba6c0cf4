"""The concept search engine over an index's tables."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from vidlake.errors import UsageError
from vidlake.store.schema import STATUS_FAILED
from vidlake.store.tables import IndexStore

log = logging.getLogger(__name__)

HIT_COLUMNS = [
    "video_uri",
    "video_id",
    "clip_id",
    "concept",
    "start_s",
    "end_s",
    "clip_start_s",
    "clip_end_s",
    "n_objects",
    "max_score",
    "max_presence",
]


def normalize_phrase(phrase: str) -> str:
    """The phrase as concepts are stored: lower case, single spaces; UsageError if empty."""
    normalized = " ".join(phrase.strip().lower().split())
    if not any(ch.isalnum() for ch in normalized):
        raise UsageError(f"query phrase {phrase!r} has no words to search for")
    return normalized


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class IndexInfo:
    """What `vidlake info` shows: rows per table, table versions, failures, the vocabulary."""

    uri: str
    counts: dict[str, int]
    versions: dict[str, int]
    failed: list[tuple[str, str]]
    vocabulary: dict[str, int]  # concept -> clips with a hit
    models: list[str]


class ConceptIndex:
    """A read-only view of one index for concept queries."""

    def __init__(self, store: IndexStore):
        self.store = store

    @classmethod
    def open(cls, uri: str, storage_options: dict | None = None) -> ConceptIndex:
        return cls(IndexStore.open(uri, storage_options))

    def vocabulary(self) -> list[str]:
        """Concepts the indexed videos were indexed with."""
        videos = self.store.videos(columns=["vocabulary", "status"])
        concepts: set[str] = set()
        for row in videos.to_pylist():
            if row["status"] != STATUS_FAILED:
                concepts.update(row["vocabulary"] or [])
        return sorted(concepts)

    def search(
        self,
        phrase: str,
        *,
        min_score: float = 0.0,
        min_presence: float = 0.0,
        limit: int | None = 100,
    ) -> pa.Table:
        """Clips where PHRASE was found, best score first, as an Arrow table of HIT_COLUMNS.

        Only clips of videos with an `indexed` row are returned: rows of a video whose job
        was killed before its commit marker are invisible here.
        """
        concept = normalize_phrase(phrase)
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be >= 1, got {limit}")
        where = f"concept = {_sql_str(concept)}"
        if min_score > 0:
            where += f" AND max_score >= {float(min_score)}"
        if min_presence > 0:
            where += f" AND max_presence >= {float(min_presence)}"
        hits = self.store.dataset("concept_hits").to_table(columns=HIT_COLUMNS, filter=where)
        if hits.num_rows:
            committed = self.store.indexed_video_ids()
            hits = hits.filter(pc.is_in(hits.column("video_id"), value_set=committed))
        hits = hits.sort_by(
            [("max_score", "descending"), ("video_uri", "ascending"), ("start_s", "ascending")]
        )
        if limit is not None:
            hits = hits.slice(0, limit)
        return hits

    def suggestions(self, phrase: str, n: int = 3) -> list[str]:
        """Indexed concepts that look like PHRASE (for a phrase that is not in the vocabulary)."""
        return difflib.get_close_matches(
            normalize_phrase(phrase), self.vocabulary(), n=n, cutoff=0.5
        )

    def info(self) -> IndexInfo:
        videos = self.store.videos(columns=["uri", "status", "error", "model_id"])
        failed = [
            (r["uri"], r["error"]) for r in videos.to_pylist() if r["status"] == STATUS_FAILED
        ]
        hits = self.store.dataset("concept_hits").to_table(columns=["concept", "video_id"])
        if hits.num_rows:
            hits = hits.filter(
                pc.is_in(hits.column("video_id"), value_set=self.store.indexed_video_ids())
            )
        counts = dict.fromkeys(self.vocabulary(), 0)
        if hits.num_rows:
            for row in hits.group_by("concept").aggregate([("concept", "count")]).to_pylist():
                counts[row["concept"]] = row["concept_count"]
        models = sorted({m for m in videos.column("model_id").to_pylist() if m})
        return IndexInfo(
            uri=self.store.uri,
            counts=self.store.counts(),
            versions=self.store.versions(),
            failed=failed,
            vocabulary=counts,
            models=models,
        )
