"""The frames of a hit clip as image files, for the exports that ship their images (YOLO,
CVAT, MOTS): decoded again from the source video at the size the index stored them, so that
the masks' pixels are the images' pixels."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidlake.query.engine import ConceptIndex
from vidlake.store.object_store import fsspec_options
from vidlake.store.schema import clip_spec

JPEG_QUALITY = 95


def clip_frames(index: ConceptIndex, clip: dict) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: the sampled frames of CLIP (a `clips` row), T == n_frames.

    A video that can no longer be read is a VideoError naming its URI.
    """
    from vidlake.operators.decode import decode_clip

    spec = clip_spec(clip)
    # The store holds Lance's option names; the video is read through fsspec's.
    return decode_clip(
        spec,
        storage_options=fsspec_options(spec.video_uri, index.store.storage_options),
        max_side=max(clip["width"], clip["height"]),
    )


def save_frames(frames: np.ndarray, paths: Sequence[Path]) -> None:
    """Writes FRAMES (T, H, W, 3) uint8 RGB to PATHS (T of them, .jpg), making their folders."""
    from PIL import Image

    for frame, path in zip(frames, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=JPEG_QUALITY)


def write_frames_csv(path: Path, clip: dict, first: int = 0) -> None:
    """PATH: `frame,source_frame,time_s` for each sampled frame of CLIP, numbered from FIRST:
    where each frame of a sequence is in the source video."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["frame", "source_frame", "time_s"])
        for i, (frame, t) in enumerate(
            zip(clip["frame_indices"], clip["frame_times_s"], strict=True)
        ):
            out.writerow([first + i, frame, f"{t:.6f}"])
