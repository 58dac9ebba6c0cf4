"""Adapters between Ray Data rows and the operators: the only place rows become records.

Each function here is what one Ray Data stage runs; the work itself is in operators/ and
model/. Per-clip failures travel as data (an `error` column) so one bad video never fails the job.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import numpy as np

from vidlake.errors import VidlakeError
from vidlake.records import ClipResult, ClipSpec, VideoInfo
from vidlake.store.object_store import fsspec_options

log = logging.getLogger(__name__)

_EMPTY_FRAMES = np.zeros((0, 1, 1, 3), dtype=np.uint8)


def spec_to_row(spec: ClipSpec) -> dict[str, Any]:
    return {
        "video_id": spec.video_id,
        "video_uri": spec.video_uri,
        "clip_index": spec.clip_index,
        "start_s": spec.start_s,
        "end_s": spec.end_s,
        "sampled_fps": spec.sampled_fps,
        "frame_indices": np.asarray(spec.frame_indices, dtype=np.int64),
        "times_s": np.asarray(spec.times_s, dtype=np.float64),
    }


def row_to_spec(row: dict[str, Any]) -> ClipSpec:
    return ClipSpec(
        video_id=str(row["video_id"]),
        video_uri=str(row["video_uri"]),
        clip_index=int(row["clip_index"]),
        start_s=float(row["start_s"]),
        end_s=float(row["end_s"]),
        sampled_fps=float(row["sampled_fps"]),
        frame_indices=np.asarray(row["frame_indices"], dtype=np.int64),
        times_s=np.asarray(row["times_s"], dtype=np.float64),
    )


def probe_row(row: dict[str, Any], storage_options: dict | None = None) -> dict[str, Any]:
    """Probes one video: the row gains `info` (pickled VideoInfo) or `error`."""
    from vidlake.operators.probe import probe_video

    try:
        info = probe_video(row["uri"], storage_options=fsspec_options(row["uri"], storage_options))
    except VidlakeError as exc:
        return {**row, "info": b"", "error": str(exc)}
    return {**row, "info": pickle.dumps(info), "error": ""}


def load_info(blob: bytes) -> VideoInfo:
    return pickle.loads(blob)


def decode_row(
    row: dict[str, Any], storage_options: dict | None = None, max_side: int | None = None
) -> dict[str, Any]:
    """Decodes one clip's sampled frames into `frames` (T, H, W, 3) uint8, or sets `error`."""
    from vidlake.operators.decode import decode_clip

    try:
        frames = decode_clip(
            row_to_spec(row),
            storage_options=fsspec_options(row["video_uri"], storage_options),
            max_side=max_side,
        )
    except VidlakeError as exc:
        return {**row, "frames": _EMPTY_FRAMES, "error": str(exc)}
    return {**row, "frames": frames, "error": ""}


class SegmentStage:
    """The segment actor: loads the segmenter once, then segments one clip per call."""

    def __init__(self, model: str, concepts: tuple[str, ...], device: str = "auto"):
        from vidlake.model import load_segmenter

        self.segmenter = load_segmenter(model, device=device)
        self.concepts = list(concepts)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from vidlake.operators.thumbnail import crop_thumbnail, jpeg_thumbnail
        from vidlake.store.schema import clip_tables

        base = {k: row[k] for k in ("video_id", "video_uri", "clip_index")}
        if row["error"]:
            return {**base, "tables": b"", "n_frames": 0, "error": row["error"]}
        frames = np.asarray(row["frames"])
        spec = row_to_spec(row)
        try:
            masklets = self.segmenter.segment(frames, self.concepts)
        except (RuntimeError, ValueError) as exc:
            # A model failure on one clip (e.g. out of GPU memory) fails its video, not the job.
            log.warning("segmenting %s clip %d failed: %s", spec.video_uri, spec.clip_index, exc)
            return {**base, "tables": b"", "n_frames": 0, "error": f"segmentation failed: {exc}"}
        result = ClipResult(
            spec=spec,
            height=int(frames.shape[1]),
            width=int(frames.shape[2]),
            masklets=masklets,
            thumbnail=jpeg_thumbnail(frames[len(frames) // 2]),
        )
        thumbs = []
        for m in masklets:
            best = int(np.argmax(m.scores)) if len(m.scores) else 0
            thumbs.append(
                crop_thumbnail(frames[int(m.frame_idx[best])], m.boxes[best])
                if len(m.frame_idx)
                else b""
            )
        tables = clip_tables(result, thumbs)
        return {
            **base,
            "tables": pickle.dumps(tables),
            "n_frames": int(len(frames)),
            "error": "",
        }


def write_row(
    row: dict[str, Any], index_uri: str, overlap_s: float, storage_options: dict | None = None
) -> dict[str, Any]:
    """Writes one clip's rows as uncommitted Lance fragments; the driver commits them per video.

    The row also carries the clip's boundary (masks on its overlap frames) for stitching.
    """
    from vidlake.operators.stitch import clip_boundary
    from vidlake.store.tables import write_fragments

    out = {k: row[k] for k in ("video_id", "video_uri", "clip_index", "n_frames", "error")}
    if row["error"]:
        return {**out, "fragments": b"", "boundary": b"", "n_masklets": 0}
    tables = pickle.loads(row["tables"])
    fragments = write_fragments(index_uri, tables, storage_options)
    clip = tables["clips"].to_pylist()[0]
    boundary = clip_boundary(
        clip_index=clip["clip_index"],
        start_s=clip["start_s"],
        end_s=clip["end_s"],
        overlap_s=overlap_s,
        frame_indices=np.asarray(clip["frame_indices"]),
        times_s=np.asarray(clip["frame_times_s"]),
        masklets=tables["masklets"]
        .select(["masklet_id", "concept", "frame_idx", "masks"])
        .to_pylist(),
    )
    return {
        **out,
        "fragments": pickle.dumps(fragments),
        "boundary": pickle.dumps(boundary),
        "n_masklets": tables["masklets"].num_rows,
    }
