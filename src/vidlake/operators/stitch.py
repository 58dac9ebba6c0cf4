"""Clip stitching: one track id per object per video, from masklets of overlapping clips.

Clips overlap and sample the same source frames in their overlap (see `plan_clips`), so the
masklet of one object in clip k and in clip k+1 has masks on the same source frames there.
Masklets of consecutive clips with the same concept are matched by mean mask IoU over those
shared frames; matched masklets join one track (union-find), whose id derives from the
track's earliest masklet, so reruns give the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from vidlake.records import stable_id

MIN_TRACK_IOU = 0.5


@dataclass
class BoundaryMasklet:
    """One masklet's masks on its clip's overlap frames, keyed by source frame index."""

    masklet_id: str
    concept: str
    masks: dict[int, dict] = field(default_factory=dict)


@dataclass
class ClipBoundary:
    """What stitching needs of one clip: its overlap frames and its masklets' masks on them."""

    clip_index: int
    overlap_frames: tuple[int, ...]
    masklets: list[BoundaryMasklet]


def clip_boundary(
    clip_index: int,
    start_s: float,
    end_s: float,
    overlap_s: float,
    frame_indices: np.ndarray,
    times_s: np.ndarray,
    masklets: list[dict],
) -> ClipBoundary:
    """The boundary of one clip, from its `masklets` rows (masklet_id, concept, frame_idx, masks).

    Only frames within overlap_s of either end of the clip are kept: the memory stitching
    holds per clip does not grow with clip length.
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    eps = 1e-6
    edge = (times_s < start_s + overlap_s + eps) | (times_s >= end_s - overlap_s - eps)
    kept = {int(i) for i in np.flatnonzero(edge)}
    out = []
    for row in masklets:
        masks = {
            int(frame_indices[fi]): rle
            for fi, rle in zip(row["frame_idx"], row["masks"], strict=True)
            if int(fi) in kept
        }
        out.append(BoundaryMasklet(row["masklet_id"], row["concept"], masks))
    return ClipBoundary(
        clip_index=clip_index,
        overlap_frames=tuple(int(frame_indices[i]) for i in sorted(kept)),
        masklets=out,
    )


def _rle(m: dict) -> dict:
    counts = m["counts"]
    return {
        "size": list(m["size"]),
        "counts": counts if isinstance(counts, bytes) else counts.encode(),
    }


def _match_score(a: BoundaryMasklet, b: BoundaryMasklet, shared: set[int]) -> float:
    """Mean mask IoU over the shared frames where either masklet has a mask."""
    frames = [f for f in shared if f in a.masks or f in b.masks]
    if not frames:
        return 0.0
    total = 0.0
    for f in frames:
        if f in a.masks and f in b.masks:
            total += float(mask_utils.iou([_rle(a.masks[f])], [_rle(b.masks[f])], [0])[0][0])
    return total / len(frames)


def stitch_tracks(
    video_id: str, boundaries: list[ClipBoundary], min_iou: float = MIN_TRACK_IOU
) -> dict[str, str]:
    """masklet_id -> track_id for every masklet of a video's clips.

    Consecutive clips are matched greedily, best IoU first, one-to-one, same concept only.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ordered = sorted(boundaries, key=lambda b: b.clip_index)
    order: dict[str, tuple[int, int]] = {}
    for clip in ordered:
        for j, m in enumerate(clip.masklets):
            parent[m.masklet_id] = m.masklet_id
            order[m.masklet_id] = (clip.clip_index, j)
    for prev, nxt in zip(ordered, ordered[1:], strict=False):
        if nxt.clip_index != prev.clip_index + 1:
            continue
        shared = set(prev.overlap_frames) & set(nxt.overlap_frames)
        if not shared:
            continue
        pairs = sorted(
            (
                (_match_score(a, b, shared), a.masklet_id, b.masklet_id)
                for a in prev.masklets
                for b in nxt.masklets
                if a.concept == b.concept
            ),
            reverse=True,
        )
        used_a, used_b = set(), set()
        for score, a_id, b_id in pairs:
            if score < min_iou or a_id in used_a or b_id in used_b:
                continue
            used_a.add(a_id)
            used_b.add(b_id)
            ra, rb = find(a_id), find(b_id)
            # The earlier masklet stays the root, so a track is named after where it starts.
            if order[ra] <= order[rb]:
                parent[rb] = ra
            else:
                parent[ra] = rb
    return {m: stable_id("track", video_id, find(m)) for m in parent}
