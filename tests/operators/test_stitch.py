"""Clip stitching on hand-made masks: the right masklets join, the wrong ones do not."""

from __future__ import annotations

import numpy as np

from vidlake.operators.encode import encode_rle
from vidlake.operators.stitch import BoundaryMasklet, ClipBoundary, stitch_tracks


def box_mask(x0: int, y0: int, x1: int, y1: int) -> dict:
    m = np.zeros((40, 60), bool)
    m[y0:y1, x0:x1] = True
    return encode_rle(m)


def clip(index: int, frames: tuple[int, ...], masklets: list[BoundaryMasklet]) -> ClipBoundary:
    return ClipBoundary(clip_index=index, overlap_frames=frames, masklets=masklets)


def test_two_objects_of_one_concept_keep_their_own_tracks():
    # Clip 0 ends and clip 1 starts on frames 10 and 12; "left" and "right" dogs stay apart.
    left, right = box_mask(0, 0, 20, 20), box_mask(35, 10, 55, 30)
    c0 = clip(0, (10, 12), [BoundaryMasklet("a-left", "dog", {10: left, 12: left}),
                            BoundaryMasklet("a-right", "dog", {10: right, 12: right})])  # fmt: skip
    c1 = clip(1, (10, 12, 20), [BoundaryMasklet("b-right", "dog", {10: right, 12: right}),
                                BoundaryMasklet("b-left", "dog", {10: left, 12: left})])  # noqa: E501  # fmt: skip
    c2 = clip(2, (20,), [BoundaryMasklet("c-left", "dog", {})])
    tracks = stitch_tracks("v", [c2, c1, c0])  # any arrival order
    assert tracks["a-left"] == tracks["b-left"] != tracks["a-right"]
    assert tracks["a-right"] == tracks["b-right"]
    # Clip 2 shares no frame with clip 1's masks of c-left: it starts a new track.
    assert tracks["c-left"] not in {tracks["a-left"], tracks["a-right"]}


def test_other_concepts_and_weak_overlaps_do_not_join():
    m = box_mask(0, 0, 20, 20)
    shifted = box_mask(15, 15, 35, 35)  # IoU well under 0.5
    c0 = clip(
        0, (5,), [BoundaryMasklet("dog0", "dog", {5: m}), BoundaryMasklet("cat0", "cat", {5: m})]
    )
    c1 = clip(1, (5,), [BoundaryMasklet("cat1", "cat", {5: shifted}),
                        BoundaryMasklet("dog1", "dog", {5: m})])  # fmt: skip
    tracks = stitch_tracks("v", [c0, c1])
    assert tracks["dog0"] == tracks["dog1"]
    assert tracks["cat0"] != tracks["cat1"]
    assert len(set(tracks.values())) == 3


def test_track_ids_are_named_after_the_earliest_masklet():
    m = box_mask(0, 0, 20, 20)
    # Clip i samples frames i and i + 1: it shares frame i with clip i - 1, i + 1 with clip i + 1.
    chain = [
        clip(i, (i, i + 1), [BoundaryMasklet(f"m{i}", "dog", {i: m, i + 1: m})]) for i in range(4)
    ]
    a = stitch_tracks("v", chain)
    b = stitch_tracks("v", list(reversed(chain)))
    assert a == b and len(set(a.values())) == 1
