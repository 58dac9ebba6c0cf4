"""The concept search engine over an index's tables.

A `ConceptIndex` is a snapshot: it pins every table's version when opened (the latest, or the
versions an index had at `as_of`), so one engine answers every query from the same state. The
index version is the `videos` table's version: its rows are the commit markers.

A lookup is an index read: the BITMAP index on `concept_hits.concept` gives the phrase's rows,
filters are pushed down with it, and rows of videos without an `indexed` row are dropped with
a set of committed video ids loaded once per snapshot.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidlake.checks import in_order
from vidlake.checks import real as _real
from vidlake.checks import strings as _strings
from vidlake.checks import whole as _whole
from vidlake.errors import UsageError
from vidlake.query.options import check_track_options
from vidlake.query.tracks import (
    Stats,
    find_frames,
    find_sequences,
    find_tracks,
    track_stats,
    tracks_dataset,
)
from vidlake.store.schema import (
    CONCEPT_SOURCE_VERIFIED,
    STATUS_FAILED,
    STATUS_INDEXED,
    TABLES,
)
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


def _columns_schema(table: str, columns: list[str]) -> pa.Schema:
    schema = TABLES[table]
    return pa.schema([schema.field(c) for c in columns])


HIT_SCHEMA = _columns_schema("concept_hits", HIT_COLUMNS)
ORDERS = ("score", "time")
IN_LIST_CHUNK = 1000


def normalize_phrase(phrase: str, name: str = "phrase") -> str:
    """The phrase as concepts are stored: lower case, single spaces; UsageError if empty.

    NAME is the argument or parameter the phrase came in, for the message.
    """
    if not isinstance(phrase, str):
        raise UsageError(f"{name} must be a string, got {phrase!r}")
    normalized = " ".join(phrase.strip().lower().split())
    if not any(ch.isalnum() for ch in normalized):
        raise UsageError(f"{name} {phrase!r} has no words to search for")
    return normalized


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(_sql_str(v) for v in values)


@dataclass(frozen=True)
class Query:
    """One concept query, validated: what `search` and `vidlake query` take.

    between: (start_s, end_s) seconds of the video; a clip matches when the phrase's objects
    are visible at some time in it. videos: globs matched against the video URI and its file
    name. with_concepts: other phrases that must have a hit in the same clip (in the same
    sampled frame with same_frame). min_score/min_presence apply to every phrase.
    names: how the caller's interface names each argument, for its error messages (the CLI
    passes its flags, `{"min_score": "--min-score", ...}`); an argument it leaves out is named
    as the Python argument.
    """

    phrase: str
    min_score: float = 0.0
    min_presence: float = 0.0
    limit: int | None = 100
    videos: tuple[str, ...] = ()
    between: tuple[float, float] | None = None
    min_count: int = 1
    with_concepts: tuple[str, ...] = ()
    same_frame: bool = False
    order_by: Literal["score", "time"] = "score"
    then: tuple[str, ...] = ()
    within: float | None = None
    min_duration: float | None = None
    min_area: float | None = None
    region: tuple[float, float, float, float] | None = None
    names: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> Literal["clips", "tracks", "sequences", "frames"]:
        """What a hit is: a clip; a track (min_duration, min_area, region); a sequence of
        tracks (then); the frames of a video where min_count objects show at once
        (same_frame without with_concepts)."""
        if self.then:
            return "sequences"
        if self.same_frame and not self.with_concepts:
            return "frames"
        if self.min_duration is not None or self.min_area is not None or self.region:
            return "tracks"
        return "clips"

    def name(self, argument: str) -> str:
        """ARGUMENT (a field name) as the caller's interface names it."""
        return (self.names or {}).get(argument, argument)

    def __post_init__(self) -> None:
        # Checked here, where the API, the CLI and the HTTP routes all pass through, and named
        # as the caller names them (`names`).
        name = self.name
        if self.limit is not None and _whole(name("limit"), self.limit) < 1:
            raise UsageError(f"{name('limit')} must be >= 1, got {self.limit}")
        if _whole(name("min_count"), self.min_count) < 1:
            raise UsageError(f"{name('min_count')} must be >= 1, got {self.min_count}")
        for arg in ("min_score", "min_presence"):
            value = _real(name(arg), getattr(self, arg))
            if not 0.0 <= value <= 1.0:  # NaN too
                raise UsageError(f"{name(arg)} must be between 0 and 1 (scores are), got {value}")
            object.__setattr__(self, arg, value)
        object.__setattr__(self, "videos", _strings(name("videos"), self.videos))
        object.__setattr__(
            self, "with_concepts", _strings(name("with_concepts"), self.with_concepts)
        )
        if self.between is not None:
            between = name("between")
            if isinstance(self.between, str | bytes) or not isinstance(self.between, Sequence):
                raise UsageError(f"{between} must be (start_s, end_s), got {self.between!r}")
            if len(self.between) != 2:
                raise UsageError(f"{between} must be (start_s, end_s), got {self.between!r}")
            start, end = (_real(between, v) for v in self.between)
            in_order(start, end, f"{between} start", "end")
            if start < 0:
                raise UsageError(f"{between} start must be >= 0, got {start}")
            object.__setattr__(self, "between", (start, end))
        if self.order_by not in ORDERS:
            raise UsageError(
                f"{name('order_by')} must be one of {', '.join(ORDERS)}, got {self.order_by!r}"
            )
        if not isinstance(self.same_frame, bool):
            raise UsageError(f"{name('same_frame')} must be True or False, got {self.same_frame!r}")
        object.__setattr__(self, "then", _strings(name("then"), self.then))
        check_track_options(self)


def make_query(
    phrase: str,
    *,
    with_concepts: str | Sequence[str] = (),
    then: str | Sequence[str] = (),
    names: Mapping[str, str] | None = None,
    **arguments: object,
) -> Query:
    """A Query of PHRASE and `search`'s keyword ARGUMENTS, its phrases normalized.

    NAMES: how the caller names the arguments (see `Query`), for the messages.
    """
    names = names or {}
    name_with = names.get("with_concepts", "with_concepts")
    name_then = names.get("then", "then")
    return Query(
        phrase=normalize_phrase(phrase),
        with_concepts=tuple(
            normalize_phrase(p, name_with) for p in _strings(name_with, with_concepts)
        ),
        then=tuple(normalize_phrase(p, name_then) for p in _strings(name_then, then)),
        names=names,
        **arguments,  # type: ignore[arg-type]  # Query checks each value and names it
    )


@dataclass(frozen=True)
class Candidate:
    """An indexed concept near a phrase that is not indexed.

    similarity: cosine similarity of the two phrases' text embeddings (-1..1).
    text_match: the full-text index matched a word of the phrase in the concept's name.
    """

    concept: str
    similarity: float
    text_match: bool
    n_clips: int


@dataclass
class IndexInfo:
    """What `vidlake info` shows: rows per table, table versions, failures, the vocabulary."""

    uri: str
    counts: dict[str, int]
    versions: dict[str, int]
    failed: list[tuple[str, str]]
    vocabulary: dict[str, int]  # concept -> clips with a hit
    models: list[str]
    version: int = 0  # the index version: the `videos` table's
    verified: dict[str, int] = field(default_factory=dict)  # phrase -> clips, verified on demand
    # model -> indexed videos on it: more than one while a change of --model is partial
    videos_by_model: dict[str, int] = field(default_factory=dict)
    # files the last index job's folder listings skipped as not videos, by extension
    not_videos: dict[str, int] = field(default_factory=dict)


def resolve_versions(store: IndexStore, as_of: int | None) -> dict[str, int | None]:
    """{table: version to read}: latest, or as of index version AS_OF (None: table absent then).

    Index version V is videos@V; every other table is read at its latest version committed no
    later than videos@V (Lance keeps each version's commit timestamp).
    """
    videos = store.dataset("videos")
    versions: dict[str, int | None] = {}
    if as_of is None:
        versions["videos"] = videos.version
        for name in TABLES:
            if name != "videos":
                try:
                    versions[name] = store.dataset(name).version
                except (ValueError, OSError, FileNotFoundError):
                    versions[name] = None
        return versions
    stamps = {v["version"]: v["timestamp"] for v in videos.versions()}
    if as_of not in stamps:
        raise UsageError(
            f"--as-of {as_of}: no such index version (versions {min(stamps)}..{max(stamps)})"
        )
    cutoff = stamps[as_of]
    versions["videos"] = as_of
    for name in TABLES:
        if name == "videos":
            continue
        try:
            history = store.dataset(name).versions()
        except (ValueError, OSError, FileNotFoundError):
            versions[name] = None
            continue
        before = [v["version"] for v in history if v["timestamp"] <= cutoff]
        versions[name] = max(before) if before else None
    return versions


class ConceptIndex:
    """A read-only snapshot of one index for concept queries."""

    def __init__(self, store: IndexStore, as_of: int | None = None):
        self.store = store
        self.as_of = as_of
        self._pin()

    @classmethod
    def open(
        cls, uri: str, storage_options: dict | None = None, as_of: int | None = None
    ) -> ConceptIndex:
        return cls(IndexStore.open(uri, storage_options), as_of=as_of)

    def _pin(self) -> None:
        self.versions = resolve_versions(self.store, self.as_of)
        self._datasets: dict[str, lance.LanceDataset | None] = {}
        self._committed: frozenset[str] | None = None
        self._pending: dict[str, frozenset[str]] | None = None
        self._concepts: pa.Table | None = None
        self._verified: dict[str, int] | None = None

    def refresh(self) -> None:
        """Moves the snapshot to the tables' latest versions (not for an as-of view)."""
        if self.as_of is not None:
            raise UsageError("an as_of view of an index is read-only")
        self._pin()

    @property
    def version(self) -> int:
        return int(self.versions["videos"])

    def dataset(self, table: str) -> lance.LanceDataset | None:
        """TABLE at the snapshot's version; None if the table did not exist then."""
        if table not in self._datasets:
            v = self.versions.get(table)
            self._datasets[table] = None if v is None else self.store.dataset(table, version=v)
        return self._datasets[table]

    def _read(self, table: str, columns: list[str], where: str | None = None) -> pa.Table:
        ds = self.dataset(table)
        if ds is None:
            return _columns_schema(table, columns).empty_table()
        return ds.to_table(columns=columns, filter=where)

    # ---- state loaded once per snapshot ------------------------------------------------

    def committed_video_ids(self) -> frozenset[str]:
        """Ids of videos with an `indexed` row: the only ones whose rows queries return."""
        if self._committed is None:
            t = self._read("videos", ["video_id"], f"status = '{STATUS_INDEXED}'")
            self._committed = frozenset(t.column("video_id").to_pylist())
        return self._committed

    def pending_concepts(self) -> dict[str, frozenset[str]]:
        """video_id -> concepts an index job is adding to (or pruning from) that indexed video:
        its rows of them are not committed yet (vidlake.pipeline.plan)."""
        if self._pending is None:
            ds = self.dataset("videos")
            self._pending = {}
            if ds is not None and "pending_concepts" in ds.schema.names:
                t = ds.to_table(
                    columns=["video_id", "pending_concepts"],
                    filter="array_length(pending_concepts) > 0",
                )
                self._pending = {
                    r["video_id"]: frozenset(r["pending_concepts"]) for r in t.to_pylist()
                }
        return self._pending

    def only_committed(self, table: pa.Table, concept: str | None = None) -> pa.Table:
        """The rows of TABLE (with a video_id column) whose video is committed, less those of
        a concept pending on their video (rows of CONCEPT, or of the table's `concept`)."""
        if not table.num_rows:
            return table
        committed = self.committed_video_ids()
        pending = self.pending_concepts()
        present = pc.unique(table.column("video_id")).to_pylist()
        keep = [v for v in present if v in committed and concept not in pending.get(v, ())]
        if len(keep) < len(present):
            table = table.filter(
                pc.is_in(table.column("video_id"), value_set=pa.array(keep, pa.string()))
            )
        if "concept" in table.column_names and any(v in pending for v in keep):
            visible = [
                v not in pending or c not in pending[v]
                for v, c in zip(
                    table.column("video_id").to_pylist(),
                    table.column("concept").to_pylist(),
                    strict=True,
                )
            ]
            table = table.filter(pa.array(visible, pa.bool_()))
        return table

    def concepts_table(self) -> pa.Table:
        """The `concepts` rows (without embeddings) of this snapshot."""
        if self._concepts is None:
            self._concepts = self._read(
                "concepts", ["concept", "n_clips", "source", "model_id", "n_clips_checked"]
            )
        return self._concepts

    def vocabulary(self) -> list[str]:
        """Concepts the indexed videos were indexed with."""
        videos = self._read("videos", ["vocabulary", "status"])
        concepts: set[str] = set()
        for vocab, status in zip(
            videos.column("vocabulary").to_pylist(),
            videos.column("status").to_pylist(),
            strict=True,
        ):
            if status != STATUS_FAILED:
                concepts.update(vocab or [])
        return sorted(concepts)

    def verified(self) -> dict[str, int]:
        """{phrase: clips checked} of phrases verified at query time (on candidate clips)."""
        if self._verified is None:
            t = self.concepts_table()
            t = t.filter(pc.equal(t.column("source"), CONCEPT_SOURCE_VERIFIED))
            self._verified = {
                r["concept"]: int(r["n_clips_checked"] or 0)
                for r in t.select(["concept", "n_clips_checked"]).to_pylist()
            }
        return dict(self._verified)

    def is_indexed(self, phrase: str) -> bool:
        """Whether a lookup answers PHRASE: in the vocabulary or verified at query time."""
        concept = normalize_phrase(phrase)
        known = self.concepts_table().column("concept")
        if pc.any(pc.equal(known, concept)).as_py():
            return True
        return concept in self.vocabulary()

    # ---- search ------------------------------------------------------------------------

    def search(
        self,
        phrase: str,
        *,
        min_score: float = 0.0,
        min_presence: float = 0.0,
        limit: int | None = 100,
        videos: str | Sequence[str] | None = None,
        between: tuple[float, float] | None = None,
        min_count: int = 1,
        with_concepts: str | Sequence[str] = (),
        same_frame: bool = False,
        order_by: Literal["score", "time"] = "score",
        then: str | Sequence[str] = (),
        within: float | None = None,
        min_duration: float | None = None,
        min_area: float | None = None,
        region: tuple[float, float, float, float] | str | None = None,
    ) -> pa.Table:
        """Where PHRASE was found, as an Arrow table (see `Query`); what a row is depends on
        the options (`Query.kind`):

        - clips (HIT_COLUMNS), by default;
        - tracks (tracks.TRACK_COLUMNS: start, end, duration), with min_duration (seconds
          from its first to its last sampled frame), min_area (mask over frame area, on some
          frame) or region ((x0, y0, x1, y1) fractions of the frame: the box centre inside on
          some frame);
        - sequences of tracks (tracks.SEQUENCE_SCHEMA), with then: a track of each `then`
          phrase starting within `within` seconds after the previous track starts;
        - frames (tracks.FRAME_SCHEMA), with same_frame and no with_concepts: the videos where
          min_count objects show on one sampled frame, and the times they do.

        order_by "score": best score first; "time": by video URI, then start time. Only rows
        of videos with an `indexed` row are returned: rows of a video whose job was killed
        before its commit marker are invisible here.
        """
        query = make_query(
            phrase,
            min_score=min_score,
            min_presence=min_presence,
            limit=limit,
            videos=videos,  # Query makes it a tuple of strings
            between=between,
            min_count=min_count,
            with_concepts=with_concepts,
            same_frame=same_frame,
            order_by=order_by,
            then=then,
            within=within,
            min_duration=min_duration,
            min_area=min_area,
            region=region,
        )
        return self.run(query)

    def stats(
        self,
        phrase: str,
        *,
        min_score: float = 0.0,
        videos: str | Sequence[str] | None = None,
        between: tuple[float, float] | None = None,
    ) -> Stats:
        """Screen time of PHRASE per video, and totals, from its tracks (`tracks.track_stats`)."""
        query = make_query(phrase, min_score=min_score, videos=videos, between=between, limit=None)
        self.check_indexed(query.phrase, query.name("phrase"), tracks=True)
        return track_stats(self, query)

    def sql(self, statement: str) -> pa.Table:
        """The result of a DuckDB SQL STATEMENT over this snapshot's committed rows (see
        `query.sql`)."""
        from vidlake.query.sql import run_sql

        return run_sql(self, statement)

    def run(self, query: Query) -> pa.Table:
        """The hits of a validated Query (a UsageError if a with_concepts or then phrase is
        unknown, or if a time or track query's phrase is)."""
        self.check_with_concepts(query)
        if query.kind != "clips":
            self.check_indexed(query.phrase, query.name("phrase"), tracks=True)
            for other in query.then:
                self.check_indexed(other, query.name("then"))
            tracks_dataset(self)
            if query.kind == "tracks":
                return find_tracks(self, query)
            if query.kind == "sequences":
                return find_sequences(self, query)
            return find_frames(self, query)
        if query.with_concepts:
            hits = self._co_occurring(query)
        else:
            hits = self._lookup(query.phrase, self._where(query), HIT_COLUMNS)
        if query.videos and hits.num_rows:
            hits = hits.filter(_glob_mask(hits.column("video_uri"), query.videos))
        if query.same_frame and hits.num_rows:
            keep = self._same_frame_clips(
                hits.column("clip_id").to_pylist(), (query.phrase, *query.with_concepts), query
            )
            hits = hits.filter(pc.is_in(hits.column("clip_id"), value_set=pa.array(keep)))
        if query.order_by == "time":
            order = [("video_uri", "ascending"), ("start_s", "ascending")]
        else:
            order = [
                ("max_score", "descending"),
                ("video_uri", "ascending"),
                ("start_s", "ascending"),
            ]
        if query.limit is not None and query.limit < hits.num_rows:
            # The top rows only, then sorted: cheaper than sorting every hit of a common concept.
            hits = hits.take(pc.select_k_unstable(hits, k=query.limit, sort_keys=order))
        return hits.sort_by(order)

    def check_indexed(self, phrase: str, name: str, tracks: bool = False) -> None:
        """UsageError naming the option NAME when a lookup cannot answer PHRASE; TRACKS: the
        question is about its tracks, which candidates (clips of neighbours) cannot answer."""
        if self.is_indexed(phrase):
            return
        near = ", ".join(c.concept for c in self.candidates(phrase, n=3))
        why = "; time and track queries need an indexed concept" if tracks else ""
        raise UsageError(
            f"{name} {phrase!r} is not an indexed concept{why}"
            + (f" (nearest: {near})" if near else " (the index has no concepts near it)")
        )

    def check_with_concepts(self, query: Query) -> None:
        """UsageError naming QUERY's with_concepts phrase that a lookup cannot answer.

        Such a phrase has no hits anywhere, so it would silently empty every result; a
        phrase nobody indexed gets candidates and --verify, a with_concepts phrase does not.
        """
        for other in query.with_concepts:
            if self.is_indexed(other):
                continue
            near = ", ".join(c.concept for c in self.candidates(other, n=3))
            raise UsageError(
                f"{query.name('with_concepts')} {other!r} is not an indexed concept"
                + (f" (nearest: {near})" if near else " (the index has no concepts near it)")
            )

    @staticmethod
    def _where(query: Query, filters: bool = True) -> str:
        parts = []
        if query.min_score > 0:
            parts.append(f"max_score >= {query.min_score}")
        if query.min_presence > 0:
            parts.append(f"max_presence >= {query.min_presence}")
        if filters and query.min_count > 1:
            parts.append(f"n_objects >= {query.min_count}")
        if filters and query.between is not None:
            start, end = query.between
            parts.append(f"start_s <= {end} AND end_s >= {start}")
        return " AND ".join(parts)

    def _lookup(self, concept: str, where: str, columns: list[str]) -> pa.Table:
        """Committed concept_hits rows of CONCEPT matching WHERE (an index read)."""
        full = f"concept = {_sql_str(concept)}" + (f" AND {where}" if where else "")
        hits = self._read("concept_hits", list(dict.fromkeys([*columns, "video_id"])), full)
        hits = self.only_committed(hits, concept)
        if "video_id" not in columns:
            hits = hits.drop_columns(["video_id"])
        return hits.select(columns)

    def _co_occurring(self, query: Query) -> pa.Table:
        """Committed HIT_COLUMNS rows of the phrase's clips where each with_concepts phrase
        has a hit too.

        Keys first, whole rows last: the phrase's clip ids (with their row ids) and each other
        phrase's clip ids are read and intersected, and only the rows left are read whole.
        Two common concepts have tens of thousands of hits each but share a few hundred clips
        (bench/RESULTS.md). The other phrases' rows need no commit check: a clip id belongs
        to one video, whose commit the phrase's rows were checked for.
        """
        ds = self.dataset("concept_hits")
        if ds is None:
            return HIT_SCHEMA.empty_table()
        where = self._where(query)
        full = f"concept = {_sql_str(query.phrase)}" + (f" AND {where}" if where else "")
        keys = ds.to_table(columns=["clip_id"], filter=full, with_row_id=True)
        for other in query.with_concepts:
            if not keys.num_rows:
                break
            where = self._where(query, filters=False)
            full = f"concept = {_sql_str(other)}" + (f" AND {where}" if where else "")
            clips = ds.to_table(columns=["clip_id"], filter=full).column("clip_id")
            keys = keys.filter(pc.is_in(keys.column("clip_id"), value_set=clips))
        if not keys.num_rows:
            return HIT_SCHEMA.empty_table()
        row_ids = pc.sort_indices(keys.column("_rowid"))
        rows = ds._take_rows(keys.column("_rowid").take(row_ids).combine_chunks(), HIT_COLUMNS)
        return self.only_committed(rows).select(HIT_COLUMNS)

    def _same_frame_clips(self, clip_ids: list[str], concepts: tuple[str, ...], query: Query):
        """Clips among CLIP_IDS with one sampled frame where every concept has an object."""
        frames: dict[tuple[str, str], set[int]] = {}
        unique = sorted(set(clip_ids))
        for start in range(0, len(unique), IN_LIST_CHUNK):
            chunk = unique[start : start + IN_LIST_CHUNK]
            where = f"clip_id IN ({_sql_list(chunk)}) AND concept IN ({_sql_list(concepts)})"
            if query.min_score > 0:
                where += f" AND score >= {query.min_score}"
            t = self._read("masklets", ["clip_id", "concept", "frame_idx"], where)
            for clip, concept, idx in zip(
                t.column("clip_id").to_pylist(),
                t.column("concept").to_pylist(),
                t.column("frame_idx").to_pylist(),
                strict=True,
            ):
                frames.setdefault((clip, concept), set()).update(idx or [])
        keep = []
        for clip in unique:
            together = set.intersection(*(frames.get((clip, c), set()) for c in concepts))
            if together:
                keep.append(clip)
        return keep

    # ---- phrases nobody indexed ---------------------------------------------------------

    def candidates(self, phrase: str, n: int = 5, min_similarity: float = -1.0) -> list[Candidate]:
        """Indexed concepts nearest PHRASE: text-embedding similarity, plus full-text matches.

        A full-text match ranks a concept ahead of one with a slightly higher similarity
        (bonus 0.1): "crimson square" shares a word with "red square". Concepts less similar
        than MIN_SIMILARITY are left out (`vidlake.query.text.CANDIDATE_MIN_SIMILARITY`: the
        floor under which a concept's clips are no answer), whatever words they share.
        """
        concept = normalize_phrase(phrase)
        ds = self.dataset("concepts")
        counts = dict(
            zip(
                self.concepts_table().column("concept").to_pylist(),
                self.concepts_table().column("n_clips").to_pylist(),
                strict=True,
            )
        )
        vocab: list[str] = []
        if ds is None or not counts:
            vocab = self.vocabulary()
            if not vocab:
                return []  # nothing indexed to be near: no need to load the text encoder (~7 s)
        from vidlake.query.text import text_encoder

        query_vec = text_encoder().encode([concept])[0]
        similar: dict[str, float] = {}
        text_hits: set[str] = set()
        if ds is not None and counts:
            # The index finds the neighbours; similarities are computed exactly from the stored
            # (unquantised) embeddings.
            near = ds.to_table(
                columns=["concept", "embedding"],
                nearest={
                    "column": "embedding",
                    "q": query_vec,
                    "k": max(n * 2, 10),
                    "metric": "cosine",
                },
                disable_scoring_autoprojection=True,
            )
            if near.num_rows:
                vectors = np.asarray(near.column("embedding").combine_chunks().flatten())
                sims = vectors.reshape(near.num_rows, -1) @ query_vec
                similar = dict(
                    zip(
                        near.column("concept").to_pylist(), sims.astype(float).tolist(), strict=True
                    )
                )
            try:
                text = ds.to_table(
                    columns=["concept"],
                    full_text_query=concept,
                    limit=n * 2,
                    disable_scoring_autoprojection=True,
                )
                text_hits = set(text.column("concept").to_pylist())
            except (ValueError, OSError) as exc:  # no INVERTED index on an older table
                log.info("full-text search of concepts unavailable: %s", exc)
        else:
            # No concepts table in this snapshot (index older than it): embed the vocabulary.
            if vocab:
                sims = text_encoder().encode(vocab) @ query_vec
                similar = dict(zip(vocab, sims.astype(float).tolist(), strict=True))
        for name in text_hits - similar.keys():
            vec = text_encoder().encode([name])[0]
            similar[name] = float(vec @ query_vec)
        ranked = sorted(
            similar.items(),
            key=lambda kv: (-(kv[1] + (0.1 if kv[0] in text_hits else 0.0)), kv[0]),
        )
        return [
            Candidate(
                concept=name,
                similarity=round(sim, 4),
                text_match=name in text_hits,
                n_clips=int(counts.get(name) or 0),
            )
            for name, sim in ranked
            if name != concept and sim >= min_similarity
        ][:n]

    def candidate_clips(
        self,
        candidates: Sequence[Candidate | str],
        limit: int | None = 100,
        *,
        query: Query | None = None,
        **filters,
    ) -> pa.Table:
        """Hits of the candidate concepts (one row per clip, the nearest candidate's row).

        QUERY's filters (or FILTERS, `search`'s keyword arguments) apply to each candidate as
        they do to a phrase's hits, with_concepts and same_frame included; QUERY's phrase is
        ignored and its limit replaces LIMIT. order_by "score": the nearest candidate's clips
        first, each candidate's best score first (nearness is what makes a candidate); "time":
        by video URI, then start time.
        """
        if query is None:
            query = make_query("candidates", limit=limit, **filters)  # phrase: each candidate
        tables = []
        for rank, cand in enumerate(candidates):
            name = normalize_phrase(cand.concept if isinstance(cand, Candidate) else cand)
            t = self.run(dataclasses.replace(query, phrase=name, limit=None))
            tables.append(t.append_column("rank", pa.array([rank] * t.num_rows, pa.int32())))
        if not tables:
            self.check_with_concepts(query)
            return HIT_SCHEMA.empty_table()
        merged = pa.concat_tables(tables).sort_by(
            [
                ("rank", "ascending"),
                ("max_score", "descending"),
                ("video_uri", "ascending"),
                ("start_s", "ascending"),
            ]
        )
        seen: set[str] = set()
        keep = []
        for i, clip in enumerate(merged.column("clip_id").to_pylist()):
            if clip not in seen:
                seen.add(clip)
                keep.append(i)
        out = merged.take(pa.array(keep, pa.int64())).drop_columns(["rank"])
        if query.order_by == "time":
            out = out.sort_by([("video_uri", "ascending"), ("start_s", "ascending")])
        return out.slice(0, query.limit) if query.limit is not None else out

    def verify(
        self,
        phrase: str,
        *,
        candidates: Sequence[Candidate | str] | None = None,
        max_clips: int = 100,
        model: str | None = None,
        device: str = "auto",
        address: str | None = None,
    ):
        """Runs the segmenter with PHRASE on the candidate clips and adds its hits to the index.

        Returns a `VerifyResult`; afterwards this engine sees the new rows, and PHRASE is a
        lookup (`is_indexed`) for every later query.
        """
        from vidlake.query.verify import verify_phrase

        if self.as_of is not None:
            raise UsageError("verify writes to the index; it cannot run on an as_of view")
        concept = normalize_phrase(phrase)
        if _whole("max_clips", max_clips) < 1:
            raise UsageError(f"max_clips must be >= 1, got {max_clips}")
        if candidates is None:
            candidates = self.candidates(concept)
        clips = self.candidate_clips(candidates, limit=max_clips)
        result = verify_phrase(
            self.store,
            concept,
            clips.column("clip_id").to_pylist(),
            model=model,
            device=device,
            address=address,
        )
        self.refresh()
        return result

    def suggestions(self, phrase: str, n: int = 3) -> list[str]:
        """Indexed concepts that look like PHRASE (spelling only; `candidates` for meaning)."""
        return difflib.get_close_matches(
            normalize_phrase(phrase), self.vocabulary(), n=n, cutoff=0.5
        )

    # ---- rows for export and previews ----------------------------------------------------

    def clips(self, clip_ids: Sequence[str]) -> pa.Table:
        """`clips` rows (without thumbnails) of CLIP_IDS."""
        columns = [c for c in TABLES["clips"].names if c != "thumbnail"]
        return self._in_chunks("clips", columns, clip_ids)

    def masklets(self, clip_ids: Sequence[str], concepts: Sequence[str] | None = None) -> pa.Table:
        """`masklets` rows (without thumbnails) of CLIP_IDS, of CONCEPTS if given."""
        columns = [c for c in TABLES["masklets"].names if c != "thumbnail"]
        extra = f"concept IN ({_sql_list(concepts)})" if concepts else None
        return self._in_chunks("masklets", columns, clip_ids, extra)

    def _in_chunks(
        self, table: str, columns: list[str], clip_ids: Sequence[str], extra: str | None = None
    ) -> pa.Table:
        unique = sorted(set(clip_ids))
        parts = [_columns_schema(table, columns).empty_table()]
        for start in range(0, len(unique), IN_LIST_CHUNK):
            where = f"clip_id IN ({_sql_list(unique[start : start + IN_LIST_CHUNK])})"
            if extra:
                where += f" AND {extra}"
            parts.append(self._read(table, columns, where))
        return self.only_committed(pa.concat_tables(parts))

    def info(self) -> IndexInfo:
        videos = self._read("videos", ["uri", "status", "error", "model_id"])
        failed = [
            (r["uri"], r["error"]) for r in videos.to_pylist() if r["status"] == STATUS_FAILED
        ]
        hits = self._read("concept_hits", ["concept", "video_id"])
        counts: dict[str, int] = {}
        hits = self.only_committed(hits)
        if hits.num_rows:
            for row in hits.group_by("concept").aggregate([("concept", "count")]).to_pylist():
                counts[row["concept"]] = row["concept_count"]
        vocabulary = {c: counts.get(c, 0) for c in self.vocabulary()}
        verified = {c: counts.get(c, 0) for c in self.verified() if c not in vocabulary}
        models = sorted({m for m in videos.column("model_id").to_pylist() if m})
        by_model: dict[str, int] = {}
        for r in videos.to_pylist():
            if r["status"] == STATUS_INDEXED:
                by_model[r["model_id"]] = by_model.get(r["model_id"], 0) + 1
        return IndexInfo(
            uri=self.store.uri,
            counts={
                name: (0 if self.dataset(name) is None else self.dataset(name).count_rows())
                for name in TABLES
            },
            versions={name: int(v or 0) for name, v in self.versions.items()},
            failed=failed,
            vocabulary=vocabulary,
            models=models,
            version=self.version,
            verified=verified,
            videos_by_model=dict(sorted(by_model.items(), key=lambda kv: (-kv[1], kv[0]))),
            not_videos=self._last_not_videos(),
        )

    def _last_not_videos(self) -> dict[str, int]:
        """The `not_videos` counts of the latest index job in this snapshot ({} if none)."""
        ds = self.dataset("runs")
        if ds is None or "not_videos" not in ds.schema.names:
            return {}
        runs = ds.to_table(columns=["started_at", "not_videos"])
        if not runs.num_rows:
            return {}
        latest = runs.sort_by([("started_at", "descending")]).slice(0, 1).to_pylist()[0]
        import json

        return json.loads(latest["not_videos"] or "{}")

    def hit_models(self, hits: pa.Table) -> dict[str, int]:
        """model -> how many of HITS' clips come from videos indexed with it."""
        if not hits.num_rows:
            return {}
        ids = pc.unique(hits.column("video_id")).to_pylist()
        videos = self._read(
            "videos", ["video_id", "model_id"], f"video_id IN ({_sql_list(ids)})"
        ).to_pylist()
        model_of = {r["video_id"]: r["model_id"] for r in videos}
        counts: dict[str, int] = {}
        for vid in hits.column("video_id").to_pylist():
            counts[model_of.get(vid) or "?"] = counts.get(model_of.get(vid) or "?", 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _glob_mask(uris: pa.ChunkedArray, patterns: Sequence[str]) -> pa.Array:
    """True where a URI (or its file name) matches one of the glob PATTERNS."""
    values = uris.to_pylist()
    matched = {}
    for uri in set(values):
        name = uri.rsplit("/", 1)[-1]
        matched[uri] = any(
            fnmatch.fnmatchcase(uri, p) or fnmatch.fnmatchcase(name, p) for p in patterns
        )
    return pa.array([matched[u] for u in values], pa.bool_())


__all__ = [
    "HIT_COLUMNS",
    "Candidate",
    "ConceptIndex",
    "IndexInfo",
    "Query",
    "make_query",
    "normalize_phrase",
    "resolve_versions",
]
