"""Ground truth and index building for the query tests (imported by conftest and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidlake.synthetic.corpus import ShapeSpec, SyntheticVideo, VideoSpec, write_video

# Only two of the palette's concepts: the others are for query-time verification.
INDEXED = ("red square", "blue circle", "purple hexagon")
MIN_PIXELS = 8  # the colour segmenter's presence threshold


@dataclass
class BuiltIndex:
    uri: str
    videos: dict[str, SyntheticVideo]  # by uri


def visible(video: SyntheticVideo, concept: str, frame: int) -> bool:
    return int(video.mask(concept, frame).sum()) >= MIN_PIXELS


def apart_video(folder: Path) -> SyntheticVideo:
    """2 s: red square in the first second, blue circle in the second, never together."""
    spec = VideoSpec(
        name="d_apart",
        duration_s=2.0,
        shapes=(
            ShapeSpec("red square", (40.0, 40.0), (0.0, 0.0), 30, 0, 12),
            ShapeSpec("blue circle", (110.0, 70.0), (0.0, 0.0), 30, 12, None),
        ),
    )
    return write_video(spec, folder / "d_apart.mp4")


def truth_clips(built: BuiltIndex, engine, concepts: tuple[str, ...], same_frame=False) -> set:
    """Clip ids where every concept is visible in some sampled frame (in one, with same_frame)."""
    clips = (
        engine.dataset("clips")
        .to_table(columns=["clip_id", "video_uri", "frame_indices"])
        .to_pylist()
    )
    out = set()
    for clip in clips:
        video = built.videos[clip["video_uri"]]
        frames = np.asarray(clip["frame_indices"])
        seen = {c: {int(f) for f in frames if visible(video, c, int(f))} for c in concepts}
        if same_frame:
            if set.intersection(*seen.values()):
                out.add(clip["clip_id"])
        elif all(seen.values()):
            out.add(clip["clip_id"])
    return out
