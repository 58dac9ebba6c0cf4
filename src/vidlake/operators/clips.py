"""Planning clips: the overlapping windows of a video and the source frames sampled in each."""

from __future__ import annotations

import logging
import math

import numpy as np

from vidlake.errors import UsageError, VideoError
from vidlake.records import ClipSpec, VideoInfo

logger = logging.getLogger(__name__)

# Tolerance for float time arithmetic (seconds, and sample counts): a sample or a window edge
# this close to a boundary counts as on it.
_EPS = 1e-9


def plan_clips(
    video_id: str,
    info: VideoInfo,
    clip_seconds: float = 10.0,
    fps: float = 6.0,
    overlap_s: float = 1.0,
) -> list[ClipSpec]:
    """The clips of a video, in order: clip_seconds windows overlapping the next by overlap_s.

    Window k spans [k * (clip_seconds - overlap_s), that + clip_seconds), cut at the video's end
    (n_frames / fps of the source); the last window may be shorter and a video shorter than one
    clip gives a single clip. Frames are sampled at `fps` (capped at the source fps) on one grid
    for the whole video (times k / fps), so overlapping clips share the very same source frames
    in their overlap and masklets can be stitched frame by frame. frame_indices are source frame
    numbers (the frame shown at each sample time, always < n_frames); times_s are those frames'
    timestamps (index / source fps). Every clip has at least one frame; a trailing window whose
    frames all belong to the previous clip already is dropped.
    """
    if not clip_seconds > overlap_s >= 0:
        raise UsageError(
            f"need clip_seconds > overlap_s >= 0, got clip_seconds={clip_seconds}, "
            f"overlap_s={overlap_s}"
        )
    if not fps > 0 or not math.isfinite(fps):
        raise UsageError(f"sampling fps must be > 0, got {fps}")
    if not info.fps > 0 or info.n_frames <= 0:
        raise VideoError(
            f"cannot plan clips for {info.uri}: fps={info.fps}, n_frames={info.n_frames}"
        )

    source_fps = float(info.fps)
    sample_fps = min(float(fps), source_fps)
    video_end = info.n_frames / source_fps
    stride = clip_seconds - overlap_s

    clips: list[ClipSpec] = []
    previous: np.ndarray | None = None
    k = 0
    while True:
        start = k * stride
        if start >= video_end - _EPS:
            break
        end = min(start + clip_seconds, video_end)
        indices = _sample_indices(start, end, sample_fps, source_fps, info.n_frames)
        is_redundant = previous is not None and np.isin(indices, previous).all()
        if len(indices) and not is_redundant:
            clips.append(
                ClipSpec(
                    video_id=video_id,
                    video_uri=info.uri,
                    clip_index=len(clips),
                    start_s=float(start),
                    end_s=float(end),
                    sampled_fps=sample_fps,
                    frame_indices=indices,
                    times_s=indices / source_fps,
                )
            )
            previous = indices
        if end >= video_end - _EPS:
            break
        k += 1
    logger.debug(
        "%s: %d clips of %.1f s at %.2f fps", info.uri, len(clips), clip_seconds, sample_fps
    )
    return clips


def _sample_indices(
    start: float, end: float, sample_fps: float, source_fps: float, n_frames: int
) -> np.ndarray:
    """(T,) int64 source frames shown at the grid times k / sample_fps within [start, end)."""
    first = math.ceil(start * sample_fps - _EPS)
    stop = math.ceil(end * sample_fps - _EPS)  # grid times strictly before end
    times = np.arange(first, stop, dtype=np.float64) / sample_fps
    indices = np.floor(times * source_fps + _EPS).astype(np.int64)
    return np.unique(np.clip(indices, 0, n_frames - 1))
