"""Time and track queries over the `tracks` table: tracks visible long enough, large enough or
in a region of the frame; one phrase's track then another's within N seconds; the frames of a
video where N objects show at once; screen time per video.

A track is one object followed across a whole video (masklets stitched across clips), so
every answer here is per video, across clip boundaries. Reads are one concept's rows at a
time (a BITMAP index on `tracks.concept`, the table clustered by concept), with the scalar
summaries (duration, largest area, the box centres' extent) pushed down as a filter; the
per-frame lists are read only where an answer needs them. Times are compared as whole
microseconds, so that a frame two tracks share is one time, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidlake.errors import UsageError
from vidlake.store.schema import TRACKS

if TYPE_CHECKING:
    from vidlake.query.engine import ConceptIndex, Query

TRACK_COLUMNS = [
    "video_uri",
    "video_id",
    "track_id",
    "concept",
    "start_s",
    "end_s",
    "duration_s",
    "n_frames",
    "max_score",
    "max_area",
]
TRACK_SCHEMA = pa.schema([TRACKS.field(c) for c in TRACK_COLUMNS])
SEQUENCE_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("video_id", pa.string()),
        ("start_s", pa.float64()),  # the first track's start
        ("end_s", pa.float64()),  # the latest end of its tracks
        ("max_score", pa.float32()),  # the lowest of its tracks' best scores
        ("concepts", pa.list_(pa.string())),
        ("track_ids", pa.list_(pa.string())),
        ("starts_s", pa.list_(pa.float64())),
        ("ends_s", pa.list_(pa.float64())),
    ]
)
FRAME_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("video_id", pa.string()),
        ("concept", pa.string()),
        ("n_objects", pa.int32()),  # the most objects on one frame of the video
        ("start_s", pa.float64()),  # the first time the count is reached
        ("end_s", pa.float64()),  # the last
        ("times_s", pa.list_(pa.float64())),  # every sampled time the count is reached
    ]
)
STATS_SCHEMA = pa.schema(
    [
        ("video_uri", pa.string()),
        ("video_id", pa.string()),
        ("screen_time_s", pa.float64()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        ("n_tracks", pa.int32()),
        ("max_at_once", pa.int32()),
    ]
)
US = 1_000_000  # times as whole microseconds


@dataclass
class Stats:
    """`stats` of a phrase: one row per video (STATS_SCHEMA) and the totals over them."""

    phrase: str
    videos: pa.Table
    n_videos: int
    screen_time_s: float
    n_tracks: int
    max_at_once: int

    def to_dict(self) -> dict:
        return {
            "phrase": self.phrase,
            "videos": self.videos.to_pylist(),
            "totals": {
                "videos": self.n_videos,
                "screen_time_s": self.screen_time_s,
                "tracks": self.n_tracks,
                "max_at_once": self.max_at_once,
            },
        }


def _f(value: float) -> str:
    return repr(float(value))


def _where(query: Query, concept: str, main: bool) -> str:
    """The pushed-down filter of CONCEPT's tracks; MAIN: the query phrase's, which the track
    options (duration, area, region) apply to."""
    parts = ["concept = '" + concept.replace("'", "''") + "'"]
    if query.min_score > 0:
        parts.append(f"max_score >= {_f(query.min_score)}")
    if query.min_presence > 0:
        parts.append(f"max_presence >= {_f(query.min_presence)}")
    if query.between is not None:
        start, end = query.between
        parts.append(f"start_s <= {_f(end)} AND end_s >= {_f(start)}")
    if main and query.min_duration is not None:
        parts.append(f"duration_s >= {_f(query.min_duration)}")
    if main and query.min_area is not None:
        parts.append(f"max_area >= {_f(query.min_area)}")
    if main and query.region is not None:
        x0, y0, x1, y1 = query.region
        parts.append(
            f"centre_x_max >= {_f(x0)} AND centre_x_min <= {_f(x1)} AND "
            f"centre_y_max >= {_f(y0)} AND centre_y_min <= {_f(y1)}"
        )
    return " AND ".join(parts)


def read_tracks(
    engine: ConceptIndex, query: Query, concept: str, columns: list[str], main: bool = True
) -> pa.Table:
    """Committed tracks of CONCEPT passing QUERY's filters, with COLUMNS (and what the
    filters need)."""
    ds = tracks_dataset(engine)
    region = main and query.region is not None
    extra = ["video_id", "video_uri"]
    if region:
        extra += ["centre_x_min", "centre_x_max", "centre_y_min", "centre_y_max"]
        extra += ["centres_x", "centres_y"]
    wanted = list(dict.fromkeys([*columns, *extra]))
    table = ds.to_table(columns=wanted, filter=_where(query, concept, main))
    table = engine.only_committed(table, concept=concept)
    if query.videos and table.num_rows:
        from vidlake.query.engine import _glob_mask

        table = table.filter(_glob_mask(table.column("video_uri"), query.videos))
    if region and table.num_rows:
        table = table.filter(_in_region(table, query.region))
    return table.select(columns)


def tracks_dataset(engine: ConceptIndex):
    ds = engine.dataset("tracks")
    if ds is None:
        uri = engine.store.uri
        raise UsageError(
            f"{uri} has no tracks table (it was indexed by an older vidlake): run "
            f"`vidlake reindex --index {uri}` to build it from the masklets"
        )
    return ds


def _in_region(table: pa.Table, region: tuple[float, float, float, float]) -> pa.Array:
    """True for tracks whose box centre is inside REGION on at least one frame."""
    x0, y0, x1, y1 = region

    def column(name: str) -> np.ndarray:
        return table.column(name).to_numpy()

    # A track whose centres all lie inside needs no look at its frames.
    whole = (
        (column("centre_x_min") >= x0)
        & (column("centre_x_max") <= x1)
        & (column("centre_y_min") >= y0)
        & (column("centre_y_max") <= y1)
    )
    cx_col = table.column("centres_x").combine_chunks()
    cy = pc.list_flatten(table.column("centres_y")).to_numpy(zero_copy_only=False)
    cx = pc.list_flatten(cx_col).to_numpy(zero_copy_only=False)
    parent = pc.list_parent_indices(cx_col).to_numpy(zero_copy_only=False)
    hit = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
    some = np.bincount(parent[hit], minlength=table.num_rows) > 0
    return pa.array(whole | some)


def _order(table: pa.Table, query: Query, score: str) -> pa.Table:
    if query.order_by == "time":
        keys = [("video_uri", "ascending"), ("start_s", "ascending")]
    else:
        keys = [(score, "descending"), ("video_uri", "ascending"), ("start_s", "ascending")]
    if query.limit is not None and query.limit < table.num_rows:
        table = table.take(pc.select_k_unstable(table, k=query.limit, sort_keys=keys))
    return table.sort_by(keys)


def find_tracks(engine: ConceptIndex, query: Query) -> pa.Table:
    """Tracks of the phrase passing the track options (TRACK_COLUMNS)."""
    return _order(read_tracks(engine, query, query.phrase, TRACK_COLUMNS), query, "max_score")


SEQUENCE_COLUMNS = ["video_uri", "video_id", "track_id", "concept", "start_s", "end_s"]
SEQUENCE_COLUMNS += ["max_score"]


def _step(engine: ConceptIndex, query: Query, concept: str, main: bool) -> pa.Table:
    """CONCEPT's tracks passing QUERY's pushed-down filters (and the region, for the main
    phrase), with SEQUENCE_COLUMNS and the Lance row id."""
    columns = list(SEQUENCE_COLUMNS)
    if main and query.region is not None:
        columns += ["centre_x_min", "centre_x_max", "centre_y_min", "centre_y_max"]
        columns += ["centres_x", "centres_y"]
    table = tracks_dataset(engine).to_table(
        columns=columns, filter=_where(query, concept, main), with_row_id=True
    )
    if main and query.region is not None and table.num_rows:
        table = table.filter(_in_region(table, query.region))
    # Not on a video where CONCEPT is still being added or pruned (its rows not committed).
    pending = [v for v, concepts in engine.pending_concepts().items() if concept in concepts]
    if pending and table.num_rows:
        table = table.filter(
            pc.invert(pc.is_in(table.column("video_id"), value_set=pa.array(pending, pa.string())))
        )
    return table.select([*SEQUENCE_COLUMNS, "_rowid"])


def find_sequences(engine: ConceptIndex, query: Query) -> pa.Table:
    """Sequences of tracks: the phrase's, then each `then` phrase's starting within `within`
    seconds after the previous one's start (0 <= gap <= within), in one video.

    Each step's tracks are read once; the chains are matched in numpy on (video code, start
    in microseconds), each step first cut to the committed videos every step has.
    """
    steps = [_step(engine, query, query.phrase, main=True)]
    for other in query.then:
        if not steps[-1].num_rows:
            break
        steps.append(_step(engine, query, other, main=False))
    if any(not s.num_rows for s in steps):
        return SEQUENCE_SCHEMA.empty_table()
    # One dictionary of the videos of every step: codes comparable across steps.
    encoded = pc.dictionary_encode(
        pa.chunked_array([c for s in steps for c in s.column("video_id").chunks])
    ).combine_chunks()
    all_codes = encoded.indices.to_numpy()
    n_videos = len(encoded.dictionary)
    bounds = np.cumsum([0, *(s.num_rows for s in steps)])
    codes = [all_codes[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    shared = np.ones(n_videos, bool)
    for c in codes:
        shared &= np.bincount(c, minlength=n_videos) > 0
    candidates = np.flatnonzero(shared)
    committed = engine.committed_video_ids()
    names = encoded.dictionary.take(pa.array(candidates)).to_pylist()
    shared[candidates[[n not in committed for n in names]]] = False
    kept = [np.flatnonzero(shared[c]) for c in codes]  # rows of each step still in play
    if any(not len(k) for k in kept):
        return SEQUENCE_SCHEMA.empty_table()
    code = [c[k] for c, k in zip(codes, kept, strict=True)]
    start = [_us(s.column("start_s"))[k] for s, k in zip(steps, kept, strict=True)]
    row_id = [s.column("_rowid").to_numpy()[k] for s, k in zip(steps, kept, strict=True)]
    within = int(round(query.within * US))
    phrases = [query.phrase, *query.then]
    # Chains as arrays of indices into each step's kept rows, one chain per position.
    chain = [np.arange(len(code[0]))]
    for k in range(1, len(steps)):
        prev = chain[-1]
        v, t = code[k - 1][prev], start[k - 1][prev]
        order = np.lexsort((start[k], code[k]))
        times = np.unique(np.concatenate([start[k], t, t + within]))
        big = len(times) + 1
        key = code[k][order] * big + np.searchsorted(times, start[k][order])
        lo = np.searchsorted(key, v * big + np.searchsorted(times, t), "left")
        hi = np.searchsorted(key, v * big + np.searchsorted(times, t + within, "right"), "left")
        counts = hi - lo
        rep = np.repeat(np.arange(len(prev)), counts)
        offset = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        nxt = order[lo[rep] + offset]
        chain = [c[rep] for c in chain] + [nxt]
        # A phrase that comes again: another of its tracks, never the same one twice.
        differ = np.ones(len(nxt), bool)
        for j in range(k):
            if phrases[j] == phrases[k]:
                differ &= row_id[j][chain[j]] != row_id[k][nxt]
        chain = [c[differ] for c in chain]
        if not len(chain[0]):
            return SEQUENCE_SCHEMA.empty_table()
    parts = [s.take(pa.array(k[c])) for s, k, c in zip(steps, kept, chain, strict=True)]
    n = len(chain[0])
    if query.videos:
        from vidlake.query.engine import _glob_mask

        keep = _glob_mask(parts[0].column("video_uri"), query.videos)
        parts = [p.filter(keep) for p in parts]
        n = parts[0].num_rows

    def stacked(column: str, type_: pa.DataType) -> pa.Array:
        values = pa.concat_arrays(
            [p.column(column).combine_chunks().cast(type_) for p in parts]
        )  # step-major; regroup row-major
        index = np.arange(n * len(parts)).reshape(len(parts), n).T.reshape(-1)
        offsets = np.arange(0, n * len(parts) + 1, len(parts), dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), values.take(pa.array(index)))

    ends = np.vstack([p.column("end_s").to_numpy() for p in parts])
    scores = np.vstack([p.column("max_score").to_numpy() for p in parts])
    table = pa.table(
        {
            "video_uri": parts[0].column("video_uri"),
            "video_id": parts[0].column("video_id"),
            "start_s": parts[0].column("start_s"),
            "end_s": pa.array(ends.max(axis=0)),
            "max_score": pa.array(scores.min(axis=0).astype(np.float32)),
            "concepts": stacked("concept", pa.string()),
            "track_ids": stacked("track_id", pa.string()),
            "starts_s": stacked("start_s", pa.float64()),
            "ends_s": stacked("end_s", pa.float64()),
        },
        schema=SEQUENCE_SCHEMA,
    )
    return _order(table, query, "max_score")


def _uris(tracks: pa.Table) -> dict[str, str]:
    ids, uris = tracks.column("video_id").to_pylist(), tracks.column("video_uri").to_pylist()
    return dict(zip(ids, uris, strict=True))


def _us(column) -> np.ndarray:
    return np.round(np.asarray(column.to_numpy(), np.float64) * US).astype(np.int64)


def _frame_counts(tracks: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """(video code, time in us, objects) of every distinct (video, sampled time) the TRACKS
    show an object at, sorted; and the videos the codes index."""
    videos = pc.unique(tracks.column("video_id").combine_chunks())
    code = pc.index_in(tracks.column("video_id"), value_set=videos).to_numpy()
    times_col = tracks.column("frame_times_s").combine_chunks()
    parent = pc.list_parent_indices(times_col).to_numpy(zero_copy_only=False)
    times = _us(pc.list_flatten(times_col))
    if not len(times):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, videos
    big = int(times.max()) + 1
    key, counts = np.unique(code[parent] * big + times, return_counts=True)
    return key // big, key % big, counts, videos


def find_frames(engine: ConceptIndex, query: Query) -> pa.Table:
    """Videos with a sampled frame showing at least min_count objects of the phrase, with
    every time that happens (FRAME_SCHEMA)."""
    columns = ["video_id", "video_uri", "frame_times_s"]
    tracks = read_tracks(engine, query, query.phrase, columns)
    if query.min_count > 1 and tracks.num_rows:
        # Only videos with enough tracks can have enough objects on one frame.
        vids, per_video = np.unique(
            np.asarray(tracks.column("video_id").to_pylist(), object), return_counts=True
        )
        enough = pa.array(vids[per_video >= query.min_count].tolist(), pa.string())
        tracks = tracks.filter(pc.is_in(tracks.column("video_id"), value_set=enough))
    if not tracks.num_rows:
        return FRAME_SCHEMA.empty_table()
    code, times, counts, videos = _frame_counts(tracks)
    most = np.zeros(len(videos), np.int64)
    np.maximum.at(most, code, counts)
    reached = counts >= query.min_count
    code, times = code[reached], times[reached]
    if not len(code):
        return FRAME_SCHEMA.empty_table()
    present, first = np.unique(code, return_index=True)
    lengths = np.diff(np.append(first, len(code)))
    uris = _uris(tracks)
    ids = videos.take(pa.array(present)).to_pylist()
    table = pa.table(
        {
            "video_uri": pa.array([uris[v] for v in ids], pa.string()),
            "video_id": pa.array(ids, pa.string()),
            "concept": pa.array([query.phrase] * len(ids), pa.string()),
            "n_objects": pa.array(most[present].astype(np.int32)),
            "start_s": pa.array(times[first] / US),
            "end_s": pa.array(times[first + lengths - 1] / US),
            "times_s": pa.ListArray.from_arrays(
                pa.array(np.append(first, len(code)).astype(np.int32)), pa.array(times / US)
            ),
        },
        schema=FRAME_SCHEMA,
    )
    return _order(table, query, "n_objects")


def track_stats(engine: ConceptIndex, query: Query) -> Stats:
    """Per video: screen time (seconds covered by at least one track, each from its first to
    its last sampled frame), first appearance, last, tracks, most objects on one frame."""
    columns = ["video_id", "video_uri", "start_s", "end_s", "frame_times_s"]
    tracks = read_tracks(engine, query, query.phrase, columns)
    if not tracks.num_rows:
        return Stats(query.phrase, STATS_SCHEMA.empty_table(), 0, 0.0, 0, 0)
    code, _, counts, videos = _frame_counts(tracks)
    most = np.zeros(len(videos), np.int64)
    np.maximum.at(most, code, counts)
    vcode = pc.index_in(tracks.column("video_id"), value_set=videos).to_numpy()
    start, end = _us(tracks.column("start_s")), _us(tracks.column("end_s"))
    order = np.lexsort((start, vcode))
    vcode, start, end = vcode[order], start[order], end[order]
    # Union of [start, end] per video: each track adds what runs past the latest end before it.
    span = int(end.max()) + 1
    shifted = vcode * span + end  # cumulative max restarts at each video (codes sort first)
    before = np.concatenate([[-1], np.maximum.accumulate(shifted)[:-1]])
    same = np.concatenate([[False], vcode[1:] == vcode[:-1]])
    reach = np.where(same, before - vcode * span, start)
    covered = np.maximum(0, end - np.maximum(start, reach))
    n = len(videos)
    screen = np.bincount(vcode, weights=covered, minlength=n) / US
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, vcode, start)
    np.maximum.at(last, vcode, end)
    n_tracks = np.bincount(vcode, minlength=n)
    uris = _uris(tracks)
    ids = videos.to_pylist()
    table = pa.table(
        {
            "video_uri": pa.array([uris[v] for v in ids], pa.string()),
            "video_id": pa.array(ids, pa.string()),
            "screen_time_s": pa.array(screen),
            "first_s": pa.array(first / US),
            "last_s": pa.array(last / US),
            "n_tracks": pa.array(n_tracks.astype(np.int32)),
            "max_at_once": pa.array(most.astype(np.int32)),
        },
        schema=STATS_SCHEMA,
    ).sort_by([("video_uri", "ascending")])
    return Stats(
        phrase=query.phrase,
        videos=table,
        n_videos=n,
        screen_time_s=float(screen.sum()),
        n_tracks=int(n_tracks.sum()),
        max_at_once=int(most.max()),
    )


__all__ = [
    "FRAME_SCHEMA",
    "SEQUENCE_SCHEMA",
    "STATS_SCHEMA",
    "TRACK_COLUMNS",
    "Stats",
    "find_frames",
    "find_sequences",
    "find_tracks",
    "read_tracks",
    "track_stats",
]
