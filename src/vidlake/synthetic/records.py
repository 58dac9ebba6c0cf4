"""Small, valid index rows for tests and benchmarks of the store: a clip with one square
masklet per object, and a video's `indexed` commit marker."""

from __future__ import annotations

import numpy as np

from vidlake.operators.encode import encode_rles
from vidlake.records import ClipResult, ClipSpec, Masklet, VideoSource
from vidlake.store import schema


def clip_result(video_id: str, clip_index: int, n_objects: int = 1) -> ClipResult:
    """Clip CLIP_INDEX (2 s, two frames of 8x10 px) of VIDEO_ID with N_OBJECTS "dog" masklets."""
    spec = ClipSpec(video_id, f"/v/{video_id}.mp4", clip_index, 2.0 * clip_index,
                    2.0 * clip_index + 2, 2.0, np.array([0, 6]), np.array([0.0, 0.5]))  # fmt: skip
    masks = np.zeros((2, 8, 10), bool)
    masks[:, 2:5, 3:7] = True
    masklets = [
        Masklet(
            "dog",
            i,
            np.array([0, 1], np.int32),
            np.array([[3, 2, 7, 5]] * 2, np.float32),
            np.array([0.4, 0.8], np.float32),
            encode_rles(masks),
            presence=0.9,
        )  # fmt: skip
        for i in range(n_objects)
    ]
    return ClipResult(spec=spec, height=8, width=10, masklets=masklets, thumbnail=b"jpg")


def indexed_row(video_id: str) -> dict:
    """VIDEO_ID's `videos` row with status indexed (its commit marker)."""
    src = VideoSource(uri=f"/v/{video_id}.mp4", size=1, version="1")
    row = schema.video_row(src, None, status=schema.STATUS_INDEXED, error="", model_id="m",
                           vocabulary=["dog"], run_id="r")  # fmt: skip
    row["video_id"] = video_id
    return row
