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


def twice_video(folder: Path) -> SyntheticVideo:
    """6 s: a small red square in the bottom-right quarter at 0-1.5 s and again at 3.5-5 s
    (two tracks: no clip of 2 s with 0.5 s overlap sees it on both sides of the gap), and a
    blue circle at 2-3 s."""
    spec = VideoSpec(
        name="e_twice",
        duration_s=6.0,
        shapes=(
            ShapeSpec("red square", (120.0, 90.0), (0.0, 0.0), 24, 0, 18),
            ShapeSpec("blue circle", (60.0, 40.0), (0.0, 0.0), 30, 24, 36),
            ShapeSpec("red square", (120.0, 90.0), (0.0, 0.0), 24, 42, 60),
        ),
    )
    return write_video(spec, folder / "e_twice.mp4")


def sampled_frames(engine, video_uri: str) -> dict[int, float]:
    """{source frame: time} of the frames the index sampled from a video (all its clips)."""
    clips = engine.dataset("clips").to_table(
        columns=["frame_indices", "frame_times_s"], filter=f"video_uri = '{video_uri}'"
    )
    out: dict[int, float] = {}
    for frames, times in zip(
        clips.column("frame_indices").to_pylist(),
        clips.column("frame_times_s").to_pylist(),
        strict=True,
    ):
        out.update(zip(frames, times, strict=True))
    return out


def truth_tracks(built: BuiltIndex, engine, concept: str) -> list[dict]:
    """Each run of sampled frames showing CONCEPT in a video: a track.

    {video, start_s, end_s, frames: [(frame, time)]}. A run breaks where a sampled frame
    does not show it (every gap in these videos is longer than a clip's overlap).
    """
    tracks = []
    for uri, video in built.videos.items():
        run: list[tuple[int, float]] = []
        for frame, time in sorted(sampled_frames(engine, uri).items()):
            if visible(video, concept, frame):
                run.append((frame, time))
                continue
            if run:
                tracks.append(
                    {"video": uri, "start_s": run[0][1], "end_s": run[-1][1], "frames": run}
                )
            run = []
        if run:
            tracks.append({"video": uri, "start_s": run[0][1], "end_s": run[-1][1], "frames": run})
    return tracks


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
