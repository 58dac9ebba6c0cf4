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

TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "clips": CLIPS,
    "masklets": MASKLETS,
    "concept_hits": CONCEPT_HITS,
    "presence": PRESENCE,
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
