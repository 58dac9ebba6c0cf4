"""Arrow schemas of the index's Lance tables and the conversions from records to rows.

One Lance dataset per table under the index URI (``<index>/<table>.lance``). The schema
version is stored in each table's schema metadata so that an older vidlake refuses an index
written by a newer one instead of misreading it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pycocotools import mask as mask_utils

from vidlake.records import ClipResult, ClipSpec, Masklet, VideoInfo, VideoSource, stable_id

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"vidlake.schema_version"

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"

RLE_TYPE = pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.binary())])
BOX_TYPE = pa.list_(pa.float32(), 4)
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _schema(fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(fields, metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()})


VIDEOS = _schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("fingerprint", pa.string()),
        ("size_bytes", pa.int64()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("n_frames", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("codec", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("model_id", pa.string()),
        ("vocabulary", pa.list_(pa.string())),
        ("vocabulary_hash", pa.string()),
        ("n_clips", pa.int32()),
        ("n_masklets", pa.int32()),
        ("run_id", pa.string()),
        ("indexed_at", TIMESTAMP),
        # Added in place (IndexStore.create adds them to older indexes, null there):
        # each vocabulary entry's key (its name for a concept, its JSON for an exemplar
        # prompt), so that a grown vocabulary segments only the entries a video lacks;
        ("vocabulary_keys", pa.list_(pa.string())),
        # concepts a job is adding to this indexed video: their rows are not committed yet,
        # and readers hide them (the video row is the commit marker of each concept too).
        ("pending_concepts", pa.list_(pa.string())),
    ]
)

CLIPS = _schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("video_uri", pa.string()),
        ("clip_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("sampled_fps", pa.float64()),
        ("n_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frame_indices", pa.list_(pa.int64())),
        ("frame_times_s", pa.list_(pa.float64())),
        ("thumbnail", pa.binary()),
        # The --max-objects cap, and whether this clip reached it (objects may be missing).
        ("max_objects", pa.int32()),
        ("at_object_cap", pa.bool_()),
    ]
)

MASKLETS = _schema(
    [
        ("masklet_id", pa.string()),
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("track_id", pa.string()),
        ("object_id", pa.int32()),
        ("concept", pa.string()),
        ("score", pa.float32()),
        ("presence", pa.float32()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        ("frame_idx", pa.list_(pa.int32())),
        ("boxes", pa.list_(BOX_TYPE)),
        ("scores", pa.list_(pa.float32())),
        ("masks", pa.list_(RLE_TYPE)),
        ("thumbnail", pa.binary()),
    ]
)

CONCEPT_HITS = _schema(
    [
        ("concept", pa.string()),
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("video_uri", pa.string()),
        ("n_objects", pa.int32()),
        ("max_score", pa.float32()),
        ("max_presence", pa.float32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("clip_start_s", pa.float64()),
        ("clip_end_s", pa.float64()),
    ]
)

# SAM 3's detector says, per frame, whether a concept is in it at all (objects found or not).
PRESENCE = _schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("concept", pa.string()),
        ("frame_presence", pa.list_(pa.float32())),  # per sampled frame of the clip
        ("max_presence", pa.float32()),
    ]
)

RUNS = _schema(
    [
        ("run_id", pa.string()),
        ("started_at", TIMESTAMP),
        ("finished_at", TIMESTAMP),
        ("status", pa.string()),
        ("arguments", pa.string()),
        ("versions", pa.string()),
        ("n_videos_indexed", pa.int64()),
        ("n_videos_failed", pa.int64()),
        ("n_videos_skipped", pa.int64()),
        ("n_clips", pa.int64()),
        ("n_masklets", pa.int64()),
        ("n_frames", pa.int64()),
        ("frames_per_s", pa.float64()),
        ("wall_s", pa.float64()),
        # Added in place (null in older indexes): files the folder listings skipped as not
        # videos, as JSON {".jpg": 2}; concepts segmented on videos indexed before this run.
        ("not_videos", pa.string()),
        ("segmented_concepts", pa.list_(pa.string())),
    ]
)

# One row per stitched track (an object followed across a whole video): what time and track
# queries read instead of masklets. Per-frame lists hold the track's sampled frames in time
# order, one entry per source frame (a frame two overlapping clips share counts once).
# centres: box centres over the frame's width and height (0..1); areas: mask area over frame
# area. The scalar columns summarise them so that most filters are pushed down to Lance.
TRACKS = _schema(
    [
        ("track_id", pa.string()),
        ("video_id", pa.string()),
        ("video_uri", pa.string()),
        ("concept", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("n_masklets", pa.int32()),
        ("n_frames", pa.int32()),
        ("max_score", pa.float32()),
        ("max_presence", pa.float32()),
        ("max_area", pa.float32()),
        ("centre_x_min", pa.float32()),
        ("centre_x_max", pa.float32()),
        ("centre_y_min", pa.float32()),
        ("centre_y_max", pa.float32()),
        ("frame_times_s", pa.list_(pa.float64())),
        ("centres_x", pa.list_(pa.float32())),
        ("centres_y", pa.list_(pa.float32())),
        ("areas", pa.list_(pa.float32())),
    ]
)

# What the write stage sends the driver of each masklet, for the tracks rows: the masklet's
# per-frame times, normalised box centres and mask areas (lists aligned with frame_times_s).
MASKLET_SUMMARY = pa.schema(
    [
        ("masklet_id", pa.string()),
        ("video_id", pa.string()),
        ("video_uri", pa.string()),
        ("track_id", pa.string()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        ("concept", pa.string()),
        ("score", pa.float32()),
        ("presence", pa.float32()),
        ("frame_times_s", pa.list_(pa.float64())),
        ("centres_x", pa.list_(pa.float32())),
        ("centres_y", pa.list_(pa.float32())),
        ("areas", pa.list_(pa.float32())),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "clips": CLIPS,
    "masklets": MASKLETS,
    "concept_hits": CONCEPT_HITS,
    "presence": PRESENCE,
    "tracks": TRACKS,
    "runs": RUNS,
}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def vocabulary_hash(concepts: list[str]) -> str:
    """A hash of the vocabulary (order-insensitive): a video indexed with another one is redone."""
    return stable_id("vocabulary", json.dumps(sorted(concepts)))


def video_row(
    source: VideoSource,
    info: VideoInfo | None,
    *,
    status: str,
    error: str,
    model_id: str,
    vocabulary: list[str],
    run_id: str,
    n_clips: int = 0,
    n_masklets: int = 0,
    vocabulary_key: list[str] | None = None,
) -> dict:
    """The `videos` row of one source: its commit marker once its clips are written."""
    return {
        "video_id": source.video_id,
        "uri": source.uri,
        "fingerprint": source.fingerprint,
        "size_bytes": source.size,
        "duration_s": info.duration_s if info else None,
        "fps": info.fps if info else None,
        "n_frames": info.n_frames if info else None,
        "width": info.width if info else None,
        "height": info.height if info else None,
        "codec": info.codec if info else None,
        "status": status,
        "error": error,
        "model_id": model_id,
        "vocabulary": list(vocabulary),
        # The key covers what the names do not: an exemplar's boxes and reference frame.
        "vocabulary_hash": vocabulary_hash(vocabulary_key or vocabulary),
        "n_clips": n_clips,
        "n_masklets": n_masklets,
        "run_id": run_id,
        "indexed_at": now_utc(),
        "vocabulary_keys": list(vocabulary_key or vocabulary),
        "pending_concepts": [],
    }


def _masklet_row(result: ClipResult, m: Masklet, thumbnail: bytes) -> dict:
    spec = result.spec
    frame_idx = np.asarray(m.frame_idx, dtype=np.int32)
    times = spec.times_s[frame_idx] if len(frame_idx) else np.zeros(0)
    masklet_id = stable_id("masklet", spec.clip_id, m.object_id)
    return {
        "masklet_id": masklet_id,
        "clip_id": spec.clip_id,
        "video_id": spec.video_id,
        # A track of its own until stitching joins it to the same object in neighbour clips.
        "track_id": stable_id("track", spec.video_id, masklet_id),
        "object_id": int(m.object_id),
        "concept": m.concept,
        "score": m.score,
        "presence": float(m.presence),
        "first_s": float(times.min()) if len(times) else spec.start_s,
        "last_s": float(times.max()) if len(times) else spec.start_s,
        "frame_idx": frame_idx.tolist(),
        "boxes": np.asarray(m.boxes, dtype=np.float32).reshape(-1, 4).tolist(),
        "scores": np.asarray(m.scores, dtype=np.float32).tolist(),
        "masks": [{"size": list(r["size"]), "counts": r["counts"]} for r in m.masks],
        "thumbnail": thumbnail,
    }


def clip_tables(
    result: ClipResult, masklet_thumbnails: list[bytes] | None = None
) -> dict[str, pa.Table]:
    """The rows one segmented clip adds to `clips`, `masklets`, `concept_hits` and `presence`
    (one row per concept the segmenter reported presence for, objects or not)."""
    spec = result.spec
    thumbs = masklet_thumbnails or [b""] * len(result.masklets)
    clip = {
        "clip_id": spec.clip_id,
        "video_id": spec.video_id,
        "video_uri": spec.video_uri,
        "clip_index": spec.clip_index,
        "start_s": spec.start_s,
        "end_s": spec.end_s,
        "sampled_fps": spec.sampled_fps,
        "n_frames": spec.n_frames,
        "width": result.width,
        "height": result.height,
        "frame_indices": np.asarray(spec.frame_indices, dtype=np.int64).tolist(),
        "frame_times_s": np.asarray(spec.times_s, dtype=np.float64).tolist(),
        "thumbnail": result.thumbnail,
        "max_objects": result.max_objects,
        "at_object_cap": result.max_objects is not None
        and len(result.masklets) >= result.max_objects,
    }
    masklets = [_masklet_row(result, m, t) for m, t in zip(result.masklets, thumbs, strict=True)]
    hits: dict[str, dict] = {}
    for row in masklets:
        hit = hits.setdefault(
            row["concept"],
            {
                "concept": row["concept"],
                "clip_id": spec.clip_id,
                "video_id": spec.video_id,
                "video_uri": spec.video_uri,
                "n_objects": 0,
                "max_score": 0.0,
                "max_presence": 0.0,
                "start_s": row["first_s"],
                "end_s": row["last_s"],
                "clip_start_s": spec.start_s,
                "clip_end_s": spec.end_s,
            },
        )
        hit["n_objects"] += 1
        hit["max_score"] = max(hit["max_score"], row["score"])
        hit["max_presence"] = max(hit["max_presence"], row["presence"])
        hit["start_s"] = min(hit["start_s"], row["first_s"])
        hit["end_s"] = max(hit["end_s"], row["last_s"])
    presence = [
        {
            "clip_id": spec.clip_id,
            "video_id": spec.video_id,
            "concept": concept,
            "frame_presence": np.asarray(values, dtype=np.float32).tolist(),
            "max_presence": float(np.max(values)) if len(values) else 0.0,
        }
        for concept, values in result.presence.items()
    ]
    for row in presence:
        if row["concept"] in hits:
            # The detector's own clip-level presence, which the masklets repeat.
            hits[row["concept"]]["max_presence"] = row["max_presence"]
    return {
        "clips": pa.Table.from_pylist([clip], schema=CLIPS),
        "masklets": pa.Table.from_pylist(masklets, schema=MASKLETS),
        "concept_hits": pa.Table.from_pylist(list(hits.values()), schema=CONCEPT_HITS),
        "presence": pa.Table.from_pylist(presence, schema=PRESENCE),
    }


def masklet_summaries(masklets: pa.Table, clips: pa.Table) -> pa.Table:
    """MASKLET_SUMMARY rows of `masklets` rows, given the `clips` rows they belong to.

    masklets: columns masklet_id, clip_id, video_id, track_id, concept, score, presence,
    first_s, last_s, frame_idx, boxes, masks. clips: clip_id, video_uri, frame_times_s, width,
    height (boxes are in pixels of the decoded frames, which is the clip's width x height).
    A frame without a mask takes its box's area; one without a box has no centre (NaN).
    """
    by_clip = {
        c["clip_id"]: c
        for c in clips.select(
            ["clip_id", "video_uri", "frame_times_s", "width", "height"]
        ).to_pylist()
    }
    rows = []
    columns = ["masklet_id", "clip_id", "video_id", "track_id", "concept", "score", "presence"]
    columns += ["first_s", "last_s", "frame_idx", "boxes", "masks"]
    for m in masklets.select(columns).to_pylist():
        clip = by_clip[m["clip_id"]]
        width, height = float(clip["width"] or 1), float(clip["height"] or 1)
        idx = np.asarray(m["frame_idx"] or [], np.int64)
        times = np.asarray(clip["frame_times_s"] or [], np.float64)[idx] if len(idx) else []
        boxes = np.asarray(m["boxes"] or [], np.float32).reshape(-1, 4)
        if len(boxes) == len(idx):
            cx = (boxes[:, 0] + boxes[:, 2]) / 2 / width
            cy = (boxes[:, 1] + boxes[:, 3]) / 2 / height
            box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (width * height)
        else:
            cx = cy = box_area = np.full(len(idx), np.nan, np.float32)
        masks = m["masks"] or []
        if len(masks) == len(idx) and len(idx):
            rles = [{"size": list(r["size"]), "counts": r["counts"]} for r in masks]
            areas = mask_utils.area(rles).astype(np.float64) / (width * height)
        else:
            areas = np.nan_to_num(np.asarray(box_area, np.float64))
        rows.append(
            {
                "masklet_id": m["masklet_id"],
                "video_id": m["video_id"],
                "video_uri": clip["video_uri"],
                "track_id": m["track_id"],
                "first_s": m["first_s"],
                "last_s": m["last_s"],
                "concept": m["concept"],
                "score": m["score"],
                "presence": m["presence"],
                "frame_times_s": list(map(float, times)),
                "centres_x": list(map(float, cx)),
                "centres_y": list(map(float, cy)),
                "areas": list(map(float, areas)),
            }
        )
    return pa.Table.from_pylist(rows, schema=MASKLET_SUMMARY)


def _flat(table: pa.Table, column: str, dtype) -> np.ndarray:
    return pc.list_flatten(table.column(column)).to_numpy(zero_copy_only=False).astype(dtype)


def track_table(summaries: pa.Table) -> pa.Table:
    """The `tracks` rows of masklet SUMMARIES (MASKLET_SUMMARY rows), one per track_id.

    A track's frames are its masklets' frames in time order, a time two masklets share (the
    overlap of two clips) once, with the larger area and the first masklet's centre.
    start_s/end_s: the earliest first_s and latest last_s of its masklets.
    """
    if summaries.num_rows == 0:
        return TRACKS.empty_table()
    keys, tix = np.unique(
        np.asarray(summaries.column("track_id").to_pylist(), dtype=object), return_inverse=True
    )
    n = len(keys)
    lengths = pc.list_value_length(summaries.column("frame_times_s")).to_numpy(zero_copy_only=False)
    lengths = np.nan_to_num(lengths.astype(np.float64)).astype(np.int64)
    track = np.repeat(tix, lengths)
    times = _flat(summaries, "frame_times_s", np.float64)
    cx = _flat(summaries, "centres_x", np.float32)
    cy = _flat(summaries, "centres_y", np.float32)
    area = _flat(summaries, "areas", np.float32)
    # Per (track, time): the largest area first, so the kept entry carries it.
    order = np.lexsort((-area, times, track))
    track, times, cx, cy, area = track[order], times[order], cx[order], cy[order], area[order]
    keep = np.ones(len(times), bool)
    keep[1:] = (track[1:] != track[:-1]) | (times[1:] != times[:-1])
    track, times, cx, cy, area = track[keep], times[keep], cx[keep], cy[keep], area[keep]
    n_frames = np.bincount(track, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(n_frames)]).astype(np.int32)
    starts = offsets[:-1][n_frames > 0]

    def per_track(values: np.ndarray, ufunc, fill: float) -> np.ndarray:
        out = np.full(n, fill, np.float32)
        if len(values):
            out[n_frames > 0] = ufunc.reduceat(values, starts)
        return out

    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    score = np.zeros(n, np.float32)
    presence = np.zeros(n, np.float32)
    np.minimum.at(first, tix, summaries.column("first_s").to_numpy(zero_copy_only=False))
    np.maximum.at(last, tix, summaries.column("last_s").to_numpy(zero_copy_only=False))
    np.maximum.at(score, tix, summaries.column("score").to_numpy(zero_copy_only=False))
    np.maximum.at(presence, tix, summaries.column("presence").to_numpy(zero_copy_only=False))
    head = np.zeros(n, np.int64)  # a masklet of each track, for its video and concept
    head[tix[::-1]] = np.arange(len(tix))[::-1]

    def lists(values: np.ndarray, type_: pa.DataType) -> pa.Array:
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type_))

    def take(column: str) -> pa.Array:
        return pc.take(summaries.column(column), pa.array(head))

    table = pa.table(
        {
            "track_id": pa.array(keys.tolist(), pa.string()),
            "video_id": take("video_id"),
            "video_uri": take("video_uri"),
            "concept": take("concept"),
            "start_s": pa.array(first),
            "end_s": pa.array(last),
            "duration_s": pa.array(last - first),
            "n_masklets": pa.array(np.bincount(tix, minlength=n).astype(np.int32)),
            "n_frames": pa.array(n_frames.astype(np.int32)),
            "max_score": pa.array(score),
            "max_presence": pa.array(presence),
            "max_area": pa.array(per_track(area, np.fmax, 0.0)),
            "centre_x_min": pa.array(per_track(cx, np.fmin, np.nan)),
            "centre_x_max": pa.array(per_track(cx, np.fmax, np.nan)),
            "centre_y_min": pa.array(per_track(cy, np.fmin, np.nan)),
            "centre_y_max": pa.array(per_track(cy, np.fmax, np.nan)),
            "frame_times_s": lists(times, pa.float64()),
            "centres_x": lists(cx, pa.float32()),
            "centres_y": lists(cy, pa.float32()),
            "areas": lists(area, pa.float32()),
        },
        schema=TRACKS,
    )
    return table.sort_by([("video_id", "ascending"), ("start_s", "ascending")])


# ---- query-side tables (built by vidlake.query.indexes) ----------------------------------------

CONCEPT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2
CONCEPT_SOURCE_VOCABULARY = "vocabulary"  # indexed by an index job over every clip
CONCEPT_SOURCE_VERIFIED = "verified"  # verified at query time on candidate clips only

CONCEPTS = _schema(
    [
        ("concept", pa.string()),
        ("embedding", pa.list_(pa.float32(), CONCEPT_EMBEDDING_DIM)),
        ("n_clips", pa.int64()),
        ("source", pa.string()),
        ("model_id", pa.string()),
        ("n_clips_checked", pa.int64()),
        ("updated_at", TIMESTAMP),
    ]
)

TABLES["concepts"] = CONCEPTS


def clip_spec(clip: dict) -> ClipSpec:
    """The ClipSpec a `clips` row (as a dict) was written from."""
    return ClipSpec(
        video_id=clip["video_id"],
        video_uri=clip["video_uri"],
        clip_index=clip["clip_index"],
        start_s=clip["start_s"],
        end_s=clip["end_s"],
        sampled_fps=clip["sampled_fps"],
        frame_indices=np.asarray(clip["frame_indices"], np.int64),
        times_s=np.asarray(clip["frame_times_s"], np.float64),
    )
